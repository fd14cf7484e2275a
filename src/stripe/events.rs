//! The Stripe event types Bursar subscribes to, in one table: what the platform's endpoint, the
//! Connect endpoint and a `keys` store's own endpoint enable. Webhook setup, `reconcile`,
//! `doctor`, `bursar trigger`'s fixtures and the handler registry's tests all read it.

/// What the platform's own endpoint must enable: vendor billing on the platform account, and
/// the payments made on it (destination and multi-vendor orders) with their transfers.
pub const PLATFORM_EVENTS: &[&str] = &[
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.payment_action_required",
    "customer.updated",
    "customer.deleted",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "charge.refunded",
    "charge.refund.updated",
    "charge.dispute.created",
    "charge.dispute.closed",
    "transfer.created",
    "transfer.updated",
    "transfer.reversed",
    "application_fee.created",
    "application_fee.refunded",
];

/// What a connected account's events Bursar applies; also what a `keys` store's own endpoint
/// must enable (less the deauthorization, which only a platform hears of).
pub const ACCOUNT_EVENTS: &[&str] = &[
    "account.updated",
    "account.application.deauthorized",
    "account.external_account.updated",
    "person.updated",
    "payout.created",
    "payout.updated",
    "payout.paid",
    "payout.failed",
    "payout.canceled",
    "balance.available",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "charge.refunded",
    "charge.refund.updated",
    "charge.dispute.created",
    "charge.dispute.closed",
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
    "customer.created",
    "customer.updated",
    "customer.deleted",
];

/// The events a store's own endpoint enables.
pub fn store_events() -> Vec<&'static str> {
    ACCOUNT_EVENTS
        .iter()
        .copied()
        .filter(|e| *e != "account.application.deauthorized")
        .collect()
}

/// Every type Bursar handles, each once, in the table's order.
pub fn handled() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for t in PLATFORM_EVENTS.iter().chain(ACCOUNT_EVENTS) {
        if !out.contains(t) {
            out.push(t);
        }
    }
    out
}

//! Every notification type: when Bursar sends it, which API view its `data.object` is, and an
//! example body built from that view's own type. The manual's type reference
//! (`docs/notifications.md`) and the OpenAPI document's notification schema come from here;
//! a test keeps the manual in step.

use serde::Serialize;
use serde_json::{json, Value};

use super::billing::SubscriptionView;
use super::connections::AccountView;
use super::customers::CustomerView;
use super::order_view::{OrderView, TransferView};
use super::payouts::PayoutView;
use crate::domain::subscription::VendorStatus;

/// The API view a notification carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    Order,
    Account,
    Payout,
    VendorSubscription,
    Customer,
}

impl Object {
    /// The view's schema in the OpenAPI document's components.
    pub fn schema(self) -> &'static str {
        match self {
            Object::Order => "OrderView",
            Object::Account => "AccountView",
            Object::Payout => "PayoutView",
            Object::VendorSubscription => "SubscriptionView",
            Object::Customer => "CustomerView",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Object::Order => "the order, as `GET /api/v1/orders/{id}` (without `client_secret`)",
            Object::Account => "the store's account, as `GET /api/v1/stores/{id}/account`",
            Object::Payout => "the payout, as Stripe reported it",
            Object::VendorSubscription => {
                "the vendor subscription, as `GET /api/v1/stores/{id}/subscription`"
            }
            Object::Customer => "the customer, as `GET /api/v1/customers/{id}`",
        }
    }
}

pub struct Kind {
    pub event_type: &'static str,
    pub when: &'static str,
    pub object: Object,
    /// False for a type endpoints may subscribe to that nothing sends yet.
    pub sent: bool,
}

const fn kind(event_type: &'static str, when: &'static str, object: Object) -> Kind {
    Kind {
        event_type,
        when,
        object,
        sent: true,
    }
}

/// In the order of `domain::notification::EVENT_TYPES`.
pub const KINDS: &[Kind] = &[
    kind(
        "order.paid",
        "Stripe says the payment succeeded.",
        Object::Order,
    ),
    kind(
        "order.failed",
        "A payment attempt failed (a later attempt may still succeed).",
        Object::Order,
    ),
    kind(
        "order.canceled",
        "The PaymentIntent or Checkout Session was canceled or expired.",
        Object::Order,
    ),
    kind(
        "order.refunded",
        "Stripe refunded the whole amount.",
        Object::Order,
    ),
    kind(
        "order.partially_refunded",
        "Stripe refunded part of the amount.",
        Object::Order,
    ),
    kind(
        "order.disputed",
        "The cardholder opened a dispute (or it moved).",
        Object::Order,
    ),
    kind(
        "order.transferred",
        "A multi-vendor order's transfers are all made: every split is in its store's account \
         (once per order, when Stripe answers the last one).",
        Object::Order,
    ),
    kind(
        "store.connected",
        "A store now holds a Stripe account: keys pasted, OAuth finished or an account created; \
         also another account, or again after a deauthorization. Saving the same keys again \
         sends nothing.",
        Object::Account,
    ),
    kind(
        "store.disconnected",
        "The store's connection was removed (by the API, the CLI or a store deletion).",
        Object::Account,
    ),
    kind(
        "store.account_updated",
        "The store's account may now (or may no longer) take charges or receive payouts.",
        Object::Account,
    ),
    kind(
        "store.deauthorized",
        "The merchant disconnected the platform from their Stripe Dashboard.",
        Object::Account,
    ),
    kind(
        "store.payout_paid",
        "A payout of the store's account reached its bank.",
        Object::Payout,
    ),
    kind(
        "store.payout_failed",
        "A payout of the store's account failed.",
        Object::Payout,
    ),
    kind(
        "vendor_subscription.updated",
        "The store's vendor status moved (pending, trialing, active, past due).",
        Object::VendorSubscription,
    ),
    kind(
        "vendor_subscription.suspended",
        "Stripe cancelled the subscription after failed payments.",
        Object::VendorSubscription,
    ),
    kind(
        "vendor_subscription.canceled",
        "The subscription was cancelled on request.",
        Object::VendorSubscription,
    ),
    kind(
        "customer.updated",
        "A customer's email or name changed at Stripe.",
        Object::Customer,
    ),
    kind(
        "customer.deleted",
        "A customer was deleted at Stripe.",
        Object::Customer,
    ),
];

const STORE: &str = "st_01jdz8q3v4m6x9k2c5b7n0p4r8";
const CREATED: i64 = 1_764_770_000;

fn to_value(view: impl Serialize) -> Value {
    serde_json::to_value(view).expect("views serialize")
}

fn order(event_type: &str) -> Value {
    let (status, refunded, dispute) = match event_type {
        "order.failed" => ("failed", 0, None),
        "order.canceled" => ("canceled", 0, None),
        "order.refunded" => ("refunded", 4200, None),
        "order.partially_refunded" => ("partially_refunded", 1000, None),
        "order.disputed" => ("disputed", 0, Some("needs_response".to_owned())),
        _ => ("paid", 0, None),
    };
    if event_type == "order.transferred" {
        return multi_vendor_order();
    }
    to_value(OrderView {
        id: "ord_01jdz9a1c3e5g7j9l1n3q5s7u9".into(),
        object: "order",
        store_id: Some(STORE.into()),
        charge_type: "direct".into(),
        on_behalf_of: false,
        transfer_amount: None,
        transfers: None,
        amount: 4200,
        currency: "usd".into(),
        description: Some("Order #1042".into()),
        customer_id: Some("cus_R7x2kQe9LmN3pB".into()),
        application_fee_amount: Some(210),
        application_fee: Some("fee_1QbR9cB7WZ01zgkWm2NpQ4rT".into()),
        application_fee_refunded: if status == "refunded" { 210 } else { 0 },
        metadata: json!({"cart": "1042"}),
        status: status.into(),
        status_source: Some("webhook".into()),
        amount_refunded: refunded,
        failure: (status == "failed")
            .then(|| json!({"code": "card_declined", "message": "Your card was declined."})),
        dispute_status: dispute,
        payment_intent: Some("pi_3QbR8vB7WZ01zgkW0x4kT9aC".into()),
        client_secret: None,
        publishable_key: Some("pk_test_51QbR8vB7WZ01zgkWpublishable".into()),
        stripe_account: Some("acct_1QbR7tB7WZ01zgkW".into()),
        checkout_url: Some(
            "https://pay.example.com/checkout/ord_01jdz9a1c3e5g7j9l1n3q5s7u9.1764856280.Zk3vQ0aT"
                .into(),
        ),
        synced_at: None,
        return_url: Some("https://shop.example/orders/1042".into()),
        livemode: false,
        created: CREATED - 120,
    })
}

/// A multi-vendor order once both vendors' transfers are made.
fn multi_vendor_order() -> Value {
    let split = |store: &str, amount, transfer: &str, description: &str| TransferView {
        store_id: store.into(),
        amount,
        description: Some(description.into()),
        transfer: Some(transfer.into()),
        status: "created".into(),
        reversed_amount: 0,
        failure_message: None,
    };
    to_value(OrderView {
        id: "ord_01jdz9b4d6f8h0k2m4p6r8t0w2".into(),
        object: "order",
        store_id: None,
        charge_type: "separate".into(),
        on_behalf_of: false,
        transfer_amount: None,
        transfers: Some(vec![
            split(STORE, 6000, "tr_1QbS2aB7WZ01zgkWq3LmT8xV", "Ceramic mug"),
            split(
                "st_01jdz8y7b2d4f6h8j0m2p4r6t8",
                3000,
                "tr_1QbS2aB7WZ01zgkWx9PqR2sD",
                "Tea towel",
            ),
        ]),
        amount: 10000,
        currency: "usd".into(),
        description: Some("Cart #2077".into()),
        customer_id: None,
        application_fee_amount: None,
        application_fee: None,
        application_fee_refunded: 0,
        metadata: json!({"cart": "2077"}),
        status: "paid".into(),
        status_source: Some("webhook".into()),
        amount_refunded: 0,
        failure: None,
        dispute_status: None,
        payment_intent: Some("pi_3QbS1zB7WZ01zgkW1c8dE4fG".into()),
        client_secret: None,
        publishable_key: Some("pk_test_51QbR8vB7WZ01zgkWpublishable".into()),
        stripe_account: None,
        checkout_url: Some(
            "https://pay.example.com/checkout/ord_01jdz9b4d6f8h0k2m4p6r8t0w2.1764856400.Qm8wLr2c"
                .into(),
        ),
        synced_at: None,
        return_url: None,
        livemode: false,
        created: CREATED - 60,
    })
}

fn account(event_type: &str) -> Value {
    let gone = matches!(event_type, "store.disconnected");
    let deauthorized = event_type == "store.deauthorized";
    let enabled = !gone && !deauthorized;
    to_value(AccountView {
        store_id: STORE.into(),
        object: "account_status",
        connected: enabled,
        kind: (!gone).then(|| "connect".into()),
        connect_type: (!gone).then(|| "express".into()),
        mode: (!gone).then(|| "test".into()),
        account_id: (!gone).then(|| "acct_1QbR7tB7WZ01zgkW".into()),
        charges_enabled: enabled,
        payouts_enabled: enabled,
        details_submitted: !gone,
        requirements: (!gone).then(|| {
            json!({"currently_due": [], "past_due": [], "eventually_due": [],
                   "disabled_reason": null, "current_deadline": null})
        }),
        last_payout_failure: None,
        balance: None,
        external_account: None,
        deauthorized,
        synced: (!gone).then_some(CREATED),
    })
}

fn payout(event_type: &str) -> Value {
    let failed = event_type == "store.payout_failed";
    to_value(PayoutView {
        id: "po_1QbS2kB7WZ01zgkWq8Rt3mXz".into(),
        object: "payout",
        store_id: STORE.into(),
        amount: 125_000,
        currency: "usd".into(),
        status: if failed { "failed" } else { "paid" }.into(),
        arrival_date: Some(CREATED - 3600),
        failure_code: failed.then(|| "account_closed".into()),
        failure_message: failed.then(|| "The bank account has been closed.".into()),
        created: Some(CREATED - 2 * 86_400),
    })
}

fn subscription(event_type: &str) -> Value {
    let (vendor_status, status) = match event_type {
        "vendor_subscription.suspended" => (VendorStatus::Suspended, "canceled"),
        "vendor_subscription.canceled" => (VendorStatus::Canceled, "canceled"),
        _ => (VendorStatus::Active, "active"),
    };
    let suspended = vendor_status == VendorStatus::Suspended;
    to_value(SubscriptionView {
        object: "vendor_subscription",
        store_id: STORE.into(),
        vendor_status,
        subscription_id: Some("sub_1QbS9aB7WZ01zgkWm4Vd2HqL".into()),
        customer_id: Some("cus_R7x9PlatformVendor".into()),
        price_id: "price_1QbS8zB7WZ01zgkWmonthly".into(),
        status: Some(status.into()),
        current_period_end: Some(CREATED + 30 * 86_400),
        trial_end: None,
        cancel_at_period_end: false,
        ended_reason: suspended.then(|| "payment_failed".into()),
        latest_invoice: Some("in_1QbSAbB7WZ01zgkWk2Lp9Tz".into()),
        hosted_invoice_url: None,
        last_payment_error: suspended.then(|| "Your card was declined.".into()),
    })
}

fn customer(event_type: &str) -> Value {
    to_value(CustomerView {
        id: "cu_01jdz9c4f6h8k0m2p4r6t8v0x2".into(),
        object: "customer",
        store_id: STORE.into(),
        stripe_customer_id: Some("cus_R7x2kQe9LmN3pB".into()),
        email: "ana.lima@shop.example".into(),
        name: Some("Ana Lima".into()),
        metadata: json!({"crm": "77"}),
        deleted: event_type == "customer.deleted",
        created: CREATED - 86_400,
    })
}

/// An example body of the type, as an endpoint receives it.
pub fn example_body(kind: &Kind) -> Value {
    let object = match kind.object {
        Object::Order => order(kind.event_type),
        Object::Account => account(kind.event_type),
        Object::Payout => payout(kind.event_type),
        Object::VendorSubscription => subscription(kind.event_type),
        Object::Customer => customer(kind.event_type),
    };
    json!({
        "id": "msg_01jdz9e7h9k1m3p5r7t9v1x3z5",
        "type": kind.event_type,
        "created": CREATED,
        "store_id": STORE,
        "seq": 7,
        "data": { "object": object },
    })
}

/// The manual's type reference: a table, then an example body of each type that is sent.
pub fn manual() -> String {
    let mut out = String::from("| type | sent when | `data.object` |\n|---|---|---|\n");
    for k in KINDS {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            k.event_type,
            k.when,
            k.object.describe()
        ));
    }
    for k in KINDS.iter().filter(|k| k.sent) {
        let body = serde_json::to_string_pretty(&example_body(k)).expect("JSON");
        out.push_str(&format!(
            "\n### `{}`\n\n```json\n{body}\n```\n",
            k.event_type
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::notification::EVENT_TYPES;

    #[test]
    fn every_type_is_described_once_in_order() {
        let described: Vec<&str> = KINDS.iter().map(|k| k.event_type).collect();
        assert_eq!(described, EVENT_TYPES);
    }

    const BEGIN: &str = "<!-- generated from src/service/notification_types.rs: BURSAR_BLESS=1 cargo test notification_types -->\n";
    const END: &str = "<!-- end of generated -->";

    /// The manual shows what the code makes; `BURSAR_BLESS=1` rewrites its generated part.
    #[test]
    fn the_manual_shows_every_type_as_generated() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/notifications.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let (before, rest) = doc.split_once(BEGIN).expect("the generated part's start");
        let (_, after) = rest.split_once(END).expect("the generated part's end");
        let want = format!("{before}{BEGIN}{}{END}{after}", manual());
        if std::env::var_os("BURSAR_BLESS").is_some() {
            std::fs::write(path, &want).unwrap();
        } else {
            assert!(
                doc == want,
                "docs/notifications.md is out of date: run BURSAR_BLESS=1 cargo test notification_types"
            );
        }
    }
}

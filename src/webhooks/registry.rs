//! The explicit handler registry: each event type maps to one handler. A type with no handler
//! is stored, acknowledged and marked `ignored`, never an error.
//!
//! A handler works in two steps. `load` may call Stripe and runs outside any transaction (so
//! a slow Stripe never holds the database's write lock); `apply` writes the effects inside the
//! worker's transaction, in which the event is also marked applied.

use sqlx::AnyConnection;

use super::handlers::billing::{self, BillingEvent};
use super::handlers::payment::{self, PaymentEvent};
use super::handlers::payout::{self, PayoutEvent};
use super::handlers::{account, application_fee, balance, customer, transfer};
use crate::service::Services;
use crate::webhooks::event::{HandlerError, Incoming, Loaded};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    AccountUpdated,
    /// Accounts v2 thin events (`v2.core.account*`): resolved by fetching event and account.
    V2Account,
    AccountDeauthorized,
    ExternalAccountUpdated,
    PersonUpdated,
    Payout(PayoutEvent),
    BalanceAvailable,
    Payment(PaymentEvent),
    /// `customer.created|updated`.
    CustomerChanged,
    /// `customer.deleted`.
    CustomerDeleted,
    /// Vendor billing on the platform account (subscriptions and invoices).
    Billing(BillingEvent),
    /// `transfer.*` on the platform: a multi-vendor order's transfers.
    Transfer,
    /// `application_fee.*` on the platform: the platform's fee on an order's charge.
    ApplicationFee,
}

pub fn handler_for(event_type: &str) -> Option<Handler> {
    if event_type.starts_with("v2.core.account") {
        return Some(Handler::V2Account);
    }
    Some(match event_type {
        "account.updated" => Handler::AccountUpdated,
        "account.application.deauthorized" => Handler::AccountDeauthorized,
        "payout.created" | "payout.updated" => Handler::Payout(PayoutEvent::Changed),
        "payout.paid" => Handler::Payout(PayoutEvent::Paid),
        "payout.failed" => Handler::Payout(PayoutEvent::Failed),
        "payout.canceled" => Handler::Payout(PayoutEvent::Canceled),
        "balance.available" => Handler::BalanceAvailable,
        "payment_intent.succeeded" => Handler::Payment(PaymentEvent::IntentSucceeded),
        "payment_intent.payment_failed" => Handler::Payment(PaymentEvent::IntentFailed),
        "payment_intent.canceled" => Handler::Payment(PaymentEvent::IntentCanceled),
        "charge.refunded" => Handler::Payment(PaymentEvent::ChargeRefunded),
        "charge.refund.updated" | "refund.updated" | "refund.failed" => {
            Handler::Payment(PaymentEvent::RefundUpdated)
        }
        "charge.dispute.created" => Handler::Payment(PaymentEvent::DisputeCreated),
        "charge.dispute.closed" => Handler::Payment(PaymentEvent::DisputeClosed),
        "checkout.session.completed"
        | "checkout.session.async_payment_succeeded"
        | "checkout.session.async_payment_failed"
        | "checkout.session.expired" => Handler::Payment(PaymentEvent::CheckoutSession),
        "customer.created" | "customer.updated" => Handler::CustomerChanged,
        "customer.subscription.created" | "customer.subscription.updated" => {
            Handler::Billing(BillingEvent::SubscriptionChanged)
        }
        "customer.subscription.deleted" => Handler::Billing(BillingEvent::SubscriptionDeleted),
        // Stripe sends both for one payment; either says the invoice is settled.
        "invoice.paid" | "invoice.payment_succeeded" => Handler::Billing(BillingEvent::InvoicePaid),
        "invoice.payment_failed" => Handler::Billing(BillingEvent::InvoicePaymentFailed),
        "invoice.payment_action_required" => Handler::Billing(BillingEvent::InvoiceActionRequired),
        "customer.deleted" => Handler::CustomerDeleted,
        "account.external_account.updated" => Handler::ExternalAccountUpdated,
        "person.updated" => Handler::PersonUpdated,
        "transfer.created" | "transfer.updated" | "transfer.reversed" => Handler::Transfer,
        "application_fee.created" | "application_fee.refunded" => Handler::ApplicationFee,
        _ => return None,
    })
}

impl Handler {
    /// Whether `load` calls Stripe for `ev` (and so runs under the worker's per-event
    /// deadline); the others apply the event's own object. Money events signed by a merchant's
    /// secret are confirmed at Stripe: only Stripe's word moves an order or a refund.
    pub fn calls_stripe(self, ev: &Incoming) -> bool {
        match self {
            Handler::AccountUpdated
            | Handler::V2Account
            | Handler::ExternalAccountUpdated
            | Handler::PersonUpdated => true,
            Handler::Payment(_) | Handler::Payout(_) => ev.merchant_signed,
            Handler::ApplicationFee => true,
            _ => false,
        }
    }

    pub async fn load(self, s: &Services, ev: &Incoming) -> Result<Loaded, HandlerError> {
        match self {
            Handler::AccountUpdated => account::load_updated(s, ev).await,
            Handler::V2Account => account::load_v2(s, ev).await,
            Handler::ExternalAccountUpdated => account::load_external_account(s, ev).await,
            Handler::PersonUpdated => account::load_for_person(s, ev).await,
            Handler::Payment(kind) if ev.merchant_signed => payment::confirm(s, ev, kind).await,
            Handler::Payout(_) => payout::load(s, ev).await,
            Handler::ApplicationFee => application_fee::load(s, ev).await,
            _ => Ok(Loaded::Object(ev.object.clone())),
        }
    }

    /// Whether `apply` writes anything for an event routed to a store (`store`) or not, from
    /// a connected account (`account`) or the platform's own. One that writes nothing is
    /// finished without loading, parsing its object or a transaction of its own.
    pub fn has_effects(self, store: bool, account: bool) -> bool {
        match self {
            // Vendor billing lives on the platform account: only the platform endpoint speaks
            // for it (a store's own endpoint is signed with a secret its merchant knows).
            Handler::Billing(_) | Handler::Transfer | Handler::ApplicationFee => !store && !account,
            _ if store => true,
            // Payments on the platform itself: destination and multi-vendor orders.
            Handler::Payment(_) => !account,
            // A platform-scope customer is a vendor's customer record on the platform account.
            Handler::CustomerDeleted => !account,
            // Every other handler keeps a store's state.
            _ => false,
        }
    }

    /// Writes the event's effects, and the notifications they cause, into the worker's
    /// transaction.
    pub async fn apply(
        self,
        s: &Services,
        conn: &mut AnyConnection,
        ev: &Incoming,
        loaded: &Loaded,
    ) -> Result<(), HandlerError> {
        let (object, confirmed) = match loaded {
            Loaded::Nothing => return Ok(()),
            Loaded::Object(object) => (object, false),
            Loaded::Confirmed(object) => (object, true),
        };
        if !self.has_effects(ev.store.is_some(), ev.account.is_some()) {
            return Ok(());
        }
        if let Handler::Billing(kind) = self {
            return billing::apply(conn, ev, object, kind).await;
        }
        let Some(store) = &ev.store else {
            // The platform's own events with effects (`has_effects` above).
            return match self {
                Handler::Payment(kind) => {
                    payment::apply(s, conn, None, ev, object, kind, confirmed).await
                }
                Handler::Transfer => transfer::apply(s, conn, object).await,
                Handler::ApplicationFee => application_fee::apply(conn, object).await,
                _ => billing::apply(conn, ev, object, BillingEvent::CustomerDeleted).await,
            };
        };
        match self {
            Handler::AccountUpdated => account::apply_updated(conn, store, ev, object).await,
            Handler::V2Account => account::apply_v2(conn, store, ev, object).await,
            Handler::ExternalAccountUpdated => {
                account::apply_external_account(conn, store, ev, object).await
            }
            Handler::PersonUpdated => account::apply_updated(conn, store, ev, object).await,
            Handler::AccountDeauthorized => account::apply_deauthorized(conn, store, ev).await,
            Handler::Payout(kind) => payout::apply(conn, store, ev, object, kind, confirmed).await,
            Handler::BalanceAvailable => balance::apply_available(conn, store, ev, object).await,
            Handler::Payment(kind) => {
                payment::apply(s, conn, Some(store), ev, object, kind, confirmed).await
            }
            Handler::CustomerChanged => customer::apply(conn, store, ev, object, false).await,
            Handler::CustomerDeleted => customer::apply(conn, store, ev, object, true).await,
            // Answered above, before a store is needed.
            Handler::Billing(_) | Handler::Transfer | Handler::ApplicationFee => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stripe::events::{ACCOUNT_EVENTS, PLATFORM_EVENTS};

    #[test]
    fn every_subscribed_event_has_a_handler() {
        for e in PLATFORM_EVENTS.iter().chain(ACCOUNT_EVENTS) {
            assert!(
                handler_for(e).is_some(),
                "{e} is subscribed but not handled"
            );
        }
    }

    #[test]
    fn only_the_platforms_own_objects_are_kept_without_a_store() {
        for e in PLATFORM_EVENTS.iter().chain(ACCOUNT_EVENTS) {
            let h = handler_for(e).unwrap();
            let billing = matches!(
                h,
                Handler::Billing(_) | Handler::Transfer | Handler::ApplicationFee
            );
            assert_eq!(h.has_effects(true, true), !billing, "{e} routed to a store");
            let platform = matches!(
                h,
                Handler::Billing(_)
                    | Handler::CustomerDeleted
                    | Handler::Payment(_)
                    | Handler::Transfer
                    | Handler::ApplicationFee
            );
            assert_eq!(h.has_effects(false, false), platform, "{e} on the platform");
            assert!(!h.has_effects(false, true), "{e} of an unconnected account");
        }
    }
}

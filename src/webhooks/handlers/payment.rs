//! Payments: `payment_intent.*`, `charge.refunded` and `charge.dispute.*` merge what they say
//! into the order's facts (see `domain::order`), so any delivery order ends the same and no
//! order ever moves back; refund events move the refund's status. Only the store's own direct
//! charges are looked up for a store's event (an event about another store's or account's
//! PaymentIntent finds nothing), and only charges on the platform for the platform's.
//!
//! An event signed with a secret the merchant knows (a `keys` store's own endpoint) is not
//! Stripe's word: `confirm` fetches its object from Stripe in the store's scope, and what Stripe
//! answers is applied instead of the payload, without the event type's own meaning.

use serde_json::Value;
use sqlx::AnyConnection;

use crate::db;
use crate::domain::order::{OrderFacts, Stamped};
use crate::domain::payment_facts::{charge_facts, checkout_session_facts, payment_intent_facts};
use crate::domain::StoreId;
use crate::service::{order_view, Services};
use crate::webhooks::event::{HandlerError, Incoming, Loaded};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentEvent {
    IntentSucceeded,
    IntentFailed,
    IntentCanceled,
    ChargeRefunded,
    DisputeCreated,
    DisputeClosed,
    /// `checkout.session.completed|async_payment_succeeded|async_payment_failed|expired`.
    CheckoutSession,
    /// `charge.refund.updated`, `refund.updated|failed`: a refund's status moved.
    RefundUpdated,
}

impl PaymentEvent {
    /// Where Stripe serves the event's object, to confirm it.
    fn object_path(self, id: &str) -> String {
        match self {
            PaymentEvent::IntentSucceeded
            | PaymentEvent::IntentFailed
            | PaymentEvent::IntentCanceled => format!("/v1/payment_intents/{id}"),
            PaymentEvent::ChargeRefunded => format!("/v1/charges/{id}"),
            PaymentEvent::DisputeCreated | PaymentEvent::DisputeClosed => {
                format!("/v1/disputes/{id}")
            }
            PaymentEvent::CheckoutSession => format!("/v1/checkout/sessions/{id}"),
            PaymentEvent::RefundUpdated => format!("/v1/refunds/{id}"),
        }
    }
}

/// Fetches the event's object from Stripe with the store's own credentials (see `confirm`).
pub async fn confirm(
    s: &Services,
    ev: &Incoming,
    kind: PaymentEvent,
) -> Result<Loaded, HandlerError> {
    super::confirm::at_stripe(s, ev, |id| kind.object_path(id)).await
}

/// Applies a payment event about a store's direct charge (`store`), or about a charge on the
/// platform (`None`: a destination or multi-vendor order, whose events reach the platform's
/// endpoint, signed with the platform's secret).
pub async fn apply(
    s: &Services,
    conn: &mut AnyConnection,
    store: Option<&StoreId>,
    ev: &Incoming,
    object: &Value,
    kind: PaymentEvent,
    confirmed: bool,
) -> Result<(), HandlerError> {
    // A confirmed object is Stripe's word as of when the event arrived; the event's own
    // `created` is the merchant's, and a forged far-future one must not outrank later events.
    let at = if confirmed {
        (ev.received, ev.seq)
    } else {
        (ev.created, ev.seq)
    };
    let (payment_intent, facts, charge) = match kind {
        PaymentEvent::CheckoutSession => {
            // Checkout Sessions are made in a store's account only.
            let Some(store) = store else { return Ok(()) };
            return apply_checkout_session(s, conn, store, ev, object, confirmed).await;
        }
        PaymentEvent::RefundUpdated => return apply_refund(conn, store, object).await,
        PaymentEvent::IntentSucceeded
        | PaymentEvent::IntentFailed
        | PaymentEvent::IntentCanceled => {
            let mut facts = payment_intent_facts(object, at);
            // The event type is Stripe's word even if the snapshot's status moved on since;
            // a confirmed object is Stripe's current word, and says all there is.
            match kind {
                _ if confirmed => {}
                PaymentEvent::IntentSucceeded => facts.paid = true,
                PaymentEvent::IntentCanceled => facts.canceled = true,
                PaymentEvent::IntentFailed if facts.failure.is_none() => {
                    facts.failure = Some(Stamped {
                        at,
                        value: ("payment_failed".into(), "The payment failed.".into()),
                    })
                }
                _ => {}
            }
            (
                object["id"].as_str(),
                facts,
                object["latest_charge"].as_str(),
            )
        }
        PaymentEvent::ChargeRefunded => (
            object["payment_intent"].as_str(),
            OrderFacts {
                paid: !confirmed || charge_facts(object).paid,
                ..charge_facts(object)
            },
            object["id"].as_str(),
        ),
        PaymentEvent::DisputeCreated | PaymentEvent::DisputeClosed => (
            object["payment_intent"].as_str(),
            OrderFacts {
                disputed: true,
                dispute_status: object["status"].as_str().map(|s| Stamped {
                    at,
                    value: s.to_owned(),
                }),
                ..Default::default()
            },
            None,
        ),
    };
    let order = match (store, payment_intent, object["charge"].as_str()) {
        (Some(store), Some(pi), _) => db::orders::by_payment_intent(&mut *conn, store, pi).await?,
        (Some(store), None, Some(charge)) => {
            db::orders::by_charge(&mut *conn, store, charge).await?
        }
        (None, Some(pi), _) => db::orders::by_platform_payment_intent(&mut *conn, pi).await?,
        (None, None, Some(charge)) => db::orders::by_platform_charge(&mut *conn, charge).await?,
        (_, None, None) => None,
    };
    let Some(order) = order else {
        // Not an order Bursar made (or another store's): recorded in the log, nothing to move.
        return Ok(());
    };
    // The order belongs to the account it was made in; the worker checked the event's account
    // against the store's current one.
    if ev.account.as_deref().is_some_and(|a| a != order.account_id) {
        return Ok(());
    }
    let merged = db::orders::merge_facts(&mut *conn, &order.id, &facts, charge, ev.via).await?;
    order_view::order_merged(s, conn, merged).await?;
    Ok(())
}

/// A Checkout Session event settles the order made with the session, and teaches it the
/// PaymentIntent (so later refunds and disputes find the order).
async fn apply_checkout_session(
    s: &Services,
    conn: &mut AnyConnection,
    store: &StoreId,
    ev: &Incoming,
    session: &Value,
    confirmed: bool,
) -> Result<(), HandlerError> {
    let Some(id) = session["id"].as_str() else {
        return Ok(());
    };
    let Some(order) = db::orders::by_checkout_session(&mut *conn, store, id).await? else {
        return Ok(());
    };
    if ev.account.as_deref().is_some_and(|a| a != order.account_id) {
        return Ok(());
    }
    if let Some(pi) = session["payment_intent"].as_str() {
        db::orders::learn_payment_intent(&mut *conn, &order.id, pi).await?;
    }
    // A confirmed session is read for what it says now, not for the event that named it.
    let event = (!confirmed).then_some(ev.event_type.as_str());
    let at = if confirmed {
        (ev.received, ev.seq)
    } else {
        (ev.created, ev.seq)
    };
    let facts = checkout_session_facts(session, event, at);
    let merged = db::orders::merge_facts(&mut *conn, &order.id, &facts, None, ev.via).await?;
    order_view::order_merged(s, conn, merged).await?;
    Ok(())
}

/// A refund's status, as Stripe moved it (`failed` releases its amount for another refund).
async fn apply_refund(
    conn: &mut AnyConnection,
    store: Option<&StoreId>,
    refund: &Value,
) -> Result<(), HandlerError> {
    if let (Some(id), Some(status)) = (refund["id"].as_str(), refund["status"].as_str()) {
        db::orders::refund_status_from_stripe(conn, store, id, status).await?;
    }
    Ok(())
}

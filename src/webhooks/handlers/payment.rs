//! Payments: `payment_intent.*`, `charge.refunded` and `charge.dispute.*` merge what they say
//! into the order's facts (see `domain::order`), so any delivery order ends the same and no
//! order ever moves back. Only the store's own orders are looked up: an event about another
//! store's or account's PaymentIntent finds nothing here.

use serde_json::Value;
use sqlx::AnyConnection;

use crate::db;
use crate::domain::order::{OrderFacts, Stamped};
use crate::domain::StoreId;
use crate::service::orders::{charge_facts, checkout_session_facts, payment_intent_facts};
use crate::webhooks::registry::{HandlerError, Incoming};

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
}

pub async fn apply(
    conn: &mut AnyConnection,
    store: &StoreId,
    ev: &Incoming,
    object: &Value,
    kind: PaymentEvent,
) -> Result<(), HandlerError> {
    let at = (ev.created, ev.seq);
    let (payment_intent, facts, charge) = match kind {
        PaymentEvent::CheckoutSession => {
            return apply_checkout_session(conn, store, ev, object).await
        }
        PaymentEvent::IntentSucceeded
        | PaymentEvent::IntentFailed
        | PaymentEvent::IntentCanceled => {
            let mut facts = payment_intent_facts(object, at);
            // The event type is Stripe's word even if the snapshot's status moved on since.
            match kind {
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
                paid: true,
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
    let order = match (payment_intent, object["charge"].as_str()) {
        (Some(pi), _) => db::orders::by_payment_intent(&mut *conn, store, pi).await?,
        (None, Some(charge)) => db::orders::by_charge(&mut *conn, store, charge).await?,
        (None, None) => None,
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
    db::orders::merge_facts(&mut *conn, &order, &facts, charge, "webhook").await?;
    Ok(())
}

/// A Checkout Session event settles the order made with the session, and teaches it the
/// PaymentIntent (so later refunds and disputes find the order).
async fn apply_checkout_session(
    conn: &mut AnyConnection,
    store: &StoreId,
    ev: &Incoming,
    session: &Value,
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
    let facts = checkout_session_facts(session, Some(&ev.event_type), (ev.created, ev.seq));
    db::orders::merge_facts(&mut *conn, &order, &facts, None, "webhook").await?;
    Ok(())
}

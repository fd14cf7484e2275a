//! `payout.paid|failed`: a failure is kept as the store's last payout failure (newest event
//! wins), and each payout's newest state is told to the platform's app.
//!
//! The store's own failure record is the merchant's business, so a `keys` store's
//! merchant-signed event sets it as sent. What the platform is told is Bursar's word, so such
//! an event is first confirmed at Stripe: the payout is fetched with the store's key and its
//! status there is told; a payout Stripe does not have is told nothing.

use serde_json::{json, Value};
use sqlx::AnyConnection;

use crate::db::{self, connections::JsonColumn, watermarks};
use crate::domain::StoreId;
use crate::service::payouts::PayoutView;
use crate::service::{notifications, Services};
use crate::webhooks::registry::{HandlerError, Incoming, Loaded};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutEvent {
    Paid,
    Failed,
}

/// A merchant-signed event's payout as Stripe holds it, or its own payload when Stripe has no
/// such payout (then only the store's own record takes it).
pub async fn load(s: &Services, ev: &Incoming) -> Result<Loaded, HandlerError> {
    if !ev.merchant_signed {
        return Ok(Loaded::Object(ev.object.clone()));
    }
    match super::confirm::at_stripe(s, ev, |id| format!("/v1/payouts/{id}")).await? {
        Loaded::Nothing => Ok(Loaded::Object(ev.object.clone())),
        confirmed => Ok(confirmed),
    }
}

pub async fn apply(
    conn: &mut AnyConnection,
    store: &StoreId,
    ev: &Incoming,
    payout: &Value,
    kind: PayoutEvent,
    confirmed: bool,
) -> Result<(), HandlerError> {
    if kind == PayoutEvent::Failed && (!confirmed || payout["status"] == "failed") {
        remember_failure(conn, store, ev, payout).await?;
    }
    if ev.merchant_signed && !confirmed {
        return Ok(());
    }
    // A confirmed payout is told as Stripe holds it when the event arrived.
    let (told, at) = if confirmed {
        let told = match payout["status"].as_str() {
            Some("paid") => PayoutEvent::Paid,
            Some("failed") => PayoutEvent::Failed,
            _ => return Ok(()),
        };
        (told, ev.received)
    } else {
        (kind, ev.created)
    };
    let Some(id) = payout["id"].as_str() else {
        return Ok(());
    };
    // Each payout's newest state only: a `paid` arriving after the `failed` it preceded
    // tells nothing.
    if !watermarks::advance(
        &mut *conn,
        &ev.watermark_owner(store),
        &format!("payout:{id}"),
        at,
        ev.seq,
    )
    .await?
    {
        return Ok(());
    }
    let event_type = match told {
        PayoutEvent::Paid => "store.payout_paid",
        PayoutEvent::Failed => "store.payout_failed",
    };
    let view = PayoutView::from_stripe(store, payout);
    notifications::emit(conn, event_type, Some(store.as_str()), &view).await?;
    Ok(())
}

async fn remember_failure(
    conn: &mut AnyConnection,
    store: &StoreId,
    ev: &Incoming,
    payout: &Value,
) -> Result<(), HandlerError> {
    if !watermarks::advance(
        &mut *conn,
        &ev.watermark_owner(store),
        "last_payout_failure",
        ev.created,
        ev.seq,
    )
    .await?
    {
        return Ok(());
    }
    let failure = json!({
        "payout": payout.get("id"),
        "amount": payout.get("amount"),
        "currency": payout.get("currency"),
        "failure_code": payout.get("failure_code"),
        "failure_message": payout.get("failure_message"),
        "event": ev.event_id,
        "created": ev.created,
    });
    db::connections::set_json(
        &mut *conn,
        store,
        JsonColumn::LastPayoutFailure,
        &failure.to_string(),
    )
    .await?;
    Ok(())
}

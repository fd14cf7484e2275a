//! `payout.created|updated|paid|failed|canceled`: each payout's newest state is kept (the
//! store's payout list) and, when it is paid or failed, told to the platform's app; a failure
//! is also kept as the store's last payout failure (newest event wins).
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
use crate::webhooks::event::{HandlerError, Incoming, Loaded};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutEvent {
    /// `payout.created|updated`: the payout as the event's object says.
    Changed,
    Paid,
    Failed,
    Canceled,
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
    // A confirmed payout is recorded as Stripe holds it when the event arrived; otherwise the
    // event's type says where it got to.
    let status = match (confirmed, kind) {
        (false, PayoutEvent::Paid) => "paid",
        (false, PayoutEvent::Failed) => "failed",
        (false, PayoutEvent::Canceled) => "canceled",
        _ => payout["status"].as_str().unwrap_or("pending"),
    };
    // A confirmed payout is Stripe's word as of when it was fetched (now), not as of the event.
    let at = if confirmed {
        crate::db::now_ms() / 1000
    } else {
        ev.created
    };
    let Some(id) = payout["id"].as_str() else {
        return Ok(());
    };
    // Each payout's newest event only: a `created` arriving after the `paid` it preceded
    // records and tells nothing.
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
    let mut view = PayoutView::from_stripe(store, payout);
    view.status = status.to_owned();
    let changed = db::payouts::record(&mut *conn, &view.row(payout["created"].as_i64())).await?;
    let event_type = match status {
        "paid" => "store.payout_paid",
        "failed" => "store.payout_failed",
        _ => return Ok(()),
    };
    if changed {
        notifications::emit(conn, event_type, Some(store.as_str()), &view).await?;
    }
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

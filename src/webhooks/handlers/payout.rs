//! `payout.paid|failed`: told to the platform's app; a failure is also kept as the store's last
//! payout failure, newest event wins. A payout moves no money Bursar accounts for (it is the
//! account's own balance going to its own bank), so a `keys` store's merchant-signed payout
//! event is applied as it says, unlike payments, which are confirmed at Stripe.

use serde_json::{json, Value};
use sqlx::AnyConnection;

use crate::db::{self, connections::JsonColumn, watermarks};
use crate::domain::StoreId;
use crate::service::notifications;
use crate::service::payouts::PayoutView;
use crate::webhooks::registry::{HandlerError, Incoming};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutEvent {
    Paid,
    Failed,
}

pub async fn apply(
    conn: &mut AnyConnection,
    store: &StoreId,
    ev: &Incoming,
    payout: &Value,
    kind: PayoutEvent,
) -> Result<(), HandlerError> {
    if kind == PayoutEvent::Failed {
        remember_failure(conn, store, ev, payout).await?;
    }
    let event_type = match kind {
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

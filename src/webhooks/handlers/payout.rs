//! `payout.failed`: the store's last payout failure, newest event wins.

use serde_json::{json, Value};
use sqlx::AnyConnection;

use crate::db::{self, connections::JsonColumn, watermarks};
use crate::domain::StoreId;
use crate::webhooks::registry::{HandlerError, Incoming};

pub async fn apply_failed(
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

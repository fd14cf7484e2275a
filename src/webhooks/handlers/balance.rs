//! `balance.available`: the store's latest available and pending balance.

use serde_json::{json, Value};
use sqlx::AnyConnection;

use crate::db::{self, connections::JsonColumn, watermarks};
use crate::domain::StoreId;
use crate::webhooks::event::{HandlerError, Incoming};

pub async fn apply_available(
    conn: &mut AnyConnection,
    store: &StoreId,
    ev: &Incoming,
    balance: &Value,
) -> Result<(), HandlerError> {
    if !watermarks::advance(
        &mut *conn,
        &ev.watermark_owner(store),
        "balance",
        ev.created,
        ev.seq,
    )
    .await?
    {
        return Ok(());
    }
    let view = json!({ "available": balance.get("available"), "pending": balance.get("pending"), "as_of": ev.created });
    db::connections::set_json(&mut *conn, store, JsonColumn::Balance, &view.to_string()).await?;
    Ok(())
}

//! `transfer.created|updated|reversed` on the platform endpoint: what Stripe says of a
//! multi-vendor order's transfer. A transfer whose answer never reached Bursar is adopted from
//! its event (when it is the split's exactly: its order, store, account, amount and charge); the
//! amount reversed only grows.

use serde_json::Value;
use sqlx::AnyConnection;

use crate::db;
use crate::service::{transfers, Services};
use crate::webhooks::event::HandlerError;

pub async fn apply(
    s: &Services,
    conn: &mut AnyConnection,
    transfer: &Value,
) -> Result<(), HandlerError> {
    let Some(id) = transfer["id"].as_str() else {
        return Ok(());
    };
    let reversed = transfer["amount_reversed"].as_i64().unwrap_or(0);
    let meta = &transfer["metadata"];
    if let (Some(order), Some(store)) = (
        meta["bursar_order_id"].as_str(),
        meta["bursar_store_id"].as_str(),
    ) {
        let split = transfers::Made {
            order,
            store,
            transfer: id,
            destination: transfer["destination"].as_str().unwrap_or_default(),
            amount: transfer["amount"].as_i64().unwrap_or(0),
            source: transfer["source_transaction"].as_str().unwrap_or_default(),
            reversed,
        };
        transfers::adopt(s, conn, &split).await?;
    }
    db::transfers::learn_reversed(conn, id, reversed).await?;
    Ok(())
}

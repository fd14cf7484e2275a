//! The `payouts` table: each store's payouts as Stripe's `payout.*` events last described them.

use sqlx::{AnyConnection, FromRow};

use super::{now_ms, Db, Result};
use crate::domain::StoreId;

#[derive(Debug, Clone, FromRow)]
pub struct PayoutRow {
    pub store_id: String,
    pub payout_id: String,
    pub amount: i64,
    pub currency: String,
    pub status: String,
    pub arrival_date: Option<i64>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub created: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "store_id, payout_id, amount, currency, status, arrival_date, failure_code, \
    failure_message, created, updated_at";

/// How far along a payout is: a later state never gives way to an earlier one. A paid payout
/// can still fail (the bank returns it), never the reverse.
fn rank(status: &str) -> u8 {
    match status {
        "pending" => 0,
        "in_transit" => 1,
        "paid" => 2,
        _ => 3,
    }
}

/// Records what an event says of a payout, unless it would move it back (a late `created`
/// after its `paid`). True if its status changed.
pub async fn record(conn: &mut AnyConnection, p: &PayoutRow) -> Result<bool> {
    let sql = format!("SELECT {COLUMNS} FROM payouts WHERE store_id = $1 AND payout_id = $2");
    let before = sqlx::query_as::<_, PayoutRow>(&sql)
        .bind(&p.store_id)
        .bind(&p.payout_id)
        .fetch_optional(&mut *conn)
        .await?;
    if before
        .as_ref()
        .is_some_and(|b| rank(&p.status) < rank(&b.status))
    {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO payouts (store_id, payout_id, amount, currency, status, arrival_date, failure_code, \
           failure_message, created, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (store_id, payout_id) DO UPDATE SET amount = excluded.amount, \
           currency = excluded.currency, status = excluded.status, arrival_date = excluded.arrival_date, \
           failure_code = excluded.failure_code, failure_message = excluded.failure_message, \
           updated_at = excluded.updated_at",
    )
    .bind(&p.store_id)
    .bind(&p.payout_id)
    .bind(p.amount)
    .bind(&p.currency)
    .bind(&p.status)
    .bind(p.arrival_date)
    .bind(&p.failure_code)
    .bind(&p.failure_message)
    .bind(p.created)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(before.is_none_or(|b| b.status != p.status))
}

/// A store's payouts, newest first (by Stripe's `created`, then id), after the cursor payout.
pub async fn list(
    db: &Db,
    store: &StoreId,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<PayoutRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM payouts p WHERE store_id = $1 AND ($2 = '' OR EXISTS ( \
           SELECT 1 FROM payouts c WHERE c.store_id = $1 AND c.payout_id = $2 \
             AND (p.created < c.created OR (p.created = c.created AND p.payout_id < c.payout_id)))) \
         ORDER BY created DESC, payout_id DESC LIMIT $3"
    );
    Ok(sqlx::query_as::<_, PayoutRow>(&sql)
        .bind(store.as_str())
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(db.pool())
        .await?)
}

//! The `vendor_subscriptions` table: the platform's subscription for each store.

use sqlx::{Any, AnyConnection, Executor, FromRow};

use super::{flag, now_ms, Db, Result};
use crate::domain::subscription::{Snapshot, SubscriptionFacts};
use crate::domain::StoreId;

#[derive(Debug, Clone, FromRow)]
pub struct VendorRow {
    pub store_id: String,
    pub customer_id: Option<String>,
    pub customer_deleted: i64,
    pub create_key: String,
    pub subscription_id: Option<String>,
    pub item_id: Option<String>,
    pub price_id: String,
    pub status: Option<String>,
    pub current_period_end: Option<i64>,
    pub trial_end: Option<i64>,
    pub cancel_at_period_end: i64,
    pub snapshot_at: Option<i64>,
    pub snapshot_seq: Option<i64>,
    pub snapshot_tick: i64,
    pub ended_reason: Option<String>,
    pub latest_invoice: Option<String>,
    pub action_url: Option<String>,
    pub last_payment_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "store_id, customer_id, customer_deleted, create_key, subscription_id, item_id, \
    price_id, status, current_period_end, trial_end, cancel_at_period_end, snapshot_at, snapshot_seq, snapshot_tick, \
    ended_reason, latest_invoice, action_url, last_payment_error, created_at, updated_at";

impl VendorRow {
    pub fn facts(&self) -> SubscriptionFacts {
        SubscriptionFacts {
            snapshot: self.status.clone().map(|status| Snapshot {
                at: (
                    self.snapshot_at.unwrap_or(0),
                    self.snapshot_seq.unwrap_or(0),
                    self.snapshot_tick,
                ),
                status,
                cancel_at_period_end: self.cancel_at_period_end != 0,
                current_period_end: self.current_period_end,
                trial_end: self.trial_end,
                price: Some(self.price_id.clone()),
            }),
            ended: self.ended_reason.clone(),
        }
    }
}

pub async fn get<'e>(
    ex: impl Executor<'e, Database = Any>,
    store: &StoreId,
) -> Result<Option<VendorRow>> {
    let sql = format!("SELECT {COLUMNS} FROM vendor_subscriptions WHERE store_id = $1");
    Ok(sqlx::query_as::<_, VendorRow>(&sql)
        .bind(store.as_str())
        .fetch_optional(ex)
        .await?)
}

/// The row a subscription or invoice event is about: by subscription id only, so an event
/// about a store's previous (ended) subscription never touches its current one.
pub async fn by_subscription(
    conn: &mut AnyConnection,
    subscription: &str,
) -> Result<Option<VendorRow>> {
    let sql = format!("SELECT {COLUMNS} FROM vendor_subscriptions WHERE subscription_id = $1");
    Ok(sqlx::query_as::<_, VendorRow>(&sql)
        .bind(subscription)
        .fetch_optional(conn)
        .await?)
}

/// The row of the platform customer a `customer.*` event is about.
pub async fn by_customer(conn: &mut AnyConnection, customer: &str) -> Result<Option<VendorRow>> {
    let sql = format!("SELECT {COLUMNS} FROM vendor_subscriptions WHERE customer_id = $1");
    Ok(sqlx::query_as::<_, VendorRow>(&sql)
        .bind(customer)
        .fetch_optional(conn)
        .await?)
}

/// Starts (or restarts, after an ended one) the store's subscription record, before Stripe is
/// called: the price and the idempotency key of the subscription to create.
pub async fn begin(db: &Db, store: &StoreId, price: &str, create_key: &str) -> Result<VendorRow> {
    let _turn = db.write_turn().await;
    let now = now_ms();
    let sql = format!(
        "INSERT INTO vendor_subscriptions (store_id, create_key, price_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4) \
         ON CONFLICT (store_id) DO UPDATE SET create_key = excluded.create_key, price_id = excluded.price_id, \
           subscription_id = NULL, item_id = NULL, status = NULL, current_period_end = NULL, trial_end = NULL, \
           cancel_at_period_end = 0, snapshot_at = NULL, snapshot_seq = NULL, snapshot_tick = 0, ended_reason = NULL, \
           latest_invoice = NULL, action_url = NULL, last_payment_error = NULL, updated_at = excluded.updated_at \
         RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, VendorRow>(&sql)
        .bind(store.as_str())
        .bind(create_key)
        .bind(price)
        .bind(now)
        .fetch_one(db.pool())
        .await?)
}

pub async fn set_customer(db: &Db, store: &StoreId, customer: &str) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query("UPDATE vendor_subscriptions SET customer_id = $1, customer_deleted = 0, updated_at = $2 WHERE store_id = $3")
        .bind(customer)
        .bind(now_ms())
        .bind(store.as_str())
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn set_subscription(
    db: &Db,
    store: &StoreId,
    subscription: &str,
    item: Option<&str>,
) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query(
        "UPDATE vendor_subscriptions SET subscription_id = $1, item_id = COALESCE($2, item_id), updated_at = $3 WHERE store_id = $4",
    )
    .bind(subscription)
    .bind(item)
    .bind(now_ms())
    .bind(store.as_str())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Merges facts into the row (newest snapshot wins, `ended` sticks).
pub async fn merge<'e>(
    ex: impl Executor<'e, Database = Any>,
    row: &VendorRow,
    facts: &SubscriptionFacts,
    item: Option<&str>,
) -> Result<()> {
    let merged = row.facts().merge(facts);
    let s = merged.snapshot.as_ref();
    sqlx::query(
        "UPDATE vendor_subscriptions SET status = $1, cancel_at_period_end = $2, current_period_end = $3, \
           trial_end = $4, price_id = COALESCE($5, price_id), snapshot_at = $6, snapshot_seq = $7, \
           ended_reason = $8, item_id = COALESCE($9, item_id), updated_at = $10, snapshot_tick = $12 WHERE store_id = $11",
    )
    .bind(s.map(|s| s.status.clone()))
    .bind(flag(s.is_some_and(|s| s.cancel_at_period_end)))
    .bind(s.and_then(|s| s.current_period_end))
    .bind(s.and_then(|s| s.trial_end))
    .bind(s.and_then(|s| s.price.clone()))
    .bind(s.map(|s| s.at.0))
    .bind(s.map(|s| s.at.1))
    .bind(merged.ended.clone())
    .bind(item)
    .bind(now_ms())
    .bind(row.store_id.as_str())
    .bind(s.map_or(0, |s| s.at.2))
    .execute(ex)
    .await?;
    Ok(())
}

/// What the latest invoice asks of the vendor: a hosted URL to act on (cleared when paid) and
/// the last payment error.
pub async fn set_invoice(
    conn: &mut AnyConnection,
    store: &str,
    invoice: &str,
    action_url: Option<&str>,
    error: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE vendor_subscriptions SET latest_invoice = $1, action_url = $2, last_payment_error = $3, updated_at = $4 WHERE store_id = $5",
    )
    .bind(invoice)
    .bind(action_url)
    .bind(error)
    .bind(now_ms())
    .bind(store)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_customer_deleted(conn: &mut AnyConnection, store: &str) -> Result<()> {
    sqlx::query(
        "UPDATE vendor_subscriptions SET customer_deleted = 1, updated_at = $1 WHERE store_id = $2",
    )
    .bind(now_ms())
    .bind(store)
    .execute(conn)
    .await?;
    Ok(())
}

//! The `orders` and `refunds` tables. Every lookup by a Stripe id is scoped to the store the
//! event or request belongs to: one store's PaymentIntent can never find another store's order.

use sqlx::{Any, AnyConnection, Executor, FromRow};

use super::{flag, now_ms, Db, Result};
use crate::domain::order::{OrderFacts, Stamped};
use crate::domain::{OrderId, RefundId, StoreId};

#[derive(Debug, Clone, FromRow)]
pub struct OrderRow {
    pub id: String,
    pub store_id: String,
    pub connection_kind: String,
    pub account_id: String,
    pub mode: String,
    pub amount: i64,
    pub currency: String,
    pub description: Option<String>,
    pub customer_id: Option<String>,
    pub application_fee_amount: Option<i64>,
    pub metadata: String,
    pub payment_intent_id: Option<String>,
    pub checkout_session_id: Option<String>,
    pub client_secret_enc: Option<String>,
    pub latest_charge: Option<String>,
    pub paid: i64,
    pub amount_refunded: i64,
    pub disputed: i64,
    pub dispute_status: Option<String>,
    pub dispute_at: Option<i64>,
    pub dispute_seq: Option<i64>,
    pub canceled: i64,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub failure_at: Option<i64>,
    pub failure_seq: Option<i64>,
    pub status: String,
    pub status_source: Option<String>,
    pub synced_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, store_id, connection_kind, account_id, mode, amount, currency, description, \
    customer_id, application_fee_amount, metadata, payment_intent_id, checkout_session_id, client_secret_enc, latest_charge, \
    paid, amount_refunded, disputed, dispute_status, dispute_at, dispute_seq, canceled, failure_code, \
    failure_message, failure_at, failure_seq, status, status_source, synced_at, created_at, updated_at";

impl OrderRow {
    /// The facts Stripe has given about this order so far.
    pub fn facts(&self) -> OrderFacts {
        OrderFacts {
            paid: self.paid != 0,
            amount_refunded: self.amount_refunded,
            disputed: self.disputed != 0,
            dispute_status: self.dispute_status.clone().map(|value| Stamped {
                at: (self.dispute_at.unwrap_or(0), self.dispute_seq.unwrap_or(0)),
                value,
            }),
            canceled: self.canceled != 0,
            failure: self.failure_code.clone().map(|code| Stamped {
                at: (self.failure_at.unwrap_or(0), self.failure_seq.unwrap_or(0)),
                value: (code, self.failure_message.clone().unwrap_or_default()),
            }),
        }
    }
}

pub struct NewOrder<'a> {
    pub id: &'a OrderId,
    pub store: &'a StoreId,
    pub connection_kind: &'a str,
    pub account_id: &'a str,
    pub mode: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub description: Option<&'a str>,
    pub customer_id: Option<&'a str>,
    pub application_fee_amount: Option<i64>,
    pub metadata: &'a str,
    pub request_key: Option<&'a str>,
    /// Paid through Stripe Checkout: marked at once (an empty session id until Stripe answers),
    /// so the sweep never gives it a PaymentIntent of its own.
    pub checkout: bool,
}

/// Saves a new order before Stripe is called, so its id (and so the Stripe idempotency key
/// derived from it) exists before the first attempt.
pub async fn insert(db: &Db, o: &NewOrder<'_>) -> Result<OrderRow> {
    let _turn = db.write_turn().await;
    let now = now_ms();
    let sql = format!(
        "INSERT INTO orders (id, store_id, connection_kind, account_id, mode, amount, currency, description, \
           customer_id, application_fee_amount, metadata, request_key, checkout_session_id, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'pending', $14, $14) RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, OrderRow>(&sql)
        .bind(o.id.as_str())
        .bind(o.store.as_str())
        .bind(o.connection_kind)
        .bind(o.account_id)
        .bind(o.mode)
        .bind(o.amount)
        .bind(o.currency)
        .bind(o.description)
        .bind(o.customer_id)
        .bind(o.application_fee_amount)
        .bind(o.metadata)
        .bind(o.request_key)
        .bind(o.checkout.then_some(""))
        .bind(now)
        .fetch_one(db.pool())
        .await?)
}

pub async fn get(db: &Db, id: &OrderId) -> Result<Option<OrderRow>> {
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE id = $1");
    Ok(sqlx::query_as::<_, OrderRow>(&sql)
        .bind(id.as_str())
        .fetch_optional(db.pool())
        .await?)
}

/// The order, read inside the caller's transaction.
pub async fn get_in(conn: &mut AnyConnection, id: &OrderId) -> Result<Option<OrderRow>> {
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE id = $1");
    Ok(sqlx::query_as::<_, OrderRow>(&sql)
        .bind(id.as_str())
        .fetch_optional(conn)
        .await?)
}

/// The order a retried creating request made before (same store, same Idempotency-Key).
pub async fn by_request_key(db: &Db, store: &StoreId, key: &str) -> Result<Option<OrderRow>> {
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE store_id = $1 AND request_key = $2");
    Ok(sqlx::query_as::<_, OrderRow>(&sql)
        .bind(store.as_str())
        .bind(key)
        .fetch_optional(db.pool())
        .await?)
}

/// A store's orders, newest first, before the cursor.
pub async fn list(
    db: &Db,
    store: &StoreId,
    before: Option<&OrderId>,
    limit: i64,
) -> Result<Vec<OrderRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM orders WHERE store_id = $1 AND ($2 = '' OR id < $2) ORDER BY id DESC LIMIT $3"
    );
    Ok(sqlx::query_as::<_, OrderRow>(&sql)
        .bind(store.as_str())
        .bind(before.map(OrderId::as_str).unwrap_or(""))
        .bind(limit)
        .fetch_all(db.pool())
        .await?)
}

/// Forgets an order Stripe made nothing for (it refused the creating request).
pub async fn delete_unstarted(db: &Db, id: &OrderId) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query("DELETE FROM orders WHERE id = $1 AND payment_intent_id IS NULL")
        .bind(id.as_str())
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Records a re-check attempt that could not reach an answer.
pub async fn touch_synced(db: &Db, id: &OrderId) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query("UPDATE orders SET synced_at = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(id.as_str())
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn set_payment_intent(
    db: &Db,
    id: &OrderId,
    payment_intent: &str,
    client_secret_enc: &str,
) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query(
        "UPDATE orders SET payment_intent_id = $1, client_secret_enc = $2, updated_at = $3 WHERE id = $4",
    )
    .bind(payment_intent)
    .bind(client_secret_enc)
    .bind(now_ms())
    .bind(id.as_str())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The store's order paid through `payment_intent`, inside the caller's transaction.
pub async fn by_payment_intent(
    conn: &mut AnyConnection,
    store: &StoreId,
    payment_intent: &str,
) -> Result<Option<OrderRow>> {
    let sql =
        format!("SELECT {COLUMNS} FROM orders WHERE store_id = $1 AND payment_intent_id = $2");
    Ok(sqlx::query_as::<_, OrderRow>(&sql)
        .bind(store.as_str())
        .bind(payment_intent)
        .fetch_optional(conn)
        .await?)
}

pub async fn set_checkout_session(db: &Db, id: &OrderId, session: &str) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query("UPDATE orders SET checkout_session_id = $1, updated_at = $2 WHERE id = $3")
        .bind(session)
        .bind(now_ms())
        .bind(id.as_str())
        .execute(db.pool())
        .await?;
    Ok(())
}

/// The store's order paid through Checkout Session `session`.
pub async fn by_checkout_session(
    conn: &mut AnyConnection,
    store: &StoreId,
    session: &str,
) -> Result<Option<OrderRow>> {
    let sql =
        format!("SELECT {COLUMNS} FROM orders WHERE store_id = $1 AND checkout_session_id = $2");
    Ok(sqlx::query_as::<_, OrderRow>(&sql)
        .bind(store.as_str())
        .bind(session)
        .fetch_optional(conn)
        .await?)
}

/// Records the PaymentIntent a Checkout Session created, once.
pub async fn learn_payment_intent(
    conn: &mut AnyConnection,
    id: &str,
    payment_intent: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE orders SET payment_intent_id = $1, updated_at = $2 WHERE id = $3 AND payment_intent_id IS NULL",
    )
    .bind(payment_intent)
    .bind(now_ms())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The store's order whose latest charge is `charge` (disputes name the charge).
pub async fn by_charge(
    conn: &mut AnyConnection,
    store: &StoreId,
    charge: &str,
) -> Result<Option<OrderRow>> {
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE store_id = $1 AND latest_charge = $2");
    Ok(sqlx::query_as::<_, OrderRow>(&sql)
        .bind(store.as_str())
        .bind(charge)
        .fetch_optional(conn)
        .await?)
}

/// Merges `facts` into the order and re-derives its status; `source` says who spoke
/// (`webhook` or `sync`). Returns the status after.
pub async fn merge_facts<'e>(
    ex: impl Executor<'e, Database = Any>,
    order: &OrderRow,
    facts: &OrderFacts,
    latest_charge: Option<&str>,
    source: &str,
) -> Result<String> {
    let merged = order.facts().merge(facts);
    let status = merged.status(order.amount).as_str();
    let moved = status != order.status;
    let (dispute_at, dispute_seq) = merged.dispute_status.as_ref().map(|s| s.at).unzip();
    let (failure_at, failure_seq) = merged.failure.as_ref().map(|s| s.at).unzip();
    sqlx::query(
        "UPDATE orders SET paid = $1, amount_refunded = $2, disputed = $3, dispute_status = $4, dispute_at = $5, \
           dispute_seq = $6, canceled = $7, failure_code = $8, failure_message = $9, failure_at = $10, \
           failure_seq = $11, status = $12, latest_charge = COALESCE($13, latest_charge), \
           status_source = CASE WHEN $14 = 1 THEN $15 ELSE status_source END, \
           synced_at = CASE WHEN $15 = 'sync' THEN $16 ELSE synced_at END, updated_at = $16 \
         WHERE id = $17",
    )
    .bind(flag(merged.paid))
    .bind(merged.amount_refunded)
    .bind(flag(merged.disputed))
    .bind(merged.dispute_status.as_ref().map(|s| s.value.clone()))
    .bind(dispute_at)
    .bind(dispute_seq)
    .bind(flag(merged.canceled))
    .bind(merged.failure.as_ref().map(|s| s.value.0.clone()))
    .bind(merged.failure.as_ref().map(|s| s.value.1.clone()))
    .bind(failure_at)
    .bind(failure_seq)
    .bind(status)
    .bind(latest_charge)
    .bind(flag(moved))
    .bind(source)
    .bind(now_ms())
    .bind(order.id.as_str())
    .execute(ex)
    .await?;
    Ok(status.to_owned())
}

/// How long the sweep keeps re-checking an order Stripe never settled: past a week an unpaid
/// PaymentIntent is abandoned (and Stripe has long stopped retrying its webhooks).
const SWEEP_HORIZON_MS: i64 = 7 * 86_400_000;

/// Orders Stripe has not settled yet, created before `before_ms` and not re-checked since,
/// oldest first: pending or failed (a later attempt may still succeed), including those never
/// given a PaymentIntent (the process stopped between Stripe's answer and our commit).
pub async fn unsettled(db: &Db, before_ms: i64, limit: i64) -> Result<Vec<OrderRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM orders WHERE status IN ('pending', 'failed') AND created_at < $1 \
           AND created_at > $2 AND (synced_at IS NULL OR synced_at < $1) \
         ORDER BY created_at LIMIT $3"
    );
    Ok(sqlx::query_as::<_, OrderRow>(&sql)
        .bind(before_ms)
        .bind(now_ms() - SWEEP_HORIZON_MS)
        .bind(limit)
        .fetch_all(db.pool())
        .await?)
}

#[derive(Debug, Clone, FromRow)]
pub struct RefundRow {
    pub id: String,
    pub order_id: String,
    pub amount: i64,
    pub reason: Option<String>,
    pub stripe_refund_id: Option<String>,
    pub status: String,
    pub created_at: i64,
}

/// Records a refund request before Stripe is called, if it fits in what is left to refund
/// (counting refunds asked for but not yet confirmed by a webhook). None: it does not fit.
pub async fn insert_refund(
    db: &Db,
    order: &OrderRow,
    id: &RefundId,
    amount: i64,
    reason: Option<&str>,
    request_key: Option<&str>,
) -> Result<Option<RefundRow>> {
    let mut tx = db.begin_write().await?;
    let requested: i64 = sqlx::query_scalar::<_, i64>(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM refunds WHERE order_id = $1 AND status <> 'failed'",
    )
    .bind(order.id.as_str())
    .fetch_one(&mut *tx)
    .await?;
    if requested.max(order.amount_refunded) + amount > order.amount {
        tx.rollback().await?;
        return Ok(None);
    }
    let row = sqlx::query_as::<_, RefundRow>(
        "INSERT INTO refunds (id, order_id, amount, reason, status, created_at, request_key) VALUES ($1, $2, $3, $4, 'pending', $5, $6) \
         RETURNING id, order_id, amount, reason, stripe_refund_id, status, created_at",
    )
    .bind(id.as_str())
    .bind(order.id.as_str())
    .bind(amount)
    .bind(reason)
    .bind(now_ms())
    .bind(request_key)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(row))
}

/// The refund a retried request made before (same order, same Idempotency-Key).
pub async fn refund_by_request_key(db: &Db, order: &str, key: &str) -> Result<Option<RefundRow>> {
    Ok(sqlx::query_as::<_, RefundRow>(
        "SELECT id, order_id, amount, reason, stripe_refund_id, status, created_at FROM refunds \
         WHERE order_id = $1 AND request_key = $2",
    )
    .bind(order)
    .bind(key)
    .fetch_optional(db.pool())
    .await?)
}

pub async fn finish_refund(
    db: &Db,
    id: &RefundId,
    stripe_id: Option<&str>,
    status: &str,
) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query("UPDATE refunds SET stripe_refund_id = COALESCE($1, stripe_refund_id), status = $2 WHERE id = $3")
        .bind(stripe_id)
        .bind(status)
        .bind(id.as_str())
        .execute(db.pool())
        .await?;
    Ok(())
}

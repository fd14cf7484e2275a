//! The `stores` table.

use sqlx::FromRow;

use super::{now_ms, Db, Result};
use crate::domain::store::{ExternalId, Metadata, StoreName};
use crate::domain::StoreId;

#[derive(Debug, Clone, FromRow)]
pub struct StoreRow {
    pub id: String,
    pub name: String,
    pub external_id: Option<String>,
    pub metadata: String,
    pub created_at: i64,
}

pub async fn insert(
    db: &Db,
    id: &StoreId,
    name: &StoreName,
    external_id: Option<&ExternalId>,
    metadata: &Metadata,
) -> Result<StoreRow> {
    let _turn = db.write_turn().await;
    Ok(sqlx::query_as::<_, StoreRow>(
        "INSERT INTO stores (id, name, external_id, metadata, created_at) VALUES ($1, $2, $3, $4, $5) \
         RETURNING id, name, external_id, metadata, created_at",
    )
    .bind(id.as_str())
    .bind(name.as_str())
    .bind(external_id.map(ExternalId::as_str))
    .bind(metadata.to_json())
    .bind(now_ms())
    .fetch_one(db.pool())
    .await?)
}

pub async fn get(db: &Db, id: &StoreId) -> Result<Option<StoreRow>> {
    Ok(sqlx::query_as::<_, StoreRow>(
        "SELECT id, name, external_id, metadata, created_at FROM stores WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id.as_str())
    .fetch_optional(db.pool())
    .await?)
}

/// Stores in id (= creation) order, after the cursor.
pub async fn list(db: &Db, after: Option<&StoreId>, limit: i64) -> Result<Vec<StoreRow>> {
    Ok(sqlx::query_as::<_, StoreRow>(
        "SELECT id, name, external_id, metadata, created_at FROM stores WHERE id > $1 AND deleted_at IS NULL ORDER BY id LIMIT $2",
    )
    .bind(after.map(StoreId::as_str).unwrap_or(""))
    .bind(limit)
    .fetch_all(db.pool())
    .await?)
}

/// Stores whose name contains `text` (ASCII letters in any case), or whose external id or id
/// is `text`, in id order after the cursor.
pub async fn search(
    db: &Db,
    text: &str,
    after: Option<&StoreId>,
    limit: i64,
) -> Result<Vec<StoreRow>> {
    let pattern = format!("%{}%", like_escape(&text.to_ascii_lowercase()));
    Ok(sqlx::query_as::<_, StoreRow>(
        "SELECT id, name, external_id, metadata, created_at FROM stores \
         WHERE id > $1 AND deleted_at IS NULL \
           AND (LOWER(name) LIKE $2 ESCAPE '\\' OR external_id = $3 OR id = $3) \
         ORDER BY id LIMIT $4",
    )
    .bind(after.map(StoreId::as_str).unwrap_or(""))
    .bind(pattern)
    .bind(text)
    .bind(limit)
    .fetch_all(db.pool())
    .await?)
}

/// `text` matched literally by `LIKE … ESCAPE '\'`.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What `delete` did.
#[derive(Debug)]
pub enum Deleted {
    Done,
    NoStore,
    /// The store still holds these; nothing was changed.
    Live(LiveObjects),
}

/// Deletes the store if it holds nothing live: hidden from every store lookup, its external id
/// free for a new store, its connection and sealed secrets dropped; its orders, refunds and
/// vendor subscription record stay, as the history of money that moved. The store's row is
/// held exclusively while live objects are counted, and every writer that adds one holds it
/// too (`lock_live`), so nothing live slips in between the count and the deletion.
/// `disconnected` is the object of the `store.disconnected` notification written when a
/// connection is dropped.
pub async fn delete(
    db: &Db,
    id: &StoreId,
    unsettled_since_ms: i64,
    disconnected: &serde_json::Value,
) -> Result<Deleted> {
    let mut tx = db.begin_write().await?;
    let lock = format!(
        "SELECT id FROM stores WHERE id = $1 AND deleted_at IS NULL{}",
        super::for_update(&tx)
    );
    if sqlx::query(&lock)
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .is_none()
    {
        tx.rollback().await?;
        return Ok(Deleted::NoStore);
    }
    let live = live_objects(&mut tx, id, unsettled_since_ms).await?;
    if !live.is_empty() {
        tx.rollback().await?;
        return Ok(Deleted::Live(live));
    }
    sqlx::query("UPDATE stores SET deleted_at = $1, external_id = NULL WHERE id = $2")
        .bind(now_ms())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM onboarding_grants WHERE store_id = $1")
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
    if super::connections::delete(&mut tx, id).await? {
        super::notifications::enqueue(
            &mut tx,
            "store.disconnected",
            Some(id.as_str()),
            disconnected,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Deleted::Done)
}

/// Inside a writer's transaction: locks the store's row (on PostgreSQL; SQLite's write
/// transaction holds the whole database) so that changes of its connection, read and then
/// written, happen one at a time. False when there is no such store.
pub async fn lock(conn: &mut sqlx::AnyConnection, id: &StoreId) -> Result<bool> {
    let sql = format!(
        "SELECT id FROM stores WHERE id = $1 AND deleted_at IS NULL{}",
        super::for_update(conn)
    );
    Ok(sqlx::query(&sql)
        .bind(id.as_str())
        .fetch_optional(conn)
        .await?
        .is_some())
}

/// Inside a writer's transaction: whether the store exists and is not deleted, holding it so
/// (a shared lock on PostgreSQL; SQLite's write transaction) until the transaction ends. Every
/// write that gives a store something live at Stripe (an order, a subscription creation) takes
/// it, so a deletion, which takes the row exclusively, sees every such write or none.
pub async fn lock_live(conn: &mut sqlx::AnyConnection, id: &StoreId) -> Result<bool> {
    let sql = format!(
        "SELECT deleted_at FROM stores WHERE id = $1{}",
        super::for_share(conn)
    );
    let found: Option<Option<i64>> = sqlx::query_scalar(&sql)
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(matches!(found, Some(None)))
}

/// What a store still holds that money can move through, for the check before deleting it.
#[derive(Debug, Default)]
pub struct LiveObjects {
    /// The vendor subscription running (or being created) at Stripe.
    pub subscription: Option<String>,
    /// The connection's kind and account, unless deauthorized.
    pub connection: Option<(String, Option<String>)>,
    /// Orders Stripe may still settle, newest first (at most a few named).
    pub unsettled_orders: Vec<String>,
    pub pending_refunds: i64,
    /// Transfers (or their reversals) of paid multi-vendor orders to or from this store's
    /// account that Stripe has not made yet (or refused).
    pub pending_transfers: i64,
    /// Splits for this store in multi-vendor orders not paid (nor closed) yet.
    pub unpaid_splits: i64,
}

/// What the store holds that is live: a vendor subscription not ended, a connection not
/// deauthorized, orders Stripe may still settle (created since `since_ms`) and refunds it has
/// not settled.
pub async fn live_objects(
    conn: &mut sqlx::AnyConnection,
    id: &StoreId,
    since_ms: i64,
) -> Result<LiveObjects> {
    let subscription = sqlx::query_scalar::<_, Option<String>>(
        "SELECT subscription_id FROM vendor_subscriptions WHERE store_id = $1 AND ended_reason IS NULL",
    )
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await?
    .map(|s| s.unwrap_or_else(|| "one still being created".to_owned()));
    let connection = sqlx::query_as::<_, (String, Option<String>)>(
        "SELECT kind, account_id FROM connections WHERE store_id = $1 AND deauthorized = 0",
    )
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let unsettled_orders = sqlx::query_scalar::<_, String>(
        "SELECT id FROM orders WHERE store_id = $1 AND status IN ('pending', 'failed') AND created_at > $2 \
         ORDER BY id DESC LIMIT 4",
    )
    .bind(id.as_str())
    .bind(since_ms)
    .fetch_all(&mut *conn)
    .await?;
    let pending_refunds = sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM refunds r JOIN orders o ON o.id = r.order_id \
         WHERE o.store_id = $1 AND r.status IN ('pending', 'requires_action')",
    )
    .bind(id.as_str())
    .fetch_one(&mut *conn)
    .await?;
    // A reversal counts once its transfer exists (before, it is the transfer that is owed).
    let pending_transfers = sqlx::query_scalar::<_, i64>(
        "SELECT (SELECT COUNT(*) FROM order_transfers t JOIN orders o ON o.id = t.order_id \
                 WHERE t.store_id = $1 AND t.status IN ('pending', 'failed') AND o.paid = 1) \
              + (SELECT COUNT(*) FROM transfer_reversals r JOIN order_transfers t \
                   ON t.order_id = r.order_id AND t.store_id = r.store_id \
                 WHERE r.store_id = $1 AND r.status IN ('pending', 'failed') \
                   AND t.stripe_transfer_id IS NOT NULL)",
    )
    .bind(id.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let unpaid_splits = sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM order_transfers t JOIN orders o ON o.id = t.order_id \
         WHERE t.store_id = $1 AND t.status IN ('pending', 'failed') AND o.paid = 0 \
           AND o.status IN ('pending', 'failed')",
    )
    .bind(id.as_str())
    .fetch_one(&mut *conn)
    .await?;
    Ok(LiveObjects {
        subscription,
        connection,
        unsettled_orders,
        pending_refunds,
        pending_transfers,
        unpaid_splits,
    })
}

impl LiveObjects {
    pub fn is_empty(&self) -> bool {
        self.subscription.is_none()
            && self.connection.is_none()
            && self.unsettled_orders.is_empty()
            && self.pending_refunds == 0
            && self.pending_transfers == 0
            && self.unpaid_splits == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_is_matched_literally() {
        assert_eq!(like_escape("50%_off\\"), "50\\%\\_off\\\\");
        assert_eq!(like_escape("plain"), "plain");
    }
}

//! The `order_transfers` and `transfer_reversals` tables: a multi-vendor order's transfer per
//! split, and the reversals its refunds call for.
//!
//! Each row is saved before Stripe is called and names its own Stripe idempotency key, so a
//! duplicated event, a sweep, a re-check, a crash or a second process makes the same request
//! under the same key, never a second transfer. A row is claimed (its `attempted_at` moved)
//! before each call, so one process at a time asks.

use sqlx::{Any, AnyConnection, Executor, FromRow};

use super::{now_ms, Db, Result};
use crate::domain::split::reversal_increments;
use crate::domain::{OrderId, StoreId};

/// A split of a new multi-vendor order, saved with it.
pub struct NewSplit<'a> {
    pub store: &'a StoreId,
    pub account_id: &'a str,
    pub amount: i64,
    pub description: Option<&'a str>,
}

#[derive(Debug, Clone, FromRow)]
pub struct TransferRow {
    pub order_id: String,
    pub store_id: String,
    pub position: i64,
    pub account_id: String,
    pub amount: i64,
    pub description: Option<String>,
    /// The split less what refunds before the transfer reversed (set at its first attempt).
    pub sent_amount: Option<i64>,
    pub stripe_transfer_id: Option<String>,
    /// `pending`, `created`, `canceled` or `failed`.
    pub status: String,
    pub amount_reversed: i64,
    pub failure_message: Option<String>,
    pub first_attempt_at: Option<i64>,
    pub attempted_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "order_id, store_id, position, account_id, amount, description, sent_amount, stripe_transfer_id, \
    status, amount_reversed, failure_message, first_attempt_at, attempted_at, created_at, updated_at";

/// A transfer due, with what its request needs from the order (the attempt's own key
/// generation and amount come from its claim).
#[derive(Debug, Clone, FromRow)]
pub struct DueTransfer {
    pub order_id: String,
    pub store_id: String,
    pub account_id: String,
    pub description: Option<String>,
    pub currency: String,
    pub latest_charge: String,
}

#[derive(Debug, Clone, FromRow)]
pub struct ReversalRow {
    pub order_id: String,
    pub store_id: String,
    pub refunded_to: i64,
    pub amount: i64,
    pub stripe_reversal_id: Option<String>,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    pub failure_message: Option<String>,
    pub first_attempt_at: Option<i64>,
    pub attempted_at: Option<i64>,
    pub created_at: i64,
}

/// A reversal due, with the transfer it reverses.
#[derive(Debug, Clone, FromRow)]
pub struct DueReversal {
    pub order_id: String,
    pub store_id: String,
    pub refunded_to: i64,
    pub amount: i64,
    pub stripe_transfer_id: String,
}

pub(super) async fn insert(
    conn: &mut AnyConnection,
    order: &OrderId,
    position: i64,
    split: &NewSplit<'_>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO order_transfers (order_id, store_id, position, account_id, amount, description, \
           status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7)",
    )
    .bind(order.as_str())
    .bind(split.store.as_str())
    .bind(position)
    .bind(split.account_id)
    .bind(split.amount)
    .bind(split.description)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// An order's transfers, in the order of its splits.
pub async fn for_order<'e>(
    ex: impl Executor<'e, Database = Any>,
    order: &str,
) -> Result<Vec<TransferRow>> {
    let sql =
        format!("SELECT {COLUMNS} FROM order_transfers WHERE order_id = $1 ORDER BY position");
    Ok(sqlx::query_as::<_, TransferRow>(&sql)
        .bind(order)
        .fetch_all(ex)
        .await?)
}

/// Transfers of paid orders (of one order, or all) not made yet and not being made (no claim
/// younger than `lease_ms`).
pub async fn due(
    db: &Db,
    order: Option<&OrderId>,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<DueTransfer>> {
    Ok(sqlx::query_as::<_, DueTransfer>(
        "SELECT t.order_id, t.store_id, t.account_id, t.description, o.currency, o.latest_charge \
         FROM order_transfers t JOIN orders o ON o.id = t.order_id \
         WHERE t.status = 'pending' AND (t.attempted_at IS NULL OR t.attempted_at < $1) \
           AND o.paid = 1 AND o.latest_charge IS NOT NULL AND ($2 = '' OR t.order_id = $2) \
         ORDER BY t.created_at, t.position LIMIT $3",
    )
    .bind(now_ms() - lease_ms)
    .bind(order.map(OrderId::as_str).unwrap_or(""))
    .bind(limit)
    .fetch_all(db.pool())
    .await?)
}

/// Takes the transfer for one attempt, if no one holds a claim younger than `lease_ms`; the
/// amount to ask Stripe for. At the first claim, reversals refunds already planned for the
/// split are taken off it (`netted`), so a refund before the transfer never leaves it larger
/// than what is owed; every later attempt asks for that same amount.
pub async fn claim(db: &Db, order: &str, store: &str, lease_ms: i64) -> Result<Option<Claim>> {
    let mut tx = db.begin_write().await?;
    let now = now_ms();
    let taken = sqlx::query(
        "UPDATE order_transfers SET attempted_at = $1, first_attempt_at = COALESCE(first_attempt_at, $1) \
         WHERE order_id = $2 AND store_id = $3 AND status = 'pending' \
           AND (attempted_at IS NULL OR attempted_at < $4)",
    )
    .bind(now)
    .bind(order)
    .bind(store)
    .bind(now - lease_ms)
    .execute(&mut *tx)
    .await?;
    if taken.rows_affected() != 1 {
        tx.rollback().await?;
        return Ok(None);
    }
    let (amount, sent, generation, first_attempt_at): (i64, Option<i64>, i64, i64) =
        sqlx::query_as(
            "SELECT amount, sent_amount, key_generation, first_attempt_at FROM order_transfers \
         WHERE order_id = $1 AND store_id = $2",
        )
        .bind(order)
        .bind(store)
        .fetch_one(&mut *tx)
        .await?;
    let sent = match sent {
        Some(sent) => sent,
        None => {
            sqlx::query(
                "UPDATE transfer_reversals SET status = 'netted' \
                 WHERE order_id = $1 AND store_id = $2 AND status = 'pending'",
            )
            .bind(order)
            .bind(store)
            .execute(&mut *tx)
            .await?;
            // Everything taken off so far (a transfer asked for again after a refusal nets anew).
            let netted: i64 = sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM transfer_reversals \
                 WHERE order_id = $1 AND store_id = $2 AND status = 'netted'",
            )
            .bind(order)
            .bind(store)
            .fetch_one(&mut *tx)
            .await?;
            let sent = (amount - netted).max(0);
            sqlx::query(
                "UPDATE order_transfers SET sent_amount = $1 WHERE order_id = $2 AND store_id = $3",
            )
            .bind(sent)
            .bind(order)
            .bind(store)
            .execute(&mut *tx)
            .await?;
            sent
        }
    };
    tx.commit().await?;
    Ok(Some(Claim {
        amount: sent,
        generation,
        first_attempt_at,
    }))
}

/// What one claimed attempt asks for, read under its claim (never from an older read).
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    pub amount: i64,
    /// The key generation the attempt asks under; only its answer is recorded.
    pub generation: i64,
    pub first_attempt_at: i64,
}

/// Whose answer is being recorded: one attempt's (under its key generation), or Stripe's own
/// word that the object exists (found in a list, or told by an event), which settles a row
/// still waiting or refused, whatever its generation.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Attempt(i64),
    Found,
}

impl Answer {
    /// The generation bound in SQL: -1 for `Found`.
    fn bound(self) -> i64 {
        match self {
            Answer::Attempt(g) => g,
            Answer::Found => -1,
        }
    }
}

/// Records Stripe's answer: the transfer it made (`created`), or its refusal (`failed`); an
/// empty id records that nothing was left to send (`canceled`: refunded whole first). A
/// transfer already recorded keeps its first answer. True if this call recorded it.
pub async fn finish(
    conn: &mut AnyConnection,
    order: &str,
    store: &str,
    by: Answer,
    made: std::result::Result<(&str, i64), &str>,
) -> Result<bool> {
    let (stripe_id, status, reversed, failure) = match made {
        Ok(("", _)) => (None, "canceled", 0, None),
        Ok((id, reversed)) => (Some(id), "created", reversed, None),
        Err(message) => (None, "failed", 0, Some(message)),
    };
    let done = sqlx::query(
        "UPDATE order_transfers SET stripe_transfer_id = $1, status = $2, amount_reversed = $3, \
           failure_message = $4, updated_at = $5 \
         WHERE order_id = $6 AND store_id = $7 AND stripe_transfer_id IS NULL \
           AND ((status = 'pending' AND key_generation = $8) OR ($8 = -1 AND status IN ('pending', 'failed')))",
    )
    .bind(stripe_id)
    .bind(status)
    .bind(reversed)
    .bind(failure)
    .bind(now_ms())
    .bind(order)
    .bind(store)
    .bind(by.bound())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What Stripe says a transfer has had reversed (from an answer or a `transfer.*` event):
/// only ever grows.
pub async fn learn_reversed(
    conn: &mut AnyConnection,
    stripe_transfer: &str,
    amount_reversed: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE order_transfers SET amount_reversed = $1, updated_at = $2 \
         WHERE stripe_transfer_id = $3 AND amount_reversed < $1",
    )
    .bind(amount_reversed)
    .bind(now_ms())
    .bind(stripe_transfer)
    .execute(conn)
    .await?;
    Ok(())
}

/// An order's transfers Stripe refused.
pub async fn refused_transfers(db: &Db, order: &OrderId) -> Result<Vec<TransferRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM order_transfers WHERE order_id = $1 AND status = 'failed' ORDER BY position"
    );
    Ok(sqlx::query_as::<_, TransferRow>(&sql)
        .bind(order.as_str())
        .fetch_all(db.pool())
        .await?)
}

/// An order's reversals Stripe refused, with their transfer.
pub async fn refused_reversals(db: &Db, order: &OrderId) -> Result<Vec<DueReversal>> {
    Ok(sqlx::query_as::<_, DueReversal>(
        "SELECT r.order_id, r.store_id, r.refunded_to, r.amount, t.stripe_transfer_id \
         FROM transfer_reversals r JOIN order_transfers t \
           ON t.order_id = r.order_id AND t.store_id = r.store_id \
         WHERE r.order_id = $1 AND r.status = 'failed' AND t.stripe_transfer_id IS NOT NULL",
    )
    .bind(order.as_str())
    .fetch_all(db.pool())
    .await?)
}

/// Asks again for a transfer Stripe refused (and that Stripe was just seen not to hold), under
/// a new key: Stripe answers a key it refused with the same refusal, and made nothing under it.
/// It is netted anew against refunds made meanwhile.
pub async fn retry_transfer(db: &Db, order: &str, store: &str) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query(
        "UPDATE order_transfers SET status = 'pending', failure_message = NULL, attempted_at = NULL, \
           first_attempt_at = NULL, sent_amount = NULL, key_generation = key_generation + 1 \
         WHERE order_id = $1 AND store_id = $2 AND status = 'failed'",
    )
    .bind(order)
    .bind(store)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// As `retry_transfer`, for a refused reversal.
pub async fn retry_reversal(db: &Db, r: &DueReversal) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query(
        "UPDATE transfer_reversals SET status = 'pending', failure_message = NULL, attempted_at = NULL, \
           first_attempt_at = NULL, key_generation = key_generation + 1 \
         WHERE order_id = $1 AND store_id = $2 AND refunded_to = $3 AND status = 'failed'",
    )
    .bind(&r.order_id)
    .bind(&r.store_id)
    .bind(r.refunded_to)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Cancels a deleted store's splits of orders not paid yet: if such an order is paid later,
/// nothing is transferred to the store (the operator forced its deletion), and its split stays
/// with the platform.
pub async fn cancel_unpaid_splits(conn: &mut AnyConnection, store: &StoreId) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE order_transfers SET status = 'canceled', \
           failure_message = 'the store was deleted before the order was paid', updated_at = $1 \
         WHERE store_id = $2 AND status IN ('pending', 'failed') AND stripe_transfer_id IS NULL \
           AND order_id IN (SELECT id FROM orders WHERE paid = 0)",
    )
    .bind(now_ms())
    .bind(store.as_str())
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Plans the reversals a larger refunded amount calls for, in the transaction that merged it
/// (under the order's row lock): each split's share of what is now refunded, less what was
/// planned for it before. Only Stripe's refunded amount drives it, so a refund made anywhere
/// (the API, the Dashboard) reverses the vendors' part once.
pub async fn plan_reversals(
    conn: &mut AnyConnection,
    order: &str,
    order_amount: i64,
    refunded: i64,
) -> Result<()> {
    let transfers = for_order(&mut *conn, order).await?;
    let mut planned = Vec::with_capacity(transfers.len());
    for t in &transfers {
        let sum: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM transfer_reversals WHERE order_id = $1 AND store_id = $2",
        )
        .bind(&t.order_id)
        .bind(&t.store_id)
        .fetch_one(&mut *conn)
        .await?;
        planned.push(sum);
    }
    let splits: Vec<i64> = transfers.iter().map(|t| t.amount).collect();
    let more = reversal_increments(order_amount, refunded, &splits, &planned);
    let now = now_ms();
    for (t, amount) in transfers.iter().zip(more) {
        if amount <= 0 {
            continue;
        }
        sqlx::query(
            "INSERT INTO transfer_reversals (order_id, store_id, refunded_to, amount, status, created_at) \
             VALUES ($1, $2, $3, $4, 'pending', $5) ON CONFLICT DO NOTHING",
        )
        .bind(&t.order_id)
        .bind(&t.store_id)
        .bind(refunded)
        .bind(amount)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Reversals planned whose transfer exists, not made yet and not being made.
pub async fn due_reversals(
    db: &Db,
    order: Option<&OrderId>,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<DueReversal>> {
    Ok(sqlx::query_as::<_, DueReversal>(
        "SELECT r.order_id, r.store_id, r.refunded_to, r.amount, t.stripe_transfer_id \
         FROM transfer_reversals r JOIN order_transfers t \
           ON t.order_id = r.order_id AND t.store_id = r.store_id \
         WHERE r.status = 'pending' AND (r.attempted_at IS NULL OR r.attempted_at < $1) \
           AND t.stripe_transfer_id IS NOT NULL AND ($2 = '' OR r.order_id = $2) \
         ORDER BY r.created_at LIMIT $3",
    )
    .bind(now_ms() - lease_ms)
    .bind(order.map(OrderId::as_str).unwrap_or(""))
    .bind(limit)
    .fetch_all(db.pool())
    .await?)
}

/// Takes a reversal for one attempt, if no one holds a claim younger than `lease_ms`: its key
/// generation and first attempt, read under the claim.
pub async fn claim_reversal(db: &Db, r: &DueReversal, lease_ms: i64) -> Result<Option<Claim>> {
    let _turn = db.write_turn().await;
    let now = now_ms();
    let taken: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE transfer_reversals SET attempted_at = $1, first_attempt_at = COALESCE(first_attempt_at, $1) \
         WHERE order_id = $2 AND store_id = $3 AND refunded_to = $4 AND status = 'pending' \
           AND (attempted_at IS NULL OR attempted_at < $5) \
         RETURNING key_generation, first_attempt_at",
    )
    .bind(now)
    .bind(&r.order_id)
    .bind(&r.store_id)
    .bind(r.refunded_to)
    .bind(now - lease_ms)
    .fetch_optional(db.pool())
    .await?;
    Ok(taken.map(|(generation, first_attempt_at)| Claim {
        amount: r.amount,
        generation,
        first_attempt_at,
    }))
}

/// Records Stripe's answer to a reversal: made (`succeeded`; the transfer's reversed amount
/// grows to what its reversals add up to), or refused (`failed`).
pub async fn finish_reversal(
    conn: &mut AnyConnection,
    r: &DueReversal,
    by: Answer,
    made: std::result::Result<&str, &str>,
) -> Result<()> {
    let (stripe_id, status, failure) = match made {
        Ok(id) => (Some(id), "succeeded", None),
        Err(message) => (None, "failed", Some(message)),
    };
    sqlx::query(
        "UPDATE transfer_reversals SET stripe_reversal_id = $1, status = $2, failure_message = $3 \
         WHERE order_id = $4 AND store_id = $5 AND refunded_to = $6 AND stripe_reversal_id IS NULL \
           AND ((status = 'pending' AND key_generation = $7) OR ($7 = -1 AND status IN ('pending', 'failed')))",
    )
    .bind(stripe_id)
    .bind(status)
    .bind(failure)
    .bind(&r.order_id)
    .bind(&r.store_id)
    .bind(r.refunded_to)
    .bind(by.bound())
    .execute(&mut *conn)
    .await?;
    if made.is_ok() {
        let reversed: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM transfer_reversals \
             WHERE order_id = $1 AND store_id = $2 AND status = 'succeeded'",
        )
        .bind(&r.order_id)
        .bind(&r.store_id)
        .fetch_one(&mut *conn)
        .await?;
        learn_reversed(conn, &r.stripe_transfer_id, reversed).await?;
    }
    Ok(())
}

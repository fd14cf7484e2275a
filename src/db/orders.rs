//! The `orders` and `refunds` tables. Every lookup by a Stripe id is scoped to the store the
//! event or request belongs to: one store's PaymentIntent can never find another store's order.

use sqlx::{AnyConnection, FromRow};

use super::transfers::NewSplit;
use super::{flag, now_ms, Db, Result};
use crate::domain::order::{ChargedThrough, OrderFacts, Stamped};
use crate::domain::split::ChargeType;
use crate::domain::{request_key, Mode, OrderId, RefundId, RequestKey, StoreId};

#[derive(Debug, Clone, FromRow)]
pub struct OrderRow {
    pub id: String,
    /// None for a multi-vendor order (the platform's; its stores are its transfers').
    pub store_id: Option<String>,
    #[sqlx(try_from = "String")]
    pub connection_kind: ChargedThrough,
    pub account_id: String,
    #[sqlx(try_from = "String")]
    pub mode: Mode,
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
    /// The creating request's hash, beside its `request_key` (see `domain::RequestKey`).
    pub request_hash: Option<String>,
    pub return_url: Option<String>,
    /// `direct`, `destination` or `separate` (see `domain::split::ChargeType`).
    pub charge_type: String,
    pub on_behalf_of: i64,
    pub transfer_amount: Option<i64>,
    pub application_fee_id: Option<String>,
    pub application_fee_refunded: i64,
}

const COLUMNS: &str = "id, store_id, connection_kind, account_id, mode, amount, currency, description, \
    customer_id, application_fee_amount, metadata, payment_intent_id, checkout_session_id, client_secret_enc, latest_charge, \
    paid, amount_refunded, disputed, dispute_status, dispute_at, dispute_seq, canceled, failure_code, \
    failure_message, failure_at, failure_seq, status, status_source, synced_at, created_at, updated_at, request_hash, return_url, \
    charge_type, on_behalf_of, transfer_amount, application_fee_id, application_fee_refunded";

impl OrderRow {
    pub fn charge_type(&self) -> ChargeType {
        ChargeType::from_stored(&self.charge_type)
    }

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
    /// None for a multi-vendor order: its `splits` name the stores.
    pub store: Option<&'a StoreId>,
    pub connection_kind: ChargedThrough,
    pub account_id: &'a str,
    pub mode: Mode,
    pub amount: i64,
    pub currency: &'a str,
    pub description: Option<&'a str>,
    pub customer_id: Option<&'a str>,
    pub application_fee_amount: Option<i64>,
    pub metadata: &'a str,
    pub request_key: Option<&'a RequestKey>,
    pub return_url: Option<&'a str>,
    /// Paid through Stripe Checkout: marked at once (an empty session id until Stripe answers),
    /// so the sweep never gives it a PaymentIntent of its own.
    pub checkout: bool,
    pub charge_type: ChargeType,
    pub on_behalf_of: bool,
    /// A destination charge's `transfer_data[amount]`.
    pub transfer_amount: Option<i64>,
    /// A multi-vendor order's splits, saved with it (each one's transfer key exists before
    /// the payment does).
    pub splits: &'a [NewSplit<'a>],
}

/// Saves a new order (and its splits) before Stripe is called, so its id (and so the Stripe
/// idempotency keys derived from it) exists before the first attempt. None if a store is gone:
/// the insert holds every store it names (`stores::lock_live`), so a deletion sees the order or
/// it is refused.
pub async fn insert(db: &Db, o: &NewOrder<'_>) -> Result<Option<OrderRow>> {
    let mut tx = db.begin_write().await?;
    let mut stores: Vec<&StoreId> = o.splits.iter().map(|s| s.store).chain(o.store).collect();
    // In one order, so two inserts naming the same stores never wait on each other in a ring.
    stores.sort_by_key(|s| s.as_str());
    for store in stores {
        if !super::stores::lock_live(&mut tx, store).await? {
            tx.rollback().await?;
            return Ok(None);
        }
    }
    let now = now_ms();
    let sql = format!(
        "INSERT INTO orders (id, store_id, connection_kind, account_id, mode, amount, currency, description, \
           customer_id, application_fee_amount, metadata, request_key, request_hash, checkout_session_id, status, created_at, updated_at, return_url, \
           charge_type, on_behalf_of, transfer_amount) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'pending', $15, $15, $16, $17, $18, $19) RETURNING {COLUMNS}"
    );
    let row = sqlx::query_as::<_, OrderRow>(&sql)
        .bind(o.id.as_str())
        .bind(o.store.map(StoreId::as_str))
        .bind(o.connection_kind.as_str())
        .bind(o.account_id)
        .bind(o.mode.as_str())
        .bind(o.amount)
        .bind(o.currency)
        .bind(o.description)
        .bind(o.customer_id)
        .bind(o.application_fee_amount)
        .bind(o.metadata)
        .bind(o.request_key.map(|k| k.key.as_str()))
        .bind(o.request_key.map(|k| k.request_hash.as_str()))
        .bind(o.checkout.then_some(""))
        .bind(now)
        .bind(o.return_url)
        .bind(o.charge_type.as_str())
        .bind(flag(o.on_behalf_of))
        .bind(o.transfer_amount)
        .fetch_one(&mut *tx)
        .await?;
    for (position, split) in o.splits.iter().enumerate() {
        super::transfers::insert(&mut tx, o.id, position as i64, split, now).await?;
    }
    tx.commit().await?;
    Ok(Some(row))
}

pub async fn get(db: &Db, id: &OrderId) -> Result<Option<OrderRow>> {
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE id = $1");
    Ok(sqlx::query_as::<_, OrderRow>(&sql)
        .bind(id.as_str())
        .fetch_optional(db.pool())
        .await?)
}

/// The order, read under its row lock (`FOR UPDATE` on PostgreSQL) in `conn`'s transaction.
pub async fn lock(conn: &mut AnyConnection, id: &str) -> Result<Option<OrderRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM orders WHERE id = $1{}",
        super::for_update(conn)
    );
    Ok(sqlx::query_as::<_, OrderRow>(&sql)
        .bind(id)
        .fetch_optional(conn)
        .await?)
}

/// The order a retried creating request made before (the same store, or the platform for
/// `None`; the same Idempotency-Key; within the key's window). A key past its window is free
/// again: the old order forgets it first.
pub async fn by_request_key(
    db: &Db,
    store: Option<&StoreId>,
    key: &str,
) -> Result<Option<OrderRow>> {
    // Two forms, so each uses its index (`orders_request`, `orders_platform_request`).
    let owner = match store {
        Some(_) => "store_id = $1",
        None => "store_id IS NULL AND $1 = ''",
    };
    {
        let _turn = db.write_turn().await;
        sqlx::query(&format!(
            "UPDATE orders SET request_key = NULL WHERE {owner} AND request_key = $2 AND created_at < $3"
        ))
        .bind(store.map(StoreId::as_str).unwrap_or(""))
        .bind(key)
        .bind(now_ms() - request_key::WINDOW_MS)
        .execute(db.pool())
        .await?;
    }
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE {owner} AND request_key = $2");
    Ok(sqlx::query_as::<_, OrderRow>(&sql)
        .bind(store.map(StoreId::as_str).unwrap_or(""))
        .bind(key)
        .fetch_optional(db.pool())
        .await?)
}

/// A store's orders, its own and the multi-vendor orders it has a split in, newest first,
/// before the cursor.
pub async fn list(
    db: &Db,
    store: &StoreId,
    before: Option<&OrderId>,
    limit: i64,
) -> Result<Vec<OrderRow>> {
    list_filtered(db, Some(store), None, before, limit).await
}

/// Orders of every store, or of `store` (its split orders included, as `list` has them), in
/// `status` if given, newest first, before the cursor.
pub async fn list_filtered(
    db: &Db,
    store: Option<&StoreId>,
    status: Option<&str>,
    before: Option<&OrderId>,
    limit: i64,
) -> Result<Vec<OrderRow>> {
    // A store's clause is written out rather than `$1 = '' OR …`, which would hide the
    // store's index from the planner.
    let stores = if store.is_some() {
        "(store_id = $1 OR id IN (SELECT order_id FROM order_transfers WHERE store_id = $1))"
    } else {
        "$1 = ''"
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM orders WHERE {stores} \
           AND ($2 = '' OR status = $2) AND ($3 = '' OR id < $3) ORDER BY id DESC LIMIT $4"
    );
    Ok(sqlx::query_as::<_, OrderRow>(&sql)
        .bind(store.map(StoreId::as_str).unwrap_or(""))
        .bind(status.unwrap_or(""))
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
        format!("SELECT {COLUMNS} FROM orders WHERE store_id = $1 AND payment_intent_id = $2 AND charge_type = 'direct'");
    Ok(sqlx::query_as::<_, OrderRow>(&sql)
        .bind(store.as_str())
        .bind(payment_intent)
        .fetch_optional(conn)
        .await?)
}

/// The platform's order (a destination or multi-vendor charge) paid through `payment_intent`.
pub async fn by_platform_payment_intent(
    conn: &mut AnyConnection,
    payment_intent: &str,
) -> Result<Option<OrderRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM orders WHERE charge_type <> 'direct' AND payment_intent_id = $1"
    );
    Ok(sqlx::query_as::<_, OrderRow>(&sql)
        .bind(payment_intent)
        .fetch_optional(conn)
        .await?)
}

/// The platform's order whose latest charge is `charge`.
pub async fn by_platform_charge(
    conn: &mut AnyConnection,
    charge: &str,
) -> Result<Option<OrderRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM orders WHERE charge_type <> 'direct' AND latest_charge = $1"
    );
    Ok(sqlx::query_as::<_, OrderRow>(&sql)
        .bind(charge)
        .fetch_optional(conn)
        .await?)
}

/// Records what an `application_fee.*` event says of the platform's fee on the order paid
/// through `payment_intent` (a direct charge of `account`, or a destination charge to it): the
/// fee, and the most of it refunded.
pub async fn learn_application_fee(
    conn: &mut AnyConnection,
    account: &str,
    payment_intent: &str,
    fee: &str,
    refunded: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE orders SET application_fee_id = $1, \
           application_fee_refunded = CASE WHEN application_fee_refunded < $2 THEN $2 ELSE application_fee_refunded END, \
           updated_at = $3 \
         WHERE account_id = $4 AND payment_intent_id = $5 AND application_fee_amount IS NOT NULL",
    )
    .bind(fee)
    .bind(refunded)
    .bind(now_ms())
    .bind(account)
    .bind(payment_intent)
    .execute(conn)
    .await?;
    Ok(())
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
    let sql = format!(
        "SELECT {COLUMNS} FROM orders WHERE store_id = $1 AND latest_charge = $2 AND charge_type = 'direct'"
    );
    Ok(sqlx::query_as::<_, OrderRow>(&sql)
        .bind(store.as_str())
        .bind(charge)
        .fetch_optional(conn)
        .await?)
}

/// What a merge did to an order: its row after, and whether its status moved.
#[derive(Debug)]
pub struct Merged {
    pub order: OrderRow,
    /// The status moved.
    pub moved: bool,
    /// What the platform is told of changed: the status, or within it what that status is
    /// about (the amount refunded, the dispute's status, the failure).
    pub told: bool,
}

/// Merges `facts` into the order and re-derives its status; `source` says who spoke
/// (`webhook` or `sync`). None if there is no such order.
///
/// The merge reads the row it writes under a row lock (`FOR UPDATE` on PostgreSQL; SQLite's
/// write transaction holds the whole database), so two processes merging into one order at
/// once both land: the second merges into what the first wrote, never into a stale read.
pub async fn merge_facts(
    conn: &mut AnyConnection,
    order: &str,
    facts: &OrderFacts,
    latest_charge: Option<&str>,
    source: &str,
) -> Result<Option<Merged>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM orders WHERE id = $1{}",
        super::for_update(conn)
    );
    let Some(order) = sqlx::query_as::<_, OrderRow>(&sql)
        .bind(order)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let merged = order.facts().merge(facts);
    let status = merged.status(order.amount).as_str();
    let moved = status != order.status;
    let (dispute_at, dispute_seq) = merged.dispute_status.as_ref().map(|s| s.at).unzip();
    let (failure_at, failure_seq) = merged.failure.as_ref().map(|s| s.at).unzip();
    let after = sqlx::query_as::<_, OrderRow>(&format!(
        "UPDATE orders SET paid = $1, amount_refunded = $2, disputed = $3, dispute_status = $4, dispute_at = $5, \
           dispute_seq = $6, canceled = $7, failure_code = $8, failure_message = $9, failure_at = $10, \
           failure_seq = $11, status = $12, \
           latest_charge = CASE WHEN paid = 1 AND latest_charge IS NOT NULL THEN latest_charge ELSE COALESCE($13, latest_charge) END, \
           status_source = CASE WHEN $14 = 1 THEN $15 ELSE status_source END, \
           synced_at = CASE WHEN $15 = 'sync' THEN $16 ELSE synced_at END, updated_at = $16 \
         WHERE id = $17 RETURNING {COLUMNS}"
    ))
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
    .fetch_one(&mut *conn)
    .await?;
    if after.charge_type() == ChargeType::Separate && after.amount_refunded > order.amount_refunded
    {
        super::transfers::plan_reversals(
            &mut *conn,
            &after.id,
            after.amount,
            after.amount_refunded,
        )
        .await?;
    }
    let told = moved
        || match status {
            "refunded" | "partially_refunded" => after.amount_refunded != order.amount_refunded,
            "disputed" => after.dispute_status != order.dispute_status,
            "failed" => {
                (&after.failure_code, &after.failure_message)
                    != (&order.failure_code, &order.failure_message)
            }
            _ => false,
        };
    Ok(Some(Merged {
        order: after,
        moved,
        told,
    }))
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

/// A store's orders Stripe may still settle (created since `since_ms`): what a forced deletion
/// cancels at Stripe first.
pub async fn unsettled_of_store(db: &Db, store: &StoreId, since_ms: i64) -> Result<Vec<OrderRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM orders WHERE store_id = $1 AND status IN ('pending', 'failed') \
           AND created_at > $2"
    );
    Ok(sqlx::query_as::<_, OrderRow>(&sql)
        .bind(store.as_str())
        .bind(since_ms)
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
    /// The creating request's key and hash, if it came with an `Idempotency-Key`.
    pub request_key: Option<String>,
    pub request_hash: Option<String>,
    /// When Stripe was last asked about it (none: never yet).
    pub attempted_at: Option<i64>,
}

const REFUND_COLUMNS: &str = "id, order_id, amount, reason, stripe_refund_id, status, created_at, \
    request_key, request_hash, attempted_at";

/// Statuses of a refund that holds none of the order's amount: Stripe refused or undid it.
const RELEASED: &str = "('failed', 'canceled')";

/// Records a refund request before Stripe is called, if it fits in what is left to refund
/// (counting refunds asked for and not refused). None: it does not fit.
pub async fn insert_refund(
    db: &Db,
    order: &OrderRow,
    id: &RefundId,
    amount: i64,
    reason: Option<&str>,
    request_key: Option<&RequestKey>,
) -> Result<Option<RefundRow>> {
    let mut tx = db.begin_write().await?;
    // The order's row is the lock that queues refunds of one order across processes.
    let lock = format!(
        "SELECT id FROM orders WHERE id = $1{}",
        super::for_update(&tx)
    );
    sqlx::query(&lock)
        .bind(order.id.as_str())
        .execute(&mut *tx)
        .await?;
    let requested: i64 = sqlx::query_scalar::<_, i64>(&format!(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM refunds WHERE order_id = $1 AND status NOT IN {RELEASED}"
    ))
    .bind(order.id.as_str())
    .fetch_one(&mut *tx)
    .await?;
    if requested.max(order.amount_refunded) + amount > order.amount {
        tx.rollback().await?;
        return Ok(None);
    }
    let row = sqlx::query_as::<_, RefundRow>(&format!(
        "INSERT INTO refunds (id, order_id, amount, reason, status, created_at, request_key, request_hash, keyed_at) \
         VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $5) RETURNING {REFUND_COLUMNS}"
    ))
    .bind(id.as_str())
    .bind(order.id.as_str())
    .bind(amount)
    .bind(reason)
    .bind(now_ms())
    .bind(request_key.map(|k| k.key.as_str()))
    .bind(request_key.map(|k| k.request_hash.as_str()))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(row))
}

/// The refund a retried request made before (same order, same Idempotency-Key, within the
/// key's window; a key past it is forgotten first).
pub async fn refund_by_request_key(db: &Db, order: &str, key: &str) -> Result<Option<RefundRow>> {
    {
        let _turn = db.write_turn().await;
        sqlx::query(
            "UPDATE refunds SET request_key = NULL WHERE order_id = $1 AND request_key = $2 \
               AND COALESCE(keyed_at, created_at) < $3",
        )
        .bind(order)
        .bind(key)
        .bind(now_ms() - request_key::WINDOW_MS)
        .execute(db.pool())
        .await?;
    }
    Ok(sqlx::query_as::<_, RefundRow>(&format!(
        "SELECT {REFUND_COLUMNS} FROM refunds WHERE order_id = $1 AND request_key = $2"
    ))
    .bind(order)
    .bind(key)
    .fetch_optional(db.pool())
    .await?)
}

/// Every refund of the order, oldest first.
pub async fn refunds_of(db: &Db, order: &OrderId) -> Result<Vec<RefundRow>> {
    Ok(sqlx::query_as::<_, RefundRow>(&format!(
        "SELECT {REFUND_COLUMNS} FROM refunds WHERE order_id = $1 ORDER BY created_at, id"
    ))
    .bind(order.as_str())
    .fetch_all(db.pool())
    .await?)
}

/// The order's refunds that Stripe has not answered yet (a 5xx or a timeout on every try).
pub async fn unanswered_refunds(db: &Db, order: &str) -> Result<Vec<RefundRow>> {
    Ok(sqlx::query_as::<_, RefundRow>(&format!(
        "SELECT {REFUND_COLUMNS} FROM refunds WHERE order_id = $1 AND status = 'pending' \
           AND stripe_refund_id IS NULL ORDER BY created_at"
    ))
    .bind(order)
    .fetch_all(db.pool())
    .await?)
}

/// Refunds to try again or re-check at Stripe, last tried before `before_ms`, oldest first:
/// unanswered ones, and those Stripe answered `pending` (or `requires_action`).
pub async fn refunds_to_settle(db: &Db, before_ms: i64, limit: i64) -> Result<Vec<RefundRow>> {
    Ok(sqlx::query_as::<_, RefundRow>(&format!(
        "SELECT {REFUND_COLUMNS} FROM refunds WHERE status IN ('pending', 'requires_action') \
           AND COALESCE(attempted_at, created_at) < $1 ORDER BY created_at LIMIT $2"
    ))
    .bind(before_ms)
    .bind(limit)
    .fetch_all(db.pool())
    .await?)
}

/// Stamps a try at Stripe, so the sweep leaves a refund alone while it is being tried.
pub async fn touch_refund(db: &Db, id: &RefundId) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query("UPDATE refunds SET attempted_at = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(id.as_str())
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Takes the sweep's turn with a refund: stamped only if no one tried it since `before_ms`, so
/// of several processes' sweeps one settles it. False if another took it.
pub async fn claim_refund(db: &Db, id: &RefundId, before_ms: i64) -> Result<bool> {
    let _turn = db.write_turn().await;
    let done = sqlx::query(
        "UPDATE refunds SET attempted_at = $1 WHERE id = $2 AND COALESCE(attempted_at, created_at) < $3",
    )
    .bind(now_ms())
    .bind(id.as_str())
    .bind(before_ms)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Binds a request's `Idempotency-Key` to an unanswered refund made without one, which the
/// request asks for again: its retry then finds this refund. False if it has a key already.
pub async fn bind_refund_key(db: &Db, id: &RefundId, key: &RequestKey) -> Result<bool> {
    let _turn = db.write_turn().await;
    let done = sqlx::query(
        "UPDATE refunds SET request_key = $2, request_hash = $3, keyed_at = $4 WHERE id = $1 AND request_key IS NULL",
    )
    .bind(id.as_str())
    .bind(&key.key)
    .bind(&key.request_hash)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records Stripe's answer about a refund: its id (once known) and status.
pub async fn finish_refund(
    db: &Db,
    id: &RefundId,
    stripe_id: Option<&str>,
    status: &str,
) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query(
        "UPDATE refunds SET stripe_refund_id = COALESCE($1, stripe_refund_id), status = $2, attempted_at = $3 WHERE id = $4",
    )
    .bind(stripe_id)
    .bind(status)
    .bind(now_ms())
    .bind(id.as_str())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// A refund's new status from a Stripe event about it, found by Stripe's id within the order's
/// store (inside the worker's transaction).
pub async fn refund_status_from_stripe(
    conn: &mut AnyConnection,
    store: Option<&StoreId>,
    stripe_refund: &str,
    status: &str,
) -> Result<()> {
    // A store's event moves its direct charges' refunds; the platform's, its own charges'.
    let owner = match store {
        Some(_) => "store_id = $3 AND charge_type = 'direct'",
        None => "charge_type <> 'direct' AND $3 = ''",
    };
    sqlx::query(&format!(
        "UPDATE refunds SET status = $1 WHERE stripe_refund_id = $2 \
           AND order_id IN (SELECT id FROM orders WHERE {owner})"
    ))
    .bind(status)
    .bind(stripe_refund)
    .bind(store.map(StoreId::as_str).unwrap_or(""))
    .execute(conn)
    .await?;
    Ok(())
}

/// How many orders are still pending that were created before `before` (unix ms), of one
/// store or of all.
pub async fn count_pending_before(db: &Db, before: i64, store: Option<&StoreId>) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM orders WHERE status = 'pending' AND created_at < $1 AND ($2 = '' OR store_id = $2)",
    )
    .bind(before)
    .bind(store.map(|o| o.to_string()).unwrap_or_default())
    .fetch_one(db.pool())
    .await?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::db::testing;
    use crate::domain::store::{Metadata, StoreName};

    async fn new_order(db: &Db, store: &StoreId) -> OrderId {
        let id = OrderId::generate();
        insert(
            db,
            &NewOrder {
                id: &id,
                store: Some(store),
                connection_kind: ChargedThrough::Keys,
                account_id: "acct_1",
                mode: Mode::Test,
                amount: 1000,
                currency: "usd",
                description: None,
                customer_id: None,
                application_fee_amount: None,
                metadata: "{}",
                request_key: None,
                return_url: None,
                checkout: false,
                charge_type: ChargeType::Direct,
                on_behalf_of: false,
                transfer_amount: None,
                splits: &[],
            },
        )
        .await
        .unwrap()
        .expect("the store is live");
        id
    }

    /// Two processes (two pools on one database) merge different facts into one order at the
    /// same moment, round after round: every fact lands every time. A merge that wrote back a
    /// row read before the other's commit would drop the other's fact.
    #[tokio::test]
    async fn concurrent_merges_from_two_processes_all_land() {
        let (db, url, _dir) = testing::fresh().await;
        let other = Db::open(&url).await.unwrap();
        let store = StoreId::generate();
        crate::db::stores::insert(
            &db,
            &store,
            &StoreName::parse("Race").unwrap(),
            None,
            &Metadata::parse(Default::default()).unwrap(),
        )
        .await
        .unwrap();
        let facts = [
            OrderFacts {
                paid: true,
                ..Default::default()
            },
            OrderFacts {
                amount_refunded: 300,
                ..Default::default()
            },
            OrderFacts {
                disputed: true,
                ..Default::default()
            },
            OrderFacts {
                failure: Some(Stamped {
                    at: (1, 1),
                    value: ("card_declined".into(), "declined".into()),
                }),
                ..Default::default()
            },
        ];
        for _ in 0..25 {
            let id = new_order(&db, &store).await;
            let start = Arc::new(tokio::sync::Barrier::new(facts.len()));
            let merges = facts.iter().enumerate().map(|(i, f)| {
                let (d, start, id, f) = (
                    if i % 2 == 0 {
                        db.clone()
                    } else {
                        other.clone()
                    },
                    start.clone(),
                    id.clone(),
                    f.clone(),
                );
                tokio::spawn(async move {
                    start.wait().await;
                    let mut tx = d.begin_write().await.unwrap();
                    merge_facts(&mut tx, id.as_str(), &f, None, "webhook")
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                })
            });
            for m in futures::future::join_all(merges).await {
                m.unwrap();
            }
            let row = get(&db, &id).await.unwrap().unwrap();
            let all = facts.iter().fold(OrderFacts::default(), |a, f| a.merge(f));
            assert_eq!(row.facts(), all, "a concurrent merge was lost");
            assert_eq!(row.status, "disputed");
        }
    }
}

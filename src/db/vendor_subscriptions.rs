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
    /// Until when (unix ms) a request holds the store's creation lease.
    pub creating_until: Option<i64>,
}

const COLUMNS: &str = "store_id, customer_id, customer_deleted, create_key, subscription_id, item_id, \
    price_id, status, current_period_end, trial_end, cancel_at_period_end, snapshot_at, snapshot_seq, snapshot_tick, \
    ended_reason, latest_invoice, action_url, last_payment_error, created_at, updated_at, creating_until";

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

/// What `claim_create` found.
#[derive(Debug)]
pub enum CreateClaim {
    /// Another request is creating the store's subscription now.
    Busy,
    /// The store has a running subscription (its price may be changed instead).
    Live(VendorRow),
    /// This request creates it, holding the store's creation lease: a new record (or one
    /// restarted after an ended subscription), or, when `resumed`, a creation whose answer
    /// never came and which may have reached Stripe.
    Create { row: VendorRow, resumed: bool },
}

/// Takes the store's turn to create its subscription, before Stripe is called: one creation
/// per store at a time, across processes, until `lease_until` (unix ms) if the process dies.
/// A new or restarted record gets `price` and `fresh_key`, the idempotency key of the
/// subscription to create.
pub async fn claim_create(
    db: &Db,
    store: &StoreId,
    price: &str,
    fresh_key: &str,
    lease_until: i64,
) -> Result<CreateClaim> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let inserted = sqlx::query_scalar::<_, String>(
        "INSERT INTO vendor_subscriptions (store_id, create_key, price_id, creating_until, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (store_id) DO NOTHING RETURNING store_id",
    )
    .bind(store.as_str())
    .bind(fresh_key)
    .bind(price)
    .bind(lease_until)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?
    .is_some();
    let row = get_locked(&mut tx, store.as_str())
        .await?
        .expect("the row was inserted or already there");
    let claim = if inserted {
        CreateClaim::Create {
            row,
            resumed: false,
        }
    } else if row.creating_until.is_some_and(|t| t > now) {
        CreateClaim::Busy
    } else if row.subscription_id.is_some() && row.ended_reason.is_none() {
        CreateClaim::Live(row)
    } else if row.ended_reason.is_some() {
        let sql = format!(
            "UPDATE vendor_subscriptions SET create_key = $2, price_id = $3, creating_until = $4, \
               subscription_id = NULL, item_id = NULL, status = NULL, current_period_end = NULL, trial_end = NULL, \
               cancel_at_period_end = 0, snapshot_at = NULL, snapshot_seq = NULL, snapshot_tick = 0, ended_reason = NULL, \
               latest_invoice = NULL, action_url = NULL, last_payment_error = NULL, updated_at = $5 \
             WHERE store_id = $1 RETURNING {COLUMNS}"
        );
        let row = sqlx::query_as::<_, VendorRow>(&sql)
            .bind(store.as_str())
            .bind(fresh_key)
            .bind(price)
            .bind(lease_until)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        CreateClaim::Create {
            row,
            resumed: false,
        }
    } else {
        sqlx::query("UPDATE vendor_subscriptions SET creating_until = $2 WHERE store_id = $1")
            .bind(store.as_str())
            .bind(lease_until)
            .execute(&mut *tx)
            .await?;
        CreateClaim::Create { row, resumed: true }
    };
    tx.commit().await?;
    Ok(claim)
}

/// Ends this request's creation lease.
pub async fn release_create(db: &Db, store: &StoreId) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query("UPDATE vendor_subscriptions SET creating_until = NULL WHERE store_id = $1")
        .bind(store.as_str())
        .execute(db.pool())
        .await?;
    Ok(())
}

/// A creation that never reached Stripe starts over for another price, with a new key.
pub async fn restart_create(db: &Db, store: &StoreId, price: &str, key: &str) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query(
        "UPDATE vendor_subscriptions SET price_id = $2, create_key = $3, updated_at = $4 \
         WHERE store_id = $1 AND subscription_id IS NULL",
    )
    .bind(store.as_str())
    .bind(price)
    .bind(key)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Adopts a subscription Stripe made for the store whose answer Bursar never saw: only into a
/// record still waiting for its creation's answer, and only for the store's own platform
/// customer (or, when that answer was lost too, the customer Stripe names). True if adopted.
pub async fn adopt(
    conn: &mut AnyConnection,
    store: &str,
    subscription: &str,
    customer: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE vendor_subscriptions SET subscription_id = $2, customer_id = COALESCE(customer_id, $3), \
           customer_deleted = 0, updated_at = $4 \
         WHERE store_id = $1 AND subscription_id IS NULL AND ended_reason IS NULL \
           AND (customer_id IS NULL OR customer_id = $3)",
    )
    .bind(store)
    .bind(subscription)
    .bind(customer)
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
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

/// The store's row, locked until the caller's transaction ends (PostgreSQL; see
/// `db::for_update`): what a merge into it reads.
pub async fn get_locked(conn: &mut AnyConnection, store: &str) -> Result<Option<VendorRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM vendor_subscriptions WHERE store_id = $1{}",
        super::for_update(conn)
    );
    Ok(sqlx::query_as::<_, VendorRow>(&sql)
        .bind(store)
        .fetch_optional(&mut *conn)
        .await?)
}

/// Merges facts into the store's row (newest snapshot wins, `ended` sticks), reading it under
/// a row lock so that concurrent merges from several processes all land.
pub async fn merge(
    conn: &mut AnyConnection,
    store: &str,
    facts: &SubscriptionFacts,
    item: Option<&str>,
) -> Result<()> {
    let Some(row) = get_locked(conn, store).await? else {
        return Ok(());
    };
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
    .execute(&mut *conn)
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::db::testing;
    use crate::domain::store::{Metadata, StoreName};

    fn snapshot(at: i64, status: &str) -> SubscriptionFacts {
        SubscriptionFacts {
            snapshot: Some(Snapshot {
                at: (at, at, 0),
                status: status.into(),
                cancel_at_period_end: false,
                current_period_end: Some(at + 100),
                trial_end: None,
                price: Some("price_1".into()),
            }),
            ended: None,
        }
    }

    /// Two processes apply two subscription events at once (a newer snapshot, and Stripe
    /// ending it): both land every round, so an ended subscription never loses its marker.
    #[tokio::test]
    async fn concurrent_subscription_merges_from_two_processes_all_land() {
        let (db, url, _dir) = testing::fresh().await;
        let other = Db::open(&url).await.unwrap();
        for round in 0..25 {
            let store = StoreId::generate();
            crate::db::stores::insert(
                &db,
                &store,
                &StoreName::parse("Vendor").unwrap(),
                None,
                &Metadata::parse(Default::default()).unwrap(),
            )
            .await
            .unwrap();
            let key = format!("k{round}");
            let claim = claim_create(&db, &store, "price_1", &key, now_ms() + 60_000)
                .await
                .unwrap();
            assert!(matches!(claim, CreateClaim::Create { resumed: false, .. }));
            let events = [
                snapshot(10, "past_due"),
                SubscriptionFacts {
                    ended: Some("payment_failed".into()),
                    ..snapshot(5, "canceled")
                },
            ];
            let start = Arc::new(tokio::sync::Barrier::new(2));
            let merges = events.iter().enumerate().map(|(i, f)| {
                let (d, start, store, f) = (
                    if i == 0 { db.clone() } else { other.clone() },
                    start.clone(),
                    store.to_string(),
                    f.clone(),
                );
                tokio::spawn(async move {
                    start.wait().await;
                    let mut tx = d.begin_write().await.unwrap();
                    merge(&mut tx, &store, &f, None).await.unwrap();
                    tx.commit().await.unwrap();
                })
            });
            for m in futures::future::join_all(merges).await {
                m.unwrap();
            }
            let row = get(db.pool(), &store).await.unwrap().unwrap();
            assert_eq!(
                row.ended_reason.as_deref(),
                Some("payment_failed"),
                "the ended marker was lost"
            );
            assert_eq!(row.snapshot_at, Some(10), "the newer snapshot was lost");
        }
    }

    /// One creation per store at a time; the next request after it ended finds it live.
    #[tokio::test]
    async fn a_store_creates_one_subscription_at_a_time() {
        let (db, _, _dir) = testing::fresh().await;
        let store = StoreId::generate();
        crate::db::stores::insert(
            &db,
            &store,
            &StoreName::parse("Vendor").unwrap(),
            None,
            &Metadata::parse(Default::default()).unwrap(),
        )
        .await
        .unwrap();
        let lease = now_ms() + 60_000;
        assert!(matches!(
            claim_create(&db, &store, "price_1", "a", lease)
                .await
                .unwrap(),
            CreateClaim::Create { resumed: false, .. }
        ));
        assert!(matches!(
            claim_create(&db, &store, "price_1", "b", lease)
                .await
                .unwrap(),
            CreateClaim::Busy
        ));
        release_create(&db, &store).await.unwrap();
        // Its answer never came: the next request resumes it, with the first key.
        match claim_create(&db, &store, "price_1", "c", lease)
            .await
            .unwrap()
        {
            CreateClaim::Create { row, resumed } => {
                assert!(resumed);
                assert_eq!(row.create_key, "a");
            }
            other => panic!("{other:?}"),
        }
        set_subscription(&db, &store, "sub_1", None).await.unwrap();
        release_create(&db, &store).await.unwrap();
        assert!(matches!(
            claim_create(&db, &store, "price_1", "d", lease)
                .await
                .unwrap(),
            CreateClaim::Live(_)
        ));
        // A lease whose process died ends by itself.
        let expired = now_ms() - 1;
        sqlx::query("UPDATE vendor_subscriptions SET creating_until = $1, subscription_id = NULL")
            .bind(expired)
            .execute(db.pool())
            .await
            .unwrap();
        assert!(matches!(
            claim_create(&db, &store, "price_1", "e", lease)
                .await
                .unwrap(),
            CreateClaim::Create { resumed: true, .. }
        ));
    }
}

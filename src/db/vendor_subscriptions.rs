//! The `vendor_subscriptions` table: the platform's subscription for each store.

use sqlx::{Any, AnyConnection, Executor, FromRow};

use super::{flag, now_ms, Db, Result};
use crate::domain::subscription::{Snapshot, SubscriptionFacts, VendorStatus};
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
    /// Until when (unix ms) a request holds the store's creation lease, and which request.
    pub creating_until: Option<i64>,
    pub creating_token: Option<String>,
    /// The trial the creation asked for: replayed with its key and price when resumed.
    pub create_trial_days: Option<i64>,
}

const COLUMNS: &str = "store_id, customer_id, customer_deleted, create_key, subscription_id, item_id, \
    price_id, status, current_period_end, trial_end, cancel_at_period_end, snapshot_at, snapshot_seq, snapshot_tick, \
    ended_reason, latest_invoice, action_url, last_payment_error, created_at, updated_at, creating_until, \
    creating_token, create_trial_days";

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
    /// The store is gone (deleted meanwhile).
    NoStore,
    /// Another request is creating the store's subscription now.
    Busy,
    /// The store has a running subscription (its price may be changed instead).
    Live(VendorRow),
    /// This request creates it, holding the store's creation lease under `token`: a new record
    /// (or one restarted after an ended subscription), or, when `resumed`, a creation whose
    /// answer never came, which may have reached Stripe and is replayed exactly (its key, price
    /// and trial), never replaced.
    Create {
        row: VendorRow,
        resumed: bool,
        token: String,
    },
}

/// What a new creation asks Stripe for, saved with its key before the first attempt.
pub struct NewCreation<'a> {
    pub price: &'a str,
    pub trial_days: Option<i64>,
    pub key: &'a str,
}

/// Takes the store's turn to create its subscription, before Stripe is called: one creation
/// per store at a time, across processes, until `lease_until` (unix ms) if the process dies.
/// A new or restarted record saves `new` (price, trial, idempotency key).
pub async fn claim_create(
    db: &Db,
    store: &StoreId,
    new: &NewCreation<'_>,
    lease_until: i64,
) -> Result<CreateClaim> {
    let now = now_ms();
    let token = format!("{:032x}", rand::random::<u128>());
    let mut tx = db.begin_write().await?;
    if !super::stores::lock_live(&mut tx, store).await? {
        tx.rollback().await?;
        return Ok(CreateClaim::NoStore);
    }
    let inserted = sqlx::query_scalar::<_, String>(
        "INSERT INTO vendor_subscriptions (store_id, create_key, price_id, create_trial_days, creating_until, \
           creating_token, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (store_id) DO NOTHING RETURNING store_id",
    )
    .bind(store.as_str())
    .bind(new.key)
    .bind(new.price)
    .bind(new.trial_days)
    .bind(lease_until)
    .bind(&token)
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
            token,
        }
    } else if row.creating_until.is_some_and(|t| t > now) {
        CreateClaim::Busy
    } else if row.subscription_id.is_some() && row.ended_reason.is_none() {
        CreateClaim::Live(row)
    } else if row.ended_reason.is_some() {
        let sql = format!(
            "UPDATE vendor_subscriptions SET create_key = $2, price_id = $3, create_trial_days = $4, \
               creating_until = $5, creating_token = $6, \
               subscription_id = NULL, item_id = NULL, status = NULL, current_period_end = NULL, trial_end = NULL, \
               cancel_at_period_end = 0, snapshot_at = NULL, snapshot_seq = NULL, snapshot_tick = 0, ended_reason = NULL, \
               latest_invoice = NULL, action_url = NULL, last_payment_error = NULL, updated_at = $7 \
             WHERE store_id = $1 RETURNING {COLUMNS}"
        );
        let row = sqlx::query_as::<_, VendorRow>(&sql)
            .bind(store.as_str())
            .bind(new.key)
            .bind(new.price)
            .bind(new.trial_days)
            .bind(lease_until)
            .bind(&token)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        CreateClaim::Create {
            row,
            resumed: false,
            token,
        }
    } else {
        sqlx::query(
            "UPDATE vendor_subscriptions SET creating_until = $2, creating_token = $3 WHERE store_id = $1",
        )
        .bind(store.as_str())
        .bind(lease_until)
        .bind(&token)
        .execute(&mut *tx)
        .await?;
        CreateClaim::Create {
            row,
            resumed: true,
            token,
        }
    };
    tx.commit().await?;
    Ok(claim)
}

/// Ends this request's creation lease; a lease another request took over is left alone.
pub async fn release_create(db: &Db, store: &StoreId, token: &str) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query(
        "UPDATE vendor_subscriptions SET creating_until = NULL, creating_token = NULL \
         WHERE store_id = $1 AND creating_token = $2",
    )
    .bind(store.as_str())
    .bind(token)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Takes the store's creation lease for another purpose than creating (a forced deletion
/// settling a creation whose answer was lost): its token, or None while a request holds it.
pub async fn take_lease(db: &Db, store: &StoreId, lease_until: i64) -> Result<Option<String>> {
    let _turn = db.write_turn().await;
    let token = format!("{:032x}", rand::random::<u128>());
    let done = sqlx::query(
        "UPDATE vendor_subscriptions SET creating_until = $2, creating_token = $3 \
         WHERE store_id = $1 AND (creating_until IS NULL OR creating_until < $4)",
    )
    .bind(store.as_str())
    .bind(lease_until)
    .bind(&token)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok((done.rows_affected() == 1).then_some(token))
}

/// A creation that made nothing at Stripe (refused, or found to be absent): ended for `reason`,
/// so the next request starts afresh and the store holds nothing live. Only by the holder of
/// the store's creation lease (`token`), so no creation can be running meanwhile.
pub async fn end_creation(db: &Db, store: &StoreId, reason: &str, token: &str) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query(
        "UPDATE vendor_subscriptions SET ended_reason = $3, updated_at = $2 \
         WHERE store_id = $1 AND subscription_id IS NULL AND ended_reason IS NULL AND creating_token = $4",
    )
    .bind(store.as_str())
    .bind(now_ms())
    .bind(reason)
    .bind(token)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Adopts a subscription Stripe made for the store whose answer Bursar never saw: only into a
/// record still waiting for that very creation (`create_key`, which Bursar writes into the
/// subscription's metadata), and only for the store's own platform customer (or, when that
/// answer was lost too, the customer Stripe names). True if adopted.
pub async fn adopt(
    conn: &mut AnyConnection,
    store: &str,
    create_key: &str,
    subscription: &str,
    customer: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE vendor_subscriptions SET subscription_id = $2, customer_id = COALESCE(customer_id, $3), \
           customer_deleted = 0, updated_at = $4 \
         WHERE store_id = $1 AND subscription_id IS NULL AND ended_reason IS NULL \
           AND (customer_id IS NULL OR customer_id = $3) AND create_key = $5",
    )
    .bind(store)
    .bind(subscription)
    .bind(customer)
    .bind(now_ms())
    .bind(create_key)
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

/// Records the subscription Stripe answered with, unless the record already holds another
/// (it is the same creation under the same key, so it can only be the same one).
pub async fn set_subscription(
    db: &Db,
    store: &StoreId,
    subscription: &str,
    item: Option<&str>,
) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query(
        "UPDATE vendor_subscriptions SET subscription_id = $1, item_id = COALESCE($2, item_id), updated_at = $3 \
         WHERE store_id = $4 AND (subscription_id IS NULL OR subscription_id = $1) AND ended_reason IS NULL",
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

/// Merges facts about `subscription` into the store's row (newest snapshot wins, `ended`
/// sticks), reading it under a row lock so that concurrent merges from several processes all
/// land, and only while the row still holds that subscription (a store that started another
/// since never takes its previous one's facts). None if it no longer does; else the vendor
/// status before and the row after.
pub async fn merge(
    conn: &mut AnyConnection,
    store: &str,
    subscription: &str,
    facts: &SubscriptionFacts,
    item: Option<&str>,
) -> Result<Option<(VendorStatus, VendorRow)>> {
    let Some(row) = get_locked(conn, store).await? else {
        return Ok(None);
    };
    if row.subscription_id.as_deref() != Some(subscription) {
        return Ok(None);
    }
    let before = row.facts().vendor_status();
    let merged = row.facts().merge(facts);
    let s = merged.snapshot.as_ref();
    let sql = format!(
        "UPDATE vendor_subscriptions SET status = $1, cancel_at_period_end = $2, current_period_end = $3, \
           trial_end = $4, price_id = COALESCE($5, price_id), snapshot_at = $6, snapshot_seq = $7, \
           ended_reason = $8, item_id = COALESCE($9, item_id), updated_at = $10, snapshot_tick = $12 WHERE store_id = $11 RETURNING {COLUMNS}"
    );
    let after = sqlx::query_as::<_, VendorRow>(&sql)
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
        .fetch_one(&mut *conn)
        .await?;
    Ok(Some((before, after)))
}

/// What the latest invoice of `subscription` asks of the vendor: a hosted URL to act on
/// (cleared when paid) and the last payment error; nothing if the store holds another
/// subscription by now.
pub async fn set_invoice(
    conn: &mut AnyConnection,
    store: &str,
    subscription: &str,
    invoice: &str,
    action_url: Option<&str>,
    error: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE vendor_subscriptions SET latest_invoice = $1, action_url = $2, last_payment_error = $3, updated_at = $4 \
         WHERE store_id = $5 AND subscription_id = $6",
    )
    .bind(invoice)
    .bind(action_url)
    .bind(error)
    .bind(now_ms())
    .bind(store)
    .bind(subscription)
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

    fn creation(key: &str) -> NewCreation<'_> {
        NewCreation {
            price: "price_1",
            trial_days: None,
            key,
        }
    }

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
            let claim = claim_create(&db, &store, &creation(&key), now_ms() + 60_000)
                .await
                .unwrap();
            assert!(matches!(claim, CreateClaim::Create { resumed: false, .. }));
            set_subscription(&db, &store, &format!("sub_{round}"), None)
                .await
                .unwrap();
            let events = [
                snapshot(10, "past_due"),
                SubscriptionFacts {
                    ended: Some("payment_failed".into()),
                    ..snapshot(5, "canceled")
                },
            ];
            let start = Arc::new(tokio::sync::Barrier::new(2));
            let merges = events.iter().enumerate().map(|(i, f)| {
                let (d, start, store, f, sub) = (
                    if i == 0 { db.clone() } else { other.clone() },
                    start.clone(),
                    store.to_string(),
                    f.clone(),
                    format!("sub_{round}"),
                );
                tokio::spawn(async move {
                    start.wait().await;
                    let mut tx = d.begin_write().await.unwrap();
                    assert!(merge(&mut tx, &store, &sub, &f, None)
                        .await
                        .unwrap()
                        .is_some());
                    tx.commit().await.unwrap();
                })
            });
            for m in futures::future::join_all(merges).await {
                m.unwrap();
            }
            let mut tx = db.begin_write().await.unwrap();
            let newer = snapshot(99, "active");
            let merged = merge(&mut tx, store.as_str(), "sub_previous", &newer, None);
            assert!(
                merged.await.unwrap().is_none(),
                "another subscription's facts were merged"
            );
            tx.commit().await.unwrap();
            let row = get(db.pool(), &store).await.unwrap().unwrap();
            assert_eq!(
                row.ended_reason.as_deref(),
                Some("payment_failed"),
                "the ended marker was lost"
            );
            assert_eq!(row.snapshot_at, Some(10), "the newer snapshot was lost");
        }
    }

    /// One creation per store at a time, resumed under its first key; a lease's end by another
    /// request never ends the current holder's.
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
        let CreateClaim::Create {
            resumed: false,
            token: first,
            ..
        } = claim_create(&db, &store, &creation("a"), lease)
            .await
            .unwrap()
        else {
            panic!("the first request creates");
        };
        assert!(matches!(
            claim_create(&db, &store, &creation("b"), lease)
                .await
                .unwrap(),
            CreateClaim::Busy
        ));
        release_create(&db, &store, "not-the-holder").await.unwrap();
        assert!(matches!(
            claim_create(&db, &store, &creation("b"), lease)
                .await
                .unwrap(),
            CreateClaim::Busy
        ));
        release_create(&db, &store, &first).await.unwrap();
        // Its answer never came: the next request resumes it, with the first key and price.
        let token = match claim_create(&db, &store, &creation("c"), lease)
            .await
            .unwrap()
        {
            CreateClaim::Create {
                row,
                resumed,
                token,
            } => {
                assert!(resumed);
                assert_eq!(
                    (row.create_key.as_str(), row.price_id.as_str()),
                    ("a", "price_1")
                );
                token
            }
            other => panic!("{other:?}"),
        };
        set_subscription(&db, &store, "sub_1", None).await.unwrap();
        // Another answer never replaces the subscription the record holds.
        set_subscription(&db, &store, "sub_2", None).await.unwrap();
        assert_eq!(
            get(db.pool(), &store)
                .await
                .unwrap()
                .unwrap()
                .subscription_id
                .as_deref(),
            Some("sub_1")
        );
        release_create(&db, &store, &token).await.unwrap();
        assert!(matches!(
            claim_create(&db, &store, &creation("d"), lease)
                .await
                .unwrap(),
            CreateClaim::Live(_)
        ));
        // A lease whose process died ends by itself.
        sqlx::query("UPDATE vendor_subscriptions SET creating_until = $1, subscription_id = NULL")
            .bind(now_ms() - 1)
            .execute(db.pool())
            .await
            .unwrap();
        assert!(matches!(
            claim_create(&db, &store, &creation("e"), lease)
                .await
                .unwrap(),
            CreateClaim::Create { resumed: true, .. }
        ));
        // A deleted store takes no creation.
        let gone = StoreId::generate();
        assert!(matches!(
            claim_create(&db, &gone, &creation("f"), lease)
                .await
                .unwrap(),
            CreateClaim::NoStore
        ));
    }
}

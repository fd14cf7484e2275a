//! PostgreSQL's inbox: a batch of deliveries is one prepared statement, its columns
//! bound as arrays (`UNNEST`), that inserts the inbox rows and the payloads of the new ones
//! and commits on its own. Several batches may be in flight at once, each on its own
//! connection, so PostgreSQL flushes their commits together.
//!
//! This runs on the native driver, beside the `Any` pool: `Any` binds no arrays, and a
//! multi-row `VALUES` has a different statement text for each batch size, so the server would
//! parse and plan most batches anew. The connections are kept here rather than in a sqlx
//! pool, which pings a connection each time it is returned (and, by default, taken): two more
//! round trips per batch than the batch itself. Deliveries reach the writer through
//! `group_commit`; claims run on the worker's pool, as its other transactions do.

mod group_commit;

use std::collections::HashMap;
use std::sync::Mutex;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AnyPool, Connection, Executor};

pub(super) use group_commit::{deliver, group_commit, Queue};

use super::claim_sql;
use super::operator::payloads_on;
use super::rows::{Claimed, EventRow, Finish, InsertedBatch, Lease, NewEvent, NewStatus};
use crate::db::{now_ms, Engine, Result};

/// Batches a writer may have in flight: while one waits for its commit's flush, the next is
/// already being written.
pub const PIPELINE: u32 = 3;

/// `$1`–`$8` the new deliveries' columns (one array each, duplicates removed), `$9` their
/// payloads; `$10`–`$13` the status columns every row gets, `$14` now. Connect events get
/// their store from the account that owns them, when one is known. The payloads are written
/// only for rows that were inserted, so a redelivery writes nothing.
const INSERT: &str = "\
WITH batch AS (
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::bigint[], $8::bigint[], $9::text[])
        AS b(source, event_id, event_type, scope, store_id, account_id, livemode, stripe_created, payload)
), stored AS (
    INSERT INTO events (source, event_id, event_type, scope, store_id, account_id, livemode,
                        stripe_created, status, claim_token, attempts, next_attempt_at, received_at)
    SELECT source, event_id, event_type, scope,
           COALESCE(store_id, (SELECT c.store_id FROM connections c
                                WHERE c.kind = 'connect' AND c.account_id = batch.account_id)),
           account_id, livemode, stripe_created, $10, $11, $12, $13, $14
    FROM batch
    ON CONFLICT (source, event_id) DO NOTHING
    RETURNING seq, source, event_id, store_id
), payloads AS (
    INSERT INTO event_payloads (seq, payload)
    SELECT stored.seq, batch.payload FROM stored JOIN batch USING (source, event_id)
)
SELECT seq, source, event_id, store_id FROM stored";

/// `$1` seqs, `$2` outcomes, `$3` notes, `$4` stores (set on rows that have none), `$5` now,
/// `$6` the claim token: only rows still under that claim change.
const FINISH: &str = "\
UPDATE events AS e SET status = f.outcome, last_error = f.note,
       applied_at = CASE WHEN f.outcome = 'applied' THEN $5 ELSE NULL END,
       claim_token = NULL, store_id = COALESCE(e.store_id, f.store_id)
FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[]) AS f(seq, outcome, note, store_id)
WHERE e.seq = f.seq AND e.claim_token = $6";

/// The finish connection runs `FINISH` only. Its plan is made once and kept, and that plan is
/// the one that is right at any size: for each finish, the event by its primary key. Left to
/// the statistics, a plan made while the inbox is small (a sequential scan) stays cached while
/// a burst grows the table faster than autovacuum analyzes it, and each batch of finishes then
/// reads the whole table, so the worker falls seconds behind. Planning every call would avoid
/// that too, but planning would then take a large share of this connection's CPU.
const FINISH_SETUP: &str =
    "SET synchronous_commit = off; SET plan_cache_mode = force_generic_plan; \
     SET enable_seqscan = off; SET enable_hashjoin = off; SET enable_mergejoin = off";

/// What the insert returns of each new row: seq, source, event id, store.
type StoredRow = (i64, String, String, Option<String>);

#[derive(Debug)]
pub struct Writer {
    /// Commits that wait for their WAL flush: the deliveries, answered 2xx once stored.
    inserts: Connections,
    /// Commits that do not: the worker's effect-free outcomes (see `Db::connect`).
    finishes: Connections,
    /// The worker's pool, whose commits do not wait for the flush either: claims.
    apply: AnyPool,
    /// The shared pool: the claimed events' payloads.
    read: AnyPool,
}

/// Connections of one kind between uses, set up with `setup` when opened.
#[derive(Debug)]
struct Connections {
    options: PgConnectOptions,
    setup: &'static str,
    /// One per use in flight, up to `keep`.
    idle: Mutex<Vec<PgConnection>>,
    keep: usize,
}

impl Connections {
    fn new(options: PgConnectOptions, setup: &'static str, keep: usize) -> Self {
        Self {
            options,
            setup,
            idle: Mutex::new(Vec::with_capacity(keep)),
            keep,
        }
    }

    async fn take(&self) -> Result<PgConnection> {
        let idle = self.idle().pop();
        match idle {
            Some(conn) => Ok(conn),
            None => {
                let mut conn = PgConnection::connect_with(&self.options).await?;
                conn.execute(self.setup).await?;
                Ok(conn)
            }
        }
    }

    /// Keeps `conn` for the next use unless `result` says it may be broken (it failed other
    /// than by the database refusing the statement): then it is dropped, and the next use
    /// opens a new one.
    fn put_back<T>(&self, conn: PgConnection, result: &sqlx::Result<T>) {
        let mut idle = self.idle();
        if matches!(result, Ok(_) | Err(sqlx::Error::Database(_))) && idle.len() < self.keep {
            idle.push(conn);
        }
    }

    async fn close(&self) {
        let idle = std::mem::take(&mut *self.idle());
        for conn in idle {
            let _ = conn.close().await;
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<PgConnection>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The columns of a batch's distinct deliveries, as the statement binds them.
#[derive(Default)]
struct Columns<'a> {
    source: Vec<&'a str>,
    event_id: Vec<&'a str>,
    event_type: Vec<&'a str>,
    scope: Vec<&'a str>,
    store_id: Vec<Option<&'a str>>,
    account_id: Vec<Option<&'a str>>,
    livemode: Vec<i64>,
    created: Vec<i64>,
    payload: Vec<&'a str>,
}

impl<'a> Columns<'a> {
    /// The first delivery of each id; a later one in the same batch is a duplicate of it.
    fn distinct(events: &'a [NewEvent]) -> Self {
        let mut seen = std::collections::HashSet::with_capacity(events.len());
        let mut c = Self::default();
        for e in events {
            if !seen.insert((e.source.as_str(), e.event_id.as_str())) {
                continue;
            }
            c.source.push(&e.source);
            c.event_id.push(&e.event_id);
            c.event_type.push(&e.event_type);
            c.scope.push(e.scope);
            c.store_id.push(e.store_id.as_deref());
            c.account_id.push(e.account_id.as_deref());
            c.livemode.push(i64::from(e.livemode));
            c.created.push(e.created);
            c.payload.push(&e.payload);
        }
        c
    }
}

impl Writer {
    /// Opens the first connection, so a database that cannot be reached fails at start.
    pub async fn connect(options: PgConnectOptions, apply: AnyPool, read: AnyPool) -> Result<Self> {
        let inbox = Self {
            // Durable before the 2xx, whatever the server's default.
            inserts: Connections::new(
                options.clone(),
                "SET synchronous_commit = on",
                PIPELINE as usize,
            ),
            finishes: Connections::new(options, FINISH_SETUP, 1),
            apply,
            read,
        };
        let first = inbox.inserts.take().await?;
        inbox.inserts.put_back(first, &Ok(()));
        Ok(inbox)
    }

    /// Stores a batch in one statement (one commit), the new events claimed under `lease` if
    /// one is given. Returns each delivery's result, in order.
    pub async fn insert(
        &self,
        events: Vec<NewEvent>,
        lease: Option<&Lease>,
    ) -> Result<InsertedBatch> {
        let now = now_ms();
        let status = NewStatus::new(lease, now);
        let c = Columns::distinct(&events);
        let mut conn = self.inserts.take().await?;
        let rows: sqlx::Result<Vec<StoredRow>> = sqlx::query_as(INSERT)
            .bind(&c.source)
            .bind(&c.event_id)
            .bind(&c.event_type)
            .bind(&c.scope)
            .bind(&c.store_id)
            .bind(&c.account_id)
            .bind(&c.livemode)
            .bind(&c.created)
            .bind(&c.payload)
            .bind(status.status)
            .bind(status.token)
            .bind(status.attempts)
            .bind(status.next_attempt_at)
            .bind(now)
            .fetch_all(&mut conn)
            .await;
        drop(c);
        self.inserts.put_back(conn, &rows);
        let rows = rows?;
        let mut stored: HashMap<(String, String), (i64, Option<String>)> = rows
            .into_iter()
            .map(|(seq, source, event_id, store)| ((source, event_id), (seq, store)))
            .collect();
        let mut batch = InsertedBatch::default();
        for e in events {
            let row = stored.remove(&(e.source.clone(), e.event_id.clone()));
            batch.push(&status, e, row, now);
        }
        Ok(batch)
    }

    /// Writes effect-free outcomes of events claimed under `token`, in one statement; returns
    /// how many were still ours.
    pub async fn finish(&self, token: &str, finishes: Vec<Finish>) -> Result<usize> {
        let seqs: Vec<i64> = finishes.iter().map(|f| f.seq).collect();
        let outcomes: Vec<&str> = finishes.iter().map(|f| f.outcome.as_str()).collect();
        let notes: Vec<Option<&str>> = finishes.iter().map(|f| f.note.as_deref()).collect();
        let stores: Vec<Option<&str>> = finishes.iter().map(|f| f.store_id.as_deref()).collect();
        let mut conn = self.finishes.take().await?;
        let done = sqlx::query(FINISH)
            .bind(&seqs)
            .bind(&outcomes)
            .bind(&notes)
            .bind(&stores)
            .bind(now_ms())
            .bind(token)
            .execute(&mut conn)
            .await;
        self.finishes.put_back(conn, &done);
        Ok(done?.rows_affected() as usize)
    }

    /// Claims due events in one transaction on the worker's pool, then reads their payloads.
    pub async fn claim(&self, token: &str, limit: i64, lease_ms: i64) -> Result<Vec<Claimed>> {
        let now = now_ms();
        let mut tx = self.apply.begin().await?;
        let mut rows = sqlx::query_as::<_, EventRow>(&claim_sql(Engine::Postgres))
            .bind(token)
            .bind(now + lease_ms)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.sort_by_key(|r| r.seq);
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        let mut payloads = payloads_on(&self.read, Engine::Postgres, &seqs).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let p = payloads.remove(&r.seq);
                (r, p)
            })
            .collect())
    }

    pub async fn close(&self) {
        self.inserts.close().await;
        self.finishes.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::inbox::{Inserted, Outcome};
    use crate::db::Db;

    /// The PostgreSQL writer behind the database's inbox.
    fn writer(db: &Db) -> &Writer {
        match &db.inbox().0 {
            super::super::Writer::Postgres(w) => w,
            super::super::Writer::Sqlite(_) => panic!("a PostgreSQL database has its writer"),
        }
    }

    /// A fresh database on the PostgreSQL run's server; None on the SQLite run.
    async fn fresh() -> Option<Db> {
        let url = std::env::var("BURSAR_TEST_DATABASE_URL").ok()?;
        let url = crate::db::testing::fresh_postgres(&url).await;
        Some(Db::open(&url).await.unwrap())
    }

    fn event(id: &str) -> NewEvent {
        NewEvent::platform_balance(id.into(), format!(r#"{{"id":"{id}"}}"#))
    }

    async fn row(db: &Db, id: &str) -> (String, Option<String>, Option<i64>, String) {
        sqlx::query_as(
            "SELECT e.status, e.last_error, e.applied_at, p.payload \
             FROM events e JOIN event_payloads p ON p.seq = e.seq WHERE e.event_id = $1",
        )
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_batch_is_stored_once_per_id_and_finishes_touch_only_rows_still_claimed() {
        let Some(db) = fresh().await else {
            return; // the SQLite run: its inbox thread has its own tests
        };
        let inbox = writer(&db);
        let lease = Lease {
            token: "ours".into(),
            until: now_ms() + 60_000,
        };
        let batch = ["evt_a", "evt_b", "evt_a", "evt_c"].map(event).to_vec();
        let stored = inbox.insert(batch, Some(&lease)).await.unwrap();
        let seqs: Vec<i64> = stored.claimed.iter().map(|(r, _)| r.seq).collect();
        assert_eq!(seqs.len(), 3, "three distinct ids, claimed as inserted");
        assert!(
            matches!(stored.results[..], [Inserted::New(a), Inserted::New(b), Inserted::Duplicate, Inserted::New(c)] if [a, b, c] == seqs[..])
        );
        let again = inbox.insert(vec![event("evt_b")], None).await.unwrap();
        assert!(matches!(again.results[..], [Inserted::Duplicate]));
        assert_eq!(row(&db, "evt_b").await.3, r#"{"id":"evt_b"}"#);

        sqlx::query("UPDATE events SET claim_token = 'theirs' WHERE event_id = 'evt_c'")
            .execute(db.pool())
            .await
            .unwrap();
        let finish = |seq, outcome, note: Option<&str>| Finish {
            seq,
            outcome,
            store_id: None,
            note: note.map(Into::into),
        };
        let finishes = vec![
            finish(seqs[0], Outcome::Applied, None),
            finish(seqs[1], Outcome::Unrouted, Some("no store")),
            finish(seqs[2], Outcome::Applied, None),
        ];
        assert_eq!(inbox.finish("ours", finishes).await.unwrap(), 2);
        let (status, error, applied_at, payload) = row(&db, "evt_a").await;
        assert_eq!((status.as_str(), error), ("applied", None));
        assert!(applied_at.is_some());
        assert_eq!(payload, r#"{"id":"evt_a"}"#);
        let (status, error, applied_at, _) = row(&db, "evt_b").await;
        assert_eq!(
            (status.as_str(), error.as_deref(), applied_at),
            ("unrouted", Some("no store"), None)
        );
        assert_eq!(
            row(&db, "evt_c").await.0,
            "processing",
            "taken over: not ours"
        );
    }

    /// The finish connection's plan finds each event by its primary key, though it is made
    /// while the inbox is known to be tiny: a burst never turns it into a scan of the table.
    #[tokio::test]
    async fn the_finish_plan_seeks_each_event_by_its_key_at_any_size() {
        let Some(db) = fresh().await else {
            return; // the SQLite run: its finishes are single-row updates by rowid
        };
        let inbox = writer(&db);
        let batch = ["evt_a", "evt_b", "evt_c"].map(event).to_vec();
        inbox.insert(batch, None).await.unwrap();
        sqlx::query("ANALYZE events")
            .execute(db.pool())
            .await
            .unwrap();
        let mut conn = inbox.finishes.take().await.unwrap();
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {FINISH}"))
            .bind(vec![1_i64, 2])
            .bind(vec!["applied", "applied"])
            .bind(vec![None::<&str>, None])
            .bind(vec![None::<&str>, None])
            .bind(0_i64)
            .bind("token")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("Index Scan using events_pkey"), "{plan}");
        assert!(!plan.contains("Seq Scan"), "{plan}");
    }

    /// A lookup by Stripe event id seeks the unique `(source, event_id)` index on PostgreSQL
    /// too, once the planner knows the inbox is large: no sequential scan of every event.
    #[tokio::test]
    async fn a_lookup_by_event_id_seeks_the_index_through_every_source() {
        let Some(db) = fresh().await else {
            return; // the SQLite run: its plan is checked in `inbox::sqlite`
        };
        sqlx::query(
            "INSERT INTO events (source, event_id, event_type, scope, livemode, stripe_created, \
               status, next_attempt_at, received_at) \
             SELECT (ARRAY['platform', 'connect', 'store:st_a'])[1 + i % 3], 'evt_' || (i / 3), \
               'balance.available', 'platform', 0, 1, 'applied', 0, 0 \
             FROM generate_series(0, 29999) AS i",
        )
        .execute(db.pool())
        .await
        .unwrap();
        sqlx::query("ANALYZE events")
            .execute(db.pool())
            .await
            .unwrap();
        for by_source in [false, true] {
            let sql = format!(
                "EXPLAIN {}",
                super::super::operator::by_event_id_sql(by_source)
            );
            let explain = sqlx::query_scalar::<_, String>(&sql).bind("evt_7");
            let explain = if by_source {
                explain.bind("connect")
            } else {
                explain
            };
            let plan = explain.fetch_all(db.pool()).await.unwrap().join("\n");
            assert!(!plan.contains("Seq Scan"), "{plan}");
            assert!(plan.contains("events_source_event_id_key"), "{plan}");
        }
        let sources = |rows: Vec<crate::db::inbox::EventRow>| -> Vec<String> {
            rows.into_iter().map(|r| r.source).collect()
        };
        let all = crate::db::inbox::find_by_event_id(&db, "evt_7", None).await;
        assert_eq!(sources(all.unwrap()), ["platform", "connect", "store:st_a"]);
        let one = crate::db::inbox::find_by_event_id(&db, "evt_7", Some("store:st_a")).await;
        assert_eq!(sources(one.unwrap()), ["store:st_a"]);
        let none = crate::db::inbox::find_by_event_id(&db, "evt_30000", None).await;
        assert!(none.unwrap().is_empty());
    }
}

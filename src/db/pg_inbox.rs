//! PostgreSQL's inbox writes: a batch of deliveries is one prepared statement, its columns
//! bound as arrays (`UNNEST`), that inserts the inbox rows and the payloads of the new ones
//! and commits on its own. Several batches may be in flight at once, each on its own
//! connection, so PostgreSQL flushes their commits together.
//!
//! This runs on the native driver, beside the `Any` pool: `Any` binds no arrays, and a
//! multi-row `VALUES` of one statement text per batch size was parsed and planned anew for
//! most batches (two thirds of a commit's time in the server log).

use std::collections::HashMap;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::inbox::{InsertedBatch, Lease, NewEvent, NewStatus};
use super::{now_ms, Result};

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

#[derive(Debug)]
pub struct PgInbox {
    pool: PgPool,
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

impl PgInbox {
    /// A pool of `PIPELINE` connections to the database the main pool uses.
    pub async fn connect(options: PgConnectOptions) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(PIPELINE)
            .acquire_timeout(std::time::Duration::from_secs(10))
            // Durable before the 2xx, whatever the server's default: each commit waits for its
            // WAL flush.
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::Executor::execute(conn, "SET synchronous_commit = on").await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// Stores a batch in one statement (one commit), the new events claimed under `lease` if
    /// one is given. Returns each delivery's result, in order.
    pub async fn insert_batch(
        &self,
        events: Vec<NewEvent>,
        lease: Option<&Lease>,
    ) -> Result<InsertedBatch> {
        let now = now_ms();
        let status = NewStatus::new(lease, now);
        let c = Columns::distinct(&events);
        let rows: Vec<(i64, String, String, Option<String>)> = sqlx::query_as(INSERT)
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
            .fetch_all(&self.pool)
            .await?;
        drop(c);
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

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

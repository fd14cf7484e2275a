//! The webhook inbox: insert (many deliveries per commit), claim with a lease, and finish.
//!
//! A claim sets `next_attempt_at` to the lease's end, so one partial index over unfinished
//! rows serves both new work and work whose worker died.

use std::collections::{HashMap, HashSet};

use sqlx::{Any, Executor, FromRow};

use super::{now_ms, Db, Engine, Result};

/// A verified delivery, ready to be stored.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Uniqueness domain of `event_id`: `platform`, `connect` or `store:<id>`.
    pub source: String,
    pub event_id: String,
    pub event_type: String,
    pub scope: &'static str,
    pub store_id: Option<String>,
    pub account_id: Option<String>,
    pub livemode: bool,
    pub created: i64,
    pub payload: String,
}

#[cfg(test)]
impl NewEvent {
    /// A platform `balance.available` event, for tests of the inbox's storage.
    pub fn platform_balance(event_id: String, payload: String) -> Self {
        Self {
            source: "platform".into(),
            event_id,
            event_type: "balance.available".into(),
            scope: "platform",
            store_id: None,
            account_id: None,
            livemode: false,
            created: 0,
            payload,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New(i64),
    Duplicate,
}

/// The most deliveries one commit stores.
pub const MAX_BATCH: usize = 512;

/// Rows per INSERT statement: 14 parameters each, far below both engines' limits.
const INSERT_CHUNK: usize = 100;

/// A claim taken at insert: the new rows go straight to this process's worker (see `handoff`).
#[derive(Debug, Clone)]
pub struct Lease {
    pub token: String,
    /// When the lease runs out (unix ms) and any worker may claim the event again.
    pub until: i64,
}

/// A claimed event with its raw payload.
pub type Claimed = (EventRow, Option<String>);

/// What inserting a batch did: each delivery's result, in order, and (under a lease) the new
/// events as claimed.
#[derive(Debug, Default)]
pub struct InsertedBatch {
    pub results: Vec<Inserted>,
    pub claimed: Vec<Claimed>,
}

impl InsertedBatch {
    /// Records one delivery: new (and claimed, under a lease) when `row` (its seq and store)
    /// was inserted, else a duplicate.
    pub(super) fn push(
        &mut self,
        status: &NewStatus<'_>,
        e: NewEvent,
        row: Option<(i64, Option<String>)>,
        now: i64,
    ) {
        match row {
            Some((seq, store_id)) => {
                self.results.push(Inserted::New(seq));
                if status.token.is_some() {
                    self.claimed.push(status.claimed(e, seq, store_id, now));
                }
            }
            None => self.results.push(Inserted::Duplicate),
        }
    }
}

/// The status columns of a new row: claimed under `lease`, or pending.
pub(super) struct NewStatus<'a> {
    pub status: &'static str,
    pub token: Option<&'a str>,
    pub attempts: i64,
    pub next_attempt_at: i64,
}

impl<'a> NewStatus<'a> {
    pub fn new(lease: Option<&'a Lease>, now: i64) -> Self {
        match lease {
            Some(l) => Self {
                status: "processing",
                token: Some(&l.token),
                attempts: 1,
                next_attempt_at: l.until,
            },
            None => Self {
                status: "pending",
                token: None,
                attempts: 0,
                next_attempt_at: now,
            },
        }
    }

    /// The row a worker would have claimed, built from what was just inserted.
    pub fn claimed(&self, e: NewEvent, seq: i64, store_id: Option<String>, now: i64) -> Claimed {
        let row = EventRow {
            seq,
            source: e.source,
            event_id: e.event_id,
            event_type: e.event_type,
            scope: e.scope.to_owned(),
            store_id,
            account_id: e.account_id,
            livemode: i64::from(e.livemode),
            stripe_created: e.created,
            status: self.status.to_owned(),
            attempts: self.attempts,
            next_attempt_at: self.next_attempt_at,
            last_error: None,
            received_at: now,
            applied_at: None,
        };
        (row, Some(e.payload))
    }
}

/// Stores a batch in one transaction (one fsync for all of them); Connect events get their
/// store from the account that owns them, when one is known.
pub async fn insert_batch(db: &Db, events: Vec<NewEvent>) -> Result<Vec<Inserted>> {
    Ok(insert_claimed(db, events, None).await?.results)
}

/// Stores a batch in one transaction, the new events claimed under `lease` if one is given:
/// through the inbox's writer (SQLite's inbox thread, PostgreSQL's `pg_inbox`), else (an
/// in-memory SQLite database) two statements per 100 rows on the pool.
pub async fn insert_claimed(
    db: &Db,
    events: Vec<NewEvent>,
    lease: Option<&Lease>,
) -> Result<InsertedBatch> {
    if let Some(writer) = db.sqlite_inbox() {
        return writer.insert_batch(events, lease.cloned()).await;
    }
    if let Some(writer) = db.pg_inbox() {
        return writer.insert_batch(events, lease).await;
    }
    let now = now_ms();
    let status = NewStatus::new(lease, now);
    let mut tx = db.begin_write().await?;
    let mut stored = HashMap::with_capacity(events.len());
    for chunk in events.chunks(INSERT_CHUNK) {
        let mut sql = String::from(
            "INSERT INTO events (source, event_id, event_type, scope, store_id, account_id, livemode, stripe_created, \
               status, claim_token, attempts, next_attempt_at, received_at) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            let p = |n: usize| placeholder(db.engine(), i * 14 + n);
            sql.push_str(&format!(
                "({}, {}, {}, {}, COALESCE({}, (SELECT store_id FROM connections WHERE kind = 'connect' AND account_id = {})), \
                 {}, {}, {}, {}, {}, {}, {}, {})",
                p(1), p(2), p(3), p(4), p(5), p(6), p(7), p(8), p(9), p(10), p(11), p(12), p(13), p(14)
            ));
        }
        sql.push_str(
            " ON CONFLICT (source, event_id) DO NOTHING RETURNING seq, source, event_id, store_id",
        );
        let mut query = sqlx::query_as::<_, (i64, String, String, Option<String>)>(&sql);
        for e in chunk {
            query = query
                .bind(&e.source)
                .bind(&e.event_id)
                .bind(&e.event_type)
                .bind(e.scope)
                .bind(e.store_id.as_deref())
                .bind(e.account_id.as_deref())
                .bind(e.account_id.as_deref())
                .bind(i64::from(e.livemode))
                .bind(e.created)
                .bind(status.status)
                .bind(status.token)
                .bind(status.attempts)
                .bind(status.next_attempt_at)
                .bind(now);
        }
        // Full chunks repeat the same text, so their prepared statement is reused.
        let persistent = chunk.len() == INSERT_CHUNK;
        let mut new = HashSet::with_capacity(chunk.len());
        for (seq, source, event_id, store_id) in
            query.persistent(persistent).fetch_all(&mut *tx).await?
        {
            new.insert(seq);
            stored.insert((source, event_id), (seq, store_id));
        }
        if new.is_empty() {
            continue;
        }
        let mut sql = String::from("INSERT INTO event_payloads (seq, payload) VALUES ");
        for i in 0..new.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "({}, {})",
                placeholder(db.engine(), i * 2 + 1),
                placeholder(db.engine(), i * 2 + 2)
            ));
        }
        let mut query = sqlx::query(&sql);
        for e in chunk {
            // The first delivery of each new id carries its payload.
            if let Some((seq, _)) = stored.get(&(e.source.clone(), e.event_id.clone())) {
                if new.remove(seq) {
                    query = query.bind(*seq).bind(&e.payload);
                }
            }
        }
        query
            .persistent(chunk.len() == INSERT_CHUNK)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    // The first delivery of an id in the batch is the stored one; any other is a duplicate.
    let mut batch = InsertedBatch::default();
    for e in events {
        let row = stored.remove(&(e.source.clone(), e.event_id.clone()));
        batch.push(&status, e, row, now);
    }
    Ok(batch)
}

/// The raw payloads of these events, by seq.
pub async fn payloads(db: &Db, seqs: &[i64]) -> Result<HashMap<i64, String>> {
    let mut out = HashMap::with_capacity(seqs.len());
    for chunk in seqs.chunks(INSERT_CHUNK * 5) {
        let list = (1..=chunk.len())
            .map(|n| placeholder(db.engine(), n))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!("SELECT seq, payload FROM event_payloads WHERE seq IN ({list})");
        let mut query = sqlx::query_as::<_, (i64, String)>(&sql);
        for seq in chunk {
            query = query.bind(*seq);
        }
        out.extend(query.persistent(false).fetch_all(db.pool()).await?);
    }
    Ok(out)
}

/// One stored event, as workers and operators see it.
#[derive(Debug, Clone, FromRow)]
pub struct EventRow {
    pub seq: i64,
    pub source: String,
    pub event_id: String,
    pub event_type: String,
    pub scope: String,
    pub store_id: Option<String>,
    pub account_id: Option<String>,
    pub livemode: i64,
    pub stripe_created: i64,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub received_at: i64,
    pub applied_at: Option<i64>,
}

const COLUMNS: &str =
    "seq, source, event_id, event_type, scope, store_id, account_id, livemode, stripe_created, \
    status, attempts, next_attempt_at, last_error, received_at, applied_at";

/// Claims up to `limit` due events for `lease_ms`, under `token`, with their raw payloads.
pub async fn claim_with_payloads(
    db: &Db,
    token: &str,
    limit: i64,
    lease_ms: i64,
) -> Result<Vec<Claimed>> {
    if let Some(thread) = db.sqlite_inbox() {
        let claim = super::sqlite_inbox::Claim {
            token: token.to_owned(),
            limit,
            lease_ms,
        };
        return thread.claim(claim).await;
    }
    let rows = claim(db, token, limit, lease_ms).await?;
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let mut payloads = payloads(db, &seqs).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let p = payloads.remove(&r.seq);
            (r, p)
        })
        .collect())
}

/// Claims up to `limit` due events for `lease_ms`, under `token`.
async fn claim(db: &Db, token: &str, limit: i64, lease_ms: i64) -> Result<Vec<EventRow>> {
    let now = now_ms();
    let sql = claim_sql(db.engine());
    let mut tx = db.begin_apply().await?;
    let mut rows = sqlx::query_as::<_, EventRow>(&sql)
        .bind(token)
        .bind(now + lease_ms)
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    rows.sort_by_key(|r| r.seq);
    Ok(rows)
}

/// The n-th (1-based) parameter of a long generated statement. SQLite binds `$N` by looking
/// each name up in a list (quadratic in the parameter count); plain `?` is bound by position.
fn placeholder(engine: Engine, n: usize) -> String {
    match engine {
        Engine::Sqlite => "?".to_owned(),
        Engine::Postgres => format!("${n}"),
    }
}

/// The claim: `$1` token, `$2` lease end, `$3` now, `$4` limit (the SQLite inbox thread runs the
/// same text).
pub(super) fn claim_sql(engine: Engine) -> String {
    format!(
        "UPDATE events SET status = 'processing', claim_token = $1, next_attempt_at = $2, attempts = attempts + 1 \
         WHERE seq IN ({}) RETURNING {COLUMNS}",
        due_subquery(engine)
    )
}

/// Due work in the order it fell due. PostgreSQL skips rows another process is claiming;
/// SQLite has one writer, so there is nothing to skip.
fn due_subquery(engine: Engine) -> String {
    let lock = match engine {
        Engine::Sqlite => "",
        Engine::Postgres => " FOR UPDATE SKIP LOCKED",
    };
    format!(
        "SELECT seq FROM events WHERE {} AND next_attempt_at <= $3 ORDER BY next_attempt_at LIMIT $4{lock}",
        unfinished(engine)
    )
}

/// Events not yet finished: the predicate of the `events_due` partial index, which a query must
/// repeat as written for SQLite to use that index. SQLite tests an `IN` list of over two values
/// through a temporary B-tree, built anew each time an insert or update checks a row against
/// the index (a fifth of the inbox thread's time), so its index spells the list out as `OR`s.
pub(super) fn unfinished(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => "(status = 'pending' OR status = 'retrying' OR status = 'processing')",
        Engine::Postgres => "status IN ('pending', 'retrying', 'processing')",
    }
}

/// Final states an event can be finished in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Stored and acknowledged, deliberately not applied (unknown type, livemode mismatch).
    Ignored,
    /// A Connect event whose account belongs to no store.
    Unrouted,
}

impl Outcome {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Ignored => "ignored",
            Outcome::Unrouted => "unrouted",
        }
    }
}

/// A claimed event's outcome when it has no effects to write: only its row changes. On SQLite
/// these are written by the inbox thread, in its next commit (see `sqlite_inbox`).
#[derive(Debug)]
pub struct Finish {
    pub seq: i64,
    pub outcome: Outcome,
    pub store_id: Option<String>,
    pub note: Option<String>,
}

/// True when the inbox's writer also writes effect-free outcomes (`finish_through_writer`); else they
/// go in the worker's own transaction.
pub fn writer_finishes_outcomes(db: &Db) -> bool {
    db.sqlite_inbox().is_some() || db.pg_inbox().is_some()
}

/// Writes effect-free outcomes of events claimed under `token` through the inbox's writer
/// (SQLite: in the inbox thread's next commit; PostgreSQL: one statement); returns how many
/// were still ours.
pub async fn finish_through_writer(db: &Db, token: &str, finishes: Vec<Finish>) -> Result<usize> {
    if finishes.is_empty() {
        return Ok(0);
    }
    if let Some(thread) = db.sqlite_inbox() {
        return thread.finish(token, finishes).await;
    }
    match db.pg_inbox() {
        Some(writer) => writer.finish(token, finishes).await,
        None => Err(super::DbError::Aborted(
            "no inbox writer to finish events apart".into(),
        )),
    }
}

/// Finishes a claimed event if the claim is still ours. Returns false when another worker
/// took it over (our lease ran out): the caller must then roll back its effects.
pub async fn finish<'e>(
    ex: impl Executor<'e, Database = Any>,
    seq: i64,
    token: &str,
    outcome: Outcome,
    store_id: Option<&str>,
    note: Option<&str>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE events SET status = $1, last_error = $2, applied_at = CASE WHEN $1 = 'applied' THEN $3 ELSE NULL END, claim_token = NULL, \
         store_id = COALESCE(store_id, $4) WHERE seq = $5 AND claim_token = $6",
    )
    .bind(outcome.as_str())
    .bind(note)
    .bind(now_ms())
    .bind(store_id)
    .bind(seq)
    .bind(token)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Finishes many claimed events with one outcome; returns the seqs that were still ours
/// (any other was taken over by another worker and must get no effects from us).
pub async fn finish_many<'e>(
    ex: impl Executor<'e, Database = Any>,
    engine: Engine,
    seqs: &[i64],
    token: &str,
    outcome: Outcome,
) -> Result<Vec<i64>> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let p = |n: usize| placeholder(engine, n);
    let list = (0..seqs.len())
        .map(|i| p(i + 4))
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!(
        "UPDATE events SET status = {}, applied_at = {}, last_error = NULL, claim_token = NULL \
         WHERE claim_token = {} AND seq IN ({list}) RETURNING seq",
        p(1),
        p(2),
        p(3)
    );
    let mut query = sqlx::query_scalar::<_, i64>(&sql)
        .bind(outcome.as_str())
        .bind(now_ms())
        .bind(token);
    for seq in seqs {
        query = query.bind(*seq);
    }
    Ok(query.persistent(false).fetch_all(ex).await?)
}

/// Records a failed attempt: retried at `retry_at`, or parked as `dead` when `dead`.
pub async fn fail<'e>(
    ex: impl Executor<'e, Database = Any>,
    seq: i64,
    token: &str,
    error: &str,
    retry_at: Option<i64>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE events SET status = $1, last_error = $2, next_attempt_at = $3, claim_token = NULL \
         WHERE seq = $4 AND claim_token = $5",
    )
    .bind(if retry_at.is_some() {
        "retrying"
    } else {
        "dead"
    })
    .bind(error)
    .bind(retry_at.unwrap_or_else(now_ms))
    .bind(seq)
    .bind(token)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Hands a claimed event back unapplied (shutdown, no room to load it now), due at `due_at`;
/// the claim's attempt is not counted.
pub async fn release<'e>(
    ex: impl Executor<'e, Database = Any>,
    token: &str,
    seq: i64,
    due_at: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE events SET status = CASE WHEN attempts > 1 THEN 'retrying' ELSE 'pending' END, \
         attempts = attempts - 1, next_attempt_at = $1, claim_token = NULL \
         WHERE claim_token = $2 AND seq = $3",
    )
    .bind(due_at)
    .bind(token)
    .bind(seq)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// How many events are due now (what a claim would find).
pub async fn due_now(db: &Db) -> Result<i64> {
    let sql = format!(
        "SELECT COUNT(*) FROM events WHERE {} AND next_attempt_at <= $1",
        unfinished(db.engine())
    );
    Ok(sqlx::query_scalar::<_, i64>(&sql)
        .bind(now_ms())
        .fetch_one(db.pool())
        .await?)
}

/// Filters for the operator's event list.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub store_id: Option<String>,
    pub status: Option<String>,
    pub event_type: Option<String>,
}

/// Newest first, before the `before` cursor (a `seq`).
pub async fn list(
    db: &Db,
    filter: &Filter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<EventRow>> {
    let sql = list_sql(filter.store_id.is_some());
    Ok(sqlx::query_as::<_, EventRow>(&sql)
        .bind(before.unwrap_or(i64::MAX))
        .bind(filter.store_id.as_deref())
        .bind(filter.status.as_deref())
        .bind(filter.event_type.as_deref())
        .bind(limit)
        .fetch_all(db.pool())
        .await?)
}

/// The listing: `$1` before, `$2` store, `$3` status, `$4` type, `$5` limit. A store's events
/// come from `events_store`: with `$2 IS NULL OR store_id = $2` the planner reads the whole
/// table backwards, however few events the store has.
pub(super) fn list_sql(by_store: bool) -> String {
    let store = if by_store {
        "store_id = $2"
    } else {
        "($2 IS NULL OR store_id = $2)"
    };
    format!(
        "SELECT {COLUMNS} FROM events WHERE {store} AND seq < $1 \
         AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR event_type = $4) ORDER BY seq DESC LIMIT $5"
    )
}

pub async fn get(db: &Db, seq: i64) -> Result<Option<EventRow>> {
    let sql = format!("SELECT {COLUMNS} FROM events WHERE seq = $1");
    Ok(sqlx::query_as::<_, EventRow>(&sql)
        .bind(seq)
        .fetch_optional(db.pool())
        .await?)
}

/// The rows for a Stripe event id: one per source (endpoint) it arrived through, or the one
/// from `source`. Each source is one seek in the inbox's unique `(source, event_id)` index;
/// without a source, the distinct sources are walked through that same index (`by_event_id_sql`),
/// so a lookup costs a few seeks however many events the inbox holds, not a read of all of them.
pub async fn find_by_event_id(
    db: &Db,
    event_id: &str,
    source: Option<&str>,
) -> Result<Vec<EventRow>> {
    let sql = by_event_id_sql(source.is_some());
    let query = sqlx::query_as::<_, EventRow>(&sql).bind(event_id);
    let query = match source {
        Some(source) => query.bind(source),
        None => query,
    };
    Ok(query.fetch_all(db.pool()).await?)
}

/// `$1` the event id, and `$2` the source when `by_source`. Without one: neither
/// engine skips through an index's leading column by itself (PostgreSQL 15 has no skip scan,
/// SQLite only with `ANALYZE` statistics), so the recursive part does it: each step is the
/// smallest source past the last, one index seek.
pub(super) fn by_event_id_sql(by_source: bool) -> String {
    if by_source {
        return format!(
            "SELECT {COLUMNS} FROM events WHERE source = $2 AND event_id = $1 ORDER BY seq LIMIT 20"
        );
    }
    format!(
        "WITH RECURSIVE sources (name) AS ( \
           SELECT MIN(source) FROM events \
           UNION ALL \
           SELECT (SELECT MIN(e.source) FROM events e WHERE e.source > sources.name) \
           FROM sources WHERE sources.name IS NOT NULL) \
         SELECT {COLUMNS} FROM events \
         WHERE source IN (SELECT name FROM sources WHERE name IS NOT NULL) AND event_id = $1 \
         ORDER BY seq LIMIT 20"
    )
}

/// Puts a finished event back in the queue with a fresh retry budget. Events still in
/// flight (`pending`, `processing`) are left alone and reported as not replayed.
pub async fn replay(db: &Db, seq: i64) -> Result<bool> {
    let _turn = db.write_turn().await;
    let done = sqlx::query(
        "UPDATE events SET status = 'pending', attempts = 0, next_attempt_at = $1, last_error = NULL, claim_token = NULL \
         WHERE seq = $2 AND status IN ('applied', 'ignored', 'unrouted', 'retrying', 'dead')",
    )
    .bind(now_ms())
    .bind(seq)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// When the oldest event not yet finished was received (unix ms), if any waits.
pub async fn oldest_unfinished(db: &Db) -> Result<Option<i64>> {
    let sql = format!(
        "SELECT MIN(received_at) FROM events WHERE {}",
        unfinished(db.engine())
    );
    Ok(sqlx::query_scalar::<_, Option<i64>>(&sql)
        .fetch_one(db.pool())
        .await?)
}

/// How many events are in each status.
pub async fn status_counts(db: &Db) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as::<_, (String, i64)>(
        "SELECT status, COUNT(*) FROM events GROUP BY status ORDER BY status",
    )
    .fetch_all(db.pool())
    .await?)
}

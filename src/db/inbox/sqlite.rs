//! SQLite's inbox: every inbox write, on a dedicated thread with its own connection and cached
//! prepared statements (rusqlite). Through sqlx every statement is a round trip to sqlx's
//! connection thread, and statements of varying length are prepared anew; here a batch of
//! deliveries is one transaction of single-row statements run back to back (one fsync for all).
//! Deliveries come straight from the HTTP handlers: whatever queued while the thread was busy
//! joins its next commit, and the new events go to the worker through the hand-off.
//! The worker's effect-free outcomes (an event ignored, unrouted, or applied with nothing to
//! keep) join the same commits: one writer, one fsync, no turn of their own on the lock.
//! The thread takes the process's SQLite write lock like every other writer.

use std::collections::{HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use rusqlite::{params, OptionalExtension};
use tokio::sync::{oneshot, Mutex};

use super::handoff::Handoff;
use super::rows::{Claimed, EventRow, Finish, Inserted, InsertedBatch, Lease, NewEvent, NewStatus};
use super::{claim_sql, DeliverError, MAX_BATCH};
use crate::db::{now_ms, DbError, Engine, Result};

// The statements run for every event. No `RETURNING` on the insert: SQLite buffers a RETURNING
// statement's rows in a temporary B-tree it opens and closes per statement, a cost paid on every
// event; the new row's seq is `last_insert_rowid()` instead (a test keeps temporary B-trees out
// of all four).
const INSERT_EVENT: &str = "INSERT INTO events (source, event_id, event_type, scope, store_id, \
       account_id, livemode, stripe_created, status, claim_token, attempts, next_attempt_at, received_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
     ON CONFLICT (source, event_id) DO NOTHING";
const INSERT_PAYLOAD: &str = "INSERT INTO event_payloads (seq, payload) VALUES (?1, ?2)";
const FINISH: &str = "UPDATE events SET status = ?1, last_error = ?2, \
       applied_at = CASE WHEN ?1 = 'applied' THEN ?3 ELSE NULL END, claim_token = NULL \
     WHERE seq = ?4 AND claim_token = ?5";
// Setting `store_id` rewrites its index entry even to the same value: only when routed.
const FINISH_ROUTED: &str = "UPDATE events SET status = ?1, last_error = ?2, \
       applied_at = CASE WHEN ?1 = 'applied' THEN ?3 ELSE NULL END, claim_token = NULL, \
       store_id = COALESCE(store_id, ?6) WHERE seq = ?4 AND claim_token = ?5";

/// One webhook delivery waiting for its commit.
pub struct Delivery {
    event: NewEvent,
    handoff: Arc<Handoff>,
    reply: oneshot::Sender<Result<Inserted, Arc<DbError>>>,
}

/// A worker's effect-free outcomes for events it claimed under `token`.
pub struct Finishes {
    token: String,
    finishes: Vec<Finish>,
    /// How many were still the worker's to finish (the others' leases were taken over).
    reply: oneshot::Sender<Result<usize>>,
}

/// What the thread is asked to do.
enum Job {
    /// Deliveries and finishes queued while the thread was busy are gathered into one commit.
    Deliver(Delivery),
    Finish(Finishes),
    Insert(
        Vec<NewEvent>,
        Option<Lease>,
        oneshot::Sender<Result<InsertedBatch>>,
    ),
    Claim(Claim, oneshot::Sender<Result<Vec<Claimed>>>),
}

/// A worker's claim: up to `limit` due events, for `lease_ms`, under `token`.
#[derive(Debug)]
struct Claim {
    token: String,
    limit: i64,
    lease_ms: i64,
}

/// The handle to the inbox thread; the thread ends when the last handle is dropped.
#[derive(Debug)]
pub struct Thread {
    jobs: mpsc::Sender<Job>,
    running: Arc<AtomicBool>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Deliver(d) => write!(f, "Deliver({})", d.event.event_id),
            Job::Finish(f2) => write!(f, "Finish({} events)", f2.finishes.len()),
            Job::Insert(events, _, _) => write!(f, "Insert({} events)", events.len()),
            Job::Claim(claim, _) => write!(f, "{claim:?}"),
        }
    }
}

/// Clears `running` when the thread ends, however it ends.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Thread {
    /// Opens the thread's connection to the database file at `path`.
    pub fn open(path: &Path, write_lock: Arc<Mutex<()>>) -> Result<Self> {
        let conn = rusqlite::Connection::open(path).map_err(sqlite)?;
        // The same settings as the pool's connections (WAL, an fsync on every commit, checkpoints
        // left to `sqlite_checkpoint`), and a larger page cache: the right edges of the inbox's
        // B-trees and the due index stay in memory instead of being read back at every commit.
        let pragmas = crate::db::sqlite_pragmas("FULL");
        conn.execute_batch(&format!("{pragmas} PRAGMA cache_size = -32768;"))
            .map_err(sqlite)?;
        conn.set_prepared_statement_cache_capacity(16);
        let (jobs, queue) = mpsc::channel::<Job>();
        let running = Arc::new(AtomicBool::new(true));
        let guard = Running(running.clone());
        std::thread::Builder::new()
            .name("bursar-sqlite-inbox".into())
            .spawn(move || {
                let _running = guard;
                serve(&conn, &queue, &write_lock)
            })
            .map_err(|e| DbError::Connect(format!("cannot start the inbox thread: {e}")))?;
        Ok(Self { jobs, running })
    }

    /// False once the thread has stopped: nothing can be stored any more.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Stores one delivery, in a commit shared with whatever else arrived meanwhile; the new
    /// event is handed to the worker through `handoff` when it has room.
    pub async fn deliver(
        &self,
        event: NewEvent,
        handoff: Arc<Handoff>,
    ) -> Result<Inserted, DeliverError> {
        let (reply, answer) = oneshot::channel();
        let job = Job::Deliver(Delivery {
            event,
            handoff,
            reply,
        });
        self.send(job).map_err(|_| DeliverError::Closed)?;
        answer
            .await
            .map_err(|_| DeliverError::Closed)?
            .map_err(DeliverError::Db)
    }

    /// Writes effect-free outcomes of events claimed under `token`, in the thread's next
    /// commit; resolves to how many were still ours.
    pub async fn finish(&self, token: &str, finishes: Vec<Finish>) -> Result<usize> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Finish(Finishes {
            token: token.to_owned(),
            finishes,
            reply,
        }))?;
        answer.await.map_err(|_| stopped())?
    }

    pub async fn insert(
        &self,
        events: Vec<NewEvent>,
        lease: Option<Lease>,
    ) -> Result<InsertedBatch> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Insert(events, lease, reply))?;
        answer.await.map_err(|_| stopped())?
    }

    /// Claims due events and reads their payloads: one hand-off for the whole batch.
    pub async fn claim(&self, token: &str, limit: i64, lease_ms: i64) -> Result<Vec<Claimed>> {
        let claim = Claim {
            token: token.to_owned(),
            limit,
            lease_ms,
        };
        let (reply, answer) = oneshot::channel();
        self.send(Job::Claim(claim, reply))?;
        answer.await.map_err(|_| stopped())?
    }

    fn send(&self, job: Job) -> Result<()> {
        self.jobs.send(job).map_err(|_| stopped())
    }
}

/// The thread's loop: jobs in order, except that deliveries waiting in the queue join the
/// commit of the first one (other jobs keep their order behind it).
fn serve(conn: &rusqlite::Connection, queue: &mpsc::Receiver<Job>, write_lock: &Mutex<()>) {
    let mut later = VecDeque::new();
    loop {
        let job = match later.pop_front() {
            Some(job) => job,
            None => match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        match job {
            Job::Deliver(_) | Job::Finish(_) => {
                let mut batch = Batch::default();
                batch.add(job, &mut later);
                gather(queue, &mut batch, &mut later);
                let waited = std::time::Instant::now();
                let _turn = write_lock.blocking_lock();
                let waited = waited.elapsed();
                // Whatever arrived while another writer held the lock joins this commit too.
                gather(queue, &mut batch, &mut later);
                commit(conn, batch, waited);
            }
            Job::Insert(events, lease, reply) => {
                let _turn = write_lock.blocking_lock();
                let _ = reply.send(guarded(|| insert(conn, events, lease.as_ref())));
            }
            Job::Claim(claim, reply) => {
                let _turn = write_lock.blocking_lock();
                let _ = reply.send(guarded(|| claim_with_payloads(conn, &claim)));
            }
        }
    }
}

/// What one commit writes.
#[derive(Default)]
struct Batch {
    deliveries: Vec<Delivery>,
    finishes: Vec<Finishes>,
}

impl Batch {
    /// Takes a delivery or finish into the batch; any other job keeps its turn in `later`.
    fn add(&mut self, job: Job, later: &mut VecDeque<Job>) {
        match job {
            Job::Deliver(d) => self.deliveries.push(d),
            Job::Finish(f) => self.finishes.push(f),
            other => later.push_back(other),
        }
    }
}

fn gather(queue: &mpsc::Receiver<Job>, batch: &mut Batch, later: &mut VecDeque<Job>) {
    while batch.deliveries.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(job) => batch.add(job, later),
            Err(_) => return,
        }
    }
}

/// Runs `f`; a panic fails this job (its deliveries get a 5xx and Stripe retries), not the
/// thread.
fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        Err(DbError::Aborted(format!(
            "inbox thread panicked: {}",
            crate::supervise::panic_message(panic)
        )))
    })
}

/// Commits a batch: stores its deliveries and answers each, handing the new events to the
/// worker (claimed if it has room for them, else stored pending and the worker told to look),
/// and writes its finishes. A batch of finishes alone commits without an fsync, as all the
/// worker's transactions do (see `Db::connect`): lost to a power failure, its events are
/// claimed and finished again.
fn commit(conn: &rusqlite::Connection, batch: Batch, waited: std::time::Duration) {
    let Batch {
        deliveries,
        finishes,
    } = batch;
    let handoff = deliveries.first().map(|d| d.handoff.clone());
    let lease = handoff.as_ref().and_then(|h| h.lease(deliveries.len()));
    let (events, replies): (Vec<_>, Vec<_>) =
        deliveries.into_iter().map(|d| (d.event, d.reply)).unzip();
    let (jobs, answers): (Vec<_>, Vec<_>) = finishes
        .into_iter()
        .map(|f| ((f.token, f.finishes), f.reply))
        .unzip();
    let started = std::time::Instant::now();
    let size = events.len();
    let with_deliveries = !events.is_empty();
    match guarded(|| write(conn, events, lease.as_ref(), &jobs)) {
        Ok((stored, finished)) => {
            tracing::debug!(
                batch = size,
                finishes = jobs.iter().map(|(_, f)| f.len()).sum::<usize>(),
                lock_wait_micros = waited.as_micros() as u64,
                micros = started.elapsed().as_micros() as u64,
                "inbox commit"
            );
            for (answer, n) in answers.into_iter().zip(finished) {
                let _ = answer.send(n);
            }
            if let Some(handoff) = handoff {
                let results = handoff.committed(stored, lease.is_some());
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
        }
        Err(e) => {
            tracing::error!(error = ?e, batch = size, "inbox commit failed; deliveries get a 5xx and Stripe retries");
            if let (Some(handoff), Some(_)) = (&handoff, &lease) {
                handoff.release(size);
            }
            // The finishes did not fail with them: written alone, they need not wait for their
            // leases to run out.
            let alone = (with_deliveries && !jobs.is_empty())
                .then(|| guarded(|| write(conn, Vec::new(), None, &jobs)))
                .and_then(|alone| {
                    alone
                        .inspect_err(|e| tracing::warn!(error = ?e, "finishes failed alone too"))
                        .ok()
                });
            match alone {
                Some((_, finished)) => {
                    for (answer, n) in answers.into_iter().zip(finished) {
                        let _ = answer.send(n);
                    }
                }
                None => {
                    for answer in answers {
                        let _ =
                            answer.send(Err(DbError::Aborted(format!("inbox commit failed: {e}"))));
                    }
                }
            }
            let e = Arc::new(e);
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

fn stopped() -> DbError {
    DbError::Aborted("the inbox thread has stopped".into())
}

fn insert(
    conn: &rusqlite::Connection,
    events: Vec<NewEvent>,
    lease: Option<&Lease>,
) -> Result<InsertedBatch> {
    write(conn, events, lease, &[]).map(|(inserted, _)| inserted)
}

/// One transaction: inserts `events` and writes each group of finishes (a group that fails is
/// rolled back alone and answered with its error). Without events it commits without an fsync:
/// only deliveries are acknowledged to anyone.
fn write(
    conn: &rusqlite::Connection,
    events: Vec<NewEvent>,
    lease: Option<&Lease>,
    finishes: &[(String, Vec<Finish>)],
) -> Result<(InsertedBatch, Vec<Result<usize>>)> {
    // A transaction left open by a panic would refuse the next BEGIN.
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    // Set every time: a relaxed write that failed (or panicked) half-way cannot leave the next
    // delivery's commit without its fsync.
    let begin = if !events.is_empty() {
        "PRAGMA synchronous = FULL; BEGIN IMMEDIATE"
    } else {
        "PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE"
    };
    conn.execute_batch(begin).map_err(sqlite)?;
    let written = insert_in_transaction(conn, events, lease).and_then(|inserted| {
        let mut finished = Vec::with_capacity(finishes.len());
        for (token, group) in finishes {
            finished.push(finish_group(conn, token, group));
            // An error SQLite answers by rolling back the whole transaction (disk full, I/O)
            // fails the commit: nothing after it may be written outside of it.
            if conn.is_autocommit() {
                return Err(DbError::Aborted(
                    "the inbox transaction was rolled back by SQLite".into(),
                ));
            }
        }
        Ok((inserted, finished))
    });
    let ended = match &written {
        Ok(_) => conn.execute_batch("COMMIT"),
        Err(_) => conn.execute_batch("ROLLBACK"),
    };
    let written = written?;
    ended.map_err(sqlite)?;
    Ok(written)
}

/// Writes one worker's finishes under a savepoint; returns how many rows were still its.
fn finish_group(conn: &rusqlite::Connection, token: &str, group: &[Finish]) -> Result<usize> {
    conn.execute_batch("SAVEPOINT finish").map_err(sqlite)?;
    let finished = (|| {
        let mut update = conn.prepare_cached(FINISH).map_err(sqlite)?;
        let mut routed = conn.prepare_cached(FINISH_ROUTED).map_err(sqlite)?;
        let now = now_ms();
        let mut n = 0;
        for f in group {
            let (outcome, note) = (f.outcome.as_str(), &f.note);
            n += match &f.store_id {
                None => update.execute(params![outcome, note, now, f.seq, token]),
                Some(store) => routed.execute(params![outcome, note, now, f.seq, token, store]),
            }
            .map_err(sqlite)?;
        }
        Ok(n)
    })();
    let end = if finished.is_ok() {
        "RELEASE finish"
    } else {
        "ROLLBACK TO finish; RELEASE finish"
    };
    conn.execute_batch(end).map_err(sqlite)?;
    finished
}

fn insert_in_transaction(
    conn: &rusqlite::Connection,
    events: Vec<NewEvent>,
    lease: Option<&Lease>,
) -> Result<InsertedBatch> {
    let now = now_ms();
    let status = NewStatus::new(lease, now);
    let mut event = conn.prepare_cached(INSERT_EVENT).map_err(sqlite)?;
    let mut connected = conn
        .prepare_cached(
            "SELECT store_id FROM connections WHERE kind = 'connect' AND account_id = ?1",
        )
        .map_err(sqlite)?;
    let mut payload = conn.prepare_cached(INSERT_PAYLOAD).map_err(sqlite)?;
    let mut seen = HashSet::with_capacity(events.len());
    let mut new = Vec::with_capacity(events.len());
    for e in &events {
        // A second delivery of an id within the batch is a duplicate, like one in the table.
        if !seen.insert((e.source.as_str(), e.event_id.as_str())) {
            new.push(None);
            continue;
        }
        // An event about a connected account belongs to the store connected to it.
        let store_id: Option<String> = match (&e.store_id, &e.account_id) {
            (Some(id), _) => Some(id.clone()),
            (None, Some(account)) => connected
                .query_row(params![account], |r| r.get(0))
                .optional()
                .map_err(sqlite)?
                .flatten(),
            (None, None) => None,
        };
        let inserted = event
            .execute(params![
                e.source,
                e.event_id,
                e.event_type,
                e.scope,
                store_id,
                e.account_id,
                i64::from(e.livemode),
                e.created,
                status.status,
                status.token,
                status.attempts,
                status.next_attempt_at,
                now
            ])
            .map_err(sqlite)?;
        let row = (inserted == 1).then(|| (conn.last_insert_rowid(), store_id));
        if let Some((seq, _)) = &row {
            payload.execute(params![seq, e.payload]).map_err(sqlite)?;
        }
        new.push(row);
    }
    drop(seen);
    let mut batch = InsertedBatch {
        results: Vec::with_capacity(events.len()),
        claimed: Vec::new(),
    };
    for (e, row) in events.into_iter().zip(new) {
        batch.push(&status, e, row, now);
    }
    Ok(batch)
}

/// The claim commits without fsync, as all the worker's transactions do (see `Db::connect`):
/// losing it to a power failure only leaves its events unclaimed.
fn claim_with_payloads(conn: &rusqlite::Connection, claim: &Claim) -> Result<Vec<Claimed>> {
    conn.execute_batch("PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE")
        .map_err(sqlite)?;
    let claimed = claim_in_transaction(conn, claim);
    let end = if claimed.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    let ended = conn.execute_batch(&format!("{end}; PRAGMA synchronous = FULL"));
    let claimed = claimed?;
    ended.map_err(sqlite)?;
    Ok(claimed)
}

fn claim_in_transaction(conn: &rusqlite::Connection, claim: &Claim) -> Result<Vec<Claimed>> {
    let now = now_ms();
    let mut update = conn
        .prepare_cached(&claim_sql(Engine::Sqlite))
        .map_err(sqlite)?;
    let mut rows = update
        .query_map(
            params![claim.token, now + claim.lease_ms, now, claim.limit],
            event_row,
        )
        .map_err(sqlite)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(sqlite)?;
    rows.sort_by_key(|r| r.seq);
    let mut payload = conn
        .prepare_cached("SELECT payload FROM event_payloads WHERE seq = ?1")
        .map_err(sqlite)?;
    rows.into_iter()
        .map(|row| {
            let p = payload
                .query_row(params![row.seq], |r| r.get(0))
                .optional()
                .map_err(sqlite)?;
            Ok((row, p))
        })
        .collect()
}

/// An `EventRow` from a row of the claim's columns, in order.
fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        seq: r.get(0)?,
        source: r.get(1)?,
        event_id: r.get(2)?,
        event_type: r.get(3)?,
        scope: r.get(4)?,
        store_id: r.get(5)?,
        account_id: r.get(6)?,
        livemode: r.get(7)?,
        stripe_created: r.get(8)?,
        status: r.get(9)?,
        attempts: r.get(10)?,
        next_attempt_at: r.get(11)?,
        last_error: r.get(12)?,
        received_at: r.get(13)?,
        applied_at: r.get(14)?,
    })
}

fn sqlite(e: rusqlite::Error) -> DbError {
    DbError::Sqlite(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::db::inbox::Outcome;
    use crate::db::Db;

    fn event(i: u32) -> NewEvent {
        NewEvent::platform_balance(format!("evt_finish_{i}"), "{}".into())
    }

    /// status, applied_at, last_error, store_id, claim_token
    type Row = (
        String,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
    );

    fn finish(seq: i64, outcome: Outcome, store: Option<&str>, note: Option<&str>) -> Finish {
        Finish {
            seq,
            outcome,
            store_id: store.map(Into::into),
            note: note.map(Into::into),
        }
    }

    /// A fresh database holding `n` events claimed under the token "ours", and their seqs.
    async fn claimed(n: u32) -> (tempfile::TempDir, Db, Vec<i64>) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite://{}/t.db", dir.path().display()))
            .await
            .unwrap();
        let lease = Lease {
            token: "ours".into(),
            until: now_ms() + 60_000,
        };
        let stored = db
            .inbox()
            .insert((0..n).map(event).collect(), Some(&lease))
            .await
            .unwrap();
        let seqs: Vec<i64> = stored.claimed.iter().map(|(row, _)| row.seq).collect();
        assert_eq!(seqs.len(), n as usize);
        (dir, db, seqs)
    }

    /// SQLite tests an `IN` list of over two values through a temporary B-tree it builds per
    /// row: the statements run for every event must need none. The claim must still find due
    /// events through the `events_due` index, and a store's listing go through `events_store`.
    #[tokio::test]
    async fn inbox_statements_build_no_temporary_btrees_and_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let _db = Db::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let explain = |sql: &str, column: usize| -> Vec<String> {
            let mut stmt = conn.prepare(sql).unwrap();
            let nulls = std::iter::repeat_n(rusqlite::types::Null, stmt.parameter_count());
            stmt.query_map(rusqlite::params_from_iter(nulls), |r| r.get(column))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        for sql in [INSERT_EVENT, INSERT_PAYLOAD, FINISH, FINISH_ROUTED] {
            let ops = explain(&format!("EXPLAIN {sql}"), 1);
            assert!(
                !ops.iter().any(|op| op == "OpenEphemeral"),
                "{sql} builds a temporary B-tree: {ops:?}"
            );
        }
        let unfinished = super::super::unfinished(Engine::Sqlite);
        let planned = [
            (claim_sql(Engine::Sqlite), "events_due"),
            (
                format!("SELECT MIN(received_at) FROM events WHERE {unfinished}"),
                "events_due",
            ),
            (super::super::operator::list_sql(true), "events_store"),
        ];
        for (sql, index) in planned {
            let plan = explain(&format!("EXPLAIN QUERY PLAN {sql}"), 3).join("; ");
            assert!(plan.contains(&format!("INDEX {index}")), "{sql}: {plan}");
        }
        // A lookup by Stripe event id, with or without its source, seeks the unique index and
        // never reads the whole inbox.
        for by_source in [true, false] {
            let sql = super::super::operator::by_event_id_sql(by_source);
            let plan = explain(&format!("EXPLAIN QUERY PLAN {sql}"), 3).join("; ");
            assert!(!plan.contains("SCAN events"), "{sql}: {plan}");
            assert!(
                plan.contains("INDEX sqlite_autoindex_events_1 (source=? AND event_id=?)"),
                "{sql}: {plan}"
            );
        }
    }

    /// Migration 12 rebuilds the inbox table: every row keeps its seq, and the next event
    /// still gets a seq past all of them.
    #[test]
    fn the_inbox_rebuild_keeps_every_row_and_its_seq() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let migrate = |versions: std::ops::Range<i64>| {
            for m in crate::db::SQLITE_MIGRATOR.iter() {
                if versions.contains(&m.version) {
                    conn.execute_batch(&m.sql).unwrap();
                }
            }
        };
        let event = |seq: &str, id: &str, store: &str, status: &str| {
            format!(
                "INSERT INTO events (seq, source, event_id, event_type, scope, store_id, livemode, \
                   stripe_created, status, next_attempt_at, received_at) \
                 VALUES ({seq}, 'platform', '{id}', 'balance.available', 'platform', {store}, 0, 1, \
                   '{status}', 2, 3)"
            )
        };
        migrate(1..12);
        for (seq, id, store, status) in [
            ("5", "evt_a", "NULL", "applied"),
            ("9", "evt_b", "'st_1'", "pending"),
        ] {
            conn.execute_batch(&event(seq, id, store, status)).unwrap();
        }
        migrate(12..13);
        conn.execute_batch(&event("NULL", "evt_c", "NULL", "pending"))
            .unwrap();
        let rows: Vec<(i64, String, Option<String>, String)> = conn
            .prepare("SELECT seq, event_id, store_id, status FROM events ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let expect = |seq, id: &str, store: Option<&str>, status: &str| {
            (seq, id.to_owned(), store.map(Into::into), status.to_owned())
        };
        assert_eq!(
            rows,
            [
                expect(5, "evt_a", None, "applied"),
                expect(9, "evt_b", Some("st_1"), "pending"),
                expect(10, "evt_c", None, "pending"),
            ]
        );
        let duplicate = conn.execute_batch(&event("NULL", "evt_a", "NULL", "pending"));
        assert!(duplicate.is_err(), "(source, event_id) is still unique");
        let due: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM events INDEXED BY events_due \
                 WHERE (status = 'pending' OR status = 'retrying' OR status = 'processing') \
                 AND next_attempt_at <= 2",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(due, 2, "the pending events are in the due index");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finishes_write_only_the_rows_still_under_their_claim() {
        let (_dir, db, seqs) = claimed(3).await;
        let inbox = db.inbox();
        let handoff = Handoff::new(4, Duration::from_secs(60), Default::default());
        let (door, _) = inbox.deliveries(handoff);

        let theirs = inbox.finish(
            "theirs",
            vec![finish(seqs[0], Outcome::Applied, None, None)],
        );
        assert_eq!(
            theirs.await.unwrap(),
            0,
            "another claim's token writes nothing"
        );
        // A delivery sent at the same time (the two may share a commit): both land.
        let (finished, delivered) = tokio::join!(
            inbox.finish(
                "ours",
                vec![
                    finish(seqs[0], Outcome::Applied, None, None),
                    finish(seqs[1], Outcome::Ignored, Some("st_x"), Some("why")),
                ],
            ),
            door.deliver(event(9))
        );
        assert_eq!(finished.unwrap(), 2);
        assert!(matches!(delivered.unwrap(), Inserted::New(_)));
        let again = inbox.finish("ours", vec![finish(seqs[0], Outcome::Applied, None, None)]);
        assert_eq!(
            again.await.unwrap(),
            0,
            "a finished event is no longer claimed"
        );

        let rows: Vec<Row> = sqlx::query_as(
            "SELECT status, applied_at, last_error, store_id, claim_token FROM events \
                 WHERE seq IN ($1, $2, $3) ORDER BY seq",
        )
        .bind(seqs[0])
        .bind(seqs[1])
        .bind(seqs[2])
        .fetch_all(db.pool())
        .await
        .unwrap();
        assert_eq!(rows[0].0, "applied");
        assert!(rows[0].1.is_some() && rows[0].4.is_none());
        assert_eq!(
            (
                rows[1].0.as_str(),
                rows[1].1,
                rows[1].2.as_deref(),
                rows[1].3.as_deref()
            ),
            ("ignored", None, Some("why"), Some("st_x"))
        );
        assert_eq!(
            (rows[2].0.as_str(), rows[2].4.as_deref()),
            ("processing", Some("ours")),
            "an event not finished keeps its claim"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finishes_are_written_when_the_deliveries_beside_them_fail() {
        let (_dir, db, seqs) = claimed(1).await;
        let seq = seqs[0];
        // Every delivery from now on fails to store its payload.
        sqlx::query("DROP TABLE event_payloads")
            .execute(db.pool())
            .await
            .unwrap();
        // Both wait behind the write lock, so they are gathered into one commit.
        let turn = db.write_turn().await;
        let inbox = db.inbox().clone();
        let finished = tokio::spawn(async move {
            let finishes = vec![finish(seq, Outcome::Applied, None, None)];
            inbox.finish("ours", finishes).await
        });
        let handoff = Handoff::new(4, Duration::from_secs(60), Default::default());
        let (door, _) = db.inbox().deliveries(handoff);
        let delivered = tokio::spawn(async move { door.deliver(event(1)).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(turn);
        assert!(
            delivered.await.unwrap().is_err(),
            "the delivery is refused, not acknowledged"
        );
        assert_eq!(
            finished.await.unwrap().unwrap(),
            1,
            "the finish is written all the same"
        );
        let status: String = sqlx::query_scalar("SELECT status FROM events WHERE seq = $1")
            .bind(seq)
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(status, "applied");
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(stored, 1, "nothing of the refused delivery is kept");
    }
}

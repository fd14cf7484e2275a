//! SQLite's webhook inbox writes, on a dedicated thread with its own connection and cached
//! prepared statements (rusqlite). Through sqlx every statement is a round trip to sqlx's
//! connection thread, and statements of varying length are prepared anew; here a batch of
//! deliveries is one transaction of single-row statements run back to back (one fsync for all).
//! Deliveries come straight from the HTTP handlers: whatever queued while the thread was busy
//! joins its next commit, and the new events go to the worker through the hand-off.
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
use super::inbox::{
    claim_sql, Claimed, EventRow, Inserted, InsertedBatch, Lease, NewEvent, NewStatus, MAX_BATCH,
};
use super::{now_ms, DbError, Engine, Result};

/// One webhook delivery waiting for its commit.
pub struct Delivery {
    event: NewEvent,
    handoff: Arc<Handoff>,
    reply: oneshot::Sender<Result<Inserted, Arc<DbError>>>,
}

/// What the thread is asked to do.
enum Job {
    /// Deliveries queued while the thread was busy are gathered into one commit.
    Deliver(Delivery),
    Insert(
        Vec<NewEvent>,
        Option<Lease>,
        oneshot::Sender<Result<InsertedBatch>>,
    ),
    Claim(Claim, oneshot::Sender<Result<Vec<Claimed>>>),
}

/// A worker's claim: up to `limit` due events, for `lease_ms`, under `token`.
#[derive(Debug)]
pub struct Claim {
    pub token: String,
    pub limit: i64,
    pub lease_ms: i64,
}

/// The handle to the inbox thread; the thread ends when the last handle is dropped.
#[derive(Debug)]
pub struct SqliteInbox {
    jobs: mpsc::Sender<Job>,
    running: Arc<AtomicBool>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Deliver(d) => write!(f, "Deliver({})", d.event.event_id),
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

impl SqliteInbox {
    /// Opens the thread's connection to the database file at `path`.
    pub fn open(path: &Path, write_lock: Arc<Mutex<()>>) -> Result<Self> {
        let conn = rusqlite::Connection::open(path).map_err(sqlite)?;
        // The same settings as the pool's connections (WAL, an fsync on every commit, checkpoints
        // left to `sqlite_checkpoint`), and a larger page cache: the right edges of the inbox's
        // B-trees and the due index stay in memory instead of being read back at every commit.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
             PRAGMA busy_timeout = 10000; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -32768; \
             PRAGMA wal_autocheckpoint = 0;",
        )
        .map_err(sqlite)?;
        conn.set_prepared_statement_cache_capacity(8);
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
    ) -> Result<Inserted, Arc<DbError>> {
        let (reply, answer) = oneshot::channel();
        let job = Job::Deliver(Delivery {
            event,
            handoff,
            reply,
        });
        self.send(job).map_err(Arc::new)?;
        answer.await.map_err(|_| Arc::new(stopped()))?
    }

    pub async fn insert_batch(
        &self,
        events: Vec<NewEvent>,
        lease: Option<Lease>,
    ) -> Result<InsertedBatch> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Insert(events, lease, reply))?;
        answer.await.map_err(|_| stopped())?
    }

    /// Claims due events and reads their payloads: one hand-off for the whole batch.
    pub async fn claim(&self, claim: Claim) -> Result<Vec<Claimed>> {
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
            Job::Deliver(first) => {
                let mut batch = vec![first];
                gather(queue, &mut batch, &mut later);
                let waited = std::time::Instant::now();
                let _turn = write_lock.blocking_lock();
                let waited = waited.elapsed();
                // Whatever arrived while another writer held the lock joins this commit too.
                gather(queue, &mut batch, &mut later);
                deliver(conn, batch, waited);
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

fn gather(queue: &mpsc::Receiver<Job>, batch: &mut Vec<Delivery>, later: &mut VecDeque<Job>) {
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(Job::Deliver(d)) => batch.push(d),
            Ok(other) => later.push_back(other),
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

/// Commits a group of deliveries, answers each, and hands the new events to the worker
/// (claimed if it has room for them, else stored pending and the worker told to look).
fn deliver(conn: &rusqlite::Connection, batch: Vec<Delivery>, waited: std::time::Duration) {
    let handoff = batch[0].handoff.clone();
    let lease = handoff.lease(batch.len());
    let (events, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|d| (d.event, d.reply)).unzip();
    let started = std::time::Instant::now();
    let size = events.len();
    match guarded(|| insert(conn, events, lease.as_ref())) {
        Ok(stored) => {
            tracing::debug!(
                batch = size,
                lock_wait_micros = waited.as_micros() as u64,
                micros = started.elapsed().as_micros() as u64,
                "inbox commit"
            );
            let results = handoff.committed(stored, lease.is_some());
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(result));
            }
        }
        Err(e) => {
            tracing::error!(error = ?e, batch = size, "inbox commit failed; deliveries get a 5xx and Stripe retries");
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
    // A transaction left open by a panic would refuse the next BEGIN.
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    conn.execute_batch("BEGIN IMMEDIATE").map_err(sqlite)?;
    match insert_in_transaction(conn, events, lease) {
        Ok(inserted) => {
            conn.execute_batch("COMMIT").map_err(sqlite)?;
            Ok(inserted)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn insert_in_transaction(
    conn: &rusqlite::Connection,
    events: Vec<NewEvent>,
    lease: Option<&Lease>,
) -> Result<InsertedBatch> {
    let now = now_ms();
    let status = NewStatus::new(lease, now);
    let mut event = conn
        .prepare_cached(
            "INSERT INTO events (source, event_id, event_type, scope, store_id, account_id, livemode, \
               stripe_created, status, claim_token, attempts, next_attempt_at, received_at) \
             VALUES (?1, ?2, ?3, ?4, COALESCE(?5, (SELECT store_id FROM connections WHERE kind = 'connect' AND account_id = ?6)), \
               ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
             ON CONFLICT (source, event_id) DO NOTHING RETURNING seq, store_id",
        )
        .map_err(sqlite)?;
    let mut payload = conn
        .prepare_cached("INSERT INTO event_payloads (seq, payload) VALUES (?1, ?2)")
        .map_err(sqlite)?;
    let mut seen = HashSet::with_capacity(events.len());
    let mut new = Vec::with_capacity(events.len());
    for e in &events {
        // A second delivery of an id within the batch is a duplicate, like one in the table.
        if !seen.insert((e.source.as_str(), e.event_id.as_str())) {
            new.push(None);
            continue;
        }
        let row: Option<(i64, Option<String>)> = event
            .query_row(
                params![
                    e.source,
                    e.event_id,
                    e.event_type,
                    e.scope,
                    e.store_id,
                    e.account_id,
                    i64::from(e.livemode),
                    e.created,
                    status.status,
                    status.token,
                    status.attempts,
                    status.next_attempt_at,
                    now
                ],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(sqlite)?;
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

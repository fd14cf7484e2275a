//! SQLite's webhook inbox writes, on a dedicated thread with its own connection and cached
//! prepared statements (rusqlite). Through sqlx every statement is a round trip to sqlx's
//! connection thread, and statements of varying length are prepared anew; here a batch of
//! deliveries is one transaction of single-row statements run back to back (one fsync for all).
//! The thread takes the process's SQLite write lock like every other writer.

use std::collections::HashSet;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

use rusqlite::{params, OptionalExtension};
use tokio::sync::{oneshot, Mutex};

use super::inbox::{claim_sql, EventRow, Inserted, NewEvent};
use super::{now_ms, DbError, Engine, Result};

/// What the thread is asked to do.
enum Job {
    Insert(Vec<NewEvent>, oneshot::Sender<Result<Vec<Inserted>>>),
    Claim(Claim, oneshot::Sender<Result<Vec<Claimed>>>),
}

/// A worker's claim: up to `limit` due events, for `lease_ms`, under `token`.
#[derive(Debug)]
pub struct Claim {
    pub token: String,
    pub limit: i64,
    pub lease_ms: i64,
}

/// A claimed event with its raw payload.
pub type Claimed = (EventRow, Option<String>);

/// The handle to the inbox thread; the thread ends when the last handle is dropped.
#[derive(Debug)]
pub struct SqliteInbox {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Insert(events, _) => write!(f, "Insert({} events)", events.len()),
            Job::Claim(claim, _) => write!(f, "{claim:?}"),
        }
    }
}

impl SqliteInbox {
    /// Opens the thread's connection to the database file at `path`.
    pub fn open(path: &Path, write_lock: Arc<Mutex<()>>) -> Result<Self> {
        let conn = rusqlite::Connection::open(path).map_err(sqlite)?;
        // The same settings as the pool's connections: WAL, and an fsync on every commit.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
             PRAGMA busy_timeout = 10000; PRAGMA temp_store = MEMORY;",
        )
        .map_err(sqlite)?;
        conn.set_prepared_statement_cache_capacity(8);
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("bursar-sqlite-inbox".into())
            .spawn(move || {
                for job in queue {
                    let _turn = write_lock.blocking_lock();
                    match job {
                        Job::Insert(events, reply) => {
                            let _ = reply.send(insert(&conn, &events));
                        }
                        Job::Claim(claim, reply) => {
                            let _ = reply.send(claim_with_payloads(&conn, &claim));
                        }
                    }
                }
            })
            .map_err(|e| DbError::Connect(format!("cannot start the inbox thread: {e}")))?;
        Ok(Self { jobs })
    }

    pub async fn insert_batch(&self, events: Vec<NewEvent>) -> Result<Vec<Inserted>> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Insert(events, reply))?;
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

fn stopped() -> DbError {
    DbError::Aborted("the inbox thread has stopped".into())
}

fn insert(conn: &rusqlite::Connection, events: &[NewEvent]) -> Result<Vec<Inserted>> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(sqlite)?;
    match insert_in_transaction(conn, events) {
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
    events: &[NewEvent],
) -> Result<Vec<Inserted>> {
    let now = now_ms();
    let mut event = conn
        .prepare_cached(
            "INSERT INTO events (source, event_id, event_type, scope, store_id, account_id, livemode, \
               stripe_created, status, next_attempt_at, received_at) \
             VALUES (?1, ?2, ?3, ?4, COALESCE(?5, (SELECT store_id FROM connections WHERE kind = 'connect' AND account_id = ?6)), \
               ?6, ?7, ?8, 'pending', ?9, ?9) \
             ON CONFLICT (source, event_id) DO NOTHING RETURNING seq",
        )
        .map_err(sqlite)?;
    let mut payload = conn
        .prepare_cached("INSERT INTO event_payloads (seq, payload) VALUES (?1, ?2)")
        .map_err(sqlite)?;
    let mut seen = HashSet::with_capacity(events.len());
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        // A second delivery of an id within the batch is a duplicate, like one in the table.
        if !seen.insert((e.source.as_str(), e.event_id.as_str())) {
            out.push(Inserted::Duplicate);
            continue;
        }
        let seq: Option<i64> = event
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
                    now
                ],
                |row| row.get(0),
            )
            .optional()
            .map_err(sqlite)?;
        match seq {
            Some(seq) => {
                payload.execute(params![seq, e.payload]).map_err(sqlite)?;
                out.push(Inserted::New(seq));
            }
            None => out.push(Inserted::Duplicate),
        }
    }
    Ok(out)
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

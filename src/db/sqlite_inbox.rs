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

use super::inbox::{Inserted, NewEvent};
use super::{now_ms, DbError, Result};

type Reply = oneshot::Sender<Result<Vec<Inserted>>>;

/// The handle to the inbox thread; the thread ends when the last handle is dropped.
#[derive(Debug)]
pub struct SqliteInbox {
    jobs: mpsc::Sender<(Vec<NewEvent>, Reply)>,
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
        let (jobs, queue) = mpsc::channel::<(Vec<NewEvent>, Reply)>();
        std::thread::Builder::new()
            .name("bursar-sqlite-inbox".into())
            .spawn(move || {
                for (events, reply) in queue {
                    let _turn = write_lock.blocking_lock();
                    let _ = reply.send(insert(&conn, &events));
                }
            })
            .map_err(|e| DbError::Connect(format!("cannot start the inbox thread: {e}")))?;
        Ok(Self { jobs })
    }

    pub async fn insert_batch(&self, events: Vec<NewEvent>) -> Result<Vec<Inserted>> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send((events, reply))
            .map_err(|_| DbError::Aborted("the inbox thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| DbError::Aborted("the inbox thread has stopped".into()))?
    }
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

fn sqlite(e: rusqlite::Error) -> DbError {
    DbError::Sqlite(e)
}

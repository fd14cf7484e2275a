//! SQLite checkpoints on their own thread. Left to SQLite, the commit that takes the WAL past
//! 1,000 pages copies them into the database file (and fsyncs it) before it returns: every few
//! dozen inbox commits, one waited for a checkpoint, and its deliveries with it. Here every
//! connection has automatic checkpoints off, and this thread copies the WAL in the background
//! (a PASSIVE checkpoint waits for no writer).
//!
//! A checkpoint that overlaps writes cannot finish the WAL, and SQLite starts the WAL over only
//! once it is finished; so when the WAL outgrows `RESTART_BYTES`, one checkpoint runs with the
//! process's write lock held. The background ones have copied nearly everything by then, so
//! that pause is short.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use super::{DbError, Result};

/// How often the WAL is copied into the database file.
const EVERY: Duration = Duration::from_millis(20);
/// WAL size past which a checkpoint takes the write lock so the WAL can start over.
const RESTART_BYTES: i64 = 16 << 20;

/// Stops the thread (after a last checkpoint) when dropped.
#[derive(Debug)]
pub struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    pub fn start(path: &Path, write_lock: Arc<Mutex<()>>) -> Result<Self> {
        let conn = rusqlite::Connection::open(path).map_err(DbError::Sqlite)?;
        conn.execute_batch("PRAGMA busy_timeout = 10000;")
            .map_err(DbError::Sqlite)?;
        let page: i64 = conn
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .map_err(DbError::Sqlite)?;
        let restart_frames = RESTART_BYTES / page.max(512);
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("bursar-sqlite-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    match checkpoint(&conn) {
                        Ok(frames) if frames > restart_frames => {
                            let _turn = write_lock.blocking_lock();
                            if let Err(e) = checkpoint(&conn) {
                                tracing::warn!(error = %e, "WAL checkpoint failed");
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
                    }
                }
                let _ = checkpoint(&conn);
            })
            .map_err(|e| DbError::Connect(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Self { _stop: stop })
    }
}

/// Copies what it can of the WAL; returns how many frames the WAL holds.
fn checkpoint(conn: &rusqlite::Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::inbox::NewEvent;
    use crate::db::Db;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_under_steady_writes() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let db = Db::open(&url).await.unwrap();
        // 3 KB payloads, five to a 16 KB page: over three times RESTART_BYTES in all, written
        // back to back with no pause in which a checkpoint could finish on its own.
        for batch in 0..90 {
            let events = (0..200)
                .map(|i| NewEvent::platform_balance(format!("evt_{batch}_{i}"), "x".repeat(3000)))
                .collect();
            db.inbox().insert(events, None).await.unwrap();
        }
        // The WAL file keeps its largest size; each frame is a page and a 24-byte header.
        let wal = std::fs::metadata(dir.path().join("t.db-wal"))
            .unwrap()
            .len();
        let page: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(page, 16384, "a new database gets 16 KB pages");
        let frames = wal.saturating_sub(32) / (page as u64 + 24);
        let restart_frames = (RESTART_BYTES / page) as u64;
        // Without restarts the WAL reaches about 5,000 pages. With them it stays near
        // `restart_frames`, plus what is written while the checkpoint thread waits for its
        // turn: on two cores busy with other tests that has been as much again.
        assert!(
            frames < 3 * restart_frames,
            "the WAL grew to {frames} pages"
        );
    }
}

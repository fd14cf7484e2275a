//! Group commit: concurrent deliveries are stored together, in one transaction (one fsync),
//! and each request is answered once its event is durable. Under load batches grow by
//! themselves; with one request in flight the batch is one event.
//!
//! On SQLite the inbox thread gathers deliveries itself (`db::sqlite_inbox`); on PostgreSQL a
//! writer task does, with several batches in flight (`db::pg_inbox`). Either way the new events
//! go to this process's worker already claimed (`db::handoff`), so applying them needs no claim
//! and no read of what was just written.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;

use crate::db::handoff::Handoff;
use crate::db::inbox::{self, Inserted, NewEvent, MAX_BATCH};
use crate::db::pg_inbox::PIPELINE;
use crate::db::{Db, DbError};

const QUEUE: usize = 8192;

type Reply = oneshot::Sender<Result<Inserted, Arc<DbError>>>;

#[derive(Clone)]
pub struct Ingest {
    path: Path,
    handoff: Arc<Handoff>,
}

#[derive(Clone)]
enum Path {
    /// SQLite: straight to the inbox thread.
    Thread(Db),
    /// PostgreSQL: through the writer task.
    Writer(mpsc::Sender<(NewEvent, Reply)>),
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the inbox is shutting down")]
    Closed,
    #[error("the inbox could not store the event")]
    Db(#[source] Arc<DbError>),
}

impl Ingest {
    /// Starts the writer (a task that ends once every handle is gone and its queue is drained;
    /// on SQLite there is nothing to start, and it ends at once).
    pub fn start(db: Db, handoff: Arc<Handoff>) -> (Self, tokio::task::JoinHandle<()>) {
        if db.sqlite_inbox().is_some() {
            let ingest = Self {
                path: Path::Thread(db),
                handoff,
            };
            return (ingest, tokio::spawn(async {}));
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let handle = tokio::spawn(writer(db, rx, handoff.clone()));
        let ingest = Self {
            path: Path::Writer(tx),
            handoff,
        };
        (ingest, handle)
    }

    /// True once the writer has stopped: nothing can be stored any more.
    pub fn is_closed(&self) -> bool {
        match &self.path {
            Path::Thread(db) => !db.sqlite_inbox().is_some_and(|t| t.is_running()),
            Path::Writer(tx) => tx.is_closed(),
        }
    }

    /// Returns once the event is durably stored (or was already).
    pub async fn store(&self, event: NewEvent) -> Result<Inserted, IngestError> {
        match &self.path {
            Path::Thread(db) => {
                let thread = db.sqlite_inbox().ok_or(IngestError::Closed)?;
                thread
                    .deliver(event, self.handoff.clone())
                    .await
                    .map_err(IngestError::Db)
            }
            Path::Writer(tx) => {
                let (reply, answer) = oneshot::channel();
                tx.send((event, reply))
                    .await
                    .map_err(|_| IngestError::Closed)?;
                answer
                    .await
                    .map_err(|_| IngestError::Closed)?
                    .map_err(IngestError::Db)
            }
        }
    }
}

/// Ends when every `Ingest` handle is dropped, the queue is drained and every batch committed.
/// Up to `PIPELINE` batches are in flight on PostgreSQL (one elsewhere): deliveries that arrive
/// while they are written wait in the queue and form the next batch.
async fn writer(db: Db, mut rx: mpsc::Receiver<(NewEvent, Reply)>, handoff: Arc<Handoff>) {
    let depth = if db.pg_inbox().is_some() {
        PIPELINE as usize
    } else {
        1
    };
    let slots = Arc::new(Semaphore::new(depth));
    let mut commits = JoinSet::new();
    while let Some((event, reply)) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let mut events = Vec::with_capacity(MAX_BATCH);
        let mut replies = Vec::with_capacity(MAX_BATCH);
        events.push(event);
        replies.push(reply);
        while events.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok((event, reply)) => {
                    events.push(event);
                    replies.push(reply);
                }
                Err(_) => break,
            }
        }
        let (db, handoff) = (db.clone(), handoff.clone());
        commits.spawn(async move {
            commit(&db, &handoff, events, replies).await;
            drop(slot);
        });
        while commits.try_join_next().is_some() {}
    }
    while commits.join_next().await.is_some() {}
}

/// Stores one batch and answers its deliveries.
async fn commit(db: &Db, handoff: &Handoff, events: Vec<NewEvent>, replies: Vec<Reply>) {
    let started = std::time::Instant::now();
    let batch = events.len();
    let lease = handoff.lease(batch);
    // A panic fails this batch's deliveries (Stripe retries them), not the writer.
    let stored_batch = AssertUnwindSafe(inbox::insert_claimed(db, events, lease.as_ref()))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            Err(DbError::Aborted(format!(
                "inbox insert panicked: {}",
                crate::supervise::panic_message(panic)
            )))
        });
    match stored_batch {
        Ok(stored) => {
            tracing::debug!(
                batch,
                micros = started.elapsed().as_micros() as u64,
                "inbox commit"
            );
            let results = handoff.committed(stored, lease.is_some());
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(result));
            }
        }
        Err(e) => {
            tracing::error!(error = ?e, batch, "inbox commit failed; deliveries get a 5xx and Stripe retries");
            if lease.is_some() {
                handoff.release(batch);
            }
            let e = Arc::new(e);
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

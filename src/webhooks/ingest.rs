//! Group commit: concurrent deliveries are queued to one writer task, which stores whatever
//! has gathered in a single transaction (one fsync) and then answers each request. Under load
//! batches grow by themselves; with one request in flight the batch is one event.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::db::inbox::{self, Inserted, NewEvent};
use crate::db::{Db, DbError};

const MAX_BATCH: usize = 512;
const QUEUE: usize = 8192;

type Reply = oneshot::Sender<Result<Inserted, Arc<DbError>>>;

#[derive(Clone)]
pub struct Ingest {
    tx: mpsc::Sender<(NewEvent, Reply)>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the inbox is shutting down")]
    Closed,
    #[error("the inbox could not store the event")]
    Db(#[source] Arc<DbError>),
}

impl Ingest {
    /// Starts the writer; `stored` is notified after each commit so workers wake at once.
    pub fn start(db: Db, stored: Arc<Notify>) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let handle = tokio::spawn(writer(db, rx, stored));
        (Self { tx }, handle)
    }

    /// True once the writer has stopped: nothing can be stored any more.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Returns once the event is durably stored (or was already).
    pub async fn store(&self, event: NewEvent) -> Result<Inserted, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((event, reply))
            .await
            .map_err(|_| IngestError::Closed)?;
        answer
            .await
            .map_err(|_| IngestError::Closed)?
            .map_err(IngestError::Db)
    }
}

/// Ends when every `Ingest` handle is dropped and the queue is drained.
async fn writer(db: Db, mut rx: mpsc::Receiver<(NewEvent, Reply)>, stored: Arc<Notify>) {
    let mut replies = Vec::with_capacity(MAX_BATCH);
    while let Some((event, reply)) = rx.recv().await {
        let mut events = Vec::with_capacity(MAX_BATCH);
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
        let started = std::time::Instant::now();
        let batch = events.len();
        // A panic fails this batch's deliveries (Stripe retries them), not the writer.
        let stored_batch = AssertUnwindSafe(inbox::insert_batch(&db, events))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                Err(DbError::Aborted(format!(
                    "inbox insert panicked: {}",
                    crate::supervise::panic_message(panic)
                )))
            });
        match stored_batch {
            Ok(results) => {
                tracing::debug!(
                    batch,
                    micros = started.elapsed().as_micros() as u64,
                    "inbox commit"
                );
                for (reply, result) in replies.drain(..).zip(results) {
                    let _ = reply.send(Ok(result));
                }
                stored.notify_one();
            }
            Err(e) => {
                tracing::error!(error = ?e, batch, "inbox commit failed; deliveries get a 5xx and Stripe retries");
                let e = Arc::new(e);
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

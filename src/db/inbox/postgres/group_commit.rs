//! Group commit on PostgreSQL: concurrent deliveries are stored together, in one statement (one
//! WAL flush), and each is answered once its batch is durable. Under load batches grow by
//! themselves; with one delivery in flight the batch is one event. Up to `PIPELINE` batches
//! are in flight, each on its own connection: deliveries that arrive while they are written
//! wait in the queue and form the next batch.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;

use super::super::handoff::Handoff;
use super::super::rows::{Inserted, NewEvent};
use super::super::{DeliverError, MAX_BATCH};
use super::{Writer, PIPELINE};
use crate::db::DbError;

/// Deliveries waiting for a batch.
const QUEUE: usize = 8192;

type Reply = oneshot::Sender<Result<Inserted, Arc<DbError>>>;

/// The way into the group-commit task.
pub type Queue = mpsc::Sender<(NewEvent, Reply)>;

/// Starts the task that gathers deliveries into batches; it ends once every sender is dropped,
/// the queue is drained and every batch committed.
pub fn group_commit(
    writer: Arc<Writer>,
    handoff: Arc<Handoff>,
) -> (Queue, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (tx, tokio::spawn(gather(writer, rx, handoff)))
}

/// Queues one delivery and waits for its batch's commit.
pub async fn deliver(queue: &Queue, event: NewEvent) -> Result<Inserted, DeliverError> {
    let (reply, answer) = oneshot::channel();
    queue
        .send((event, reply))
        .await
        .map_err(|_| DeliverError::Closed)?;
    answer
        .await
        .map_err(|_| DeliverError::Closed)?
        .map_err(DeliverError::Db)
}

async fn gather(
    writer: Arc<Writer>,
    mut rx: mpsc::Receiver<(NewEvent, Reply)>,
    handoff: Arc<Handoff>,
) {
    let slots = Arc::new(Semaphore::new(PIPELINE as usize));
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
        let (writer, handoff) = (writer.clone(), handoff.clone());
        commits.spawn(async move {
            commit(&writer, &handoff, events, replies).await;
            drop(slot);
        });
        while commits.try_join_next().is_some() {}
    }
    while commits.join_next().await.is_some() {}
}

/// Stores one batch and answers its deliveries.
async fn commit(writer: &Writer, handoff: &Handoff, events: Vec<NewEvent>, replies: Vec<Reply>) {
    let started = std::time::Instant::now();
    let batch = events.len();
    let lease = handoff.lease(batch);
    // A panic fails this batch's deliveries (Stripe retries them), not the task.
    let stored_batch = AssertUnwindSafe(writer.insert(events, lease.as_ref()))
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

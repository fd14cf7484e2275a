//! Fresh events on their way from the inbox writer to this process's worker, claimed as they
//! were inserted. The worker gets them from memory: no claim transaction, no payload read back.
//!
//! The queue is bounded by `cap` events: while it is full the writer stores new events as
//! `pending` and wakes the worker, which claims them from the table as before. A handed-off
//! event is leased like any claim, so if this process dies before applying it, another worker
//! claims it once the lease runs out.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::rows::{Claimed, Inserted, InsertedBatch, Lease};
use crate::db::now_ms;

#[derive(Debug)]
pub struct Handoff {
    queue: Mutex<Queue>,
    /// Rung when claimed events are queued.
    ready: Notify,
    /// Rung when events were stored unclaimed: the worker must look in the table.
    stored: Arc<Notify>,
    cap: usize,
    lease_ms: i64,
    /// One claim token for everything this process hands off: a lease taken over by another
    /// claim gets that claim's fresh token, so ours no longer matches and writes nothing.
    token: String,
}

/// The events waiting for the worker, and the room leased to batches still being written.
#[derive(Debug)]
struct Queue {
    events: VecDeque<Claimed>,
    reserved: usize,
}

impl Queue {
    fn unreserve(&mut self, n: usize) {
        debug_assert!(self.reserved >= n, "more room given back than was leased");
        self.reserved = self.reserved.saturating_sub(n);
    }
}

impl Handoff {
    pub fn new(cap: usize, lease: std::time::Duration, stored: Arc<Notify>) -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::new(Queue {
                events: VecDeque::with_capacity(cap),
                reserved: 0,
            }),
            ready: Notify::new(),
            stored,
            cap,
            lease_ms: lease.as_millis() as i64,
            token: format!("h{:016x}", rand::random::<u64>()),
        })
    }

    /// The lease to insert `n` new events under, if the worker has room for them now. The room
    /// stays reserved until the batch is `committed` or its room given back by `release`, so
    /// writers committing at the same time cannot overfill the queue between them.
    pub fn lease(&self, n: usize) -> Option<Lease> {
        let mut queue = self.queue();
        (queue.events.len() + queue.reserved + n <= self.cap).then(|| {
            queue.reserved += n;
            Lease {
                token: self.token.clone(),
                until: now_ms() + self.lease_ms,
            }
        })
    }

    /// After a commit: frees the room leased to its deliveries (if `leased`), and queues the
    /// events claimed under the lease, or, if it had none and some events are new, tells the
    /// worker to claim them from the table. Returns each delivery's result, in order.
    pub fn committed(&self, batch: InsertedBatch, leased: bool) -> Vec<Inserted> {
        let mut queue = self.queue();
        if leased {
            queue.unreserve(batch.results.len());
        }
        if !batch.claimed.is_empty() {
            queue.events.extend(batch.claimed);
            drop(queue);
            self.ready.notify_one();
        } else if !leased && batch.results.iter().any(|r| matches!(r, Inserted::New(_))) {
            drop(queue);
            self.stored.notify_one();
        }
        batch.results
    }

    /// After a failed commit of `n` deliveries under a lease: frees their room.
    pub fn release(&self, n: usize) {
        self.queue().unreserve(n);
    }

    /// Up to `max` queued events, oldest first.
    pub fn take(&self, max: usize) -> Vec<Claimed> {
        let mut queue = self.queue();
        let n = max.min(queue.events.len());
        queue.events.drain(..n).collect()
    }

    /// Resolves once events are queued (at once if some were queued since the last wait).
    pub async fn ready(&self) {
        self.ready.notified().await
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::inbox::EventRow;

    fn claimed(seq: i64) -> Claimed {
        let row = EventRow {
            seq,
            source: "platform".into(),
            event_id: format!("evt_{seq}"),
            event_type: "balance.available".into(),
            scope: "platform".into(),
            store_id: None,
            account_id: None,
            livemode: 0,
            stripe_created: 0,
            status: "processing".into(),
            attempts: 1,
            next_attempt_at: 0,
            last_error: None,
            received_at: 0,
            applied_at: None,
        };
        (row, Some("{}".into()))
    }

    fn leased(claimed: Vec<Claimed>) -> InsertedBatch {
        InsertedBatch {
            results: claimed.iter().map(|(r, _)| Inserted::New(r.seq)).collect(),
            claimed,
        }
    }

    #[test]
    fn leases_only_while_the_worker_has_room() {
        let h = Handoff::new(3, std::time::Duration::from_secs(60), Default::default());
        let lease = h.lease(2).expect("room for two");
        assert_eq!(lease.token, h.token());
        assert!(lease.until > now_ms());
        h.committed(leased(vec![claimed(1), claimed(2)]), true);
        assert!(h.lease(2).is_none(), "two queued, cap three");
        assert!(h.lease(1).is_some());
        h.release(1);
        let taken: Vec<i64> = h.take(10).into_iter().map(|(r, _)| r.seq).collect();
        assert_eq!(taken, [1, 2], "oldest first, all of them");
        assert!(h.lease(3).is_some(), "room again once taken");
    }

    #[test]
    fn room_leased_to_a_batch_in_flight_is_not_leased_twice() {
        let h = Handoff::new(4, std::time::Duration::from_secs(60), Default::default());
        assert!(h.lease(3).is_some(), "the first writer's batch");
        assert!(h.lease(2).is_none(), "three of four reserved");
        let second = h.lease(1).expect("the last slot");
        assert!(h.lease(1).is_none(), "full while both are in flight");
        h.release(3);
        h.committed(leased(vec![claimed(9)]), true);
        assert_eq!(h.take(8).len(), 1);
        assert!(h.lease(4).is_some(), "a failed batch gives its room back");
        drop(second);
    }

    #[tokio::test]
    async fn new_events_stored_without_a_lease_ring_the_table() {
        let stored = Arc::new(Notify::new());
        let h = Handoff::new(8, std::time::Duration::from_secs(60), stored.clone());
        let batch = InsertedBatch {
            results: vec![Inserted::Duplicate, Inserted::New(3)],
            claimed: Vec::new(),
        };
        assert_eq!(
            h.committed(batch, false),
            [Inserted::Duplicate, Inserted::New(3)]
        );
        tokio::time::timeout(std::time::Duration::from_secs(1), stored.notified())
            .await
            .expect("the worker is told to look in the table");
        assert!(h.take(8).is_empty());
    }

    #[tokio::test]
    async fn a_send_before_the_wait_is_not_lost() {
        let h = Handoff::new(8, std::time::Duration::from_secs(60), Default::default());
        h.lease(1).expect("room");
        h.committed(leased(vec![claimed(7)]), true);
        tokio::time::timeout(std::time::Duration::from_secs(1), h.ready())
            .await
            .expect("the permit was kept");
        assert_eq!(h.take(1).len(), 1);
    }
}

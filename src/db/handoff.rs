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

use super::inbox::{Claimed, Lease};
use super::now_ms;

#[derive(Debug)]
pub struct Handoff {
    queue: Mutex<VecDeque<Claimed>>,
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

impl Handoff {
    pub fn new(cap: usize, lease: std::time::Duration, stored: Arc<Notify>) -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::new(VecDeque::with_capacity(cap)),
            ready: Notify::new(),
            stored,
            cap,
            lease_ms: lease.as_millis() as i64,
            token: format!("h{:016x}", rand::random::<u64>()),
        })
    }

    /// The lease to insert `n` new events under, if the worker has room for them now. Only
    /// the one inbox writer asks, so the room cannot be taken between asking and `send`.
    pub fn lease(&self, n: usize) -> Option<Lease> {
        (self.queue().len() + n <= self.cap).then(|| Lease {
            token: self.token.clone(),
            until: now_ms() + self.lease_ms,
        })
    }

    /// Queues events claimed under `lease` (after their insert committed).
    pub fn send(&self, claimed: Vec<Claimed>) {
        if claimed.is_empty() {
            return;
        }
        self.queue().extend(claimed);
        self.ready.notify_one();
    }

    /// Events were stored unclaimed: the worker must claim them from the table.
    pub fn stored_unclaimed(&self) {
        self.stored.notify_one();
    }

    /// Up to `max` queued events, oldest first.
    pub fn take(&self, max: usize) -> Vec<Claimed> {
        let mut queue = self.queue();
        let n = max.min(queue.len());
        queue.drain(..n).collect()
    }

    /// Resolves once events are queued (at once if some were queued since the last wait).
    pub async fn ready(&self) {
        self.ready.notified().await
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Claimed>> {
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

    #[test]
    fn leases_only_while_the_worker_has_room() {
        let h = Handoff::new(3, std::time::Duration::from_secs(60), Default::default());
        let lease = h.lease(3).expect("room for three");
        assert_eq!(lease.token, h.token());
        assert!(lease.until > now_ms());
        h.send(vec![claimed(1), claimed(2)]);
        assert!(h.lease(2).is_none(), "two queued, cap three");
        assert!(h.lease(1).is_some());
        let taken: Vec<i64> = h.take(10).into_iter().map(|(r, _)| r.seq).collect();
        assert_eq!(taken, [1, 2], "oldest first, all of them");
        assert!(h.lease(3).is_some(), "room again once taken");
    }

    #[tokio::test]
    async fn a_send_before_the_wait_is_not_lost() {
        let h = Handoff::new(8, std::time::Duration::from_secs(60), Default::default());
        h.send(vec![claimed(7)]);
        tokio::time::timeout(std::time::Duration::from_secs(1), h.ready())
            .await
            .expect("the permit was kept");
        assert_eq!(h.take(1).len(), 1);
    }
}

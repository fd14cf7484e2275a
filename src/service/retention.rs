//! Bounded storage: the pruning job's round. A finished event's payload is kept for the
//! retention window and its id as long as Stripe may send the event again (`id_horizon`); a
//! delivered notification for the window.
//! Dead events and failed notifications are kept until replayed, redelivered or discarded.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::jobs::{self, Job};
use super::Services;
use crate::db::{self, now_ms, DbError};

/// Stripe keeps events this long: reconcile (and a resend from the Dashboard) may bring any of
/// them back.
pub const STRIPE_KEEPS: Duration = Duration::from_secs(30 * 86_400);
/// How long Stripe goes on redelivering an event it got no 2xx for.
pub const REDELIVERY: Duration = Duration::from_secs(3 * 86_400);

/// How long an event's id is kept after it was received, so that every copy Stripe can still
/// send (a redelivery, a reconcile, a resend) is answered as a duplicate and never applied
/// twice: the longer of the payload window and Stripe's 30 days, plus its redelivery window.
pub fn id_horizon(window: Duration) -> Duration {
    window.max(STRIPE_KEEPS) + REDELIVERY
}
/// Sequence numbers (or notifications) per delete statement: each holds the write lock briefly.
const CHUNK: i64 = 500;
/// How often SQLite's table sizes are measured.
const MEASURE_EVERY_MS: i64 = 86_400_000;

/// Prunes every `BURSAR_PRUNE_SECS` until `stop`, one process on the database at a time.
pub async fn run(s: Services, stop: tokio_util::sync::CancellationToken) {
    let job = Job {
        name: "prune",
        period: s.config.retention.prune_every,
        first_after: Duration::ZERO,
    };
    let measured = Arc::new(AtomicI64::new(0));
    let round = || {
        let (s, measured) = (s.clone(), measured.clone());
        async move {
            prune(&s).await.map_err(|e| e.to_string())?;
            measure(&s, &measured).await.map_err(|e| e.to_string())
        }
    };
    jobs::every(s.clone(), job, stop, round).await
}

/// What one round pruned.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub payloads: u64,
    pub events: u64,
    pub notifications: u64,
}

/// One round: payloads, then event rows, then delivered notifications.
pub async fn prune(s: &Services) -> Result<Pruned, DbError> {
    let window = s.config.retention.events;
    let now = now_ms();
    let cutoff = now - window.as_millis() as i64;
    let ids_cutoff = now - id_horizon(window).as_millis() as i64;
    let pruned = Pruned {
        payloads: db::inbox::prune::payloads(&s.db, cutoff, CHUNK).await?,
        events: db::inbox::prune::events(&s.db, ids_cutoff, CHUNK).await?,
        notifications: db::notifications::prune_delivered(&s.db, cutoff, CHUNK).await?,
    };
    if pruned != Pruned::default() {
        tracing::info!(
            payloads = pruned.payloads,
            events = pruned.events,
            notifications = pruned.notifications,
            "pruned past the retention window"
        );
    }
    Ok(pruned)
}

/// Sets the table-size gauges on SQLite, where measuring reads every page of the file: once a
/// day, by the process that prunes (PostgreSQL's are read at every scrape).
async fn measure(s: &Services, last: &AtomicI64) -> Result<(), DbError> {
    let now = now_ms();
    if s.db.engine() != db::Engine::Sqlite || now - last.load(Ordering::Relaxed) < MEASURE_EVERY_MS
    {
        return Ok(());
    }
    let sizes = db::storage::table_sizes(&s.db).await?;
    s.metrics.set_table_sizes(&sizes);
    last.store(now, Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_outlive_every_copy_stripe_can_send() {
        let days = |d: u64| Duration::from_secs(d * 86_400);
        assert_eq!(id_horizon(days(30)), days(33));
        assert_eq!(id_horizon(Duration::from_secs(3600)), days(33));
        assert_eq!(id_horizon(days(90)), days(93));
    }
}

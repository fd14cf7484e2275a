//! Bounded storage: the pruning job's round. A finished event's payload is kept for the
//! retention window and its id three days longer (Stripe redelivers for up to three days, and a
//! redelivery must still be answered as a duplicate); a delivered notification for the window.
//! Dead events and failed notifications are kept until replayed, redelivered or discarded.

use std::time::Duration;

use super::jobs::{self, Job};
use super::Services;
use crate::db::{self, now_ms, DbError};

/// How long past the payload window an event id is kept: Stripe's redelivery window.
pub const IDS_BEYOND: Duration = Duration::from_secs(3 * 86_400);
/// Sequence numbers (or notifications) per delete statement: each holds the write lock briefly.
const CHUNK: i64 = 500;

/// Prunes every `BURSAR_PRUNE_SECS` until `stop`, one process on the database at a time.
pub async fn run(s: Services, stop: tokio_util::sync::CancellationToken) {
    let job = Job {
        name: "prune",
        period: s.config.retention.prune_every,
        first_after: Duration::ZERO,
    };
    let round = || {
        let s = s.clone();
        async move { prune(&s).await.map(drop).map_err(|e| e.to_string()) }
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

/// One round: payloads, then event rows, then delivered notifications; then the storage
/// gauges.
pub async fn prune(s: &Services) -> Result<Pruned, DbError> {
    let window = s.config.retention.events.as_millis() as i64;
    let cutoff = now_ms() - window;
    let pruned = Pruned {
        payloads: db::inbox::prune::payloads(&s.db, cutoff, CHUNK).await?,
        events: db::inbox::prune::events(&s.db, cutoff - IDS_BEYOND.as_millis() as i64, CHUNK)
            .await?,
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
    measure(s).await?;
    Ok(pruned)
}

/// Sets the table-size gauges (walking the tables' pages on SQLite: once a round, not at every
/// scrape).
pub async fn measure(s: &Services) -> Result<(), DbError> {
    let sizes = db::storage::table_sizes(&s.db).await?;
    s.metrics.set_table_sizes(&sizes);
    Ok(())
}

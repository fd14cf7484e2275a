//! What `/healthz` and `/metrics` read from the database.

use std::time::Duration;

use super::Services;
use crate::clock::now_ms;
use crate::db;

/// Whether the database answers a trivial query within `within`.
pub async fn database_answers(s: &Services, within: Duration) -> bool {
    matches!(tokio::time::timeout(within, s.db.ping()).await, Ok(Ok(())))
}

/// Brings the inbox and outbox gauges up to date from the database; a read that fails leaves
/// its gauges as they were, and says so in the log.
pub async fn refresh_gauges(s: &Services) {
    match (
        db::inbox::status_counts(&s.db).await,
        db::inbox::oldest_unfinished(&s.db).await,
    ) {
        (Ok(counts), Ok(oldest)) => {
            let lag = oldest.map_or(0, |t| (now_ms() - t) / 1000);
            s.metrics.set_inbox(&counts, lag);
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "the inbox could not be read for metrics")
        }
    }
    match db::notifications::backlog(&s.db).await {
        Ok((waiting, oldest)) => {
            let age = oldest.map_or(0, |t| (now_ms() - t) / 1000);
            s.metrics.set_notification_backlog(waiting, age);
        }
        Err(e) => tracing::warn!(error = %e, "the outbox could not be read for metrics"),
    }
    match db::storage::database_bytes(&s.db).await {
        Ok((total, free)) => s.metrics.set_database_bytes(total, free),
        Err(e) => tracing::warn!(error = %e, "the database's size could not be read"),
    }
    // Cheap on PostgreSQL, so every process shows them; SQLite's are measured by pruning.
    if s.db.engine() == db::Engine::Postgres {
        match db::storage::table_sizes(&s.db).await {
            Ok(sizes) => s.metrics.set_table_sizes(&sizes),
            Err(e) => tracing::warn!(error = %e, "table sizes could not be read"),
        }
    }
    match db::inbox::prune::oldest_kept(&s.db).await {
        Ok((event, payload)) => {
            let age = |at: Option<i64>| at.map_or(0, |t| (now_ms() - t) / 1000);
            s.metrics.set_oldest_kept(age(event), age(payload));
        }
        Err(e) => tracing::warn!(error = %e, "the inbox's oldest events could not be read"),
    }
}

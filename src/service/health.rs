//! What `/healthz`, `/metrics` and the console's overview read from the database.

use std::time::Duration;

use super::{Result, Services};
use crate::clock::now_ms;
use crate::db;
use crate::db::operator::SignatureFailure;

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

/// The state of the queues, as the operator console's overview shows it.
pub struct Overview {
    /// Events per status.
    pub inbox: Vec<(String, i64)>,
    /// When the oldest event not yet finished was received (unix ms).
    pub oldest_unfinished: Option<i64>,
    pub dead_events: i64,
    /// Orders pending for longer than the sweep's age (`pending_age`).
    pub stale_orders: i64,
    pub pending_age: Duration,
    /// Notifications waiting to be delivered, and since when the oldest has (unix ms).
    pub notification_backlog: i64,
    pub oldest_notification: Option<i64>,
    pub troubled_endpoints: Vec<TroubledEndpoint>,
    pub signature_failures: Vec<SignatureFailure>,
}

/// A notification endpoint that is disabled or failing.
pub struct TroubledEndpoint {
    pub id: String,
    pub disabled: bool,
    pub reason: Option<String>,
    /// Since when every delivery has failed (unix ms).
    pub failing_since: Option<i64>,
}

/// Reads the overview: counts only, nothing that calls Stripe.
pub async fn overview(s: &Services) -> Result<Overview> {
    let inbox = db::inbox::status_counts(&s.db).await?;
    let dead_events = inbox
        .iter()
        .find(|(status, _)| status == "dead")
        .map_or(0, |(_, n)| *n);
    let pending_age = s.config.order_pending_age;
    let before = now_ms() - pending_age.as_millis() as i64;
    let (notification_backlog, oldest_notification) = db::notifications::backlog(&s.db).await?;
    let troubled_endpoints = db::notifications::troubled_endpoints(&s.db)
        .await?
        .into_iter()
        .map(|(id, disabled, reason, failing_since)| TroubledEndpoint {
            id,
            disabled: disabled != 0,
            reason,
            failing_since,
        })
        .collect();
    Ok(Overview {
        oldest_unfinished: db::inbox::oldest_unfinished(&s.db).await?,
        stale_orders: db::orders::count_pending_before(&s.db, before, None).await?,
        signature_failures: signature_failures(s).await?,
        inbox,
        dead_events,
        pending_age,
        notification_backlog,
        oldest_notification,
        troubled_endpoints,
    })
}

/// Deliveries refused for their signature, per webhook door (`platform`, `connect`,
/// `store:<id>`), since each door's last good one.
pub async fn signature_failures(s: &Services) -> Result<Vec<SignatureFailure>> {
    Ok(db::operator::signature_failures(&s.db).await?)
}

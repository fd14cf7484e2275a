//! For whoever runs Bursar: `/healthz` and `/metrics`.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::AppState;
use crate::service::{health, Services};

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or what is down: `worker_down`, `notifier_down`, `inbox_down` or
    /// `database_unavailable`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerHealth>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WorkerHealth {
    pub last_loop_ms_ago: i64,
}

/// 200 only while the database answers, the inbox writer runs and the worker is looping:
/// without any of them no webhook is acknowledged or applied.
#[utoipa::path(get, path = "/healthz", tag = "operations", operation_id = "healthz",
    responses(
        (status = 200, description = "Everything answers", body = Health),
        (status = 503, description = "The database, the inbox writer or the worker is down", body = Health),
    ))]
pub async fn healthz(State(state): State<AppState>) -> Response {
    let unavailable = |status: &'static str, detail: String| {
        let health = Health {
            status,
            detail: Some(detail),
            worker: None,
        };
        (StatusCode::SERVICE_UNAVAILABLE, Json(health)).into_response()
    };
    if let Err(why) = state.worker.check(worker_stale_after(&state.services)) {
        return unavailable("worker_down", format!("the event worker is {why}"));
    }
    if let Err(why) = state.notifier.check(NOTIFIER_STALE_AFTER) {
        return unavailable(
            "notifier_down",
            format!("the notification deliverer is {why}"),
        );
    }
    if state.deliveries.is_closed() {
        return unavailable("inbox_down", "the inbox writer has stopped".into());
    }
    match health::database_answers(&state.services, Duration::from_secs(2)).await {
        true => Json(Health {
            status: "ok",
            detail: None,
            worker: Some(WorkerHealth {
                last_loop_ms_ago: state.worker.last_beat_age_ms(),
            }),
        })
        .into_response(),
        false => unavailable(
            "database_unavailable",
            "the database did not answer within 2 s".into(),
        ),
    }
}

/// The deliverer sleeps at most its idle poll between turns; a round sends at most a few 15 s
/// attempts per endpoint, side by side.
pub(crate) const NOTIFIER_STALE_AFTER: Duration = Duration::from_secs(120);

/// A turn of the worker's loop is one batch's database work (it never waits on Stripe) plus at
/// most a poll interval; one that has not come round in a few of those and 30 s for a slow
/// database is stuck.
pub(crate) fn worker_stale_after(s: &Services) -> Duration {
    s.config.worker.poll_interval * 4 + Duration::from_secs(30)
}

/// Prometheus text: counters kept in process, the inbox read from the database now.
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    health::refresh_gauges(&state.services).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.services.metrics.render(),
    )
        .into_response()
}

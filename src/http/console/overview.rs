//! The overview (what runs, what waits, what failed) and the doctor's checks, run on demand:
//! they ask Stripe, so they are a button, not part of every overview.

use std::time::Duration;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::format::{href, Time};
use super::session::{ConsoleActionForm, ConsoleSession, SignedForm};
use super::{page, Chrome};
use crate::http::operations::{worker_stale_after, NOTIFIER_STALE_AFTER};
use crate::http::AppState;
use crate::service::doctor::{self, Check};
use crate::service::health;

#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    chrome: Chrome,
    health: Vec<HealthLine>,
    /// None when the database could not be read.
    queues: Option<Queues>,
}

/// One part of Bursar that must be running.
struct HealthLine {
    name: &'static str,
    ok: bool,
    detail: String,
}

struct Queues {
    inbox: Vec<StatusCount>,
    dead_events: i64,
    dead_href: String,
    oldest_unfinished: Option<Time>,
    stale_orders: i64,
    pending_age: String,
    pending_href: String,
    notification_backlog: i64,
    oldest_notification: Option<Time>,
    troubled_endpoints: Vec<TroubledLine>,
    signature_failures: Vec<SignatureLine>,
}

struct StatusCount {
    status: String,
    count: i64,
    href: String,
}

struct TroubledLine {
    id: String,
    state: String,
    since: Option<Time>,
}

struct SignatureLine {
    door: String,
    count: i64,
    since: Time,
    last: Time,
    reason: String,
}

/// `GET /console`: health, queues and failures, read from memory and the database only.
#[utoipa::path(get, path = "/", tag = "console", operation_id = "console_overview",
    responses(
        (status = 200, description = "The overview", content_type = "text/html", body = String),
        (status = 303, description = "No session: on to the login page"),
    ))]
pub async fn overview(State(state): State<AppState>, session: ConsoleSession) -> Response {
    let s = &state.services;
    let database = health::database_answers(s, Duration::from_secs(2)).await;
    let live = |name: &'static str, check: Result<(), String>| HealthLine {
        name,
        ok: check.is_ok(),
        detail: check.err().unwrap_or_else(|| "running".to_owned()),
    };
    let running = vec![
        HealthLine {
            name: "Database",
            ok: database,
            detail: if database {
                "answers".to_owned()
            } else {
                "did not answer within 2 s".to_owned()
            },
        },
        HealthLine {
            name: "Inbox writer",
            ok: !state.deliveries.is_closed(),
            detail: if state.deliveries.is_closed() {
                "stopped: no webhook can be stored".to_owned()
            } else {
                "running".to_owned()
            },
        },
        live("Event worker", state.worker.check(worker_stale_after(s))),
        live(
            "Notification deliverer",
            state.notifier.check(NOTIFIER_STALE_AFTER),
        ),
    ];
    let queues = match health::overview(s).await {
        Ok(o) => Some(queues(o)),
        Err(e) => {
            tracing::error!(error = %e, "the console's overview could not be read");
            None
        }
    };
    let html = OverviewPage {
        chrome: session.chrome("overview"),
        health: running,
        queues,
    }
    .render();
    page(StatusCode::OK, html)
}

fn queues(o: health::Overview) -> Queues {
    Queues {
        inbox: o
            .inbox
            .into_iter()
            .map(|(status, count)| StatusCount {
                href: href("/console/events", &[("status", status.as_str())]),
                status,
                count,
            })
            .collect(),
        dead_events: o.dead_events,
        dead_href: href("/console/events", &[("status", "dead")]),
        oldest_unfinished: o.oldest_unfinished.map(Time::ms),
        stale_orders: o.stale_orders,
        pending_age: humantime::format_duration(o.pending_age).to_string(),
        pending_href: href("/console/orders", &[("status", "pending")]),
        notification_backlog: o.notification_backlog,
        oldest_notification: o.oldest_notification.map(Time::ms),
        troubled_endpoints: o
            .troubled_endpoints
            .into_iter()
            .map(|t| TroubledLine {
                state: match (t.disabled, t.reason) {
                    (true, Some(reason)) => format!("disabled: {reason}"),
                    (true, None) => "disabled".to_owned(),
                    (false, _) => "failing".to_owned(),
                },
                since: t.failing_since.map(Time::ms),
                id: t.id,
            })
            .collect(),
        signature_failures: o
            .signature_failures
            .into_iter()
            .map(|f| SignatureLine {
                door: f.source,
                count: f.count,
                since: Time::ms(f.since),
                last: Time::ms(f.last_at),
                reason: f.reason,
            })
            .collect(),
    }
}

#[derive(Template)]
#[template(path = "console/doctor.html")]
struct DoctorPage {
    chrome: Chrome,
    /// None until the checks are run.
    checks: Option<Vec<Check>>,
    error: Option<String>,
}

/// `GET /console/doctor`: what the doctor checks, and the button that runs it.
#[utoipa::path(get, path = "/doctor", tag = "console", operation_id = "console_doctor_page",
    responses(
        (status = 200, description = "The doctor's page, with its button", content_type = "text/html", body = String),
        (status = 303, description = "No session: on to the login page"),
    ))]
pub async fn doctor_page(session: ConsoleSession) -> Response {
    let html = DoctorPage {
        chrome: session.chrome("overview"),
        checks: None,
        error: None,
    }
    .render();
    page(StatusCode::OK, html)
}

/// `POST /console/doctor`: runs `bursar doctor`'s checks (they call Stripe) and shows them.
#[utoipa::path(post, path = "/doctor", tag = "console", operation_id = "console_doctor_run",
    request_body(content = ConsoleActionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The doctor's findings", content_type = "text/html", body = String),
        (status = 303, description = "No session: on to the login page"),
        (status = 403, description = "The form's CSRF token is missing or wrong", content_type = "text/html", body = String),
        (status = 503, description = "The checks could not be completed", content_type = "text/html", body = String),
    ))]
pub async fn doctor_run(
    State(state): State<AppState>,
    SignedForm { session, .. }: SignedForm<ConsoleActionForm>,
) -> Response {
    let (status, checks, error) = match doctor::run(&state.services, None).await {
        Ok(checks) => (StatusCode::OK, Some(checks), None),
        Err(e) => {
            tracing::error!(error = %e, "the doctor's checks failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                Some("The checks could not be completed; the server log says why.".to_owned()),
            )
        }
    };
    let html = DoctorPage {
        chrome: session.chrome("overview"),
        checks,
        error,
    }
    .render();
    page(status, html)
}

//! Replaying events: one, or every event of a list's filter behind a confirmation page that
//! says how many (`POST /api/v1/events/{id}/replay` for each).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::events::Checked;
use super::session::{ConsoleActionForm, CsrfField, SignedForm};
use super::{failed, page, refused, Chrome};
use crate::db::inbox::Filter;
use crate::http::AppState;
use crate::service::events;
use crate::service::{Result, ServiceError, Services};

/// The most events one bulk replay queues; a larger filter is replayed newest first, a click
/// at a time.
const BULK_REPLAY_MAX: usize = 1000;

/// `POST /console/events/{id}/replay`: applies the event again (`POST /api/v1/events/{id}/replay`).
#[utoipa::path(post, path = "/events/{id}/replay", tag = "console", operation_id = "console_event_replay",
    params(("id" = String, Path, description = "Bursar's number for the event")),
    request_body(content = ConsoleActionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Queued again: back to the event (or, without a session, on to the login page)"),
        (status = 403, description = "The form's CSRF token is missing or wrong", content_type = "text/html", body = String),
        (status = 404, description = "No such event", content_type = "text/html", body = String),
        (status = 409, description = "The event is being applied now, or its payload was pruned", content_type = "text/html", body = String),
    ))]
pub async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm { session, .. }: SignedForm<ConsoleActionForm>,
) -> Response {
    match events::replay(&state.services, &id, None).await {
        Ok(e) => {
            state.stored_notify();
            Redirect::to(&format!("/console/events/{}?done=replayed", e.id)).into_response()
        }
        Err(e) => failed(session.chrome("events"), e, Some("/console/events")),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ConsoleReplayForm {
    /// The session's CSRF token.
    csrf_token: Option<String>,
    /// The list's filter, as on its page.
    status: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    store_id: Option<String>,
    /// `yes` on the confirmation page's form; otherwise the confirmation page is shown.
    confirm: Option<String>,
    /// From the confirmation page: the newest event it counted, and how many. The replay takes
    /// no event newer, and no more, than the operator saw counted.
    through: Option<i64>,
    count: Option<usize>,
}

impl CsrfField for ConsoleReplayForm {
    fn csrf_token(&self) -> Option<&str> {
        self.csrf_token.as_deref()
    }
}

#[derive(Template)]
#[template(path = "console/replay_confirm.html")]
struct ReplayConfirmPage {
    chrome: Chrome,
    status: String,
    event_type: String,
    store_id: String,
    count: usize,
    /// The newest event counted.
    through: i64,
    /// More match than one replay takes.
    capped: bool,
    max: usize,
    back: String,
}

/// `POST /console/events/replay`: every event of the filter applied again (at most 1000 a
/// time, newest first), after a confirmation page that says how many.
#[utoipa::path(post, path = "/events/replay", tag = "console", operation_id = "console_events_replay",
    request_body(content = ConsoleReplayForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The confirmation page", content_type = "text/html", body = String),
        (status = 303, description = "Replayed: back to the list, saying how many (or, without a session, on to the login page)"),
        (status = 400, description = "An unknown status or a bad store id", content_type = "text/html", body = String),
        (status = 403, description = "The form's CSRF token is missing or wrong", content_type = "text/html", body = String),
    ))]
pub async fn replay_all(
    State(state): State<AppState>,
    SignedForm { session, form }: SignedForm<ConsoleReplayForm>,
) -> Response {
    let checked = match Checked::parse(form.status, form.event_type, form.store_id) {
        Ok(c) => c,
        Err(text) => return refused(session.chrome("events"), &text, Some("/console/events")),
    };
    let s = &state.services;
    let back = checked.href(&[]);
    if !checked.is_set() {
        return refused(
            session.chrome("events"),
            "A bulk replay needs a filter: a status, a type or a store.",
            Some(&back),
        );
    }
    if form.confirm.as_deref() != Some("yes") {
        let found = match matching(s, &checked.filter(), None, BULK_REPLAY_MAX + 1).await {
            Ok(m) => m,
            Err(e) => return failed(session.chrome("events"), e, Some(&back)),
        };
        let html = ReplayConfirmPage {
            chrome: session.chrome("events"),
            count: found.len().min(BULK_REPLAY_MAX),
            through: found.first().copied().unwrap_or(0),
            capped: found.len() > BULK_REPLAY_MAX,
            max: BULK_REPLAY_MAX,
            status: checked.status,
            event_type: checked.event_type,
            store_id: checked.store_id,
            back,
        }
        .render();
        return page(StatusCode::OK, html);
    }
    let (Some(through), Some(count)) = (form.through, form.count) else {
        return refused(
            session.chrome("events"),
            "The confirmation is incomplete. Start the replay again from the list.",
            Some(&back),
        );
    };
    let max = count.min(BULK_REPLAY_MAX);
    let seqs = match matching(s, &checked.filter(), Some(through.saturating_add(1)), max).await {
        Ok(m) => m,
        Err(e) => return failed(session.chrome("events"), e, Some(&back)),
    };
    let (mut replayed, mut skipped) = (0u32, 0u32);
    for seq in seqs {
        match events::replay(s, &seq.to_string(), None).await {
            Ok(_) => replayed += 1,
            // In flight, pruned, or gone meanwhile: the others are still replayed.
            Err(ServiceError::Conflict { .. } | ServiceError::NotFound(_)) => skipped += 1,
            Err(e) => {
                if replayed > 0 {
                    state.stored_notify();
                }
                return failed(session.chrome("events"), e, Some(&back));
            }
        }
    }
    if replayed > 0 {
        state.stored_notify();
    }
    tracing::info!(replayed, skipped, operator = %session.operator(), "events replayed from the console");
    let to = checked.href(&[
        ("replayed", replayed.to_string().as_str()),
        ("skipped", skipped.to_string().as_str()),
    ]);
    Redirect::to(&to).into_response()
}

/// The ids of up to `max` events of the filter older than `before`, newest first.
async fn matching(
    s: &Services,
    filter: &Filter,
    mut before: Option<i64>,
    max: usize,
) -> Result<Vec<i64>> {
    let mut seqs = Vec::new();
    if max == 0 {
        return Ok(seqs);
    }
    loop {
        let found = events::list(s, filter, before, 100).await?;
        seqs.extend(found.data.iter().map(|e| e.id));
        if seqs.len() >= max {
            seqs.truncate(max);
            return Ok(seqs);
        }
        match found.next_cursor.and_then(|c| c.parse::<i64>().ok()) {
            Some(c) => before = Some(c),
            None => return Ok(seqs),
        }
    }
}

//! The webhook inbox: events filtered by status, type and store, and one event with its
//! payload. Replays are in `replay`.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::format::{href, Time};
use super::session::ConsoleSession;
use super::{choices, failed, page, page_cursor, refused, Choice, Chrome, ConsoleQuery, PAGE_SIZE};
use crate::db::inbox::Filter;
use crate::domain::StoreId;
use crate::http::AppState;
use crate::service::events::{self, EventView, STATUSES};

#[derive(Template)]
#[template(path = "console/events.html")]
struct EventsPage {
    chrome: Chrome,
    notice: Option<String>,
    statuses: Vec<Choice>,
    status: String,
    event_type: String,
    store_id: String,
    /// Whether a filter is set (a bulk replay is offered only for a filtered list).
    filtered: bool,
    events: Vec<EventLine>,
    next: Option<String>,
}

pub(super) struct EventLine {
    pub(super) seq: i64,
    pub(super) href: String,
    pub(super) event_id: String,
    pub(super) event_type: String,
    pub(super) status: String,
    pub(super) store_id: Option<String>,
    pub(super) attempts: i64,
    pub(super) received: Time,
    pub(super) last_error: Option<String>,
}

impl From<EventView> for EventLine {
    fn from(e: EventView) -> Self {
        Self {
            href: format!("/console/events/{}", e.id),
            seq: e.id,
            event_id: e.event_id,
            event_type: e.event_type,
            status: e.status,
            store_id: e.store_id,
            attempts: e.attempts,
            received: Time::secs(e.received),
            last_error: e.last_error,
        }
    }
}

/// The list's filter, empty values meaning "any", and what a bulk replay did.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// `pending`, `processing`, `retrying`, `applied`, `ignored`, `unrouted`, `dead` or
    /// `discarded`.
    status: Option<String>,
    /// A Stripe event type, e.g. `payment_intent.succeeded`.
    #[serde(rename = "type")]
    event_type: Option<String>,
    /// Only events about this store.
    store_id: Option<String>,
    /// The previous page's last event, as the API's `next_cursor`.
    cursor: Option<String>,
    /// After a bulk replay: how many were queued again, and how many could not be.
    replayed: Option<u32>,
    skipped: Option<u32>,
}

/// A filter checked: a known status, a store id, a type of sane length.
pub(super) struct Checked {
    pub(super) status: String,
    pub(super) event_type: String,
    pub(super) store_id: String,
}

impl Checked {
    pub(super) fn parse(
        status: Option<String>,
        event_type: Option<String>,
        store_id: Option<String>,
    ) -> Result<Self, String> {
        let clean = |v: Option<String>| v.unwrap_or_default().trim().to_owned();
        let (status, event_type, store_id) = (clean(status), clean(event_type), clean(store_id));
        if !status.is_empty() && !STATUSES.contains(&status.as_str()) {
            return Err(format!(
                "The status must be one of {}.",
                STATUSES.join(", ")
            ));
        }
        if !store_id.is_empty() && StoreId::parse(&store_id).is_err() {
            return Err("The store id is not a store's id (st_…).".to_owned());
        }
        if event_type.len() > 255 {
            return Err("The type is too long to be a Stripe event type.".to_owned());
        }
        Ok(Self {
            status,
            event_type,
            store_id,
        })
    }

    pub(super) fn filter(&self) -> Filter {
        let some = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        Filter {
            store_id: some(&self.store_id),
            status: some(&self.status),
            event_type: some(&self.event_type),
        }
    }

    pub(super) fn is_set(&self) -> bool {
        !(self.status.is_empty() && self.event_type.is_empty() && self.store_id.is_empty())
    }

    /// The list's address with this filter (and more parameters).
    pub(super) fn href(&self, more: &[(&str, &str)]) -> String {
        let mut params = vec![
            ("status", self.status.as_str()),
            ("type", self.event_type.as_str()),
            ("store_id", self.store_id.as_str()),
        ];
        params.extend_from_slice(more);
        href("/console/events", &params)
    }
}

/// `GET /console/events`: the inbox, newest first.
#[utoipa::path(get, path = "/events", tag = "console", operation_id = "console_events",
    params(EventsQuery),
    responses(
        (status = 200, description = "A page of events", content_type = "text/html", body = String),
        (status = 303, description = "No session: on to the login page"),
        (status = 400, description = "An unknown status, a bad store id or cursor", content_type = "text/html", body = String),
    ))]
pub async fn list(
    State(state): State<AppState>,
    session: ConsoleSession,
    ConsoleQuery(q): ConsoleQuery<EventsQuery>,
) -> Response {
    let chrome = session.chrome("events");
    let back = Some("/console/events");
    let checked = match Checked::parse(q.status, q.event_type, q.store_id) {
        Ok(c) => c,
        Err(text) => return refused(chrome, &text, back),
    };
    let before = match page_cursor(q.cursor, |c| c.parse::<i64>()) {
        Ok(c) => c,
        Err(text) => return refused(chrome, text, back),
    };
    let found = match events::list(&state.services, &checked.filter(), before, PAGE_SIZE).await {
        Ok(found) => found,
        Err(e) => return failed(chrome, e, back),
    };
    let notice = q.replayed.map(|n| {
        let skipped = q.skipped.unwrap_or(0);
        let mut text = format!("{n} event(s) queued to be applied again.");
        if skipped > 0 {
            text.push_str(&format!(
                " {skipped} could not be: being applied right now, or their payload was pruned."
            ));
        }
        text
    });
    let next = found
        .next_cursor
        .map(|c| checked.href(&[("cursor", c.as_str())]));
    let html = EventsPage {
        chrome,
        notice,
        statuses: choices(STATUSES, Some(checked.status.as_str())),
        filtered: checked.is_set(),
        events: found.data.into_iter().map(EventLine::from).collect(),
        status: checked.status,
        event_type: checked.event_type,
        store_id: checked.store_id,
        next,
    }
    .render();
    page(StatusCode::OK, html)
}

#[derive(Template)]
#[template(path = "console/event.html")]
struct EventPage {
    chrome: Chrome,
    notice: Option<&'static str>,
    event: EventLine,
    scope: String,
    account: Option<String>,
    livemode: bool,
    created: Time,
    next_attempt: Option<Time>,
    applied: Option<Time>,
    store_href: Option<String>,
    /// The payload as Stripe sent it, indented; None once pruned.
    payload: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// What the previous action did, to say so (`replayed`).
    done: Option<String>,
}

/// `GET /console/events/{id}`: one event, with its payload.
#[utoipa::path(get, path = "/events/{id}", tag = "console", operation_id = "console_event",
    params(("id" = String, Path, description = "Bursar's number for the event (or Stripe's `evt_…` id)"), EventQuery),
    responses(
        (status = 200, description = "The event", content_type = "text/html", body = String),
        (status = 303, description = "No session: on to the login page"),
        (status = 404, description = "No such event", content_type = "text/html", body = String),
        (status = 409, description = "The id came through several endpoints: open it by number", content_type = "text/html", body = String),
    ))]
pub async fn show(
    State(state): State<AppState>,
    session: ConsoleSession,
    Path(id): Path<String>,
    ConsoleQuery(q): ConsoleQuery<EventQuery>,
) -> Response {
    let chrome = session.chrome("events");
    let e = match events::get(&state.services, &id, None).await {
        Ok(e) => e,
        Err(e) => return failed(chrome, e, Some("/console/events")),
    };
    let payload = e
        .payload
        .as_ref()
        .filter(|p| !p.is_null())
        .map(|p| serde_json::to_string_pretty(p).unwrap_or_default());
    let html = EventPage {
        chrome,
        notice: match q.done.as_deref() {
            Some("replayed") => Some("Queued to be applied again; reload to see it applied."),
            _ => None,
        },
        scope: e.scope.clone(),
        account: e.account.clone(),
        livemode: e.livemode,
        created: Time::secs(e.created),
        next_attempt: e.next_attempt.map(Time::secs),
        applied: e.applied.map(Time::secs),
        store_href: e.store_id.as_ref().map(|s| format!("/console/stores/{s}")),
        payload,
        event: EventLine::from(e),
    }
    .render();
    page(StatusCode::OK, html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked_and_carried() {
        let c = Checked::parse(Some("dead".into()), Some(" payout.failed ".into()), None).unwrap();
        assert!(c.is_set());
        assert_eq!(
            c.href(&[("cursor", "7")]),
            "/console/events?status=dead&type=payout.failed&cursor=7"
        );
        assert_eq!(c.filter().status.as_deref(), Some("dead"));
        assert_eq!(c.filter().store_id, None);
        assert!(Checked::parse(Some("gone".into()), None, None).is_err());
        assert!(Checked::parse(None, None, Some("acct_1".into())).is_err());
        assert!(!Checked::parse(None, Some(String::new()), None)
            .unwrap()
            .is_set());
    }
}

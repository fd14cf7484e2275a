//! Notifications to the platform's app: the endpoints (a disabled one re-enabled here) and the
//! delivery log (a delivery sent again here). Endpoint secrets are never shown.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::format::{href, Time};
use super::session::{ConsoleActionForm, ConsoleSession, SignedForm};
use super::{choices, failed, page, page_cursor, refused, Choice, Chrome, ConsoleQuery, PAGE_SIZE};
use crate::domain::{EndpointId, NotificationId};
use crate::http::AppState;
use crate::service::notifications::{self, EndpointView, LogQuery, NotificationView, Patch};

const DELIVERY_STATUSES: &[&str] = &["pending", "delivered", "failed", "held"];

#[derive(Template)]
#[template(path = "console/notifications.html")]
struct NotificationsPage {
    chrome: Chrome,
    notice: Option<&'static str>,
    endpoints: Vec<EndpointLine>,
    endpoints_next: Option<String>,
    statuses: Vec<Choice>,
    endpoint_id: String,
    event_type: String,
    deliveries: Vec<DeliveryLine>,
    deliveries_next: Option<String>,
}

struct EndpointLine {
    id: String,
    url: String,
    events: String,
    description: Option<String>,
    disabled: bool,
    disabled_reason: Option<String>,
    failing_since: Option<Time>,
    deliveries_href: String,
}

impl From<EndpointView> for EndpointLine {
    fn from(e: EndpointView) -> Self {
        Self {
            deliveries_href: href("/console/notifications", &[("endpoint_id", e.id.as_str())]),
            id: e.id,
            url: e.url,
            events: e.events.join(", "),
            description: e.description,
            disabled: e.disabled,
            disabled_reason: e.disabled_reason,
            failing_since: e.failing_since.map(Time::secs),
        }
    }
}

pub(super) struct DeliveryLine {
    pub(super) id: String,
    pub(super) endpoint_id: String,
    pub(super) event_type: String,
    pub(super) store_id: Option<String>,
    pub(super) seq: i64,
    pub(super) status: String,
    pub(super) attempts: usize,
    /// The last attempt's answer: its status code, or the error.
    pub(super) last_answer: Option<String>,
    pub(super) created: Time,
    pub(super) next_attempt: Option<Time>,
    pub(super) delivered: Option<Time>,
}

impl From<NotificationView> for DeliveryLine {
    fn from(n: NotificationView) -> Self {
        let last_answer = n.attempts.last().map(|a| match (a.status_code, &a.error) {
            (Some(code), _) => format!("HTTP {code} in {} ms", a.latency_ms),
            (None, Some(error)) => error.clone(),
            (None, None) => "no answer".to_owned(),
        });
        Self {
            attempts: n.attempts.len(),
            last_answer,
            id: n.id,
            endpoint_id: n.endpoint_id,
            event_type: n.event_type,
            store_id: n.store_id,
            seq: n.seq,
            status: n.status,
            created: Time::secs(n.created),
            next_attempt: n.next_attempt_at.map(Time::secs),
            delivered: n.delivered_at.map(Time::secs),
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationsQuery {
    /// Only deliveries to this endpoint (`ne_…`).
    endpoint_id: Option<String>,
    /// `pending`, `delivered`, `failed` or `held`.
    status: Option<String>,
    /// A notification type, e.g. `order.paid`.
    #[serde(rename = "type")]
    event_type: Option<String>,
    /// The delivery log's next page (the API's `next_cursor`).
    cursor: Option<String>,
    /// The endpoints' next page (the API's `next_cursor`).
    endpoints_cursor: Option<String>,
    /// What the previous action did, to say so (`redelivered`, `enabled`).
    done: Option<String>,
}

/// `GET /console/notifications`: the endpoints, and the delivery log newest first.
#[utoipa::path(get, path = "/notifications", tag = "console", operation_id = "console_notifications",
    params(NotificationsQuery),
    responses(
        (status = 200, description = "The endpoints and a page of deliveries", content_type = "text/html", body = String),
        (status = 303, description = "No session: on to the login page"),
        (status = 400, description = "A bad status, endpoint id or cursor", content_type = "text/html", body = String),
    ))]
pub async fn list(
    State(state): State<AppState>,
    session: ConsoleSession,
    ConsoleQuery(q): ConsoleQuery<NotificationsQuery>,
) -> Response {
    let chrome = session.chrome("notifications");
    let back = Some("/console/notifications");
    let s = &state.services;
    let clean = |v: Option<String>| v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let (endpoint_id, status, event_type, cursor) = (
        clean(q.endpoint_id),
        clean(q.status),
        clean(q.event_type),
        clean(q.cursor),
    );
    let endpoints_cursor = match page_cursor(clean(q.endpoints_cursor), EndpointId::parse) {
        Ok(c) => c,
        Err(text) => return refused(chrome, text, back),
    };
    let (endpoints, endpoints_next) =
        match notifications::list_endpoints(s, endpoints_cursor.as_ref(), PAGE_SIZE).await {
            Ok(found) => found,
            Err(e) => return failed(chrome, e, back),
        };
    let log = notifications::log(
        s,
        LogQuery {
            endpoint_id: endpoint_id.clone(),
            status: status.clone(),
            event_type: event_type.clone(),
            cursor,
            limit: PAGE_SIZE,
        },
    )
    .await;
    let (deliveries, deliveries_next) = match log {
        Ok(found) => found,
        Err(e) => return failed(chrome, e, back),
    };
    let (endpoint_id, status, event_type) = (
        endpoint_id.unwrap_or_default(),
        status.unwrap_or_default(),
        event_type.unwrap_or_default(),
    );
    let endpoints_next = endpoints_next.map(|c| {
        href(
            "/console/notifications",
            &[
                ("endpoint_id", endpoint_id.as_str()),
                ("status", status.as_str()),
                ("type", event_type.as_str()),
                ("endpoints_cursor", c.as_str()),
            ],
        )
    });
    let deliveries_next = deliveries_next.map(|c| {
        href(
            "/console/notifications",
            &[
                ("endpoint_id", endpoint_id.as_str()),
                ("status", status.as_str()),
                ("type", event_type.as_str()),
                ("cursor", c.as_str()),
            ],
        )
    });
    let html = NotificationsPage {
        chrome,
        notice: match q.done.as_deref() {
            Some("redelivered") => Some("The delivery is queued to be sent again."),
            Some("enabled") => Some("The endpoint is enabled again."),
            _ => None,
        },
        endpoints: endpoints.into_iter().map(EndpointLine::from).collect(),
        endpoints_next,
        statuses: choices(DELIVERY_STATUSES, Some(status.as_str())),
        endpoint_id,
        event_type,
        deliveries: deliveries.into_iter().map(DeliveryLine::from).collect(),
        deliveries_next,
    }
    .render();
    page(StatusCode::OK, html)
}

/// `POST /console/notifications/{id}/redeliver`: sends a delivery again now, with the same
/// `webhook-id` (`POST /api/v1/notifications/{id}/redeliver`).
#[utoipa::path(post, path = "/notifications/{id}/redeliver", tag = "console", operation_id = "console_notification_redeliver",
    params(("id" = String, Path, description = "The notification's id (`msg_…`)")),
    request_body(content = ConsoleActionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Queued again: back to the log (or, without a session, on to the login page)"),
        (status = 403, description = "The form's CSRF token is missing or wrong", content_type = "text/html", body = String),
        (status = 404, description = "No such notification", content_type = "text/html", body = String),
    ))]
pub async fn redeliver(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm { session, .. }: SignedForm<ConsoleActionForm>,
) -> Response {
    let back = Some("/console/notifications");
    let Ok(id) = NotificationId::parse(&id) else {
        return failed(
            session.chrome("notifications"),
            crate::service::ServiceError::NotFound("notification"),
            back,
        );
    };
    match notifications::redeliver(&state.services, &id).await {
        Ok(_) => Redirect::to("/console/notifications?done=redelivered").into_response(),
        Err(e) => failed(session.chrome("notifications"), e, back),
    }
}

/// `POST /console/endpoints/{id}/enable`: re-enables a disabled endpoint (the API's `PATCH
/// {disabled: false}`); what it missed meanwhile is sent by `recover`.
#[utoipa::path(post, path = "/endpoints/{id}/enable", tag = "console", operation_id = "console_endpoint_enable",
    params(("id" = String, Path, description = "The endpoint's id (`ne_…`)")),
    request_body(content = ConsoleActionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Enabled: back to the endpoints (or, without a session, on to the login page)"),
        (status = 403, description = "The form's CSRF token is missing or wrong", content_type = "text/html", body = String),
        (status = 404, description = "No such endpoint", content_type = "text/html", body = String),
    ))]
pub async fn enable(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm { session, .. }: SignedForm<ConsoleActionForm>,
) -> Response {
    let back = Some("/console/notifications");
    let Ok(id) = EndpointId::parse(&id) else {
        return failed(
            session.chrome("notifications"),
            crate::service::ServiceError::NotFound("notification endpoint"),
            back,
        );
    };
    let patch = Patch {
        url: None,
        events: None,
        description: None,
        disabled: Some(false),
    };
    match notifications::update_endpoint(&state.services, &id, patch).await {
        Ok(_) => {
            tracing::info!(endpoint = %id, operator = %session.operator(), "notification endpoint enabled from the console");
            Redirect::to("/console/notifications?done=enabled").into_response()
        }
        Err(e) => failed(session.chrome("notifications"), e, back),
    }
}

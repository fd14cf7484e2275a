//! `/api/v1/notification-endpoints` and `/api/v1/notifications`: where Bursar tells the
//! platform's app what changed, and the log of every delivery.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{limit, Page};
use crate::domain::{EndpointId, NotificationId};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{JsonBody, QueryParams};
use crate::http::AppState;
use crate::service::notifications::{self, EndpointView, LogQuery, NotificationView, Patch};

fn endpoint_id(raw: &str) -> Result<EndpointId, ApiError> {
    EndpointId::parse(raw).map_err(|_| ApiError::not_found("notification endpoint"))
}

fn notification_id(raw: &str) -> Result<NotificationId, ApiError> {
    NotificationId::parse(raw).map_err(|_| ApiError::not_found("notification"))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointIn {
    /// Where to POST notifications: `https` (plain `http` only with `serve --dev`), not an
    /// internal address.
    url: String,
    /// The types to receive, or `["*"]` for all.
    events: Vec<String>,
    description: Option<String>,
}

/// Register an endpoint. Its signing secret is in this answer only.
#[utoipa::path(post, path = "/notification-endpoints", tag = "notifications",
    operation_id = "create_notification_endpoint",
    request_body = EndpointIn,
    responses(
        (status = 201, description = "The endpoint, with its secret", body = EndpointView),
        (status = 400, description = "A bad URL (not https, internal, unresolvable) or an unknown type", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<EndpointIn>,
) -> ApiResult<(StatusCode, Json<EndpointView>)> {
    let view = notifications::create_endpoint(
        &state.services,
        &input.url,
        &input.events,
        input.description.as_deref(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EndpointPageQuery {
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
    /// Page size, 1 to 100 (default 20).
    limit: Option<i64>,
}

/// The endpoints, in the order they were made.
#[utoipa::path(get, path = "/notification-endpoints", tag = "notifications",
    operation_id = "list_notification_endpoints",
    params(EndpointPageQuery),
    responses(
        (status = 200, description = "A page of endpoints", body = Page<EndpointView>),
        (status = 400, description = "A bad cursor or limit", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<EndpointPageQuery>,
) -> ApiResult<Json<Page<EndpointView>>> {
    let after = super::cursor(q.cursor.as_deref(), EndpointId::parse)?;
    let (data, next) =
        notifications::list_endpoints(&state.services, after.as_ref(), limit(q.limit)?).await?;
    Ok(super::page(data, next))
}

#[utoipa::path(get, path = "/notification-endpoints/{id}", tag = "notifications",
    operation_id = "get_notification_endpoint",
    params(("id" = String, Path, description = "The endpoint's id (`ne_…`)")),
    responses(
        (status = 200, description = "The endpoint (no secret)", body = EndpointView),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<EndpointView>> {
    Ok(Json(
        notifications::get_endpoint(&state.services, &endpoint_id(&id)?).await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointPatch {
    url: Option<String>,
    events: Option<Vec<String>>,
    description: Option<String>,
    /// `false` re-enables a disabled endpoint (its failure record starts over).
    disabled: Option<bool>,
}

/// Change an endpoint's URL, types, description, or whether it is disabled.
#[utoipa::path(patch, path = "/notification-endpoints/{id}", tag = "notifications",
    operation_id = "update_notification_endpoint",
    params(("id" = String, Path, description = "The endpoint's id (`ne_…`)")),
    request_body = EndpointPatch,
    responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        (status = 400, description = "A bad URL or an unknown type", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    ))]
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(p): JsonBody<EndpointPatch>,
) -> ApiResult<Json<EndpointView>> {
    let patch = Patch {
        url: p.url,
        events: p.events,
        description: p.description,
        disabled: p.disabled,
    };
    Ok(Json(
        notifications::update_endpoint(&state.services, &endpoint_id(&id)?, patch).await?,
    ))
}

/// What deleting an endpoint answers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EndpointDeleted {
    pub id: String,
    /// Always `notification_endpoint`.
    pub object: &'static str,
    pub deleted: bool,
}

/// Delete an endpoint and its notifications.
#[utoipa::path(delete, path = "/notification-endpoints/{id}", tag = "notifications",
    operation_id = "delete_notification_endpoint",
    params(("id" = String, Path, description = "The endpoint's id (`ne_…`)")),
    responses(
        (status = 200, description = "It is gone", body = EndpointDeleted),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<EndpointDeleted>> {
    let id = endpoint_id(&id)?;
    notifications::delete_endpoint(&state.services, &id).await?;
    Ok(Json(EndpointDeleted {
        id: id.to_string(),
        object: "notification_endpoint",
        deleted: true,
    }))
}

/// A new signing secret (in this answer only); the old one keeps signing beside it for 24 h.
#[utoipa::path(post, path = "/notification-endpoints/{id}/rotate-secret", tag = "notifications",
    operation_id = "rotate_notification_secret",
    params(("id" = String, Path, description = "The endpoint's id (`ne_…`)")),
    responses(
        (status = 200, description = "The endpoint, with its new secret", body = EndpointView),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        (status = 409, description = "Another rotation replaced the secret at the same moment (`rotated_concurrently`)", body = ErrorBody),
    ))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<EndpointView>> {
    Ok(Json(
        notifications::rotate_secret(&state.services, &endpoint_id(&id)?).await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverIn {
    /// Resend what failed since this unix time (seconds).
    since: i64,
}

/// What `recover` did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Recovered {
    /// How many failed notifications are sent again.
    pub resent: u64,
}

/// Send again every notification of the endpoint that failed since `since`.
#[utoipa::path(post, path = "/notification-endpoints/{id}/recover", tag = "notifications",
    operation_id = "recover_notifications",
    params(("id" = String, Path, description = "The endpoint's id (`ne_…`)")),
    request_body = RecoverIn,
    responses(
        (status = 200, description = "How many are sent again", body = Recovered),
        (status = 400, description = "A bad `since`", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    ))]
pub async fn recover(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<RecoverIn>,
) -> ApiResult<Json<Recovered>> {
    let resent = notifications::recover(&state.services, &endpoint_id(&id)?, input.since).await?;
    Ok(Json(Recovered { resent }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    endpoint_id: Option<String>,
    /// `pending`, `delivered` or `failed`.
    status: Option<String>,
    #[serde(rename = "type")]
    #[param(rename = "type")]
    event_type: Option<String>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
    /// Page size, 1 to 100 (default 20).
    limit: Option<i64>,
}

/// The delivery log, newest first: each notification with every attempt.
#[utoipa::path(get, path = "/notifications", tag = "notifications",
    operation_id = "list_notifications",
    params(LogParams),
    responses(
        (status = 200, description = "A page of notifications", body = Page<NotificationView>),
        (status = 400, description = "A bad filter, cursor or limit", body = ErrorBody),
    ))]
pub async fn log(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<LogParams>,
) -> ApiResult<Json<Page<NotificationView>>> {
    let (data, next) = notifications::log(
        &state.services,
        LogQuery {
            endpoint_id: q.endpoint_id,
            status: q.status,
            event_type: q.event_type,
            cursor: q.cursor,
            limit: limit(q.limit)?,
        },
    )
    .await?;
    Ok(super::page(data, next))
}

/// Send a notification again now, with the same `webhook-id`.
#[utoipa::path(post, path = "/notifications/{id}/redeliver", tag = "notifications",
    operation_id = "redeliver_notification",
    params(("id" = String, Path, description = "The notification's id (`msg_…`)")),
    responses(
        (status = 200, description = "The notification, due now", body = NotificationView),
        (status = 404, description = "No such notification", body = ErrorBody),
    ))]
pub async fn redeliver(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<NotificationView>> {
    Ok(Json(
        notifications::redeliver(&state.services, &notification_id(&id)?).await?,
    ))
}

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;

use super::{limit, Page};
use crate::db::inbox::Filter;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::QueryParams;
use crate::http::AppState;
use crate::service::events::{self, EventView, STATUSES};

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only events about this store.
    store_id: Option<String>,
    /// `pending`, `processing`, `retrying`, `applied`, `ignored`, `unrouted` or `dead`.
    status: Option<String>,
    /// A Stripe event type, e.g. `payment_intent.succeeded`.
    #[serde(rename = "type")]
    event_type: Option<String>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
    /// Page size, 1 to 100 (default 20).
    limit: Option<i64>,
}

/// The webhook inbox: every event received, newest first.
#[utoipa::path(get, path = "/events", tag = "events", operation_id = "list_events",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of events", body = Page<EventView>),
        (status = 400, description = "A bad status, cursor or limit", body = ErrorBody),
        (status = 404, description = "No such store", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult<Json<Page<EventView>>> {
    if let Some(s) = &q.status {
        if !STATUSES.contains(&s.as_str()) {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("status must be one of {}", STATUSES.join(", ")),
            ));
        }
    }
    let store_id = q
        .store_id
        .map(|s| super::store_id(&s).map(|id| id.to_string()))
        .transpose()?;
    let before = super::cursor(q.cursor.as_deref(), str::parse::<i64>)?;
    let filter = Filter {
        store_id,
        status: q.status,
        event_type: q.event_type,
    };
    let page = events::list(&state.services, &filter, before, limit(q.limit)?).await?;
    Ok(super::page(page.data, page.next_cursor))
}

/// Which endpoint's copy of a Stripe event id: `platform`, `connect` or `store:st_…`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SourceQuery {
    /// Needed only when the same event id came through more than one endpoint.
    source: Option<String>,
}

/// One event, with its payload as Stripe sent it.
#[utoipa::path(get, path = "/events/{id}", tag = "events", operation_id = "get_event",
    params(("id" = String, Path, description = "Stripe's event id (`evt_…`) or Bursar's number"), SourceQuery),
    responses(
        (status = 200, description = "The event", body = EventView),
        (status = 404, description = "No such event", body = ErrorBody),
        (status = 409, description = "The id came through several endpoints; name `source`", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<SourceQuery>,
) -> ApiResult<Json<EventView>> {
    Ok(Json(
        events::get(&state.services, &id, q.source.as_deref()).await?,
    ))
}

/// Apply an event again (a dead or failed one, or any after a fix).
#[utoipa::path(post, path = "/events/{id}/replay", tag = "events", operation_id = "replay_event",
    params(("id" = String, Path, description = "Stripe's event id (`evt_…`) or Bursar's number"), SourceQuery),
    responses(
        (status = 200, description = "The event, queued again", body = EventView),
        (status = 404, description = "No such event", body = ErrorBody),
        (status = 409, description = "The event is being applied now, its payload was pruned (`payload_pruned`), or the id is ambiguous", body = ErrorBody),
    ))]
pub async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<SourceQuery>,
) -> ApiResult<Json<EventView>> {
    let view = events::replay(&state.services, &id, q.source.as_deref()).await?;
    state.stored_notify();
    Ok(Json(view))
}

/// Give up on a dead event: it is kept as `discarded` (never applied) and pruned with the
/// finished ones after the retention window.
#[utoipa::path(post, path = "/events/{id}/discard", tag = "events", operation_id = "discard_event",
    params(("id" = String, Path, description = "Stripe's event id (`evt_…`) or Bursar's number"), SourceQuery),
    responses(
        (status = 200, description = "The event, discarded", body = EventView),
        (status = 404, description = "No such event", body = ErrorBody),
        (status = 409, description = "The event is not dead (`event_not_dead`), or the id is ambiguous", body = ErrorBody),
    ))]
pub async fn discard(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<SourceQuery>,
) -> ApiResult<Json<EventView>> {
    Ok(Json(
        events::discard(&state.services, &id, q.source.as_deref()).await?,
    ))
}

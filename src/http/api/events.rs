use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use super::limit;
use crate::db::inbox::Filter;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::QueryParams;
use crate::http::AppState;
use crate::service::events::{self, EventView, STATUSES};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    store_id: Option<String>,
    status: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult<Json<Value>> {
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
    let before = q
        .cursor
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| ApiError::bad_request("invalid_cursor", "cursor is not valid"))
        })
        .transpose()?;
    let filter = Filter {
        store_id,
        status: q.status,
        event_type: q.event_type,
    };
    let page = events::list(&state.services, &filter, before, limit(q.limit)?).await?;
    Ok(super::page(page.data, page.next_cursor))
}

/// Which endpoint's copy of a Stripe event id: `platform`, `connect` or `store:st_…`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceQuery {
    source: Option<String>,
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<SourceQuery>,
) -> ApiResult<Json<EventView>> {
    Ok(Json(
        events::get(&state.services, &id, q.source.as_deref()).await?,
    ))
}

pub async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<SourceQuery>,
) -> ApiResult<Json<EventView>> {
    let view = events::replay(&state.services, &id, q.source.as_deref()).await?;
    state.stored_notify();
    Ok(Json(view))
}

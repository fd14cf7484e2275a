use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{limit, store_id};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{JsonBody, QueryParams};
use crate::http::AppState;
use crate::service::stores::{self, NewStore, StoreView};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreIn {
    name: String,
    external_id: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
}

pub async fn create(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<StoreIn>,
) -> ApiResult<(StatusCode, Json<StoreView>)> {
    let new = NewStore::parse(&input.name, input.external_id.as_deref(), input.metadata)?;
    Ok((
        StatusCode::CREATED,
        Json(stores::create(&state.services, new).await?),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<StoreView>> {
    Ok(Json(stores::get(&state.services, &store_id(&id)?).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    cursor: Option<String>,
    limit: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult<Json<Value>> {
    let cursor = q
        .cursor
        .map(|c| {
            crate::domain::StoreId::parse(&c)
                .map_err(|_| ApiError::bad_request("invalid_cursor", "cursor is not valid"))
        })
        .transpose()?;
    let page = stores::list(&state.services, cursor.as_ref(), limit(q.limit)?).await?;
    Ok(super::page(page.data, page.next_cursor))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = store_id(&id)?;
    stores::delete(&state.services, &id).await?;
    Ok(Json(
        json!({ "id": id, "object": "store", "deleted": true }),
    ))
}

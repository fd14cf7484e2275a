use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::{limit, store_id, Deleted, Page, PageQuery};
use crate::http::error::{ApiResult, ErrorBody};
use crate::http::extract::{JsonBody, QueryParams};
use crate::http::AppState;
use crate::service::store_deletion;
use crate::service::stores::{self, NewStore, StoreView};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreIn {
    name: String,
    external_id: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
}

/// Create a store: one merchant, before any Stripe connection.
#[utoipa::path(post, path = "/stores", tag = "stores", operation_id = "create_store",
    request_body = StoreIn,
    responses(
        (status = 201, description = "The new store", body = StoreView),
        (status = 400, description = "A field is missing or invalid", body = ErrorBody),
        (status = 409, description = "`external_id` is already another store's", body = ErrorBody),
    ))]
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

#[utoipa::path(get, path = "/stores/{id}", tag = "stores", operation_id = "get_store",
    params(("id" = String, Path, description = "The store's id (`st_…`)")),
    responses(
        (status = 200, description = "The store", body = StoreView),
        (status = 404, description = "No such store", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<StoreView>> {
    Ok(Json(stores::get(&state.services, &store_id(&id)?).await?))
}

/// Stores, in the order they were created.
#[utoipa::path(get, path = "/stores", tag = "stores", operation_id = "list_stores",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of stores", body = Page<StoreView>),
        (status = 400, description = "A bad cursor or limit", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<PageQuery>,
) -> ApiResult<Json<Page<StoreView>>> {
    let cursor = super::cursor(q.cursor.as_deref(), crate::domain::StoreId::parse)?;
    let page = stores::list(&state.services, cursor.as_ref(), limit(q.limit)?).await?;
    Ok(super::page(page.data, page.next_cursor))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Cancel the store's vendor subscription and disconnect it at Stripe first (deauthorizing
    /// a Standard account), instead of refusing while they are live.
    force: Option<bool>,
}

/// Delete a store. Refused while it holds a live vendor subscription, an active connection or
/// orders and refunds Stripe may still settle, unless `force`. Its orders and refunds are kept
/// (and stay readable by id); the store, its connection and its secrets are gone.
#[utoipa::path(delete, path = "/stores/{id}", tag = "stores", operation_id = "delete_store",
    params(("id" = String, Path, description = "The store's id (`st_…`)"), DeleteQuery),
    responses(
        (status = 200, description = "The store is gone", body = Deleted),
        (status = 400, description = "A bad query parameter", body = ErrorBody),
        (status = 404, description = "No such store", body = ErrorBody),
        (status = 409, description = "`store_has_live_objects` (named in the message), or `subscription_pending`", body = ErrorBody),
        (status = 502, description = "Stripe could not be reached while forcing; nothing was deleted", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<DeleteQuery>,
) -> ApiResult<Json<Deleted>> {
    let id = store_id(&id)?;
    store_deletion::delete(&state.services, &id, q.force.unwrap_or(false)).await?;
    Ok(Json(Deleted {
        id: id.to_string(),
        object: "store",
        deleted: true,
    }))
}

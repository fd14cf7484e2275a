//! Connection status for storefronts (public) and the platform's services (internal).

use axum::extract::{Path, State};
use axum::Json;

use super::api::store_id;
use super::error::{ApiResult, ErrorBody};
use super::AppState;
use crate::service::status::{self, InternalStatus, PublicStatus};

/// Whether the store can take payments, and in which mode: safe to show to anyone.
#[utoipa::path(get, path = "/status/{store_id}", tag = "pages", operation_id = "public_status",
    params(("store_id" = String, Path, description = "The store's id (`st_…`)")),
    responses(
        (status = 200, description = "The store's status", body = PublicStatus),
        (status = 404, description = "No such store", body = ErrorBody),
    ))]
pub async fn public(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<PublicStatus>> {
    Ok(Json(
        status::public(&state.services, &store_id(&id)?).await?,
    ))
}

/// The store's connection in full (no secrets), for the platform's own services.
#[utoipa::path(get, path = "/stores/{id}/stripe-status", tag = "internal",
    operation_id = "internal_status",
    params(("id" = String, Path, description = "The store's id (`st_…`)")),
    security(("internal_secret" = [])),
    responses(
        (status = 200, description = "The store's connection", body = InternalStatus),
        (status = 401, description = "A missing or wrong `X-Internal-Secret`", body = ErrorBody),
        (status = 404, description = "No such store, or `BURSAR_INTERNAL_SECRET` is not set", body = ErrorBody),
    ))]
pub async fn internal(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<InternalStatus>> {
    Ok(Json(
        status::internal(&state.services, &store_id(&id)?).await?,
    ))
}

//! Connection status for storefronts (public) and the platform's services (internal).

use axum::extract::{Path, State};
use axum::Json;

use super::api::store_id;
use super::error::ApiResult;
use super::AppState;
use crate::service::status::{self, InternalStatus, PublicStatus};

pub async fn public(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<PublicStatus>> {
    Ok(Json(
        status::public(&state.services, &store_id(&id)?).await?,
    ))
}

pub async fn internal(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<InternalStatus>> {
    Ok(Json(
        status::internal(&state.services, &store_id(&id)?).await?,
    ))
}

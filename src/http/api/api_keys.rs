//! `/api/v1/api-keys`: list and revoke. Keys are created only by `bursar api-key create`, so
//! a plaintext key never sits in an HTTP response (nor in a saved idempotent replay of one).

use axum::extract::{Path, State};
use axum::Json;
use serde_json::Value;

use crate::http::error::ApiResult;
use crate::http::AppState;
use crate::service::api_keys::{self, ApiKeyView};

pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let keys = api_keys::list(&state.services.db).await?;
    Ok(super::page(keys, None))
}

pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKeyView>> {
    Ok(Json(api_keys::revoke(&state.services.db, &id).await?))
}

//! `/api/v1/api-keys`: list and revoke. Keys are created only by `bursar api-key create`, so
//! a plaintext key never sits in an HTTP response (nor in a saved idempotent replay of one).

use axum::extract::{Path, State};
use axum::Json;

use super::Page;
use crate::http::error::{ApiResult, ErrorBody};
use crate::http::AppState;
use crate::service::api_keys::{self, ApiKeyView};

/// The platform's API keys (never the keys themselves).
#[utoipa::path(get, path = "/api-keys", tag = "api-keys", operation_id = "list_api_keys",
    responses((status = 200, description = "Every key, revoked ones too", body = Page<ApiKeyView>)))]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Page<ApiKeyView>>> {
    let keys = api_keys::list(&state.services.db).await?;
    Ok(super::page(keys, None))
}

/// Revoke an API key; it stops working at once.
#[utoipa::path(delete, path = "/api-keys/{id}", tag = "api-keys", operation_id = "revoke_api_key",
    params(("id" = String, Path, description = "The key's id (`key_…`)")),
    responses(
        (status = 200, description = "The revoked key", body = ApiKeyView),
        (status = 404, description = "No such key", body = ErrorBody),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKeyView>> {
    Ok(Json(api_keys::revoke(&state.services.db, &id).await?))
}

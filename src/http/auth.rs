//! Authentication: platform API keys for `/api/v1`, the shared secret for `/api/internal`.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;
use crate::service::api_keys;

/// The API key a management request was authenticated with.
#[derive(Clone, Debug)]
pub struct Caller {
    pub api_key_id: String,
}

pub async fn require_api_key(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(ApiError::unauthenticated)?;
    let key = api_keys::authenticate(&state.services.db, presented)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(ApiError::unauthenticated)?;
    req.extensions_mut().insert(Caller { api_key_id: key.id });
    Ok(next.run(req).await)
}

/// `X-Internal-Secret`, compared in constant time. With no secret configured the internal API
/// does not exist (404), so probing it tells nothing.
pub async fn require_internal_secret(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(expected) = &state.services.config.internal_secret else {
        return Err(ApiError::not_found("route"));
    };
    let presented = req
        .headers()
        .get("X-Internal-Secret")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !bool::from(presented.ct_eq(expected.expose_secret().as_bytes())) {
        return Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "a valid X-Internal-Secret header is required",
        ));
    }
    Ok(next.run(req).await)
}

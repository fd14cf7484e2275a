//! `Idempotency-Key` on management POST/PUT, as Stripe's own API has it: the same key and body
//! within 24 h returns the first (successful) response and does nothing again; the same key with
//! another body is a 409. Failed requests are not saved, so they may be retried with the key.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::auth::Caller;
use super::error::ApiError;
use super::{AppState, API_BODY_LIMIT};
use crate::db::idempotency::{self, Claim};

const RESPONSE_LIMIT: usize = 1 << 20;

pub async fn idempotent(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !matches!(*req.method(), Method::POST | Method::PUT) {
        return Ok(next.run(req).await);
    }
    let Some(key) = req.headers().get("Idempotency-Key") else {
        return Ok(next.run(req).await);
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible characters",
            )
        })?
        .to_owned();
    let caller = req
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(ApiError::unauthenticated)?;
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, API_BODY_LIMIT)
        .await
        .map_err(|_| ApiError::too_large())?;
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str());
    hasher.update(b" ");
    hasher.update(parts.uri.path());
    hasher.update(b"\n");
    hasher.update(&bytes);
    let hash = hex::encode(hasher.finalize());
    let db = &state.services.db;
    match idempotency::claim(db, &caller.api_key_id, &key, &hash)
        .await
        .map_err(|e| ApiError::from(crate::service::ServiceError::from(e)))?
    {
        Claim::Replay { status, body } => {
            let mut response =
                (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
            response
                .headers_mut()
                .insert("Content-Type", HeaderValue::from_static("application/json"));
            response
                .headers_mut()
                .insert("Idempotent-Replayed", HeaderValue::from_static("true"));
            Ok(response)
        }
        Claim::Mismatch => Err(ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request",
        )),
        Claim::InFlight => Err(ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_in_use",
            "a request with this Idempotency-Key is still being processed",
        )),
        Claim::New => {
            let response = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            let (parts, body) = response.into_parts();
            let Ok(bytes) = to_bytes(body, RESPONSE_LIMIT).await else {
                // Never save (or send) a truncated body as the answer to replay.
                let _ = idempotency::release(db, &caller.api_key_id, &key).await;
                return Err(ApiError::internal());
            };
            let saved = if parts.status.is_success() {
                let text = String::from_utf8_lossy(&bytes);
                idempotency::complete(db, &caller.api_key_id, &key, parts.status.as_u16(), &text)
                    .await
            } else {
                idempotency::release(db, &caller.api_key_id, &key).await
            };
            if let Err(e) = saved {
                tracing::error!(error = ?e, "could not record the idempotency key's outcome");
            }
            Ok(Response::from_parts(parts, Body::from(bytes)))
        }
    }
}

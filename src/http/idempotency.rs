//! `Idempotency-Key` on management POST/PUT, as Stripe's own API has it: the same key and body
//! within 24 h returns the first (successful) response and does nothing again; the same key with
//! another body is a 409. Failed requests are not saved, so they may be retried with the key.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::auth::Caller;
use super::error::ApiError;
use super::{AppState, API_BODY_LIMIT};
use crate::db::idempotency::{self, Claim, KeyRef, OwnerToken, SavedBody};
use crate::domain::RequestKey;
use crate::vault::Binding;

const RESPONSE_LIMIT: usize = 1 << 20;

/// The request's Idempotency-Key as handlers see it: hashed with the caller's API key id, and
/// with the request's own hash, so that a handler that creates something at Stripe keeps both
/// with what it created. A retry of a request that failed half-way resumes it; the same key
/// with another request is refused even when the first attempt saved no response.
fn request_key(api_key_id: &str, key: &str, request_hash: &str) -> RequestKey {
    let mut h = Sha256::new();
    h.update(api_key_id.as_bytes());
    h.update(b"\n");
    h.update(key.as_bytes());
    RequestKey {
        key: hex::encode(h.finalize()),
        request_hash: request_hash.to_owned(),
    }
}

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
    hasher.update(parts.uri.path_and_query().map_or("", |p| p.as_str()));
    hasher.update(b"\n");
    hasher.update(&bytes);
    let hash = hex::encode(hasher.finalize());
    let db = &state.services.db;
    let lock = state.services.config.idempotency_lock;
    let k = KeyRef {
        api_key_id: &caller.api_key_id,
        key: &key,
    };
    let row = idempotency::vault_row(k);
    match idempotency::claim(db, k, &hash, lock)
        .await
        .map_err(|e| ApiError::from(crate::service::ServiceError::from(e)))?
    {
        Claim::Replay { status, body } => {
            let body = match body {
                SavedBody::Sealed(sealed) => state
                    .services
                    .vault
                    .open(&sealed, response_binding(&row))
                    .map_err(|e| ApiError::from(crate::service::ServiceError::from(e)))?
                    .expose_secret()
                    .to_owned(),
                SavedBody::Plain(body) => body,
            };
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
        Claim::New(token) => {
            let mut parts = parts;
            parts
                .extensions
                .insert(request_key(&caller.api_key_id, &key, &hash));
            let request = Request::from_parts(parts, Body::from(bytes));
            let response = run_holding_claim(&state, k, &token, next.run(request)).await;
            let (parts, body) = response.into_parts();
            let Ok(bytes) = to_bytes(body, RESPONSE_LIMIT).await else {
                // Never save (or send) a truncated body as the answer to replay.
                let _ = idempotency::release(db, k, &token).await;
                return Err(ApiError::internal());
            };
            let saved = if parts.status.is_success() {
                // The body may hold a client secret or a signed link: sealed like any secret.
                let text = SecretString::from(String::from_utf8_lossy(&bytes).into_owned());
                let sealed = state.services.vault.seal(&text, response_binding(&row));
                idempotency::complete(db, k, &token, parts.status.as_u16(), &sealed)
                    .await
                    .map(|saved| {
                        if !saved {
                            tracing::warn!("idempotency claim was taken over before the request finished; its response is not saved");
                        }
                    })
            } else {
                idempotency::release(db, k, &token).await
            };
            if let Err(e) = saved {
                tracing::error!(error = ?e, "could not record the idempotency key's outcome");
            }
            Ok(Response::from_parts(parts, Body::from(bytes)))
        }
    }
}

/// What a saved response is sealed to (`db::secrets` lists the column).
fn response_binding(row: &str) -> Binding<'_> {
    Binding {
        table: "idempotency_keys",
        row,
        field: "response",
    }
}

/// Runs the request while refreshing its claim every third of the lock period, so a live
/// request, however long its Stripe calls take, is never taken for a dead one.
async fn run_holding_claim(
    state: &AppState,
    k: KeyRef<'_>,
    token: &OwnerToken,
    run: impl std::future::Future<Output = Response>,
) -> Response {
    let mut tick = tokio::time::interval(state.services.config.idempotency_lock / 3);
    tick.tick().await;
    tokio::pin!(run);
    loop {
        tokio::select! {
            response = &mut run => return response,
            _ = tick.tick() => {
                match idempotency::refresh(&state.services.db, k, token).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!("idempotency claim lost while the request runs"),
                    Err(e) => tracing::warn!(error = ?e, "could not refresh the idempotency claim"),
                }
            }
        }
    }
}

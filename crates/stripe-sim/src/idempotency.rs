//! `Idempotency-Key` on API POSTs, as Stripe keeps it: the first successful answer is saved
//! per (key, account header, idempotency key) and replayed to every retry, so a retried create
//! never makes a second object. A retry with other parameters is refused; one arriving while
//! the first is still running gets 409. Failed validations and 5xx are not saved, so a retry
//! after them runs again (Stripe saves results only once an endpoint has executed).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::{account_header, header as header_str};
use crate::http::ApiError;
use crate::state::Sim;

pub(crate) enum Saved {
    InFlight {
        request: Vec<u8>,
    },
    Done {
        request: Vec<u8>,
        status: StatusCode,
        body: Vec<u8>,
    },
}

pub(crate) async fn replay(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let applies =
        req.method() == Method::POST && (path.starts_with("/v1/") || path.starts_with("/v2/"));
    let key = header_str(req.headers(), "Idempotency-Key").map(str::to_owned);
    let (true, Some(key)) = (applies, key) else {
        return next.run(req).await;
    };
    let scope = (
        header_str(req.headers(), "Authorization")
            .unwrap_or_default()
            .to_owned(),
        header_str(req.headers(), account_header(&path))
            .unwrap_or_default()
            .to_owned(),
        key.clone(),
    );
    let (parts, body) = req.into_parts();
    // The outer layer already bounded the body.
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let fingerprint = [path.as_bytes(), b"\n", &body].concat();
    {
        let mut state = sim.lock();
        match state.idempotency.get(&scope) {
            Some(Saved::InFlight { request } | Saved::Done { request, .. })
                if *request != fingerprint =>
            {
                return mismatch(&key);
            }
            Some(Saved::InFlight { .. }) => return in_use(),
            Some(Saved::Done { status, body, .. }) => return replayed(*status, body.clone()),
            None => {
                state.idempotency.insert(
                    scope.clone(),
                    Saved::InFlight {
                        request: fingerprint.clone(),
                    },
                );
            }
        }
    }
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let mut state = sim.lock();
    if parts.status.is_success() || parts.status == StatusCode::PAYMENT_REQUIRED {
        state.idempotency.insert(
            scope,
            Saved::Done {
                request: fingerprint,
                status: parts.status,
                body: body.to_vec(),
            },
        );
    } else {
        state.idempotency.remove(&scope);
    }
    Response::from_parts(parts, Body::from(body))
}

fn replayed(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    let headers = r.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("Idempotent-Replayed", HeaderValue::from_static("true"));
    r
}

fn mismatch(key: &str) -> Response {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "idempotency_error",
        format!(
            "Keys for idempotent requests can only be used with the same parameters they were \
             first used with. Try using a key other than '{key}' if you meant to execute a \
             different request."
        ),
    )
    .into_response()
}

fn in_use() -> Response {
    let mut r = ApiError::new(
        StatusCode::CONFLICT,
        "invalid_request_error",
        "There is currently another in-progress request using this Stripe API key (or connected \
         account) and idempotency key (or Stripe-Account header). Please try again later.",
    )
    .code("idempotency_key_in_use")
    .into_response();
    r.headers_mut()
        .insert("Stripe-Should-Retry", HeaderValue::from_static("true"));
    r
}

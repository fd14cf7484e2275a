//! The outermost layer: every request is recorded (tests assert on what Bursar sent), then
//! meets any fault a test injected for it, before any route sees it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::{account_header, authenticate, header, STRIPE_ACCOUNT, STRIPE_CONTEXT};
use crate::http::ApiError;
use crate::state::Sim;

/// Bodies larger than this are refused, as Stripe refuses oversized requests.
const MAX_BODY: usize = 2 * 1024 * 1024;

/// What a faulted request meets instead of (or before) its normal answer.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status and a Stripe error body.
    Status(u16),
    /// Answer with this status and `Stripe-Should-Retry: false`.
    StatusNoRetry(u16),
    /// Wait this long before answering normally.
    Delay(Duration),
    /// Answer with this status and this error message.
    Message(u16, String),
}

/// One request as the simulator received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    pub stripe_version: Option<String>,
    pub stripe_account: Option<String>,
    pub stripe_context: Option<String>,
    pub idempotency_key: Option<String>,
    /// The raw body (form-encoded for v1 and OAuth, JSON for v2), lossily decoded.
    pub body: String,
}

/// A fault waiting for its requests: (method, path, only for this account, fault, times left).
pub(crate) type Injected = (Method, String, Option<String>, Fault, u32);

pub(crate) async fn record_and_fault(
    State(sim): State<Arc<Sim>>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "Request body too large.",
        )
        .into_response();
    };
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();
    sim.lock().requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_owned),
        stripe_version: header(&parts.headers, "Stripe-Version").map(str::to_owned),
        stripe_account: header(&parts.headers, STRIPE_ACCOUNT).map(str::to_owned),
        stripe_context: header(&parts.headers, STRIPE_CONTEXT).map(str::to_owned),
        idempotency_key: header(&parts.headers, "Idempotency-Key").map(str::to_owned),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let acting_on = authenticate(&sim, &parts.headers, account_header(&path))
        .ok()
        .and_then(|c| c.account);
    let fault = take_fault(&sim, &method, &path, acting_on.as_deref());
    let req = Request::from_parts(parts, Body::from(Bytes::clone(&body)));
    let response = match fault {
        Some(Fault::Status(code)) => simulated(code, None),
        Some(Fault::StatusNoRetry(code)) => simulated(code, Some("false")),
        Some(Fault::Message(code, text)) => {
            ApiError::new(status(code), "invalid_request_error", text).into_response()
        }
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            next.run(req).await
        }
        None => next.run(req).await,
    };
    if sim.log_requests {
        eprintln!("{method} {path} -> {}", response.status().as_u16());
    }
    response
}

fn take_fault(sim: &Sim, method: &Method, path: &str, acting_on: Option<&str>) -> Option<Fault> {
    let mut state = sim.lock();
    let (_, _, _, fault, left) = state.faults.iter_mut().find(|(m, p, only, _, left)| {
        m == method && p == path && *left > 0 && (only.is_none() || only.as_deref() == acting_on)
    })?;
    *left -= 1;
    Some(fault.clone())
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn simulated(code: u16, should_retry: Option<&'static str>) -> Response {
    let kind = if code == 429 {
        "rate_limit_error"
    } else if code >= 500 {
        "api_error"
    } else {
        "invalid_request_error"
    };
    let mut r = ApiError::new(
        status(code),
        kind,
        "Simulated failure from the local Stripe server.",
    )
    .into_response();
    if let Some(v) = should_retry {
        r.headers_mut().insert(
            "Stripe-Should-Retry",
            v.parse().expect("a valid header value"),
        );
    }
    r
}

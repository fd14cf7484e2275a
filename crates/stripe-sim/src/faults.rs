//! The outermost layer: every request is recorded (tests assert on what Bursar sent), then
//! meets any fault a test injected for it: most before any route sees it; `AfterCommit` and
//! `Drop` after the request was processed (and its idempotent answer saved), so only the
//! answer is lost.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::{
    account_header, authenticate, header, publishable, STRIPE_ACCOUNT, STRIPE_CONTEXT,
};
use crate::browser::publishable_in;
use crate::conn::Cutter;
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
    /// Process the request normally (objects created, events delivered, the answer saved for
    /// its `Idempotency-Key`), then answer this status with a Stripe error body instead: Stripe
    /// did it, but its answer was lost. A retry with the same key gets the saved answer.
    AfterCommit(u16),
    /// Process the request normally, then close the connection without answering (the client
    /// sees the connection closed before a response).
    Drop,
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
    /// When it arrived (for request rates).
    pub at: std::time::Instant,
}

impl Recorded {
    /// The last non-empty value of parameter `name` in the form body or the query string
    /// (`_stripe_account`, `key`, `payment_method_data[card][number]`, …).
    pub fn param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_deref().unwrap_or("").as_bytes())
            .chain(url::form_urlencoded::parse(self.body.as_bytes()))
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.into_owned())
            .last()
    }
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
        at: std::time::Instant::now(),
    });
    let acting_on = match publishable_in(&parts.headers, parts.uri.query(), &body) {
        Some((key, account)) => publishable(&sim, &key, account.as_deref())
            .ok()
            .and_then(|c| c.account),
        None => authenticate(&sim, &parts.headers, account_header(&path))
            .ok()
            .and_then(|c| c.account),
    };
    let fault = take_fault(&sim, &method, &path, acting_on.as_deref());
    let cutter = parts
        .extensions
        .get::<ConnectInfo<Cutter>>()
        .map(|c| c.0.clone());
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
        Some(Fault::AfterCommit(code)) => {
            drop(next.run(req).await);
            simulated(code, None)
        }
        Some(Fault::Drop) => {
            let response = next.run(req).await;
            match &cutter {
                Some(c) => c.cut(),
                None => eprintln!("stripe-sim: cannot drop a connection outside the server"),
            }
            response
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
    // Stripe says which limit a 429 met; `global-rate` is the per-account request rate.
    if code == 429 {
        r.headers_mut().insert(
            "Stripe-Rate-Limited-Reason",
            axum::http::HeaderValue::from_static("global-rate"),
        );
    }
    if let Some(v) = should_retry {
        r.headers_mut().insert(
            "Stripe-Should-Retry",
            v.parse().expect("a valid header value"),
        );
    }
    r
}

//! Request body limits enforced before a byte of the body is read: a declared `Content-Length`
//! over the route's limit is refused at once (413), and every body must first reserve its size
//! from a memory budget shared by all connections, so many large bodies at once wait (or get a
//! 503) instead of growing the process without bound.

use std::sync::Arc;
use std::time::Duration;

use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::error::ApiError;
use super::{API_BODY_LIMIT, WEBHOOK_BODY_LIMIT};

/// The bytes of request bodies that may be held at once, in KiB permits.
#[derive(Debug)]
pub struct BodyBudget {
    kib: Arc<Semaphore>,
    total_kib: u32,
    /// How long a body may wait for room before it gets a 503.
    wait: Duration,
}

impl BodyBudget {
    pub fn new(bytes: usize, wait: Duration) -> Self {
        let total_kib = u32::try_from(bytes / 1024).unwrap_or(u32::MAX);
        Self {
            kib: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
            wait,
        }
    }
}

/// The most a body on `path` may be.
pub fn limit_for(path: &str) -> usize {
    if path.starts_with("/webhooks/") {
        WEBHOOK_BODY_LIMIT
    } else {
        API_BODY_LIMIT
    }
}

pub async fn guard_body(
    State(budget): State<Arc<BodyBudget>>,
    req: Request,
    next: Next,
) -> Response {
    let limit = limit_for(req.uri().path()) as u64;
    let hint = req.body().size_hint();
    let declared = hint.exact();
    if declared.is_some_and(|n| n > limit) {
        // Answered without reading the body; the connection is closed rather than drained.
        let mut response = ApiError::too_large().into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    // A body of unknown length may grow to the limit, so it reserves that much.
    let size = if req.body().is_end_stream() {
        0
    } else {
        declared.unwrap_or(limit)
    };
    if size == 0 {
        return next.run(req).await;
    }
    let kib = u32::try_from(size.div_ceil(1024))
        .unwrap_or(u32::MAX)
        .min(budget.total_kib);
    let reserved = tokio::time::timeout(budget.wait, budget.kib.clone().acquire_many_owned(kib));
    let Ok(Ok(permit)) = reserved.await else {
        tracing::warn!(
            kib,
            "request body refused: the body memory budget stayed full"
        );
        let mut response = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_busy",
            "too many large requests are in flight; retry shortly",
        )
        .into_response();
        let headers = response.headers_mut();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    };
    let response = next.run(req).await;
    drop(permit);
    response
}

//! Request body limits, enforced before a byte of the body is read:
//! - a declared `Content-Length` over the route's limit is refused at once (413);
//! - every body must arrive whole within the body timeout (a deadline for all of it, not per
//!   chunk, so a trickle cannot hold a request open);
//! - bodies over 64 KiB first reserve their size from a memory budget shared by all connections,
//!   and give it back as soon as they have been read. Smaller bodies need no reservation: the
//!   connection cap already bounds them, so a flood of large uploads can delay only other large
//!   uploads, never Stripe's ordinary few-KB events.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use super::error::ApiError;
use super::{API_BODY_LIMIT, WEBHOOK_BODY_LIMIT};

/// Bodies up to this size are bounded by the connection cap and need no reservation.
const SMALL_BODY: u64 = 64 * 1024;

/// The bytes of large request bodies that may be held at once, in KiB permits.
#[derive(Debug)]
pub struct BodyBudget {
    kib: Arc<Semaphore>,
    total_kib: u32,
    /// How long a large body may wait for room before it gets a 503.
    wait: Duration,
    /// How long a whole body may take to arrive.
    deadline: Duration,
}

impl BodyBudget {
    pub fn new(bytes: usize, deadline: Duration) -> Self {
        let total_kib = u32::try_from(bytes / 1024).unwrap_or(u32::MAX);
        Self {
            kib: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
            // Half the deadline, so a body that got room still has time to arrive.
            wait: deadline / 2,
            deadline,
        }
    }
}

/// The most a body on `path` may be.
fn limit_for(path: &str) -> usize {
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
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let limit = limit_for(req.uri().path()) as u64;
    let declared = req.body().size_hint().exact();
    if declared.is_some_and(|n| n > limit) {
        // Answered without reading the body; the connection is closed rather than drained.
        return with_close(ApiError::too_large().into_response());
    }
    // A body of unknown length may grow to the limit, so it is counted at that.
    let size = declared.unwrap_or(limit);
    let reservation = if size > SMALL_BODY {
        let kib = u32::try_from(size.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(budget.total_kib);
        let reserved = budget.kib.clone().acquire_many_owned(kib);
        match tokio::time::timeout(budget.wait, reserved).await {
            Ok(Ok(permit)) => Some(permit),
            _ => {
                tracing::warn!(
                    kib,
                    "request body refused: the large-body memory budget stayed full"
                );
                let mut response = with_close(
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "server_busy",
                        "too many large requests are in flight; retry shortly",
                    )
                    .into_response(),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return response;
            }
        }
    } else {
        None
    };
    let deadline = budget.deadline;
    let req = req.map(|inner| {
        Body::new(GuardedBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(deadline)),
            limit: deadline,
            reservation,
        })
    });
    next.run(req).await
}

fn with_close(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body that must arrive whole before its deadline, and that gives its budget
/// reservation back once it has been read to the end (or dropped).
struct GuardedBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    limit: Duration,
    reservation: Option<OwnedSemaphorePermit>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0} s")]
struct BodyTooSlow(u64);

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.reservation = None;
            return Poll::Ready(Some(Err(axum::Error::new(BodyTooSlow(
                this.limit.as_secs(),
            )))));
        }
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.reservation = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

//! Request body limits, enforced before a byte of the body is read:
//! - a declared `Content-Length` over the route's limit is refused at once (413);
//! - every body must arrive whole within the body timeout (a deadline for all of it, not per
//!   chunk, so a trickle cannot hold a request open);
//! - bodies over 64 KiB first reserve their size from a memory budget shared by all connections,
//!   and give it back as soon as they have been read. Smaller bodies need no reservation: the
//!   connection cap already bounds them, so a flood of large uploads can delay only other large
//!   uploads, never Stripe's ordinary few-KB events.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

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

/// Guards every request body (see the module's comment). A tower layer around the whole
/// router rather than an axum `from_fn`: the common case, a small body of declared length, is
/// passed on with no boxed future and no timer until the body actually has to be waited for.
#[derive(Clone)]
pub struct GuardBodyLayer(Arc<BodyBudget>);

impl GuardBodyLayer {
    pub fn new(budget: BodyBudget) -> Self {
        Self(Arc::new(budget))
    }
}

impl<S> Layer<S> for GuardBodyLayer {
    type Service = GuardBody<S>;

    fn layer(&self, inner: S) -> GuardBody<S> {
        GuardBody {
            inner,
            budget: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GuardBody<S> {
    inner: S,
    budget: Arc<BodyBudget>,
}

type BoxedResponse = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

pin_project_lite::pin_project! {
    /// The inner service's future, an answer given without calling it, or a large body's wait
    /// for room in the budget.
    #[project = GuardProj]
    pub enum GuardFuture<F> {
        Inner { #[pin] future: F },
        Answered { response: Option<Response> },
        Reserving { future: BoxedResponse },
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for GuardFuture<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GuardProj::Inner { future } => future.poll(cx),
            GuardProj::Answered { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
            GuardProj::Reserving { future } => future.as_mut().poll(cx),
        }
    }
}

impl<S, B> Service<Request<B>> for GuardBody<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = GuardFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if req.body().is_end_stream() {
            return GuardFuture::Inner {
                future: self.inner.call(req.map(Body::new)),
            };
        }
        let limit = limit_for(req.uri().path()) as u64;
        let declared = req.body().size_hint().exact();
        if declared.is_some_and(|n| n > limit) {
            // Answered without reading the body; the connection is closed rather than drained.
            return GuardFuture::Answered {
                response: Some(with_close(ApiError::too_large().into_response())),
            };
        }
        let deadline = self.budget.deadline;
        // A body of unknown length may grow to the limit, so it is counted at that.
        let size = declared.unwrap_or(limit);
        if size <= SMALL_BODY {
            return GuardFuture::Inner {
                future: self.inner.call(guarded(req, deadline, None)),
            };
        }
        let kib = u32::try_from(size.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(self.budget.total_kib);
        let reserved = self.budget.kib.clone().acquire_many_owned(kib);
        let wait = self.budget.wait;
        // The clone that was made ready is the one called (tower's contract).
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        GuardFuture::Reserving {
            future: Box::pin(async move {
                let Ok(Ok(permit)) = tokio::time::timeout(wait, reserved).await else {
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
                    return Ok(response);
                };
                inner.call(guarded(req, deadline, Some(permit))).await
            }),
        }
    }
}

/// The request with its body guarded: it must arrive whole within `deadline` from now.
fn guarded<B>(
    req: Request<B>,
    deadline: Duration,
    reservation: Option<OwnedSemaphorePermit>,
) -> Request
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<axum::BoxError>,
{
    req.map(|inner| {
        Body::new(GuardedBody {
            inner,
            started: Instant::now(),
            deadline: None,
            limit: deadline,
            reservation,
        })
    })
}

fn with_close(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body that must arrive whole before its deadline, and that gives its budget
/// reservation back once it has been read to the end (or dropped).
struct GuardedBody<B> {
    inner: B,
    /// When the guard let the request in: the deadline runs from here.
    started: Instant,
    /// Made the first time the body has to be waited for: most bodies are already buffered
    /// with their headers and never need a timer.
    deadline: Option<Pin<Box<Sleep>>>,
    limit: Duration,
    reservation: Option<OwnedSemaphorePermit>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0} s")]
struct BodyTooSlow(u64);

impl<B> HttpBody for GuardedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let too_slow = |this: &mut Self| {
            this.reservation = None;
            Poll::Ready(Some(Err(axum::Error::new(BodyTooSlow(
                this.limit.as_secs(),
            )))))
        };
        if this
            .deadline
            .as_mut()
            .is_some_and(|d| d.as_mut().poll(cx).is_ready())
        {
            return too_slow(this);
        }
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(axum::Error::new))),
            Poll::Pending => {
                if this.deadline.is_none() {
                    let mut deadline =
                        Box::pin(tokio::time::sleep_until(this.started + this.limit));
                    // Polled once so that it wakes this task.
                    if deadline.as_mut().poll(cx).is_ready() {
                        return too_slow(this);
                    }
                    this.deadline = Some(deadline);
                }
                Poll::Pending
            }
        };
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

#[cfg(test)]
mod tests {
    use futures::channel::mpsc;
    use futures::StreamExt;
    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    type Chunks = mpsc::UnboundedSender<Result<Frame<Bytes>, std::io::Error>>;

    /// A guarded body whose frames the test sends by hand.
    fn fed_by_hand(
        limit: Duration,
    ) -> (
        Chunks,
        GuardedBody<impl HttpBody<Data = Bytes, Error = std::io::Error> + Unpin>,
    ) {
        let (tx, rx) = mpsc::unbounded();
        let body = GuardedBody {
            inner: StreamBody::new(rx.boxed()),
            started: Instant::now(),
            deadline: None,
            limit,
            reservation: None,
        };
        (tx, body)
    }

    /// The timer is made only when the body is first waited for, yet the deadline still counts
    /// from when the request came in.
    #[tokio::test(start_paused = true)]
    async fn the_deadline_counts_from_the_request_not_from_the_first_wait() {
        let (tx, mut body) = fed_by_hand(Duration::from_secs(2));
        tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"{"))))
            .unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        assert!(body.deadline.is_none(), "a ready frame needed no timer");

        tokio::time::advance(Duration::from_millis(1500)).await;
        let waited = Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(
            err.to_string().contains("did not arrive within 2 s"),
            "{err}"
        );
        assert_eq!(waited.elapsed(), Duration::from_millis(500));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_arrives_whole_is_read_to_its_end() {
        let (tx, body) = fed_by_hand(Duration::from_secs(2));
        tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"{}"))))
            .unwrap();
        drop(tx);
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"{}");
    }
}

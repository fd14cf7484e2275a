//! The HTTP server loop, with the limits `axum::serve` does not offer: a deadline for request
//! headers that runs from the moment a connection is accepted (silent, slow-loris and idle
//! keep-alive connections are closed), a cap on open connections (past it, new ones wait in the
//! kernel's backlog), and a shutdown grace period after which in-flight requests are abandoned.
//! Abandoning is safe: a webhook is acknowledged only after its event is committed, so an
//! abandoned delivery is simply retried by Stripe.
//!
//! HTTP/1.1 only: Stripe delivers webhooks over HTTP/1.1, and hyper's protocol detection for
//! HTTP/2 reads the first bytes with no deadline, which would let silent connections hold their
//! slots. TLS and HTTP/2 belong to the proxy in front.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::Service;

use crate::config::HttpLimits;

/// Serves `app` (the router inside its middleware) on `listener` until `shutdown`, then drains
/// within the grace period counted from the moment shutdown began, which it returns (the rest
/// of shutdown shares that deadline).
pub async fn serve<S, B>(
    listener: TcpListener,
    app: S,
    limits: &HttpLimits,
    shutdown: CancellationToken,
) -> tokio::time::Instant
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.expect("never closed"),
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // The client's address, for what is limited per client (the console's login).
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            app.clone(),
            move |mut req: Request<Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            },
        ));
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    let began = tokio::time::Instant::now();
    drop(listener);
    let open = graceful.count();
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep_until(began + limits.shutdown_grace) => {
            tracing::warn!(open, grace_secs = limits.shutdown_grace.as_secs(), "shutdown grace period over; abandoning in-flight requests");
        }
    }
    began
}

//! The benchmark's ceiling: the same HTTP server loop, axum router and `Stripe-Signature` check as
//! Bursar's webhook door, and nothing else (no envelope parsing, no storage). What it acks per
//! second on a machine is the most any webhook receiver built on this stack could ack there.
//!
//!   cargo run --release --example ceiling -- 127.0.0.1:18081 whsec_bench_secret

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use bursar::config::HttpLimits;
use bursar::stripe::signature;
use secrecy::SecretString;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18081".into());
    let secret = args.next().unwrap_or_else(|| "whsec_bench_secret".into());
    let secrets: Arc<Vec<SecretString>> = Arc::new(vec![SecretString::from(secret)]);
    let router = Router::new()
        .route("/webhooks/stripe", post(receive))
        .layer(DefaultBodyLimit::max(bursar::http::WEBHOOK_BODY_LIMIT))
        .with_state(secrets);
    let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
    eprintln!("ceiling listening on {listen}");
    let limits = HttpLimits {
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(30),
        max_connections: 1024,
        body_budget: 64 << 20,
        shutdown_grace: Duration::from_secs(1),
    };
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    bursar::http::server::serve(listener, router, &limits, shutdown).await;
}

async fn receive(
    State(secrets): State<Arc<Vec<SecretString>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, StatusCode> {
    let header = headers
        .get("Stripe-Signature")
        .and_then(|v| v.to_str().ok());
    let now = bursar::db::now_ms() / 1000;
    signature::verify(header, &body, &secrets, Duration::from_secs(300), now)
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    Ok(Json(json!({ "received": true })))
}

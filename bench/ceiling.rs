//! The benchmark's ceilings: the same HTTP server loop, axum router and `Stripe-Signature` check
//! as Bursar's webhook door, and nothing else (no envelope parsing, no database).
//!
//!   cargo run --release --example ceiling -- 127.0.0.1:18081 whsec_bench_secret [JOURNAL]
//!
//! Without `JOURNAL` it stores nothing: what it acks per second on a machine is the most any
//! webhook receiver built on this stack could ack there.
//!
//! With `JOURNAL` (a file path) it is the *durable* ceiling: each verified body is appended to
//! that file, and answered only once an `fdatasync` covers it. Bodies that arrive while a write
//! and sync are under way share the next one (a group commit, as Bursar's inbox thread does).
//! No index, no duplicate check, no worker: the most a receiver that keeps Bursar's promise
//! (durable before the 2xx) could ack on this machine, whatever it stores with.

use std::fs::File;
use std::io::Write;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use bursar::config::HttpLimits;
use bursar::db::inbox::MAX_BATCH;
use bursar::stripe::signature;
use secrecy::SecretString;
use serde_json::json;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// A verified body on its way to the journal, and where to say whether it was synced.
type Entry = (Bytes, oneshot::Sender<bool>);

struct Ceiling {
    secrets: Vec<SecretString>,
    journal: Option<mpsc::Sender<Entry>>,
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18081".into());
    let secret = args.next().unwrap_or_else(|| "whsec_bench_secret".into());
    let journal = args.next().map(|path| {
        let file = File::create(&path).unwrap_or_else(|e| panic!("cannot create {path}: {e}"));
        let (entries, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("ceiling-journal".into())
            .spawn(move || journal(file, &queue))
            .expect("journal thread");
        entries
    });
    let durable = journal.is_some();
    let state = Arc::new(Ceiling {
        secrets: vec![SecretString::from(secret)],
        journal,
    });
    let router = Router::new()
        .route("/webhooks/stripe", post(receive))
        .layer(DefaultBodyLimit::max(bursar::http::WEBHOOK_BODY_LIMIT))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
    eprintln!("ceiling listening on {listen} (durable: {durable})");
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
    State(state): State<Arc<Ceiling>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, StatusCode> {
    let header = headers
        .get("Stripe-Signature")
        .and_then(|v| v.to_str().ok());
    let now = bursar::db::now_ms() / 1000;
    signature::verify(header, &body, &state.secrets, Duration::from_secs(300), now)
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    if let Some(journal) = &state.journal {
        let (reply, synced) = oneshot::channel();
        journal
            .send((body, reply))
            .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
        if !synced.await.unwrap_or(false) {
            return Err(StatusCode::SERVICE_UNAVAILABLE);
        }
    }
    Ok(Json(json!({ "received": true })))
}

/// The journal thread: whatever queued while it wrote and synced goes into the next write, up to
/// Bursar's own batch limit, and one `fdatasync` covers it all.
fn journal(mut file: File, queue: &mpsc::Receiver<Entry>) {
    let mut buffer = Vec::new();
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        batch.extend(queue.try_iter().take(MAX_BATCH - 1));
        buffer.clear();
        for (body, _) in &batch {
            buffer.extend_from_slice(body);
        }
        let synced = file.write_all(&buffer).and_then(|()| file.sync_data());
        if let Err(e) = &synced {
            eprintln!("journal write failed: {e}");
        }
        for (_, reply) in batch {
            let _ = reply.send(synced.is_ok());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(file: File, bodies: &[&'static str]) -> Vec<bool> {
        let (entries, queue) = mpsc::channel();
        let answers: Vec<_> = bodies
            .iter()
            .map(|body| {
                let (reply, answer) = oneshot::channel();
                entries
                    .send((Bytes::from_static(body.as_bytes()), reply))
                    .unwrap();
                answer
            })
            .collect();
        drop(entries);
        journal(file, &queue);
        answers
            .into_iter()
            .map(|mut a| a.try_recv().unwrap())
            .collect()
    }

    #[test]
    fn every_body_is_written_and_answered_as_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let answers = run(
            File::create(&path).unwrap(),
            &["{\"a\":1}", "{\"b\":2}", "{}"],
        );
        assert_eq!(answers, [true, true, true]);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}{\"b\":2}{}"
        );
    }

    #[test]
    fn a_failed_write_is_answered_as_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        File::create(&path).unwrap();
        let read_only = File::open(&path).unwrap();
        assert_eq!(run(read_only, &["{}", "{}"]), [false, false]);
    }
}

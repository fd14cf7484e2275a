//! Benchmarks of the webhook path, as separate processes from the server they measure.
//!
//! `bursar bench-ingest`: N unique events, each signed before the clock starts and padded to a
//! chosen size, posted at concurrency C to any server's platform endpoint (Bursar, or the ceiling
//! server in `bench/ceiling.rs`). Prints acked events/s and ack latency percentiles, and (unless
//! `--no-wait`) the time until Bursar's worker has applied every event.
//!
//! `bursar bench-apply`: the worker alone. Preloads N events into a fresh inbox, then times the
//! worker applying them, with no HTTP traffic competing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use secrecy::ExposeSecret;

use crate::config::Config;
use crate::db::inbox::{self, NewEvent};
use crate::service::Services;
use crate::stripe::signature;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Base URL of a server to load (default: BURSAR_PUBLIC_URL). Repeat it to spread the
    /// connections over several servers; a connection to one that stops answering moves on
    /// to the next.
    #[arg(long)]
    pub url: Vec<String>,
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    #[arg(long, default_value_t = 64)]
    pub concurrency: u64,
    /// Size of each event body in bytes (Stripe's events are typically 2 to 5 KB).
    #[arg(long, default_value_t = 3072)]
    pub size: usize,
    /// Do not wait for the worker to apply the events (and do not open the database): for a
    /// server that stores nothing, such as the ceiling.
    #[arg(long)]
    pub no_wait: bool,
    /// Write the id of every event that got a 2xx to this file, one per line.
    #[arg(long)]
    pub acked: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    #[arg(long, default_value_t = 3072)]
    pub size: usize,
}

pub async fn ingest(config: Config, args: BenchArgs) -> anyhow::Result<()> {
    let secret = config
        .stripe
        .webhook_secrets
        .first()
        .ok_or_else(|| {
            anyhow::anyhow!("STRIPE_WEBHOOK_SECRET must be set (the same as the server's)")
        })?
        .expose_secret()
        .to_owned();
    let bases = match args.url.is_empty() {
        true => vec![config.public_url.clone()],
        false => args.url.clone(),
    };
    let targets: Arc<Vec<Target>> = Arc::new(
        bases
            .iter()
            .map(|b| Target::parse(b))
            .collect::<anyhow::Result<_>>()?,
    );
    let db = match args.no_wait {
        true => None,
        false => Some(super::open_db(&config).await?),
    };
    let before = match &db {
        Some(db) => unfinished_and_total(db).await?.1,
        None => 0,
    };
    // Signed before the clock starts: the generator's own HMAC work is not in the figures.
    let run_id: u32 = rand::random();
    let now = crate::clock::now_ms() / 1000;
    let mut rng = rand::thread_rng();
    let requests: Arc<Vec<(Bytes, String)>> = Arc::new(
        (0..args.events)
            .map(|i| {
                let body = event_body(run_id, i, args.size, &mut rng);
                let header = signature::sign(body.as_bytes(), &secret, now);
                (Bytes::from(body), header)
            })
            .collect(),
    );
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.concurrency {
        let (targets, next, requests) = (targets.clone(), next.clone(), requests.clone());
        tasks.push(tokio::spawn(async move {
            post_all(&targets, c as usize, &next, &requests).await
        }));
    }
    let mut latencies = Vec::with_capacity(args.events as usize);
    let mut acked = Vec::with_capacity(args.events as usize);
    let mut failures = 0;
    for t in tasks {
        let (l, a, f) = t.await?;
        latencies.extend(l);
        acked.extend(a);
        failures += f;
    }
    if let Some(path) = &args.acked {
        let ids: String = acked
            .iter()
            .map(|&i| format!("{}\n", event_id(run_id, i)))
            .collect();
        std::fs::write(path, ids)?;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "events: {} acked, {failures} failed, concurrency {}, {} bytes each",
        latencies.len(),
        args.concurrency,
        args.size
    );
    println!(
        "ack throughput: {:.0} events/s over {:.2}s",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "ack latency: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(pct(0.50)),
        ms(pct(0.95)),
        ms(pct(0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    if let Some(db) = db {
        let expected = before + latencies.len() as i64;
        loop {
            let (unfinished, total) = unfinished_and_total(&db).await?;
            if unfinished == 0 && total >= expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let applied = started.elapsed();
        println!(
            "all applied after {:.2}s ({:.2}s after the last ack; {:.0} events/s end to end)",
            applied.as_secs_f64(),
            (applied - elapsed).as_secs_f64(),
            latencies.len() as f64 / applied.as_secs_f64()
        );
    }
    Ok(())
}

/// A server's platform webhook endpoint.
struct Target {
    authority: String,
    path: String,
}

impl Target {
    fn parse(base: &str) -> anyhow::Result<Self> {
        let authority = base
            .trim_end_matches('/')
            .strip_prefix("http://")
            .filter(|rest| !rest.contains('/'))
            .ok_or_else(|| anyhow::anyhow!("--url must be http://host:port, not {base}"))?;
        Ok(Self {
            authority: authority.to_owned(),
            path: "/webhooks/stripe".into(),
        })
    }
}

type Sender = hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>;

async fn connect(authority: &str) -> anyhow::Result<Sender> {
    let stream = tokio::net::TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let (s, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(s)
}

/// One connection's share of the load: plain HTTP/1.1 keep-alive through hyper's client
/// connection, the lightest way to drive a server from the same machine (a pooling client such
/// as reqwest costs several times the CPU per request, which the server then lacks). Connection
/// `c` starts on target `c mod n`; when its server fails, it moves to the next. Returns the
/// latencies and indexes of the acked events, and how many failed.
async fn post_all(
    targets: &[Target],
    c: usize,
    next: &AtomicU64,
    requests: &[(Bytes, String)],
) -> (Vec<Duration>, Vec<u64>, u64) {
    use http_body_util::{BodyExt, Full};
    let mut latencies = Vec::new();
    let mut acked = Vec::new();
    let mut failures = 0u64;
    let mut sender: Option<Sender> = None;
    let mut on = c % targets.len();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some((body, header)) = requests.get(i as usize) else {
            break;
        };
        let target = &targets[on];
        if sender.is_none() {
            match connect(&target.authority).await {
                Ok(s) => sender = Some(s),
                Err(_) => {
                    failures += 1;
                    on = (on + 1) % targets.len();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let s = sender.as_mut().expect("connected above");
        let request = hyper::Request::post(&target.path)
            .header("Host", &target.authority)
            .header("Stripe-Signature", header)
            .header("Content-Type", "application/json")
            .body(Full::new(body.clone()))
            .expect("a valid request");
        let t = Instant::now();
        let ok = match s.send_request(request).await {
            Ok(response) => {
                let status = response.status();
                response.into_body().collect().await.is_ok() && status.is_success()
            }
            Err(_) => {
                sender = None; // the next one on the next server
                on = (on + 1) % targets.len();
                false
            }
        };
        if ok {
            latencies.push(t.elapsed());
            acked.push(i);
        } else {
            failures += 1;
        }
    }
    (latencies, acked, failures)
}

/// Preloads the inbox, then lets the worker apply everything, timing only the worker.
pub async fn apply(config: Config, args: ApplyArgs) -> anyhow::Result<()> {
    let db = super::open_db(&config).await?;
    let (unfinished, _) = unfinished_and_total(&db).await?;
    anyhow::ensure!(
        unfinished == 0,
        "the inbox has {unfinished} unfinished events; use an empty database"
    );
    let run_id: u32 = rand::random();
    let loading = Instant::now();
    let mut batch = Vec::with_capacity(1000);
    let mut rng = rand::thread_rng();
    for i in 0..args.events {
        let payload = event_body(run_id, i, args.size, &mut rng);
        batch.push(NewEvent {
            source: "platform".into(),
            event_id: event_id(run_id, i),
            event_type: "balance.available".into(),
            scope: "platform",
            store_id: None,
            account_id: None,
            livemode: false,
            created: crate::clock::now_ms() / 1000,
            payload,
        });
        if batch.len() == 1000 || i + 1 == args.events {
            db.inbox().insert(std::mem::take(&mut batch), None).await?;
        }
    }
    println!(
        "preloaded {} events of {} bytes in {:.2}s",
        args.events,
        args.size,
        loading.elapsed().as_secs_f64()
    );
    let s = Services::new(Arc::new(config), db);
    let started = Instant::now();
    let applied = crate::worker::drain(&s).await?;
    let elapsed = started.elapsed();
    println!(
        "worker applied {applied} events in {:.2}s: {:.0} events/s (batch {})",
        elapsed.as_secs_f64(),
        applied as f64 / elapsed.as_secs_f64(),
        s.config.worker.batch_size
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn unfinished_and_total(db: &crate::db::Db) -> anyhow::Result<(i64, i64)> {
    let counts = inbox::status_counts(db).await?;
    let unfinished = counts
        .iter()
        .filter(|(s, _)| matches!(s.as_str(), "pending" | "processing" | "retrying"))
        .map(|(_, n)| n)
        .sum();
    Ok((unfinished, counts.iter().map(|(_, n)| n).sum()))
}

fn event_id(run: u32, i: u64) -> String {
    format!("evt_bench{run:08x}{i:012}")
}

/// A platform `balance.available` event shaped like Stripe's, unique per run and index, padded
/// to `size` bytes with random letters and digits in a `metadata`-like field on the balance
/// object (as incompressible as Stripe's own ids and text are).
fn event_body(run: u32, i: u64, size: usize, rng: &mut impl rand::Rng) -> String {
    let head = format!(
        r#"{{"id":"{id}","object":"event","api_version":"{v}","created":{c},"data":{{"object":{{"object":"balance","available":[{{"amount":{i},"currency":"usd","source_types":{{"card":{i}}}}}],"connect_reserved":[{{"amount":0,"currency":"usd"}}],"livemode":false,"pending":[{{"amount":0,"currency":"usd","source_types":{{"card":0}}}}],"bench_padding":""#,
        id = event_id(run, i),
        v = crate::stripe::STRIPE_VERSION,
        c = crate::clock::now_ms() / 1000,
    );
    let tail = r#""}},"livemode":false,"pending_webhooks":1,"request":{"id":null,"idempotency_key":null},"type":"balance.available"}"#;
    let pad = size.saturating_sub(head.len() + tail.len());
    let mut body = String::with_capacity(head.len() + pad + tail.len());
    body.push_str(&head);
    body.extend((0..pad).map(|_| char::from(rng.sample(rand::distributions::Alphanumeric))));
    body.push_str(tail);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_events_are_stripe_events_of_the_asked_size() {
        for size in [0, 1024, 3072, 10_000] {
            let body = event_body(7, 42, size, &mut rand::thread_rng());
            assert!(body.len() >= size && (size < 500 || body.len() == size));
            let e = crate::stripe::event::Envelope::parse(body.as_bytes()).unwrap();
            assert_eq!(e.event_type, "balance.available");
        }
    }
}

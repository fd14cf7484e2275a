//! `bursar bench-ingest`: N unique signed events at concurrency C against a running Bursar's
//! platform endpoint. Prints acknowledged events/s, ack latency percentiles, and the seconds
//! until the worker has applied every event (read from the same database).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use secrecy::ExposeSecret;

use crate::config::Config;
use crate::db::inbox;
use crate::stripe::signature;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Base URL of the running Bursar (default: BURSAR_PUBLIC_URL).
    #[arg(long)]
    pub url: Option<String>,
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    #[arg(long, default_value_t = 64)]
    pub concurrency: u64,
    /// Do not wait for the worker to apply the events.
    #[arg(long)]
    pub no_wait: bool,
}

pub async fn run(config: Config, args: BenchArgs) -> anyhow::Result<()> {
    let secret = config
        .stripe
        .webhook_secrets
        .first()
        .ok_or_else(|| {
            anyhow::anyhow!("STRIPE_WEBHOOK_SECRET must be set (the same as the server's)")
        })?
        .expose_secret()
        .to_owned();
    let url = format!(
        "{}/webhooks/stripe",
        args.url
            .clone()
            .unwrap_or_else(|| config.public_url.clone())
            .trim_end_matches('/')
    );
    let db = super::open_db(&config).await?;
    let before = unfinished_and_total(&db).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency as usize)
        .build()?;
    let next = Arc::new(AtomicU64::new(0));
    let run_id: u32 = rand::random();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (client, url, secret, next) =
            (client.clone(), url.clone(), secret.clone(), next.clone());
        let total = args.events;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let body = event_body(run_id, i);
                let header = signature::sign(body.as_bytes(), &secret, crate::db::now_ms() / 1000);
                let t = Instant::now();
                let ok = client
                    .post(&url)
                    .header("Stripe-Signature", header)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    latencies.push(t.elapsed());
                } else {
                    failures += 1;
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::with_capacity(args.events as usize);
    let mut failures = 0;
    for t in tasks {
        let (l, f) = t.await?;
        latencies.extend(l);
        failures += f;
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
        "events: {} acked, {failures} failed, concurrency {}",
        latencies.len(),
        args.concurrency
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
    if !args.no_wait {
        let expected = before.1 + latencies.len() as i64;
        loop {
            let (unfinished, total) = unfinished_and_total(&db).await?;
            if unfinished == 0 && total >= expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let applied = started.elapsed();
        println!(
            "all applied after {:.2}s ({:.0} events/s end to end)",
            applied.as_secs_f64(),
            latencies.len() as f64 / applied.as_secs_f64()
        );
    }
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

/// A platform `balance.available` event shaped like Stripe's, unique per run and index.
fn event_body(run: u32, i: u64) -> String {
    format!(
        r#"{{"id":"evt_bench{run:08x}{i:012}","object":"event","api_version":"{v}","created":{c},"data":{{"object":{{"object":"balance","available":[{{"amount":{i},"currency":"usd","source_types":{{"card":{i}}}}}],"connect_reserved":[{{"amount":0,"currency":"usd"}}],"livemode":false,"pending":[{{"amount":0,"currency":"usd","source_types":{{"card":0}}}}]}}}},"livemode":false,"pending_webhooks":1,"request":{{"id":null,"idempotency_key":null}},"type":"balance.available"}}"#,
        v = crate::stripe::STRIPE_VERSION,
        c = crate::db::now_ms() / 1000,
    )
}

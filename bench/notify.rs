//! Notification benchmark: the real app (SQLite in a temp dir), the local Stripe and a local
//! receiver in one process.
//!
//!   cargo run --release --example notify -- [ORDERS]
//!
//! 1. Latency: ORDERS orders are paid one after another at the local Stripe; for each, the time
//!    from Bursar's 2xx to Stripe's `payment_intent.succeeded` (the event is verified and stored)
//!    to the receiver holding its `order.paid` notification. Prints p50, p99 and max.
//! 2. Throughput: every delivered notification is made due again at once in the outbox, and the
//!    time until the receiver has them all gives notifications delivered per second.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use bursar::app::App;
use bursar::config::Config;
use serde_json::{json, Value};
use stripe_sim::{Card, StripeSim};

type Receipts = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

#[tokio::main]
async fn main() {
    let orders: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let sim = StripeSim::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let key = {
        use base64::Engine;
        let bytes: [u8; 32] = rand::random();
        format!(
            "kb:{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    };
    let env: HashMap<&str, String> = [
        ("BURSAR_DATABASE_URL", db),
        ("BURSAR_LISTEN", "127.0.0.1:0".into()),
        ("BURSAR_MASTER_KEYS", key),
        ("STRIPE_SECRET_KEY", sim.platform_key.clone()),
        ("STRIPE_API_BASE", sim.url.clone()),
        ("BURSAR_ALLOW_PRIVATE_NOTIFICATION_TARGETS", "true".into()),
        ("BURSAR_WORKER_POLL_MS", "20".into()),
    ]
    .into_iter()
    .collect();
    let dev_key = dir.path().join(".dev-key");
    let config = Config::from_lookup(|k| env.get(k).cloned(), Some(&dev_key)).unwrap();
    let app = App::build(config).await.unwrap();
    let url = format!("http://{}", app.local_addr());
    let services = app.services();
    tokio::spawn(app.run(tokio_util::sync::CancellationToken::new()));
    let (_, api_key) = bursar::service::api_keys::create(&services.db, "bench")
        .await
        .unwrap();
    let api_key = secrecy::ExposeSecret::expose_secret(&api_key).to_owned();
    let client = reqwest::Client::new();
    let api = |method: reqwest::Method, path: &str| {
        client
            .request(method, format!("{url}{path}"))
            .bearer_auth(&api_key)
    };

    let receipts: Receipts = Default::default();
    let hook = receiver(receipts.clone()).await;
    let r = api(reqwest::Method::POST, "/api/v1/notification-endpoints")
        .json(&json!({"url": hook, "events": ["order.paid"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let account = sim.add_independent_account(false);
    sim.update_account(&account.id, |a| a["charges_enabled"] = json!(true));
    let store: Value = api(reqwest::Method::POST, "/api/v1/stores")
        .json(&json!({"name": "Bench"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let store = store["id"].as_str().unwrap().to_owned();
    let secret = "whsec_benchstoresecret0123456789";
    let r = api(
        reqwest::Method::PUT,
        &format!("/api/v1/stores/{store}/connection/keys"),
    )
    .json(&json!({"secret_key": account.restricted_key, "publishable_key": account.publishable_key, "webhook_secret": secret}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    sim.register_account_endpoint(
        &account.id,
        &format!("{url}/webhooks/stripe/stores/{store}"),
        secret,
    );

    let mut latencies = Vec::with_capacity(orders);
    for _ in 0..orders {
        let o: Value = api(
            reqwest::Method::POST,
            &format!("/api/v1/stores/{store}/orders"),
        )
        .json(&json!({"amount": 1000, "currency": "usd"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let id = o["id"].as_str().unwrap().to_owned();
        sim.pay(o["payment_intent"].as_str().unwrap(), Card::Visa)
            .await;
        let acked = Instant::now();
        let received = wait_for(&receipts, &id, 1).await;
        latencies.push(received.saturating_duration_since(acked));
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "webhook acked -> notification received, {orders} orders: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(*latencies.last().unwrap())
    );

    // Throughput: every notification due again at once.
    let before = receipts
        .lock()
        .unwrap()
        .values()
        .map(Vec::len)
        .sum::<usize>();
    let started = Instant::now();
    sqlx::query(
        "UPDATE notifications SET status = 'pending', next_attempt_at = 0, attempts = 0, lease_until = NULL",
    )
    .execute(services.db.pool())
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let got = receipts
            .lock()
            .unwrap()
            .values()
            .map(Vec::len)
            .sum::<usize>();
        if got >= before + orders {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {orders} redelivered",
            got - before
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = started.elapsed();
    println!(
        "redelivery of {orders} notifications: {:.2} s, {:.0} delivered/s",
        took.as_secs_f64(),
        orders as f64 / took.as_secs_f64()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A receiver recording when each order's notification arrived.
async fn receiver(receipts: Receipts) -> String {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let receipts = receipts.clone();
            async move {
                let at = Instant::now();
                let v: Value = serde_json::from_str(&body).unwrap_or_default();
                if let Some(id) = v["data"]["object"]["id"].as_str() {
                    receipts
                        .lock()
                        .unwrap()
                        .entry(id.to_owned())
                        .or_default()
                        .push(at);
                }
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn wait_for(receipts: &Receipts, id: &str, n: usize) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(at) = receipts.lock().unwrap().get(id).filter(|v| v.len() >= n) {
            return at[n - 1];
        }
        assert!(Instant::now() < deadline, "no notification for {id}");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

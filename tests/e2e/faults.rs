//! Stripe's faults everywhere money moves, in one table: every money path meets every fault the
//! local Stripe can inject (a 429 with its reason, a 500, a timeout, a dropped connection, an
//! answer lost after Stripe committed). Met once, the path ends as if nothing happened, with one
//! object at Stripe. Met until the retries run out, the caller gets a clear error, and the same
//! request made again afterwards still makes exactly one.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use stripe_sim::Card;

use crate::money::paid_order;
use crate::onboarding::oauth_store;
use crate::orders::{keys_store, order};
use crate::support::{error_code, log_errors, Fault, TestApp, RETURN_PREFIX};

fn faults() -> Vec<(&'static str, Fault)> {
    vec![
        ("429", Fault::Status(429)),
        ("500", Fault::Status(500)),
        // Longer than BURSAR_STRIPE_TIMEOUT_SECS (1 s here); Stripe still does it afterwards.
        ("timeout", Fault::Delay(Duration::from_millis(1_500))),
        ("dropped connection", Fault::Drop),
        ("answer lost after commit", Fault::AfterCommit(500)),
    ]
}

async fn app() -> TestApp {
    let app = TestApp::spawn_with(&[("BURSAR_STRIPE_TIMEOUT_SECS", "1")]).await;
    app.register_endpoints();
    app
}

/// A money path: what it asks of Bursar, the Stripe call a fault meets, and how many objects
/// of its kind Stripe holds.
struct Path {
    name: &'static str,
    stripe: &'static str,
    kind: &'static str,
}

const ORDER: Path = Path {
    name: "order creation",
    stripe: "/v1/payment_intents",
    kind: "payment_intent",
};
const REFUND: Path = Path {
    name: "refund",
    stripe: "/v1/refunds",
    kind: "refund",
};
const SUBSCRIPTION: Path = Path {
    name: "vendor subscription",
    stripe: "/v1/subscriptions",
    kind: "subscription",
};
const ONBOARDING: Path = Path {
    name: "Express onboarding",
    stripe: "/v1/accounts",
    kind: "account",
};

/// Sets up what `path` needs on a fresh app, then returns the request that takes it.
async fn prepare(app: &TestApp, path: &Path) -> reqwest::RequestBuilder {
    match path.kind {
        "payment_intent" => {
            let (store, _) = keys_store(app).await;
            app.api(Method::POST, &format!("/api/v1/stores/{store}/orders"))
                .header("Idempotency-Key", "fault-table")
                .json(&json!({"amount": 2000, "currency": "usd"}))
        }
        "refund" => {
            let (store, _) = keys_store(app).await;
            let paid = paid_order(app, &store, 3000).await;
            let id = paid["id"].as_str().unwrap();
            app.api(Method::POST, &format!("/api/v1/orders/{id}/refunds"))
                .header("Idempotency-Key", "fault-table")
                .json(&json!({"amount": 1000}))
        }
        "subscription" => {
            let price = app.sim.add_price(2900, "usd", Some("month"), true);
            let store = app.create_store("Vendor").await;
            app.api(Method::PUT, &format!("/api/v1/stores/{store}/subscription"))
                .json(&json!({ "price_id": price }))
        }
        _ => {
            let store = app.create_store("Express").await;
            app.api(Method::POST, &format!("/api/v1/stores/{store}/onboarding"))
                .json(&json!({"type": "express", "return_url": format!("{RETURN_PREFIX}/done")}))
        }
    }
}

/// How many objects of the path's kind Stripe holds.
fn at_stripe(app: &TestApp, path: &Path) -> usize {
    match path.kind {
        "account" => app.sim.account_count(),
        kind => app.sim.count(kind),
    }
}

/// Every fault once, then every fault until the retries run out, on one path.
async fn table(path: Path) {
    for (fault_name, fault) in faults() {
        let case = format!("{} / {fault_name}", path.name);
        // Once: Bursar's own retry gets through (with the same key, so Stripe answers with
        // what it already made).
        let app = app().await;
        let request = prepare(&app, &path).await;
        let before = at_stripe(&app, &path);
        app.sim.fail(Method::POST, path.stripe, fault.clone(), 1);
        let r = request.try_clone().unwrap().send().await.unwrap();
        assert!(r.status().is_success(), "{case}: {}", log_errors());
        app.drain().await;
        assert_eq!(at_stripe(&app, &path), before + 1, "{case}: one at Stripe");

        // Every attempt: a clear error; afterwards the same request makes exactly one.
        let app = self::app().await;
        let request = prepare(&app, &path).await;
        let before = at_stripe(&app, &path);
        let delayed = matches!(fault, Fault::Delay(_));
        app.sim.fail(Method::POST, path.stripe, fault, 100);
        let r = request.try_clone().unwrap().send().await.unwrap();
        let (status, code, _) = error_code(r).await;
        assert_eq!(
            (status, code.as_str()),
            (502, "stripe_unavailable"),
            "{case}, retries run out"
        );
        app.sim.clear_faults();
        if delayed {
            // The timed-out requests are still at Stripe: let them land first.
            tokio::time::sleep(Duration::from_millis(1_600)).await;
        }
        app.drain().await;
        let r = request.try_clone().unwrap().send().await.unwrap();
        assert!(
            r.status().is_success(),
            "{case}, asked again: {} {}",
            r.status(),
            log_errors()
        );
        app.drain().await;
        assert_eq!(
            at_stripe(&app, &path),
            before + 1,
            "{case}, asked again: still one at Stripe"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_creation_survives_every_stripe_fault() {
    table(ORDER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_survive_every_stripe_fault() {
    table(REFUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_subscriptions_survive_every_stripe_fault() {
    table(SUBSCRIPTION).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn express_onboarding_survives_every_stripe_fault() {
    table(ONBOARDING).await;
}

/// Transfers are made by a background worker, not a request: a fault met once is retried at
/// once; met on every attempt of a round, the split waits for its claim's lease and the next
/// round. Either way exactly one transfer per split, under one key each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_survive_every_stripe_fault() {
    for (fault_name, fault) in faults() {
        // 4: the first try and Bursar's three retries, a whole round.
        for times in [1, 4] {
            let case = format!("transfers / {fault_name} ×{times}");
            let app = app().await;
            let (a, _) = oauth_store(&app).await;
            let (b, _) = oauth_store(&app).await;
            let r = app
                .api(Method::POST, "/api/v1/orders")
                .json(&json!({"amount": 5000, "currency": "usd", "splits": [
                    {"store_id": a, "amount": 2000}, {"store_id": b, "amount": 2500}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{}", log_errors());
            let o: Value = r.json().await.unwrap();
            let id = o["id"].as_str().unwrap().to_owned();
            app.sim
                .fail(Method::POST, "/v1/transfers", fault.clone(), times);
            app.sim
                .pay(o["payment_intent"].as_str().unwrap(), Card::Visa)
                .await;
            let mut done = Value::Null;
            for _ in 0..600 {
                app.drain().await;
                done = order(&app, &id).await;
                let made = done["transfers"]
                    .as_array()
                    .is_some_and(|t| t.iter().all(|t| t["status"] == "created"));
                if made {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if matches!(fault, Fault::Delay(_)) {
                tokio::time::sleep(Duration::from_millis(1_600)).await;
            }
            let made: Vec<Value> = app
                .sim
                .objects("transfer")
                .into_iter()
                .filter(|t| t["transfer_group"] == id.as_str())
                .collect();
            assert_eq!(made.len(), 2, "{case}: one per split: {done}");
            let keys: std::collections::HashSet<_> = app
                .sim
                .requests("/v1/transfers")
                .into_iter()
                .filter_map(|r| r.idempotency_key)
                .collect();
            assert_eq!(keys.len(), 2, "{case}: one key per split: {keys:?}");
        }
    }
}

/// A burst of `account.updated` for one merchant: each is confirmed by fetching the account from
/// Stripe, and the fetches keep under Stripe's test-mode limit of 25 requests in any second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_account_updates_keeps_under_stripes_rate_limit() {
    let app = app().await;
    let (store, account, secret) = app.connected_store().await;
    let events: Vec<Value> = (0..80)
        .map(|_| crate::support::account_updated(&account.id))
        .collect();
    let door = crate::support::store_path(&store);
    let sends = events.iter().map(|e| app.deliver(&door, e, &secret));
    for r in futures::future::join_all(sends).await {
        assert_eq!(r.status(), 200);
    }
    for e in &events {
        app.wait_for_event(e["id"].as_str().unwrap(), |e| e["status"] == "applied")
            .await;
    }
    let mut at: Vec<std::time::Instant> = app
        .sim
        .requests("/v1/account")
        .into_iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.at)
        .collect();
    at.sort();
    let busiest = (0..at.len())
        .map(|i| {
            at[i..]
                .iter()
                .take_while(|t| t.duration_since(at[i]) < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    eprintln!(
        "{} account fetches for 80 events; at most {busiest} in one second",
        at.len()
    );
    assert!(!at.is_empty());
    assert!(busiest <= 25, "{busiest} requests to Stripe in one second");
}

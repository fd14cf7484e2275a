//! Operator tools against the local Stripe: `webhooks setup`, `doctor`, `reconcile`,
//! `vault rotate`, `/metrics` and request ids.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{json, Value};
use stripe_sim::{Card, PLATFORM_ACCOUNT};

use crate::cli::{run, run_env};
use crate::onboarding::oauth_store;
use crate::orders::quiet_keys_store;
use crate::support::{master_key, TestApp};

async fn new_order(app: &TestApp, store: &str) -> Value {
    let r = app
        .api(Method::POST, &format!("/api/v1/stores/{store}/orders"))
        .json(&json!({"amount": 2500, "currency": "usd"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

async fn order_status(app: &TestApp, order: &Value) -> String {
    let id = order["id"].as_str().unwrap();
    let now = app.get_json(&format!("/api/v1/orders/{id}")).await;
    now["status"].as_str().unwrap().to_owned()
}

fn events_of(endpoint: &Value) -> Vec<String> {
    let mut v: Vec<String> = endpoint["enabled_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

fn sorted(events: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    v.sort();
    v
}

/// A call to the local Stripe's API with `key`.
async fn stripe(app: &TestApp, key: &str, path: &str, form: &[(&str, &str)]) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", app.sim.url))
        .bearer_auth(key)
        .form(form)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

#[tokio::test]
async fn webhooks_setup_makes_each_endpoint_once_and_its_secrets_verify() {
    // No configured secrets: only what setup stores can verify Stripe's deliveries.
    let app = TestApp::spawn_with(&[
        ("BURSAR_AUTO_WEBHOOK_ENDPOINTS", "false"),
        ("STRIPE_WEBHOOK_SECRET", ""),
        ("STRIPE_CONNECT_WEBHOOK_SECRET", ""),
    ])
    .await;
    let (keys, account) = quiet_keys_store(&app).await;
    let (connected, _) = oauth_store(&app).await;
    let (ok, out, err) = run(&app, &["webhooks", "setup"]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("created")).count(),
        3,
        "{out}"
    );
    let endpoints = app.sim.webhook_endpoints();
    assert_eq!(endpoints.len(), 3, "{endpoints:?}");
    let by_url = |url: String| {
        endpoints
            .iter()
            .find(|e| e["url"] == url.as_str())
            .unwrap_or_else(|| panic!("no endpoint for {url}"))
            .clone()
    };
    let platform = by_url(format!("{}/webhooks/stripe", app.url));
    let connect = by_url(format!("{}/webhooks/stripe/connect", app.url));
    let own = by_url(format!("{}/webhooks/stripe/stores/{keys}", app.url));
    for e in [&platform, &connect, &own] {
        assert_eq!(e["api_version"], bursar::stripe::STRIPE_VERSION);
        assert_eq!(e["status"], "enabled");
    }
    use bursar::stripe::events::{store_events, ACCOUNT_EVENTS, PLATFORM_EVENTS};
    assert_eq!(platform["owner"], PLATFORM_ACCOUNT);
    assert_eq!(platform["connect"], false);
    assert_eq!(events_of(&platform), sorted(PLATFORM_EVENTS));
    assert_eq!(connect["connect"], true);
    assert_eq!(events_of(&connect), sorted(ACCOUNT_EVENTS));
    assert_eq!(own["owner"], account.id.as_str());
    assert_eq!(events_of(&own), sorted(&store_events()));
    let secrets: String = bursar::db::operator::endpoint(&app.services.db, "connect")
        .await
        .unwrap()
        .unwrap()
        .secret_enc
        .unwrap();
    assert!(secrets.starts_with("bv1."), "sealed, not plain");

    // Again: nothing made, nothing changed.
    let (ok, out, err) = run(&app, &["webhooks", "setup"]).await;
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok")).count(),
        3,
        "{out}"
    );
    let again = app.sim.webhook_endpoints();
    assert_eq!(
        again.iter().map(|e| e["id"].clone()).collect::<Vec<_>>(),
        endpoints
            .iter()
            .map(|e| e["id"].clone())
            .collect::<Vec<_>>()
    );

    // Stripe's deliveries verify at each door with the stored secrets.
    let (_, statuses) = app
        .sim
        .deliver_event(
            "customer.updated",
            None,
            json!({"id": "cus_platform1", "object": "customer"}),
        )
        .await;
    assert_eq!(statuses, vec![200]);
    for store in [&keys, &connected] {
        let o = new_order(&app, store).await;
        app.sim
            .pay(o["payment_intent"].as_str().unwrap(), Card::Visa)
            .await;
        app.drain().await;
        assert_eq!(order_status(&app, &o).await, "paid", "{store}");
    }
}

#[tokio::test]
async fn webhooks_setup_respects_stripes_limit_of_sixteen() {
    let app = TestApp::spawn().await;
    for i in 0..15 {
        stripe(
            &app,
            &app.sim.platform_key,
            "/v1/webhook_endpoints",
            &[
                ("url", &format!("https://other{i}.example/hook")),
                ("enabled_events[0]", "*"),
            ],
        )
        .await;
    }
    let (ok, out, err) = run(&app, &["webhooks", "setup"]).await;
    assert!(!ok);
    assert!(out.contains("created"), "the 16th is made: {out}");
    assert!(err.contains("Stripe's limit is 16"), "{err}");
    assert_eq!(app.sim.webhook_endpoints().len(), 16);
}

#[tokio::test]
async fn doctor_passes_when_healthy_and_names_each_broken_thing() {
    let app = TestApp::spawn().await;
    let (keys, account) = quiet_keys_store(&app).await;
    let (revoked, revoked_account) = quiet_keys_store(&app).await;
    oauth_store(&app).await;
    let (ok, _, err) = run(&app, &["webhooks", "setup"]).await;
    assert!(ok, "{err}");
    let (ok, out, err) = run(&app, &["doctor"]).await;
    assert!(ok, "{out}{err}");
    assert!(!out.contains("PROBLEM"), "{out}");
    let (ok, json_out, _) = run(&app, &["doctor", "--json"]).await;
    assert!(ok);
    let checks: Vec<Value> = serde_json::from_str(&json_out).unwrap();
    assert!(checks.iter().all(|c| c["ok"] == true), "{json_out}");

    // Break one thing of each kind.
    let endpoints = app.sim.webhook_endpoints();
    let id_of = |suffix: &str| {
        endpoints
            .iter()
            .find(|e| e["url"].as_str().unwrap().ends_with(suffix))
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let platform_key = app.sim.platform_key.clone();
    stripe(
        &app,
        &platform_key,
        &format!("/v1/webhook_endpoints/{}", id_of("/webhooks/stripe")),
        &[("disabled", "true")],
    )
    .await;
    stripe(
        &app,
        &platform_key,
        &format!(
            "/v1/webhook_endpoints/{}",
            id_of("/webhooks/stripe/connect")
        ),
        &[("enabled_events[0]", "account.updated")],
    )
    .await;
    stripe(
        &app,
        &account.restricted_key,
        &format!(
            "/v1/webhook_endpoints/{}",
            id_of(&format!("/stores/{keys}"))
        ),
        &[("url", "https://elsewhere.example/hook")],
    )
    .await;
    app.sim.revoke_key(&revoked_account.restricted_key);
    let body = br#"{"id":"evt_1Forged","object":"event","type":"invoice.paid","created":1,"livemode":false,"data":{"object":{}}}"#;
    let r = reqwest::Client::new()
        .post(format!("{}/webhooks/stripe", app.url))
        .header(
            "Stripe-Signature",
            stripe_sim::sign(body, "whsec_not_the_endpoints", chrono_now()),
        )
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let (ok, out, _) = run(&app, &["doctor"]).await;
    assert!(!ok, "doctor must fail: {out}");
    let problem = |needle: &str| {
        assert!(
            out.lines()
                .any(|l| l.starts_with("PROBLEM") && l.contains(needle)),
            "no problem line with `{needle}` in:\n{out}"
        )
    };
    problem("platform endpoint: endpoint we_");
    problem("is disabled at Stripe");
    problem("does not send account.application.deauthorized");
    problem("delivers to https://elsewhere.example/hook");
    problem(&format!("store {revoked} key: Stripe refused"));
    problem("platform endpoint (/webhooks/stripe): 1 delivery failed signature verification since");
    assert!(out.contains("fix: run `bursar webhooks setup`"), "{out}");

    // Setup puts the endpoints right again.
    let (_, out, _) = run(&app, &["webhooks", "setup"]).await;
    assert!(out.contains("updated"), "{out}");
    let (_, out, _) = run(&app, &["doctor", "--store", &keys]).await;
    assert!(
        !out.lines()
            .any(|l| l.starts_with("PROBLEM") && l.contains("endpoint we_")),
        "{out}"
    );
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn reconcile_recovers_missed_events_once_for_connect_and_keys_stores() {
    let app = TestApp::spawn_with(&[("BURSAR_AUTO_WEBHOOK_ENDPOINTS", "false")]).await;
    // No endpoint is registered: Stripe's events reach no one.
    let (connected, _) = oauth_store(&app).await;
    let (keys, account) = quiet_keys_store(&app).await;
    let mut orders = Vec::new();
    let mut event_ids = Vec::new();
    for store in [&connected, &keys] {
        let o = new_order(&app, store).await;
        event_ids.push(
            app.sim
                .pay(o["payment_intent"].as_str().unwrap(), Card::Visa)
                .await,
        );
        orders.push(o);
    }
    app.drain().await;
    for o in &orders {
        assert_eq!(order_status(&app, o).await, "pending");
    }

    let (ok, out, _) = run(&app, &["reconcile", "--all", "--dry-run"]).await;
    assert!(!ok, "a dry run with drift exits non-zero: {out}");
    assert!(
        out.contains("(dry run)") && !out.contains(" 0 missing"),
        "{out}"
    );
    for o in &orders {
        assert_eq!(
            order_status(&app, o).await,
            "pending",
            "a dry run feeds nothing"
        );
    }
    let (ok, out, err) = run(&app, &["reconcile", "--since", "90d", "--all"]).await;
    assert!(
        !ok && err.contains("30"),
        "beyond Stripe's retention: {out}{err}"
    );

    for store in [&connected, &keys] {
        let (ok, out, err) = run(&app, &["reconcile", "--store", store, "--since", "1h"]).await;
        assert!(ok, "{out}{err}");
        assert!(out.contains("fed"), "{out}");
    }
    app.drain().await;
    for o in &orders {
        assert_eq!(order_status(&app, o).await, "paid");
        let id = o["id"].as_str().unwrap();
        let now = app.get_json(&format!("/api/v1/orders/{id}")).await;
        assert_eq!(now["status_source"], "reconcile", "{now}");
    }
    // A second run finds nothing new from its cursor.
    let (ok, out, _) = run(&app, &["reconcile", "--all", "--dry-run"]).await;
    assert!(ok, "{out}");
    assert!(out.contains(" 0 missing"), "{out}");

    // The webhooks arrive after all: acknowledged as duplicates, applied once.
    app.register_endpoints();
    let secret = format!("whsec_{}", crate::support::random(24));
    let r = app
        .api(
            Method::PUT,
            &format!("/api/v1/stores/{keys}/connection/webhook-secret"),
        )
        .json(&json!({ "webhook_secret": secret }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.sim.register_account_endpoint(
        &account.id,
        &format!("{}/webhooks/stripe/stores/{keys}", app.url),
        &secret,
    );
    for id in &event_ids {
        let statuses = app.sim.redeliver(id).await;
        assert!(statuses.contains(&200), "{statuses:?}");
        let rows = bursar::db::inbox::find_by_event_id(&app.services.db, id, None)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{id} stored once");
        assert_eq!(rows[0].status, "applied");
    }
}

#[tokio::test]
async fn vault_rotate_lets_the_old_key_go() {
    let app = TestApp::spawn().await;
    quiet_keys_store(&app).await;
    let (store, _) = crate::orders::keys_store(&app).await;
    // A pending order: its client secret is sealed too, and its payment page must outlive the
    // old key.
    let r = app
        .api(Method::POST, &format!("/api/v1/stores/{store}/orders"))
        .json(&serde_json::json!({"amount": 1500, "currency": "usd"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let pending: Value = r.json().await.unwrap();
    let (ok, _, err) = run(&app, &["webhooks", "setup"]).await;
    assert!(ok, "{err}");
    let old = app.env["BURSAR_MASTER_KEYS"].clone();
    let new = master_key();
    let mut env = app.env.clone();
    env.insert("BURSAR_MASTER_KEYS".into(), format!("{new},{old}"));
    let (ok, out, err) = run_env(&env, &["vault", "rotate"]).await;
    assert!(ok, "{err}");
    // Two stores' keys, one store's pasted webhook secret, three endpoint secrets and the
    // order's client secret.
    assert!(out.starts_with("re-sealed 7 secret(s)"), "{out}");
    let (ok, out, _) = run_env(&env, &["vault", "rotate"]).await;
    assert!(ok);
    assert!(
        out.starts_with("re-sealed 0 secret(s)") && out.contains("7 already were"),
        "{out}"
    );

    // Only the new key: everything still opens. Only the old one: nothing does.
    env.insert("BURSAR_MASTER_KEYS".into(), new.clone());
    let (_, out, _) = run_env(&env, &["doctor", "--json"]).await;
    let checks: Vec<Value> = serde_json::from_str(&out).unwrap();
    let keys = checks.iter().find(|c| c["check"] == "master keys").unwrap();
    assert_eq!(keys["ok"], true, "{keys}");
    let server = crate::support::spawn_server(&env, tempfile::tempdir().unwrap().path(), &[]);
    let health = reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let order = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/orders/{}",
            server.url,
            pending["id"].as_str().unwrap()
        ))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(order.status(), 200);
    let order: Value = order.json().await.unwrap();
    assert_eq!(order["client_secret"], pending["client_secret"]);
    let checkout = reqwest::get(
        order["checkout_url"]
            .as_str()
            .unwrap()
            .replace(&app.url, &server.url),
    )
    .await
    .unwrap();
    assert_eq!(checkout.status(), 200);
    drop(server);
    env.insert("BURSAR_MASTER_KEYS".into(), old);
    let (_, out, _) = run_env(&env, &["doctor", "--json"]).await;
    let checks: Vec<Value> = serde_json::from_str(&out).unwrap();
    let keys = checks.iter().find(|c| c["check"] == "master keys").unwrap();
    assert_eq!(keys["ok"], false, "{keys}");
}

/// `name{labels}` → value, for every sample line of a Prometheus text exposition; panics on a
/// line that is not one.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (name, value) = line.rsplit_once(' ').expect("`name value`");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        assert!(
            name.chars().next().is_some_and(|c| c.is_ascii_alphabetic()),
            "{line}"
        );
        samples.insert(name.to_owned(), value);
    }
    samples
}

#[tokio::test]
async fn metrics_count_what_happened_and_every_response_has_a_request_id() {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let (_, statuses) = app
        .sim
        .deliver_event(
            "customer.updated",
            None,
            json!({"id": "cus_metrics1", "object": "customer"}),
        )
        .await;
    assert_eq!(statuses, vec![200]);
    let r = reqwest::Client::new()
        .post(format!("{}/webhooks/stripe", app.url))
        .header("Stripe-Signature", "t=1,v1=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let store = app.create_store("Metered").await;
    let r = app
        .api(Method::PUT, &format!("/api/v1/stores/{store}/subscription"))
        .json(&json!({"price_id": "price_missing0001"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    app.drain().await;

    let r = reqwest::get(format!("{}/metrics", app.url)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let m = parse_metrics(&r.text().await.unwrap());
    let get = |k: &str| {
        m.get(k)
            .copied()
            .unwrap_or_else(|| panic!("no {k} in {m:?}"))
    };
    assert_eq!(
        get(r#"bursar_webhooks_received_total{door="platform",outcome="new"}"#),
        1.0
    );
    assert_eq!(
        get(r#"bursar_webhooks_rejected_total{door="platform",reason="signature"}"#),
        1.0
    );
    assert_eq!(get(r#"bursar_inbox_events{status="applied"}"#), 1.0);
    assert_eq!(get("bursar_dead_events"), 0.0);
    assert_eq!(get("bursar_apply_lag_seconds"), 0.0);
    assert_eq!(
        get(
            r#"bursar_stripe_requests_total{endpoint="/v1/prices/{id}",method="GET",status="404"}"#
        ),
        1.0
    );
    assert_eq!(
        get(
            r#"bursar_stripe_request_duration_seconds_count{endpoint="/v1/prices/{id}",method="GET"}"#
        ),
        1.0
    );

    // Request ids: made when missing, kept when sane, replaced when not; on the log lines too.
    let r = app.anon(Method::GET, "/healthz").send().await.unwrap();
    let made = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(made.len(), 36, "a UUID: {made}");
    let r = app
        .anon(Method::GET, "/api/v1/stores")
        .header("X-Request-Id", "caller-req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-request-id"], "caller-req-42");
    let r = app
        .anon(Method::GET, "/healthz")
        .header("X-Request-Id", "evil\"id with spaces")
        .send()
        .await
        .unwrap();
    assert_ne!(r.headers()["x-request-id"], "evil\"id with spaces");
    let logged = crate::support::logs();
    assert!(
        logged
            .lines()
            .any(|l| l.contains("request_id=caller-req-42")),
        "no log line carries the request id"
    );
}

#[tokio::test]
async fn a_platform_without_connect_gets_no_connect_endpoint() {
    let app = TestApp::spawn_with(&[("STRIPE_CLIENT_ID", "")]).await;
    let (ok, out, err) = run(&app, &["webhooks", "setup", "--json"]).await;
    assert!(ok, "{err}");
    let made: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(made.len(), 1, "{out}");
    assert_eq!(made[0]["endpoint"], "platform");
    assert_eq!(made[0]["outcome"], "created");
    let (ok, out, _) = run(&app, &["doctor"]).await;
    assert!(ok, "{out}");
    assert!(!out.contains("Connect endpoint"), "{out}");
}

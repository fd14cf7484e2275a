//! Notifications to the platform's app, received by a real HTTP server on loopback and
//! verified with the Standard Webhooks algorithm written out here (and the reference library):
//! one per state change and endpoint, the same `webhook-id` on every retry, disabling, the log,
//! redelivery and recovery, and the address guard.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;
use stripe_sim::Card;

use crate::orders::keys_store;
use crate::support::{error_code, TestApp};

/// One received delivery.
#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: String,
}

/// A platform app's endpoint: records what it gets, answers the scripted statuses in turn
/// (then 200).
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Vec<u16>>>,
}

impl Receiver {
    async fn start(script: &[u16]) -> Self {
        let got: Arc<Mutex<Vec<Received>>> = Default::default();
        let script = Arc::new(Mutex::new(script.iter().rev().copied().collect::<Vec<_>>()));
        let (g, sc) = (got.clone(), script.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let (g, sc) = (g.clone(), sc.clone());
                async move {
                    g.lock().unwrap().push(Received { headers, body });
                    let status = sc.lock().unwrap().pop().unwrap_or(200);
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, got, script }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {n} deliveries arrived",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The Standard Webhooks signature check, as the specification writes it: HMAC-SHA256 over
/// `id.timestamp.body` with the base64-decoded secret, any `v1,` signature matching.
fn verify(secret: &str, r: &Received) -> Value {
    let id = r.headers["webhook-id"].to_str().unwrap();
    let ts = r.headers["webhook-timestamp"].to_str().unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{}", r.body).as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let signatures = r.headers["webhook-signature"].to_str().unwrap();
    assert!(
        signatures
            .split(' ')
            .any(|s| s.strip_prefix("v1,") == Some(expected.as_str())),
        "no signature matches: {signatures}"
    );
    let now = crate::support::now();
    assert!((now - ts.parse::<i64>().unwrap()).abs() < 300);
    // The reference library agrees.
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(r.body.as_bytes(), &r.headers)
        .unwrap();
    serde_json::from_str(&r.body).unwrap()
}

async fn app_with(extra: &[(&str, &str)]) -> TestApp {
    let mut overrides = vec![
        ("BURSAR_ALLOW_PRIVATE_NOTIFICATION_TARGETS", "true"),
        ("BURSAR_NOTIFICATION_RETRY_SCHEDULE", "0s,50ms,50ms,50ms"),
    ];
    overrides.extend_from_slice(extra);
    TestApp::spawn_mode(&overrides, true).await
}

async fn endpoint(app: &TestApp, url: &str, events: &[&str]) -> (String, String) {
    let r = app
        .api(Method::POST, "/api/v1/notification-endpoints")
        .json(&json!({ "url": url, "events": events }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let e: Value = r.json().await.unwrap();
    (
        e["id"].as_str().unwrap().to_owned(),
        e["secret"].as_str().unwrap().to_owned(),
    )
}

/// The platform re-enables the endpoint, then asks for what it missed since `since`.
async fn enable_and_recover(app: &TestApp, ne: &str, since: i64) -> Value {
    let r = app
        .api(
            Method::PATCH,
            &format!("/api/v1/notification-endpoints/{ne}"),
        )
        .json(&json!({"disabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .api(
            Method::POST,
            &format!("/api/v1/notification-endpoints/{ne}/recover"),
        )
        .json(&json!({ "since": since }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn paid_order(app: &TestApp, store: &str) -> Value {
    let r = app
        .api(Method::POST, &format!("/api/v1/stores/{store}/orders"))
        .json(&json!({"amount": 4200, "currency": "usd"}))
        .send()
        .await
        .unwrap();
    let o: Value = r.json().await.unwrap();
    app.sim
        .pay(o["payment_intent"].as_str().unwrap(), Card::Visa)
        .await;
    app.drain().await;
    o
}

#[tokio::test]
async fn a_paid_then_refunded_order_is_told_once_to_each_subscribed_endpoint() {
    let app = app_with(&[]).await;
    let (paid_only, all, other) = (
        Receiver::start(&[]).await,
        Receiver::start(&[]).await,
        Receiver::start(&[]).await,
    );
    let (_, paid_secret) = endpoint(&app, &paid_only.url, &["order.paid"]).await;
    let (all_id, all_secret) = endpoint(&app, &all.url, &["*"]).await;
    endpoint(&app, &other.url, &["store.payout_failed"]).await;
    let (store, _) = keys_store(&app).await;
    let o = paid_order(&app, &store).await;
    let id = o["id"].as_str().unwrap();

    let got = paid_only.wait_for(1).await;
    let body = verify(&paid_secret, &got[0]);
    assert_eq!(body["type"], "order.paid");
    assert_eq!(body["store_id"], store.as_str());
    assert_eq!(body["data"]["object"]["id"], id);
    assert_eq!(body["data"]["object"]["status"], "paid");
    assert!(body["data"]["object"]["client_secret"].is_null());
    assert_eq!(body["id"], got[0].headers["webhook-id"].to_str().unwrap());
    // A re-check and a duplicate delivery of Stripe's event change nothing: nothing more is told.
    let r = app
        .api(Method::POST, &format!("/api/v1/orders/{id}/sync"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .api(Method::POST, &format!("/api/v1/orders/{id}/refunds"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    app.drain().await;
    let mut got = all.wait_for(3).await;
    // A few are in flight at once: put them in their sequence.
    got.sort_by_key(|r| serde_json::from_str::<Value>(&r.body).unwrap()["seq"].as_i64());
    let types: Vec<String> = got
        .iter()
        .map(|r| verify(&all_secret, r)["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["store.connected", "order.paid", "order.refunded"]);
    let seqs: Vec<i64> = got
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(&r.body).unwrap()["seq"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(paid_only.received().len(), 1, "told twice");
    assert_eq!(all.received().len(), 3, "told twice");
    assert!(other.received().is_empty());
    let log = app
        .get_json(&format!("/api/v1/notifications?endpoint_id={all_id}"))
        .await;
    assert_eq!(log["data"].as_array().unwrap().len(), 3);
    assert_eq!(log["data"][0]["status"], "delivered");
    assert_eq!(log["data"][0]["attempts"][0]["status_code"], 200);
}

#[tokio::test]
async fn a_failing_receiver_gets_the_same_webhook_id_until_it_answers() {
    let app = app_with(&[]).await;
    let receiver = Receiver::start(&[500, 503]).await;
    let (ne, secret) = endpoint(&app, &receiver.url, &["order.paid"]).await;
    let (store, _) = keys_store(&app).await;
    paid_order(&app, &store).await;
    let got = receiver.wait_for(3).await;
    let ids: Vec<&str> = got
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap())
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    for r in &got {
        verify(&secret, r);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = app
        .get_json(&format!("/api/v1/notifications?endpoint_id={ne}"))
        .await;
    let n = &log["data"][0];
    assert_eq!(n["status"], "delivered", "{n}");
    let codes: Vec<i64> = n["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [500, 503, 200]);
}

#[tokio::test]
async fn an_always_failing_receiver_ends_disabled_and_can_be_recovered() {
    let app = app_with(&[("BURSAR_NOTIFICATION_DISABLE_AFTER", "100ms")]).await;
    let receiver = Receiver::start(&[500; 50]).await;
    let (ne, _) = endpoint(&app, &receiver.url, &["order.paid"]).await;
    let (store, _) = keys_store(&app).await;
    paid_order(&app, &store).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let view = loop {
        let view = app
            .get_json(&format!("/api/v1/notification-endpoints/{ne}"))
            .await;
        if view["disabled"] == true {
            break view;
        }
        assert!(std::time::Instant::now() < deadline, "{view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        view["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("every delivery failed"),
        "{view}"
    );
    // doctor names it.
    let (_, out, _) = crate::cli::run(&app, &["doctor", "--json"]).await;
    let checks: Vec<Value> = serde_json::from_str(&out).unwrap();
    let check = checks
        .iter()
        .find(|c| c["check"] == "notification endpoints")
        .unwrap();
    assert_eq!(check["ok"], false, "{check}");
    assert!(check["detail"].as_str().unwrap().contains(&ne), "{check}");
    let log = app
        .get_json(&format!(
            "/api/v1/notifications?endpoint_id={ne}&status=failed"
        ))
        .await;
    let n = log["data"][0].clone();
    let attempts = n["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), receiver.received().len());
    assert!(attempts.iter().all(|a| a["status_code"] == 500));
    // The receiver is mended: re-enabled, what failed is recovered and arrives, once.
    receiver.script.lock().unwrap().clear();
    let before = receiver.received().len();
    let r = enable_and_recover(&app, &ne, crate::support::now() - 3600).await;
    assert_eq!(r["resent"], 1);
    let got = receiver.wait_for(before + 1).await;
    assert_eq!(
        got.last().unwrap().headers["webhook-id"],
        n["id"].as_str().unwrap()
    );
    // And sent once more on demand.
    let r = app
        .api(
            Method::POST,
            &format!(
                "/api/v1/notifications/{}/redeliver",
                n["id"].as_str().unwrap()
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    receiver.wait_for(before + 2).await;
    // The CLI reads the same log and resends the same way.
    let (ok, out, err) = crate::cli::run(&app, &["notifications", "list", "--endpoint", &ne]).await;
    assert!(ok, "{err}");
    assert!(out.contains(n["id"].as_str().unwrap()), "{out}");
    let (ok, out, err) = crate::cli::run(
        &app,
        &["notifications", "redeliver", n["id"].as_str().unwrap()],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("is due again"), "{out}");
    receiver.wait_for(before + 3).await;
    // Every attempt is in the log, the redeliveries' too.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = app
            .get_json(&format!("/api/v1/notifications?endpoint_id={ne}"))
            .await;
        let logged = log["data"][0]["attempts"].as_array().unwrap().len();
        if logged == receiver.received().len() && log["data"][0]["status"] == "delivered" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ok, _, err) = crate::cli::run(&app, &["notifications", "redeliver", "msg_nosuch"]).await;
    assert!(!ok && err.contains("not found"), "{err}");
}

#[tokio::test]
async fn a_receiver_answering_410_is_disabled_and_what_it_missed_is_recovered() {
    let app = app_with(&[]).await;
    let receiver = Receiver::start(&[410]).await;
    let (ne, _) = endpoint(&app, &receiver.url, &["order.paid"]).await;
    let (store, _) = keys_store(&app).await;
    paid_order(&app, &store).await;
    receiver.wait_for(1).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let view = app
            .get_json(&format!("/api/v1/notification-endpoints/{ne}"))
            .await;
        if view["disabled"] == true {
            assert!(view["disabled_reason"].as_str().unwrap().contains("410"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What happens while it is disabled is kept, not sent, and `recover` sends it once the
    // platform has enabled it again.
    let since = crate::support::now() - 60;
    let held = paid_order(&app, &store).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 1);
    let log = app
        .get_json(&format!(
            "/api/v1/notifications?endpoint_id={ne}&status=held"
        ))
        .await;
    assert_eq!(log["data"].as_array().unwrap().len(), 1, "{log}");
    enable_and_recover(&app, &ne, since).await;
    // The held one arrives (and the one answered 410, which failed, again).
    let got = receiver.wait_for(3).await;
    assert!(got.iter().any(|r| {
        serde_json::from_str::<Value>(&r.body).unwrap()["data"]["object"]["id"] == held["id"]
    }));
}

#[tokio::test]
async fn internal_and_plain_targets_are_refused_by_default() {
    let app = TestApp::spawn().await;
    for url in [
        "https://127.0.0.1/hook",
        "https://localhost:8443/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.7/hook",
        "https://[::1]/hook",
        "https://[::ffff:192.168.0.1]/hook",
        "http://93.184.216.34/hook",
        "not a url",
    ] {
        let r = app
            .api(Method::POST, "/api/v1/notification-endpoints")
            .json(&json!({ "url": url, "events": ["*"] }))
            .send()
            .await
            .unwrap();
        let (status, code, message) = error_code(r).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_request"),
            "{url}: {message}"
        );
    }
    let r = app
        .api(Method::POST, "/api/v1/notification-endpoints")
        .json(&json!({ "url": "https://93.184.216.34/hook", "events": ["order.payed"] }))
        .send()
        .await
        .unwrap();
    let (status, _, message) = error_code(r).await;
    assert_eq!(status, 400);
    assert!(message.contains("order.payed"), "{message}");
    let r = app
        .anon(Method::POST, "/api/v1/notification-endpoints")
        .json(&json!({ "url": "https://93.184.216.34/hook", "events": ["*"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_new_one() {
    let app = app_with(&[]).await;
    let receiver = Receiver::start(&[]).await;
    let (ne, old) = endpoint(&app, &receiver.url, &["order.paid"]).await;
    let r: Value = app
        .api(
            Method::POST,
            &format!("/api/v1/notification-endpoints/{ne}/rotate-secret"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new = r["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    let (store, _) = keys_store(&app).await;
    paid_order(&app, &store).await;
    let got = receiver.wait_for(1).await;
    assert_eq!(
        got[0].headers["webhook-signature"]
            .to_str()
            .unwrap()
            .split(' ')
            .count(),
        2
    );
    verify(&old, &got[0]);
    verify(&new, &got[0]);
    assert!(
        !crate::support::logs().contains(&new),
        "a secret reached the logs"
    );
}

#[tokio::test]
async fn an_account_that_may_now_charge_and_a_suspended_vendor_are_told() {
    let app = app_with(&[]).await;
    app.register_endpoints();
    let receiver = Receiver::start(&[]).await;
    let (_, secret) = endpoint(
        &app,
        &receiver.url,
        &["store.account_updated", "vendor_subscription.suspended"],
    )
    .await;
    // An Express store finishes onboarding: charges and payouts come on.
    let store = app.create_store("Acme").await;
    let r = app
        .api(Method::POST, &format!("/api/v1/stores/{store}/onboarding"))
        .json(&json!({"type": "express", "return_url": format!("{}/back", crate::support::RETURN_PREFIX)}))
        .send()
        .await
        .unwrap();
    let account = r.json::<Value>().await.unwrap()["account_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.sim.complete_onboarding(&account).await;
    app.drain().await;
    let got = receiver.wait_for(1).await;
    let body = verify(&secret, &got[0]);
    assert_eq!(body["type"], "store.account_updated");
    assert_eq!(body["data"]["object"]["charges_enabled"], true);
    assert_eq!(body["data"]["object"]["account_id"], account.as_str());

    // A vendor whose payments fail until Stripe gives up is suspended.
    app.sim.set_max_retries(2);
    let price = app.sim.add_price(2900, "usd", Some("month"), true);
    let vendor = app.create_store("Vendor").await;
    let view: Value = app
        .api(
            Method::PUT,
            &format!("/api/v1/stores/{vendor}/subscription"),
        )
        .json(&json!({"price_id": price}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    app.drain().await;
    let sub = view["subscription_id"].as_str().unwrap().to_owned();
    app.sim.set_customer_card(
        view["customer_id"].as_str().unwrap(),
        stripe_sim::CardBehavior::Declines,
    );
    app.sim.advance_period(&sub).await;
    app.sim.retry_invoice(&sub).await;
    app.sim.retry_invoice(&sub).await;
    app.drain().await;
    let got = receiver.wait_for(2).await;
    let body = verify(&secret, &got[1]);
    assert_eq!(body["type"], "vendor_subscription.suspended");
    assert_eq!(body["store_id"], vendor.as_str());
    assert_eq!(body["data"]["object"]["vendor_status"], "suspended");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 2);
}

/// kill -9 after the state change is committed and before its notification is sent: the
/// restarted process sends it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_committed_before_a_kill_9_is_sent_after_the_restart_once() {
    let sim = stripe_sim::StripeSim::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (database_url, _) = crate::support::fresh_database(dir.path()).await;
    let env: std::collections::HashMap<String, String> = [
        ("BURSAR_DATABASE_URL", database_url.as_str()),
        ("BURSAR_MASTER_KEYS", &crate::support::master_key()),
        ("STRIPE_SECRET_KEY", sim.platform_key.as_str()),
        ("STRIPE_API_BASE", sim.url.as_str()),
        ("BURSAR_ALLOW_PRIVATE_NOTIFICATION_TARGETS", "true"),
        // The first attempt waits 3 s: the kill lands before it.
        ("BURSAR_NOTIFICATION_RETRY_SCHEDULE", "3s,100ms"),
        ("BURSAR_WORKER_POLL_MS", "20"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut server = crate::support::spawn_server(&env, dir.path(), &["--dev"]);
    let db = bursar::db::Db::connect(&database_url).await.unwrap();
    let (_, key) = bursar::service::api_keys::create(&db, "crash")
        .await
        .unwrap();
    let key = secrecy::ExposeSecret::expose_secret(&key).to_owned();
    let client = reqwest::Client::new();
    let api = |method: Method, base: &str, path: &str| {
        client
            .request(method, format!("{base}{path}"))
            .bearer_auth(&key)
    };
    let receiver = Receiver::start(&[]).await;
    let r = api(Method::POST, &server.url, "/api/v1/notification-endpoints")
        .json(&json!({"url": receiver.url, "events": ["order.paid"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let secret = r.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let account = sim.add_independent_account(false);
    sim.update_account(&account.id, |a| a["charges_enabled"] = json!(true));
    let store: Value = api(Method::POST, &server.url, "/api/v1/stores")
        .json(&json!({"name": "Crash shop"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let store = store["id"].as_str().unwrap().to_owned();
    let hook_secret = format!("whsec_{}", crate::support::random(24));
    let r = api(
        Method::PUT,
        &server.url,
        &format!("/api/v1/stores/{store}/connection/keys"),
    )
    .json(&json!({"secret_key": account.restricted_key, "publishable_key": account.publishable_key, "webhook_secret": hook_secret}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    sim.register_account_endpoint(
        &account.id,
        &format!("{}{}", server.url, crate::support::store_path(&store)),
        &hook_secret,
    );
    let o: Value = api(
        Method::POST,
        &server.url,
        &format!("/api/v1/stores/{store}/orders"),
    )
    .json(&json!({"amount": 1800, "currency": "usd"}))
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let id = o["id"].as_str().unwrap().to_owned();
    sim.pay(o["payment_intent"].as_str().unwrap(), Card::Visa)
        .await;
    // Paid (and so its notification committed), then killed before the first attempt is due.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
            .bind(&id)
            .fetch_optional(db.pool())
            .await
            .unwrap();
        if status.as_deref() == Some("paid") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never paid");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert!(receiver.received().is_empty(), "sent before the kill");
    let _restarted = crate::support::spawn_server(&env, dir.path(), &["--dev"]);
    let got = receiver.wait_for(1).await;
    let body = verify(&secret, &got[0]);
    assert_eq!(body["type"], "order.paid");
    assert_eq!(body["data"]["object"]["id"], id.as_str());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.received().len(), 1, "sent twice");
}

/// A store's connection, its payouts and its customers: each change told once; the same keys
/// saved again, a duplicate event, and a merchant-signed payout Stripe does not hold tell nothing.
#[tokio::test]
async fn a_stores_connection_payouts_and_customers_are_told_once_each() {
    let app = app_with(&[]).await;
    app.register_endpoints();
    let receiver = Receiver::start(&[]).await;
    let types = [
        "store.connected",
        "store.disconnected",
        "store.deauthorized",
        "store.payout_paid",
        "store.payout_failed",
        "customer.updated",
        "customer.deleted",
    ];
    let (_, secret) = endpoint(&app, &receiver.url, &types).await;
    let (store, account) = keys_store(&app).await;
    let keys =
        json!({"secret_key": account.restricted_key, "publishable_key": account.publishable_key});
    let r = app
        .api(
            Method::PUT,
            &format!("/api/v1/stores/{store}/connection/keys"),
        )
        .json(&keys)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the same keys again");
    let mut seen = vec![verify(&secret, &receiver.wait_for(1).await[0])];
    assert_eq!(seen[0]["type"], "store.connected");
    assert_eq!(seen[0]["data"]["object"]["account_id"], account.id.as_str());

    // A payout paid, its event delivered twice; a merchant-signed payout Stripe does not have
    // is told nothing (the store's endpoint is signed with a secret the merchant knows).
    let path = format!("/webhooks/stripe/stores/{store}");
    let webhook_secret = bursar::service::connections::webhook_secret(
        &app.services,
        &bursar::domain::StoreId::parse(&store).unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    let webhook_secret = secrecy::ExposeSecret::expose_secret(&webhook_secret).to_owned();
    let mut paid = bursar::stripe::fixtures::event("payout.paid", &Default::default()).unwrap();
    paid["data"]["object"]["id"] = json!("po_1PaidAtStripe");
    app.sim
        .put_object(&account.id, paid["data"]["object"].clone());
    let mut forged = bursar::stripe::fixtures::event("payout.paid", &Default::default()).unwrap();
    forged["data"]["object"]["id"] = json!("po_1NotAtStripe");
    for e in [&paid, &paid, &forged] {
        assert_eq!(app.deliver(&path, e, &webhook_secret).await.status(), 200);
    }
    app.drain().await;

    // Customers: a change made at Stripe, then the deletion.
    let c: Value = app
        .api(Method::POST, &format!("/api/v1/stores/{store}/customers"))
        .json(&json!({"email": "ana@shop.example"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cus = c["stripe_customer_id"].as_str().unwrap().to_owned();
    let stripe = reqwest::Client::new();
    let r = stripe
        .post(format!("{}/v1/customers/{cus}", app.sim.url))
        .bearer_auth(&account.secret_key)
        .form(&[("email", "ana.lima@shop.example")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.drain().await;
    let r = stripe
        .delete(format!("{}/v1/customers/{cus}", app.sim.url))
        .bearer_auth(&account.secret_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.drain().await;

    // Disconnected; then an OAuth store is connected and deauthorized at Stripe.
    let r = app
        .api(
            Method::DELETE,
            &format!("/api/v1/stores/{store}/connection"),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let (oauth, oauth_account) = crate::onboarding::oauth_store(&app).await;
    app.sim.deauthorize(&oauth_account.id).await.unwrap();
    app.drain().await;

    let got = receiver.wait_for(7).await;
    seen = got.iter().map(|r| verify(&secret, r)).collect();
    // A few are in flight at once, so they may arrive out of their sequence.
    let mut told: Vec<(&str, &str)> = seen
        .iter()
        .map(|b| (b["type"].as_str().unwrap(), b["store_id"].as_str().unwrap()))
        .collect();
    told.sort();
    let mut want = vec![
        ("store.connected", store.as_str()),
        ("store.payout_paid", store.as_str()),
        ("customer.updated", store.as_str()),
        ("customer.deleted", store.as_str()),
        ("store.disconnected", store.as_str()),
        ("store.connected", oauth.as_str()),
        ("store.deauthorized", oauth.as_str()),
    ];
    want.sort();
    assert_eq!(told, want);
    let object = |t: &str| {
        seen.iter()
            .find(|b| b["type"] == t && b["store_id"] == store.as_str())
            .map(|b| b["data"]["object"].clone())
            .unwrap_or_else(|| panic!("{t}"))
    };
    assert_eq!(object("store.payout_paid")["id"], "po_1PaidAtStripe");
    assert_eq!(object("store.payout_paid")["status"], "paid");
    assert_eq!(object("customer.updated")["email"], "ana.lima@shop.example");
    assert_eq!(object("customer.deleted")["deleted"], true);
    assert_eq!(object("store.disconnected")["connected"], false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 7);
}

/// Concurrent connections of one store tell `store.connected` once; each further refund of a
/// partly refunded order is told, as the amount refunded moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connects_tell_once_and_each_partial_refund_is_told() {
    let app = app_with(&[]).await;
    let receiver = Receiver::start(&[]).await;
    let (ne, _) = endpoint(
        &app,
        &receiver.url,
        &[
            "store.connected",
            "order.partially_refunded",
            "order.refunded",
        ],
    )
    .await;
    let store = app.create_store("Racing").await;
    let account = app.sim.add_independent_account(false);
    app.sim
        .update_account(&account.id, |a| a["charges_enabled"] = json!(true));
    let puts = (0..4).map(|_| {
        app.api(
            Method::PUT,
            &format!("/api/v1/stores/{store}/connection/keys"),
        )
        .json(&json!({
            "secret_key": account.restricted_key,
            "publishable_key": account.publishable_key,
            "webhook_secret": "whsec_racingracingracingracing00",
        }))
        .send()
    });
    for r in futures::future::join_all(puts).await {
        assert_eq!(r.unwrap().status(), 200);
    }
    app.sim.register_account_endpoint(
        &account.id,
        &format!("{}/webhooks/stripe/stores/{store}", app.url),
        "whsec_racingracingracingracing00",
    );
    let o = paid_order(&app, &store).await;
    for amount in [1000, 1000, 2200] {
        let r = app
            .api(
                Method::POST,
                &format!("/api/v1/orders/{}/refunds", o["id"].as_str().unwrap()),
            )
            .json(&json!({ "amount": amount }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        app.drain().await;
    }
    let got = receiver.wait_for(4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut bodies: Vec<Value> = got
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    bodies.sort_by_key(|b| b["seq"].as_i64());
    let told: Vec<(&str, i64)> = bodies
        .iter()
        .map(|b| {
            (
                b["type"].as_str().unwrap(),
                b["data"]["object"]["amount_refunded"]
                    .as_i64()
                    .unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        told,
        [
            ("store.connected", -1),
            ("order.partially_refunded", 1000),
            ("order.partially_refunded", 2000),
            ("order.refunded", 4200),
        ],
        "endpoint {ne}"
    );
    assert_eq!(receiver.received().len(), 4);
}

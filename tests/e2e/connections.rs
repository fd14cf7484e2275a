use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{error_code, logs, random, Fault, SimAccount, TestApp, INTERNAL_SECRET};

/// A key-connection body: `secret` with the account's publishable key.
fn keys(secret: &str, account: &SimAccount) -> Value {
    json!({ "secret_key": secret, "publishable_key": account.publishable_key })
}

async fn put_keys(app: &TestApp, store: &str, body: Value) -> reqwest::Response {
    app.api(
        Method::PUT,
        &format!("/api/v1/stores/{store}/connection/keys"),
    )
    .json(&body)
    .send()
    .await
    .unwrap()
}

#[tokio::test]
async fn connecting_keys_records_the_account_and_status() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Shop").await;
    let public = app.public_status(&store).await;
    assert_eq!(
        public,
        json!({ "store_id": store, "has_stripe": false, "is_live_mode": false })
    );

    let account = app.sim.add_account(true);
    app.sim
        .update_account(&account.id, |a| a["charges_enabled"] = json!(true));
    let r = put_keys(&app, &store, keys(&account.restricted_key, &account)).await;
    assert_eq!(r.status(), 200);
    let conn: Value = r.json().await.unwrap();
    assert_eq!(conn["account_id"], account.id.as_str());
    assert_eq!(conn["mode"], "live");
    assert_eq!(conn["key_kind"], "restricted");
    // Connected without a webhook secret: Bursar made the store's endpoint at Stripe with the
    // store's own key, so the store's events reach it with no step skipped.
    assert_eq!(conn["has_webhook_secret"], true);
    assert_eq!(conn["webhook"]["status"], "ready", "{conn}");
    let made = app.sim.requests("/v1/webhook_endpoints");
    assert_eq!(made.len(), 2, "listed, then made");
    assert_eq!(
        made[1].param("url").as_deref(),
        Some(format!("{}/webhooks/stripe/stores/{store}", app.url).as_str())
    );
    assert_eq!(conn["warnings"], json!([]));
    assert!(!conn.to_string().contains(&account.restricted_key));

    let public = app.public_status(&store).await;
    assert_eq!(
        public,
        json!({ "store_id": store, "has_stripe": true, "is_live_mode": true })
    );

    let internal = app
        .anon(
            Method::GET,
            &format!("/api/internal/stores/{store}/stripe-status"),
        )
        .header("X-Internal-Secret", INTERNAL_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(internal.status(), 200);
    let internal: Value = internal.json().await.unwrap();
    assert_eq!(internal["has_stripe"], true);
    assert_eq!(internal["account_id"], account.id.as_str());
    assert_eq!(internal["charges_enabled"], true);
    assert!(!internal.to_string().contains(&account.restricted_key));

    let acct = app.account(&store).await;
    assert_eq!(acct["connected"], true);
    assert!(acct["requirements"]["currently_due"].is_array());

    // Every call named the pinned API version and ran under the store's own key.
    let calls = app.sim.requests("/v1/account");
    assert!(!calls.is_empty());
    assert!(calls.iter().all(|c| c.stripe_version.as_deref()
        == Some(bursar::stripe::STRIPE_VERSION)
        && c.stripe_account.is_none()));
    assert!(
        calls
            .iter()
            .all(|c| c.method == "GET" && c.idempotency_key.is_none()),
        "reads carry no idempotency key"
    );
}

#[tokio::test]
async fn internal_status_needs_the_secret() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Shop").await;
    let path = format!("/api/internal/stores/{store}/stripe-status");
    assert_eq!(
        app.anon(Method::GET, &path).send().await.unwrap().status(),
        401
    );
    let wrong = app
        .anon(Method::GET, &path)
        .header("X-Internal-Secret", "internal-secret-for-test")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let other = app
        .anon(
            Method::GET,
            "/api/internal/stores/st_nosuchstore/stripe-status",
        )
        .header("X-Internal-Secret", INTERNAL_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);

    let off = TestApp::spawn_with(&[("BURSAR_INTERNAL_SECRET", "")]).await;
    let store = off.create_store("Shop").await;
    let r = off
        .anon(
            Method::GET,
            &format!("/api/internal/stores/{store}/stripe-status"),
        )
        .header("X-Internal-Secret", INTERNAL_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_key_stripe_refuses_gets_stripes_reason_and_nothing_is_saved() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Shop").await;
    let bogus = format!("sk_test_{}", random(24));
    let r = put_keys(
        &app,
        &store,
        json!({ "secret_key": bogus, "publishable_key": format!("pk_test_{}", random(24)) }),
    )
    .await;
    let (status, code, message) = error_code(r).await;
    assert_eq!((status, code.as_str()), (422, "stripe_key_rejected"));
    assert!(message.contains("Invalid API Key provided"), "{message}");
    assert!(!message.contains(&bogus), "the key is masked: {message}");
    let public: Value = app.public_status(&store).await;
    assert_eq!(public["has_stripe"], false);
}

#[tokio::test]
async fn stripe_500_is_retried_then_succeeds() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Shop").await;
    let account = app.sim.add_account(false);
    app.sim
        .fail(Method::GET, "/v1/account", Fault::Status(500), 2);
    let r = put_keys(&app, &store, keys(&account.secret_key, &account)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.sim.requests("/v1/account").len(),
        3,
        "two failures, then the success"
    );
}

#[tokio::test]
async fn stripe_outage_is_a_502_after_the_retries() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Shop").await;
    let account = app.sim.add_account(false);
    app.sim
        .fail(Method::GET, "/v1/account", Fault::Status(503), 10);
    let r = put_keys(&app, &store, keys(&account.secret_key, &account)).await;
    assert_eq!(error_code(r).await.1, "stripe_unavailable");
    assert_eq!(
        app.sim.requests("/v1/account").len(),
        4,
        "first try plus three retries"
    );

    // Stripe-Should-Retry: false is obeyed even on a 5xx; a timeout is retried.
    app.sim.clear_faults();
    app.sim
        .fail(Method::GET, "/v1/account", Fault::StatusNoRetry(500), 1);
    let r = put_keys(&app, &store, keys(&account.secret_key, &account)).await;
    assert_eq!(r.status(), 502);
    assert_eq!(app.sim.requests("/v1/account").len(), 5);
    app.sim.fail(
        Method::GET,
        "/v1/account",
        Fault::Delay(std::time::Duration::from_secs(3)),
        1,
    );
    let r = put_keys(&app, &store, keys(&account.secret_key, &account)).await;
    assert_eq!(r.status(), 200, "the timed-out call was retried");
}

#[tokio::test]
async fn test_and_live_keys_do_not_mix() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Shop").await;
    let test = app.sim.add_account(false);
    let live = app.sim.add_account(true);
    let r = put_keys(
        &app,
        &store,
        json!({ "secret_key": test.secret_key, "publishable_key": live.publishable_key }),
    )
    .await;
    let (status, code, _) = error_code(r).await;
    assert_eq!((status, code.as_str()), (400, "mode_mismatch"));
    assert!(
        app.sim.requests("/v1/account").is_empty(),
        "refused before calling Stripe"
    );
}

#[tokio::test]
async fn malformed_keys_and_bodies_are_refused() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Shop").await;
    for body in [
        json!({ "secret_key": "pk_test_abcdefghijkl", "publishable_key": "pk_test_abcdefghijkl" }),
        json!({ "secret_key": "sk_test_abcdefghijkl", "publishable_key": "sk_test_abcdefghijkl" }),
        json!({ "secret_key": "sk_test_abcdefghijkl" }),
        json!({ "secret_key": "sk_test_abcdefghijkl", "publishable_key": "pk_test_abcdefghijkl", "webhook_secret": "nope" }),
        json!({ "secret_key": 7, "publishable_key": "pk_test_abcdefghijkl" }),
    ] {
        let r = put_keys(&app, &store, body.clone()).await;
        assert_eq!(r.status(), 400, "{body}");
        assert!(
            !r.text().await.unwrap().contains("sk_test_abcdefghijkl"),
            "secrets are not echoed"
        );
    }
    let r = app
        .api(
            Method::PUT,
            &format!("/api/v1/stores/{store}/connection/keys"),
        )
        .header("Content-Type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let big = json!({ "secret_key": format!("sk_test_{}", "a".repeat(70_000)), "publishable_key": "pk_test_abcdefghijkl" });
    assert_eq!(put_keys(&app, &store, big).await.status(), 413);
    let r = put_keys(
        &app,
        "st_nosuchstore",
        json!({ "secret_key": "sk_test_abcdefghijkl", "publishable_key": "pk_test_abcdefghijkl" }),
    )
    .await;
    assert_eq!(r.status(), 404);
    assert!(app.sim.requests("/v1/account").is_empty());
}

#[tokio::test]
async fn key_policy_decides_what_full_secret_keys_get() {
    let app = TestApp::spawn_with(&[("BURSAR_KEY_POLICY", "restricted-only")]).await;
    let store = app.create_store("Shop").await;
    let account = app.sim.add_account(false);
    let r = put_keys(&app, &store, keys(&account.secret_key, &account)).await;
    assert_eq!(error_code(r).await.1, "restricted_key_required");
    let r = put_keys(&app, &store, keys(&account.restricted_key, &account)).await;
    assert_eq!(r.status(), 200);

    let warn = TestApp::spawn().await;
    let store = warn.create_store("Shop").await;
    let account = warn.sim.add_account(false);
    let r = put_keys(&warn, &store, keys(&account.secret_key, &account)).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["key_kind"], "secret");
    assert_eq!(body["warnings"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn webhook_secret_alone_and_disconnect() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Shop").await;
    let path = format!("/api/v1/stores/{store}/connection/webhook-secret");
    let r = app
        .api(Method::PUT, &path)
        .json(&json!({ "webhook_secret": "whsec_abc" }))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.1, "not_connected");
    let (store, _, _) = app.connected_store().await;
    let path = format!("/api/v1/stores/{store}/connection/webhook-secret");
    let r = app
        .api(Method::PUT, &path)
        .json(&json!({ "webhook_secret": "whsec_rotated" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["has_webhook_secret"], true);
    let r = app
        .api(
            Method::DELETE,
            &format!("/api/v1/stores/{store}/connection"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let public: Value = app.public_status(&store).await;
    assert_eq!(public["has_stripe"], false);
    let again = app
        .api(
            Method::DELETE,
            &format!("/api/v1/stores/{store}/connection"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
}

#[tokio::test]
async fn secrets_never_reach_the_database_in_plain_text_nor_the_logs() {
    let app = TestApp::spawn().await;
    let (store, account, webhook_secret) = app.connected_store().await;
    // A full key too, and a rotated webhook secret.
    let r = put_keys(&app, &store, keys(&account.secret_key, &account)).await;
    assert_eq!(r.status(), 200);
    let secrets = [
        account.secret_key.as_str(),
        account.restricted_key.as_str(),
        webhook_secret.as_str(),
    ];

    let mut dump = String::new();
    for table in ["stores", "connections", "api_keys", "idempotency_keys"] {
        let rows = sqlx::query(&format!("SELECT * FROM {table}"))
            .fetch_all(app.services.db.pool())
            .await
            .unwrap();
        for row in rows {
            use sqlx::Row;
            for i in 0..row.len() {
                if let Ok(Some(text)) = row.try_get::<Option<String>, _>(i) {
                    dump.push_str(&text);
                    dump.push('\n');
                }
            }
        }
    }
    assert!(dump.contains("bv1."), "secrets are stored sealed");
    if let Some(path) = &app.sqlite_path {
        for file in [path.clone(), path.with_extension("db-wal")] {
            if let Ok(bytes) = std::fs::read(&file) {
                dump.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    let logs = logs();
    assert!(
        logs.contains(&store),
        "the logs did capture this test's activity"
    );
    for secret in secrets {
        assert!(!dump.contains(secret), "secret found in the database");
        assert!(!logs.contains(secret), "secret found in the logs");
    }
    assert!(!logs.contains(&app.api_key));
}

#[tokio::test]
async fn going_live_does_not_keep_the_test_webhook_secret() {
    let app = TestApp::spawn_with(&[("BURSAR_AUTO_WEBHOOK_ENDPOINTS", "false")]).await;
    let (store, account, _) = app.connected_store().await;
    let live = app.sim.keys_in_other_mode(&account);
    let r = put_keys(&app, &store, keys(&live.restricted_key, &live)).await;
    let conn: Value = r.json().await.unwrap();
    assert_eq!(conn["account_id"], account.id.as_str(), "same account");
    assert_eq!(conn["mode"], "live");
    assert_eq!(
        conn["has_webhook_secret"], false,
        "the test endpoint's secret cannot verify live events"
    );
}

/// A key that may not manage webhook endpoints still connects; the answer says the endpoint is
/// failing and why.
#[tokio::test]
async fn a_key_that_cannot_make_its_endpoint_connects_and_says_so() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Shop").await;
    let account = app.sim.add_account(false);
    app.sim.fail(
        Method::POST,
        "/v1/webhook_endpoints",
        stripe_sim::Fault::Status(403),
        1,
    );
    let r = put_keys(&app, &store, keys(&account.restricted_key, &account)).await;
    assert_eq!(r.status(), 200);
    let conn: Value = r.json().await.unwrap();
    assert_eq!(conn["has_webhook_secret"], false);
    assert_eq!(conn["webhook"]["status"], "failing");
    let reason = conn["webhook"]["reason"].as_str().unwrap();
    assert!(reason.contains("webhooks setup --store"), "{reason}");
}

/// The answer warns the platform of what it should fix: a full secret key, and a publishable key
/// whose shape says it is another account's (shoppers would meet "Invalid API Key").
#[tokio::test]
async fn the_answer_warns_of_a_full_key_and_of_a_publishable_key_of_another_account() {
    let app = TestApp::spawn_with(&[("BURSAR_AUTO_WEBHOOK_ENDPOINTS", "false")]).await;
    let ours = "51HxYzAbCdEfGhJkLmNoPqRsTu";
    let theirs = "51QqRrSsTtUuVvWwXxYyZz0011";
    let account = app
        .sim
        .add_account_with_keys(&format!("sk_test_{ours}"), &format!("pk_test_{ours}"));
    let store = app.create_store("Shop").await;
    let body = json!({
        "secret_key": account.secret_key,
        "publishable_key": format!("pk_test_{theirs}"),
    });
    let conn: Value = put_keys(&app, &store, body).await.json().await.unwrap();
    let warnings = conn["warnings"].to_string();
    assert!(warnings.contains("another Stripe account"), "{warnings}");
    assert!(warnings.contains("restricted key (rk_)"), "{warnings}");
    let body =
        json!({"secret_key": account.secret_key, "publishable_key": account.publishable_key});
    let conn: Value = put_keys(&app, &store, body).await.json().await.unwrap();
    let warnings = conn["warnings"].to_string();
    assert!(!warnings.contains("another Stripe account"), "{warnings}");
}

/// The store's own endpoint, made by Bursar: concurrent connections leave exactly one at Stripe
/// whose secret Bursar holds (events verify and apply), and disconnecting deletes it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connects_leave_one_endpoint_and_a_disconnect_removes_it() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Racing").await;
    let account = app.sim.add_independent_account(false);
    app.sim
        .update_account(&account.id, |a| a["charges_enabled"] = json!(true));
    let puts = (0..3).map(|_| put_keys(&app, &store, keys(&account.restricted_key, &account)));
    let answers = futures::future::join_all(puts).await;
    let ready = answers.iter().filter(|r| r.status() == 200).count();
    assert!(ready >= 1, "at least one connects");
    let endpoints = |app: &TestApp| {
        app.sim
            .webhook_endpoints()
            .into_iter()
            .filter(|e| e["url"].as_str().is_some_and(|u| u.ends_with(&store)))
            .count()
    };
    assert_eq!(endpoints(&app), 1, "{:?}", app.sim.webhook_endpoints());
    // Its secret is the one Bursar holds: the store's payment event verifies and applies.
    let o: Value = app
        .api(Method::POST, &format!("/api/v1/stores/{store}/orders"))
        .json(&json!({"amount": 1000, "currency": "usd"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    app.sim
        .pay(
            o["payment_intent"].as_str().unwrap(),
            stripe_sim::Card::Visa,
        )
        .await;
    app.drain().await;
    let now = app
        .get_json(&format!("/api/v1/orders/{}", o["id"].as_str().unwrap()))
        .await;
    assert_eq!(now["status"], "paid", "{now}");

    let r = app
        .api(
            Method::DELETE,
            &format!("/api/v1/stores/{store}/connection"),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(endpoints(&app), 0, "{:?}", app.sim.webhook_endpoints());
}

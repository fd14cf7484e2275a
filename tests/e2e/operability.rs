//! What an operator meets: master keys that no longer match the database, ambiguous event ids,
//! concurrent requests with one Idempotency-Key, API key revocation, and PostgreSQL over TLS.

use std::time::Duration;

use bursar::app::App;
use bursar::config::Config;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{
    error_code, event, master_key, Fault, TestApp, CONNECT_SECRET, PLATFORM_SECRET,
};

#[tokio::test]
async fn a_missing_master_key_stops_start_up_with_one_clear_line() {
    let app = TestApp::spawn().await;
    app.connected_store().await;
    let old_id = app.env["BURSAR_MASTER_KEYS"]
        .split_once(':')
        .unwrap()
        .0
        .to_owned();
    let start_with = |keys: String| {
        let mut env = app.env.clone();
        env.insert("BURSAR_MASTER_KEYS".into(), keys);
        env.insert("BURSAR_LISTEN".into(), "127.0.0.1:0".into());
        async move {
            let config = Config::from_lookup(|k| env.get(k).cloned(), None).unwrap();
            App::build(config).await.map(|_| ())
        }
    };
    // Only a new key: the stored secrets were sealed with the old one.
    let err = start_with(master_key()).await.unwrap_err().to_string();
    assert!(err.starts_with("BURSAR_MASTER_KEYS:"), "{err}");
    assert!(err.contains(&format!("`{old_id}`")), "{err}");
    assert!(err.contains("not configured"), "{err}");
    assert_eq!(err.lines().count(), 1);
    // The old key's id with other bytes: named as the wrong key.
    let wrong = format!("{old_id}:{}", master_key().split_once(':').unwrap().1);
    let err = start_with(wrong).await.unwrap_err().to_string();
    assert!(err.contains("does not open"), "{err}");
    // New key first (it seals), old key kept (it opens): starts.
    let both = format!("{},{}", master_key(), app.env["BURSAR_MASTER_KEYS"]);
    start_with(both).await.unwrap();
}

#[tokio::test]
async fn an_event_id_seen_on_several_endpoints_must_be_named_by_source() {
    let app = TestApp::spawn().await;
    let mut e = event("balance.available", None, false);
    assert_eq!(
        app.deliver("/webhooks/stripe", &e, PLATFORM_SECRET)
            .await
            .status(),
        200
    );
    e["account"] = json!("acct_1Nobody0000000");
    assert_eq!(
        app.deliver("/webhooks/stripe/connect", &e, CONNECT_SECRET)
            .await
            .status(),
        200
    );
    let id = e["id"].as_str().unwrap();
    for path in [
        format!("/api/v1/events/{id}"),
        format!("/api/v1/events/{id}/replay"),
    ] {
        let method = if path.ends_with("replay") {
            Method::POST
        } else {
            Method::GET
        };
        let (status, code, message) =
            error_code(app.api(method, &path).send().await.unwrap()).await;
        assert_eq!((status, code.as_str()), (409, "ambiguous_event"), "{path}");
        assert!(
            message.contains("platform") && message.contains("connect"),
            "{message}"
        );
    }
    let platform: Value = app
        .get_json(&format!("/api/v1/events/{id}?source=platform"))
        .await;
    assert_eq!(platform["scope"], "platform");
    let connect: Value = app
        .get_json(&format!("/api/v1/events/{id}?source=connect"))
        .await;
    assert_eq!(connect["scope"], "connect");
    let r = app
        .api(
            Method::GET,
            &format!("/api/v1/events/{id}?source=store:st_none"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn one_idempotency_key_never_runs_two_requests_at_once() {
    // A claim not refreshed for 1 s is taken as dead; the running request refreshes it.
    let app = TestApp::spawn_with(&[("BURSAR_IDEMPOTENCY_LOCK_SECS", "1")]).await;
    let store = app.create_store("Slow shop").await;
    let account = app.sim.add_account(false);
    app.sim.fail(
        Method::GET,
        "/v1/account",
        Fault::Delay(Duration::from_millis(1800)),
        1,
    );
    let path = format!("/api/v1/stores/{store}/connection/keys");
    let body =
        json!({ "secret_key": account.restricted_key, "publishable_key": account.publishable_key });
    let send = || {
        app.api(Method::PUT, &path)
            .header("Idempotency-Key", "connect-once")
            .json(&body)
            .send()
    };
    let first = tokio::spawn(send());
    // Well past the lock period, while the first still waits on Stripe.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (status, code, _) = error_code(send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (409, "idempotency_key_in_use"));
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), 200);
    let replay = send().await.unwrap();
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["Idempotent-Replayed"], "true");
    assert_eq!(
        app.sim.requests("/v1/account").len(),
        1,
        "the work ran once"
    );
}

#[tokio::test]
async fn api_keys_are_listed_and_revoked_through_the_api() {
    let app = TestApp::spawn().await;
    let (id, key) = bursar::service::api_keys::create(&app.services.db, "partner")
        .await
        .unwrap();
    let key = secrecy::ExposeSecret::expose_secret(&key).to_owned();
    let listed: Value = app.get_json("/api/v1/api-keys").await;
    let text = listed.to_string();
    assert!(text.contains(id.as_str()) && !text.contains(&key));
    let r = app
        .anon(Method::GET, "/api/v1/api-keys")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = app
        .api(Method::DELETE, &format!("/api/v1/api-keys/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.json::<Value>().await.unwrap()["revoked"].is_i64());
    let r = app
        .anon(Method::GET, "/api/v1/stores")
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    for bad in ["key_unknown", "not-a-key-id"] {
        let r = app
            .api(Method::DELETE, &format!("/api/v1/api-keys/{bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{bad}");
    }
}

/// On the PostgreSQL run (CI's cluster requires TLS and passwords): the connection is
/// encrypted, and refused or misconfigured connections say why.
#[tokio::test]
async fn postgres_connections_use_tls_and_explain_their_failures() {
    let Ok(url) = std::env::var("BURSAR_TEST_DATABASE_URL") else {
        return; // the SQLite run: nothing of PostgreSQL to check
    };
    let app = TestApp::spawn().await;
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(app.services.db.pool())
        .await
        .unwrap();
    let parsed = url::Url::parse(&url).unwrap();
    let required = parsed
        .query_pairs()
        .any(|(k, v)| k == "sslmode" && v == "require");
    assert_eq!(
        ssl, required,
        "sslmode=require must mean an encrypted connection"
    );
    // Every connection Bursar holds, the inbox writer's own included, is opened the same way.
    let (held, encrypted): (i64, Option<bool>) = sqlx::query_as(
        "SELECT COUNT(*), bool_and(s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.datname = current_database() AND a.backend_type = 'client backend'",
    )
    .fetch_one(app.services.db.pool())
    .await
    .unwrap();
    assert!(held >= 2, "the pool's connection and the inbox's: {held}");
    assert_eq!(encrypted, Some(required));
    if !required || parsed.password().is_none() {
        return;
    }
    let mut wrong_password = parsed.clone();
    wrong_password
        .set_password(Some("not-the-password"))
        .unwrap();
    let err = bursar::db::Db::connect(wrong_password.as_str())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
    let plain = url.replace("sslmode=require", "sslmode=disable");
    let err = bursar::db::Db::connect(&plain)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("without TLS"), "{err}");
}

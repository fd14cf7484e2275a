use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{
    account_updated, error_code, event, now, random, store_path, Fault, TestApp, CONNECT_SECRET,
    CONNECT_SECRET_LIVE, PLATFORM_SECRET, PLATFORM_SECRET_OLD,
};

const PLATFORM: &str = "/webhooks/stripe";
const CONNECT: &str = "/webhooks/stripe/connect";

#[tokio::test]
async fn a_signed_event_is_stored_then_applied() {
    let app = TestApp::spawn().await;
    let (store, account, secret) = app.connected_store().await;
    let mut e = event("payout.failed", None, false);
    let r = app.deliver(&store_path(&store), &e, &secret).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["received"], true);
    let id = e["id"].as_str().unwrap().to_owned();
    let stored = app.event(&id).await;
    assert_eq!(stored["scope"], "store");
    assert_eq!(stored["store_id"], store.as_str());
    assert_eq!(
        stored["payload"], e,
        "the payload is kept as Stripe sent it"
    );
    let applied = app.wait_for_event(&id, |e| e["status"] == "applied").await;
    assert_eq!(applied["attempts"], 1);
    let acct = app.account(&store).await;
    assert_eq!(
        acct["last_payout_failure"]["failure_code"],
        "account_closed"
    );
    assert_eq!(acct["last_payout_failure"]["event"], id.as_str());
    assert_eq!(acct["account_id"], account.id.as_str());

    // The same event again: acknowledged, nothing new stored or applied.
    e["data"]["object"]["failure_code"] = json!("changed_in_the_replay");
    let r = app.deliver(&store_path(&store), &e, &secret).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["duplicate"], true);
    app.drain().await;
    assert_eq!(app.event_count().await, 1);
    assert_eq!(
        app.account(&store).await["last_payout_failure"]["failure_code"],
        "account_closed"
    );
}

#[tokio::test]
async fn bad_signatures_get_400_and_store_nothing() {
    let app = TestApp::spawn().await;
    let e = event("balance.available", None, false);
    let body = serde_json::to_vec(&e).unwrap();
    let sign = |secret: &str, t: i64| bursar::stripe::signature::sign(&body, secret, t);
    let good = sign(PLATFORM_SECRET, now());
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing header", None),
        ("garbage header", Some("this is not a signature".into())),
        ("no v1", Some(format!("t={}", now()))),
        ("wrong secret", Some(sign("whsec_someone_else", now()))),
        (
            "connect secret on the platform endpoint",
            Some(sign(CONNECT_SECRET, now())),
        ),
        ("expired", Some(sign(PLATFORM_SECRET, now() - 360))),
        ("from the future", Some(sign(PLATFORM_SECRET, now() + 360))),
        ("tampered v1", Some(good.replace("v1=", "v1=00"))),
        ("v0 only", Some(good.replace("v1=", "v0="))),
    ];
    for (what, header) in cases {
        let r = app
            .deliver_raw(PLATFORM, body.clone(), header.as_deref())
            .await;
        let (status, code, _) = error_code(r).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_signature"),
            "{what}"
        );
    }
    // A valid signature over other bytes is no signature.
    let mut other = body.clone();
    other.push(b' ');
    assert_eq!(
        app.deliver_raw(PLATFORM, other, Some(&good)).await.status(),
        400
    );
    assert_eq!(app.event_count().await, 0, "no side effect");
}

#[tokio::test]
async fn any_v1_and_rotated_secrets_are_accepted() {
    let app = TestApp::spawn().await;
    let e = event("balance.available", None, false);
    let body = serde_json::to_vec(&e).unwrap();
    let t = now();
    let old = bursar::stripe::signature::sign(&body, PLATFORM_SECRET_OLD, t);
    let header = format!(
        "t={t},v1={},{},v0=deadbeef",
        "ab".repeat(32),
        old.split_once(',').unwrap().1
    );
    assert_eq!(
        app.deliver_raw(PLATFORM, body, Some(&header))
            .await
            .status(),
        200
    );
    // A Connect endpoint holds its test and live secrets at once.
    let live = event("account.updated", Some("acct_1Unknown0000000"), true);
    assert_eq!(
        app.deliver(CONNECT, &live, CONNECT_SECRET_LIVE)
            .await
            .status(),
        200
    );
    assert_eq!(app.event_count().await, 2);
}

#[tokio::test]
async fn malformed_json_with_a_valid_signature_is_400() {
    let app = TestApp::spawn().await;
    for body in [
        b"{\"id\": \"evt_1\", ".to_vec(),
        b"[]".to_vec(),
        br#"{"id":"evt_1","type":"x","created":1,"livemode":false,"data":{"object":"str"}}"#
            .to_vec(),
        vec![0xff, 0xfe],
    ] {
        let header = bursar::stripe::signature::sign(&body, PLATFORM_SECRET, now());
        let (status, code, _) =
            error_code(app.deliver_raw(PLATFORM, body, Some(&header)).await).await;
        assert_eq!((status, code.as_str()), (400, "invalid_payload"));
    }
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn oversize_webhooks_get_413() {
    let app = TestApp::spawn().await;
    let mut e = event("customer.updated", None, false);
    e["data"]["object"]["description"] = json!("x".repeat(1_100_000));
    let r = app.deliver(PLATFORM, &e, PLATFORM_SECRET).await;
    assert_eq!(r.status(), 413);
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn endpoints_without_a_secret_fail_closed() {
    let app = TestApp::spawn_with(&[
        ("STRIPE_WEBHOOK_SECRET", ""),
        ("STRIPE_CONNECT_WEBHOOK_SECRET", ""),
    ])
    .await;
    let e = event("balance.available", None, false);
    for path in [PLATFORM, CONNECT] {
        let (status, code, _) = error_code(app.deliver(path, &e, PLATFORM_SECRET).await).await;
        assert_eq!(
            (status, code.as_str()),
            (503, "webhook_not_configured"),
            "{path}"
        );
    }
    let store = app.create_store("No secret yet").await;
    assert_eq!(
        app.deliver(&store_path(&store), &e, PLATFORM_SECRET)
            .await
            .status(),
        503
    );
    assert_eq!(
        app.deliver(&store_path("st_nosuchstore"), &e, PLATFORM_SECRET)
            .await
            .status(),
        404
    );
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn a_store_endpoint_takes_only_that_stores_secret() {
    let app = TestApp::spawn().await;
    let (a, _, secret_a) = app.connected_store().await;
    let (b, _, _) = app.connected_store().await;
    let e = event("payout.failed", None, false);
    // Store A's secret opens only store A's endpoint.
    assert_eq!(
        app.deliver(&store_path(&b), &e, &secret_a).await.status(),
        400
    );
    assert_eq!(app.deliver(PLATFORM, &e, &secret_a).await.status(), 400);
    assert_eq!(
        app.deliver(&store_path(&a), &e, &secret_a).await.status(),
        200
    );
    app.drain().await;
    assert!(
        app.account(&b).await["last_payout_failure"].is_null(),
        "nothing reached store B"
    );
    assert!(!app.account(&a).await["last_payout_failure"].is_null());
}

#[tokio::test]
async fn reordered_deliveries_end_in_the_same_state() {
    let app = TestApp::spawn().await;
    let (store, _, secret) = app.connected_store().await;
    let t = now();
    let mut older = event("payout.failed", None, false);
    older["created"] = json!(t - 60);
    older["data"]["object"]["failure_code"] = json!("insufficient_funds");
    let mut newer = event("payout.failed", None, false);
    newer["created"] = json!(t);
    newer["data"]["object"]["failure_code"] = json!("account_closed");
    // Newest first, applied, then the late one.
    assert_eq!(
        app.deliver(&store_path(&store), &newer, &secret)
            .await
            .status(),
        200
    );
    app.drain().await;
    assert_eq!(
        app.deliver(&store_path(&store), &older, &secret)
            .await
            .status(),
        200
    );
    app.drain().await;
    let late = app.event(older["id"].as_str().unwrap()).await;
    assert_eq!(late["status"], "applied");
    assert_eq!(
        app.account(&store).await["last_payout_failure"]["failure_code"],
        "account_closed"
    );

    // account.updated re-fetches the account, so even a stale snapshot applies current state.
    let (store, account, secret) = app.connected_store().await;
    app.sim
        .update_account(&account.id, |a| a["charges_enabled"] = json!(true));
    let mut stale = account_updated(&account.id);
    stale["data"]["object"]["charges_enabled"] = json!(false);
    assert_eq!(
        app.deliver(&store_path(&store), &stale, &secret)
            .await
            .status(),
        200
    );
    app.drain().await;
    assert_eq!(app.account(&store).await["charges_enabled"], true);
}

#[tokio::test]
async fn a_failing_handler_is_retried_then_succeeds() {
    let app = TestApp::spawn().await;
    let (store, account, secret) = app.connected_store().await;
    app.sim
        .update_account(&account.id, |a| a["payouts_enabled"] = json!(true));
    // The re-fetch fails through the client's own retries once (4 calls), then Stripe recovers.
    app.sim
        .fail(Method::GET, "/v1/account", Fault::Status(500), 4);
    let e = account_updated(&account.id);
    assert_eq!(
        app.deliver(&store_path(&store), &e, &secret).await.status(),
        200
    );
    let id = e["id"].as_str().unwrap();
    let done = app.wait_for_event(id, |e| e["status"] == "applied").await;
    assert_eq!(done["attempts"], 2);
    assert_eq!(app.account(&store).await["payouts_enabled"], true);
}

#[tokio::test]
async fn a_permanent_failure_is_dead_then_replay_applies_it() {
    let app = TestApp::spawn().await;
    let (store, account, secret) = app.connected_store().await;
    app.sim
        .update_account(&account.id, |a| a["charges_enabled"] = json!(true));
    app.sim
        .fail(Method::GET, "/v1/account", Fault::Status(500), 1000);
    let e = account_updated(&account.id);
    assert_eq!(
        app.deliver(&store_path(&store), &e, &secret).await.status(),
        200
    );
    let id = e["id"].as_str().unwrap();
    let dead = app.wait_for_event(id, |e| e["status"] == "dead").await;
    assert_eq!(dead["attempts"], 3);
    assert!(dead["last_error"].as_str().unwrap().contains("500"));
    let listed: Value = app.get_json("/api/v1/events?status=dead").await;
    assert_eq!(listed["data"][0]["event_id"], id);
    assert_eq!(app.account(&store).await["charges_enabled"], false);

    app.sim.clear_faults();
    let r = app
        .api(Method::POST, &format!("/api/v1/events/{id}/replay"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.wait_for_event(id, |e| e["status"] == "applied").await;
    assert_eq!(app.account(&store).await["charges_enabled"], true);
}

#[tokio::test]
async fn livemode_mismatch_is_recorded_not_applied() {
    let app = TestApp::spawn().await;
    let (store, _, secret) = app.connected_store().await;
    let e = event("payout.failed", None, true);
    assert_eq!(
        app.deliver(&store_path(&store), &e, &secret).await.status(),
        200
    );
    let done = app
        .wait_for_event(e["id"].as_str().unwrap(), |e| e["status"] != "pending")
        .await;
    assert_eq!(done["status"], "ignored");
    assert!(done["last_error"].as_str().unwrap().contains("livemode"));
    assert!(app.account(&store).await["last_payout_failure"].is_null());
}

#[tokio::test]
async fn connect_events_for_unknown_accounts_are_unrouted_and_visible() {
    let app = TestApp::spawn().await;
    let e = event("account.updated", Some("acct_1NobodyKnowsMe00"), false);
    assert_eq!(app.deliver(CONNECT, &e, CONNECT_SECRET).await.status(), 200);
    let done = app
        .wait_for_event(e["id"].as_str().unwrap(), |e| e["status"] != "pending")
        .await;
    assert_eq!(done["status"], "unrouted");
    assert_eq!(done["account"], "acct_1NobodyKnowsMe00");
    let listed: Value = app.get_json("/api/v1/events?status=unrouted").await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn unknown_types_are_stored_and_acknowledged() {
    let app = TestApp::spawn().await;
    let mut e = event("customer.created", None, false);
    e["type"] = json!(format!("brand_new.thing_{}", random(4).to_lowercase()));
    assert_eq!(
        app.deliver(PLATFORM, &e, PLATFORM_SECRET).await.status(),
        200
    );
    let done = app
        .wait_for_event(e["id"].as_str().unwrap(), |e| e["status"] != "pending")
        .await;
    assert_eq!(done["status"], "ignored");
    assert!(done["last_error"].as_str().unwrap().contains("no handler"));
}

#[tokio::test]
async fn events_api_filters_and_refuses_bad_input() {
    let app = TestApp::spawn().await;
    let (store, _, secret) = app.connected_store().await;
    for t in ["payout.failed", "balance.available", "person.updated"] {
        assert_eq!(
            app.deliver(&store_path(&store), &event(t, None, false), &secret)
                .await
                .status(),
            200
        );
    }
    assert_eq!(
        app.deliver(
            PLATFORM,
            &event("balance.available", None, false),
            PLATFORM_SECRET
        )
        .await
        .status(),
        200
    );
    app.drain().await;
    let app = &app;
    let get = |q: String| async move {
        app.api(Method::GET, &format!("/api/v1/events{q}"))
            .send()
            .await
            .unwrap()
    };
    let by_store: Value = get(format!("?store_id={store}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_store["data"].as_array().unwrap().len(), 3);
    let by_type: Value = get("?type=balance.available".into())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_type["data"].as_array().unwrap().len(), 2);
    let page: Value = get("?limit=3".into()).await.json().await.unwrap();
    assert_eq!(page["has_more"], true);
    let rest: Value = get(format!(
        "?limit=3&cursor={}",
        page["next_cursor"].as_str().unwrap()
    ))
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert_eq!(get("?status=exploded".into()).await.status(), 400);
    assert_eq!(get("?cursor=abc".into()).await.status(), 400);
    assert_eq!(
        get("?store_id=st_nosuchstore".into())
            .await
            .json::<Value>()
            .await
            .unwrap()["data"],
        json!([])
    );
    assert_eq!(
        app.api(Method::GET, "/api/v1/events/evt_nosuchevent")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        app.api(Method::POST, "/api/v1/events/999999/replay")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        app.anon(Method::GET, "/api/v1/events")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn concurrent_deliveries_are_all_stored_once() {
    let app = TestApp::spawn().await;
    let events: Vec<Value> = (0..200)
        .map(|_| event("balance.available", None, false))
        .collect();
    let sends = events
        .iter()
        .chain(events.iter().take(50))
        .map(|e| app.deliver(PLATFORM, e, PLATFORM_SECRET));
    let results = futures::future::join_all(sends).await;
    assert!(results.iter().all(|r| r.status() == 200));
    assert_eq!(app.event_count().await, 200);
    // Each row got its own delivery's bytes, whichever batch and connection stored it.
    let stored: Vec<(String, String)> = sqlx::query_as(
        "SELECT e.event_id, p.payload FROM events e JOIN event_payloads p ON p.seq = e.seq",
    )
    .fetch_all(app.services.db.pool())
    .await
    .unwrap();
    assert_eq!(stored.len(), 200);
    for (id, payload) in stored {
        let payload: Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(payload["id"], id.as_str());
    }
    app.drain().await;
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE status = 'applied'")
        .fetch_one(app.services.db.pool())
        .await
        .unwrap();
    assert_eq!(applied, 200);
}

#[tokio::test]
async fn events_about_another_account_never_touch_the_store() {
    let app = TestApp::spawn().await;
    let (store, _, secret) = app.connected_store().await;
    let e = event("payout.failed", Some("acct_1SomeoneElse0000"), false);
    assert_eq!(
        app.deliver(&store_path(&store), &e, &secret).await.status(),
        200
    );
    let done = app
        .wait_for_event(e["id"].as_str().unwrap(), |e| e["status"] != "pending")
        .await;
    assert_eq!(done["status"], "ignored");
    assert!(done["last_error"]
        .as_str()
        .unwrap()
        .contains("no longer connected"));
    assert!(app.account(&store).await["last_payout_failure"].is_null());
}

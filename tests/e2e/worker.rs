//! The worker under faults: a poisonous Stripe answer, a hanging Stripe account, a process that
//! dies on an event, a store that changes accounts, and forged timestamps.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{account_updated, event, now, store_path, Fault, TestApp};

/// Polls (without applying anything itself) until `pred` holds for the store's account view.
async fn until_account(
    app: &TestApp,
    store: &str,
    within: Duration,
    pred: impl Fn(&Value) -> bool,
) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        if pred(&app.account(store).await) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn healthz(app: &TestApp) -> u16 {
    app.anon(Method::GET, "/healthz")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_stripe_error_in_any_unicode_fails_one_event_and_the_worker_goes_on() {
    let app = TestApp::spawn().await;
    let (store, account, secret) = app.connected_store().await;
    let (other, _, other_secret) = app.connected_store().await;
    // Byte-slicing this message to mask the key panicked and killed the worker for good.
    app.sim.fail(
        Method::GET,
        "/v1/account",
        Fault::Message(400, "Bad key sk_test_a€xy given".into()),
        1000,
    );
    let poison = account_updated(&account.id);
    assert_eq!(
        app.deliver(&store_path(&store), &poison, &secret)
            .await
            .status(),
        200
    );
    let payout = event("payout.failed", None, false);
    assert_eq!(
        app.deliver(&store_path(&other), &payout, &other_secret)
            .await
            .status(),
        200
    );

    // The app's own worker (not the test) applies the other store's event.
    assert!(
        until_account(&app, &other, Duration::from_secs(10), |a| !a
            ["last_payout_failure"]
            .is_null())
        .await,
        "the worker stopped applying events"
    );
    let id = poison["id"].as_str().unwrap();
    let dead = app.wait_for_event(id, |e| e["status"] == "dead").await;
    let error = dead["last_error"].as_str().unwrap();
    assert!(error.contains("sk_test_****"), "{error}");
    assert!(
        !error.contains("a€xy"),
        "the key's characters are masked: {error}"
    );
    assert_eq!(healthz(&app).await, 200);
}

#[tokio::test]
async fn a_hanging_stripe_account_does_not_hold_other_stores_events() {
    // Production-like deadlines: a hanging call costs 10 s before it counts as failed.
    let app = TestApp::spawn_with(&[
        ("BURSAR_STRIPE_TIMEOUT_SECS", "10"),
        ("BURSAR_WORKER_EVENT_TIMEOUT_SECS", "10"),
        ("BURSAR_WORKER_LEASE_SECS", "30"),
    ])
    .await;
    let (slow, slow_account, slow_secret) = app.connected_store().await;
    let (fast, fast_account, fast_secret) = app.connected_store().await;
    app.sim.fail_for(
        &slow_account.id,
        Method::GET,
        "/v1/account",
        Fault::Delay(Duration::from_secs(60)),
        1000,
    );
    app.sim
        .update_account(&fast_account.id, |a| a["charges_enabled"] = json!(true));
    // Many of the slow store's events queue ahead of the fast store's, each needing Stripe.
    let mut hanging = Vec::new();
    for _ in 0..20 {
        let e = account_updated(&slow_account.id);
        assert_eq!(
            app.deliver(&store_path(&slow), &e, &slow_secret)
                .await
                .status(),
            200
        );
        hanging.push(e);
    }
    let fast_event = account_updated(&fast_account.id);
    assert_eq!(
        app.deliver(&store_path(&fast), &fast_event, &fast_secret)
            .await
            .status(),
        200
    );
    let payout = event("payout.failed", None, false);
    assert_eq!(
        app.deliver(&store_path(&fast), &payout, &fast_secret)
            .await
            .status(),
        200
    );

    assert!(
        until_account(&app, &fast, Duration::from_secs(3), |a| a
            ["charges_enabled"]
            == true
            && !a["last_payout_failure"].is_null())
        .await,
        "another store's events waited on the hanging account"
    );
    let stuck = app.event(hanging[0]["id"].as_str().unwrap()).await;
    assert_ne!(stuck["status"], "applied");
    assert_eq!(healthz(&app).await, 200);
}

#[tokio::test]
async fn an_event_the_process_keeps_dying_on_ends_dead() {
    let app = TestApp::spawn().await;
    let (store, _, secret) = app.connected_store().await;
    let e = event("payout.failed", None, false);
    let id = e["id"].as_str().unwrap();
    assert_eq!(
        app.deliver(&store_path(&store), &e, &secret).await.status(),
        200
    );
    app.wait_for_event(id, |e| e["status"] == "applied").await;
    // As if every try so far had been claimed by a process that died before finishing it:
    // the lease is over and the attempts are spent.
    sqlx::query(
        "UPDATE events SET status = 'processing', attempts = 3, next_attempt_at = 0, claim_token = 'dead-process' \
         WHERE event_id = $1",
    )
    .bind(id)
    .execute(app.services.db.pool())
    .await
    .unwrap();
    let dead = app.wait_for_event(id, |e| e["status"] == "dead").await;
    assert!(dead["last_error"]
        .as_str()
        .unwrap()
        .contains("without finishing"));
}

#[tokio::test]
async fn events_of_a_stores_previous_account_never_touch_its_new_account() {
    let app = TestApp::spawn().await;
    let (store, _, old_secret) = app.connected_store().await;
    let old_event = event("payout.failed", None, false);
    let old_id = old_event["id"].as_str().unwrap();
    assert_eq!(
        app.deliver(&store_path(&store), &old_event, &old_secret)
            .await
            .status(),
        200
    );
    app.wait_for_event(old_id, |e| e["status"] == "applied")
        .await;

    // The merchant connects another account; its events start from a clean slate.
    let new_account = app.sim.add_account(false);
    let r = app
        .api(Method::PUT, &format!("/api/v1/stores/{store}/connection/keys"))
        .json(&json!({ "secret_key": new_account.restricted_key, "publishable_key": new_account.publishable_key, "webhook_secret": "whsec_new_account_secret" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let view = app.account(&store).await;
    assert_eq!(view["account_id"], new_account.id.as_str());
    assert!(view["last_payout_failure"].is_null());

    // Replaying the old account's event (recorded with the account it came for) changes nothing.
    let r = app
        .api(Method::POST, &format!("/api/v1/events/{old_id}/replay"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let done = app
        .wait_for_event(old_id, |e| e["status"] != "pending")
        .await;
    assert_eq!(done["status"], "ignored");
    assert!(
        done["account"].is_string(),
        "recorded with its account: {done}"
    );
    assert_ne!(done["account"], new_account.id.as_str());
    assert!(app.account(&store).await["last_payout_failure"].is_null());

    // The new account's own events apply.
    let fresh = event("payout.failed", None, false);
    assert_eq!(
        app.deliver(&store_path(&store), &fresh, "whsec_new_account_secret")
            .await
            .status(),
        200
    );
    app.wait_for_event(fresh["id"].as_str().unwrap(), |e| e["status"] == "applied")
        .await;
    assert_eq!(
        app.account(&store).await["last_payout_failure"]["event"],
        fresh["id"]
    );
}

#[tokio::test]
async fn a_forged_future_timestamp_cannot_block_later_events() {
    let app = TestApp::spawn().await;
    let (store, _, secret) = app.connected_store().await;
    let mut forged = event("payout.failed", None, false);
    forged["created"] = json!(now() + 10 * 365 * 86_400);
    assert_eq!(
        app.deliver(&store_path(&store), &forged, &secret)
            .await
            .status(),
        200
    );
    app.wait_for_event(forged["id"].as_str().unwrap(), |e| e["status"] == "applied")
        .await;
    let stored = app.event(forged["id"].as_str().unwrap()).await;
    assert!(
        stored["created"].as_i64().unwrap() <= now(),
        "bounded by the receive time"
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = event("payout.failed", None, false);
    assert_eq!(
        app.deliver(&store_path(&store), &later, &secret)
            .await
            .status(),
        200
    );
    app.wait_for_event(later["id"].as_str().unwrap(), |e| e["status"] == "applied")
        .await;
    assert_eq!(
        app.account(&store).await["last_payout_failure"]["event"],
        later["id"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_the_workers_room_is_applied_once_from_memory_and_from_the_table() {
    // Batches of one: the hand-off holds four events, so most of a concurrent burst is stored
    // unclaimed and must be claimed from the table; the rest goes straight to the worker.
    let app = TestApp::spawn_with(&[("BURSAR_WORKER_BATCH", "1")]).await;
    let ids: Vec<String> = (0..120).map(|i| format!("evt_burst{i:04}")).collect();
    let deliveries = ids.iter().map(|id| {
        let mut e = event("balance.available", None, false);
        e["id"] = json!(id);
        let app = &app;
        async move {
            app.deliver("/webhooks/stripe", &e, crate::support::PLATFORM_SECRET)
                .await
        }
    });
    for r in futures::future::join_all(deliveries).await {
        assert_eq!(r.status(), 200);
    }
    // The app's own worker only: nothing here applies events.
    let deadline = Instant::now() + Duration::from_secs(20);
    let applied = loop {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT event_id, status, attempts FROM events WHERE event_id LIKE 'evt_burst%'",
        )
        .fetch_all(app.services.db.pool())
        .await
        .unwrap();
        if rows.iter().all(|(_, status, _)| status == "applied") || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        applied.len(),
        ids.len(),
        "every acknowledged event is stored"
    );
    for (id, status, attempts) in &applied {
        assert_eq!(status, "applied", "{id}");
        assert_eq!(*attempts, 1, "{id} was claimed more than once");
    }
}

//! Money paths under concurrency, lost answers and a merchant's own word: one subscription per
//! store whatever races, Idempotency-Keys bound to their request, merchant-signed events
//! confirmed at Stripe, refunds that are never reserved for ever, stores deleted without
//! orphaning live objects at Stripe, and single-use key-entry links.

use reqwest::Method;
use serde_json::{json, Value};
use stripe_sim::Card;

use crate::orders::{keys_store, order};
use crate::support::{error_code, store_path, Fault, TestApp};

async fn subscribe(app: &TestApp, store: &str, price: &str) -> reqwest::Response {
    app.api(Method::PUT, &format!("/api/v1/stores/{store}/subscription"))
        .json(&json!({ "price_id": price }))
        .send()
        .await
        .unwrap()
}

async fn create_order(app: &TestApp, store: &str, key: &str, body: Value) -> reqwest::Response {
    app.api(Method::POST, &format!("/api/v1/stores/{store}/orders"))
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub async fn paid_order(app: &TestApp, store: &str, amount: i64) -> Value {
    let r = app
        .api(Method::POST, &format!("/api/v1/stores/{store}/orders"))
        .json(&json!({ "amount": amount, "currency": "usd" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let o: Value = r.json().await.unwrap();
    app.sim
        .pay(o["payment_intent"].as_str().unwrap(), Card::Visa)
        .await;
    app.drain().await;
    let o = order(app, o["id"].as_str().unwrap()).await;
    assert_eq!(o["status"], "paid", "{o}");
    o
}

async fn store_secret(app: &TestApp, store: &str) -> String {
    let id = bursar::domain::StoreId::parse(store).unwrap();
    secrecy::ExposeSecret::expose_secret(
        &bursar::service::connections::webhook_secret(&app.services, &id)
            .await
            .unwrap()
            .unwrap(),
    )
    .to_owned()
}

#[tokio::test]
async fn six_simultaneous_subscription_puts_make_one_subscription() {
    let app = TestApp::spawn().await;
    let price = app.sim.add_price(2900, "usd", Some("month"), true);
    let store = app.create_store("Vendor").await;
    // Stripe is slow to create it, so every request arrives while the first is in flight.
    app.sim.fail(
        Method::POST,
        "/v1/subscriptions",
        Fault::Delay(std::time::Duration::from_millis(300)),
        6,
    );
    let answers = futures::future::join_all((0..6).map(|_| subscribe(&app, &store, &price))).await;
    let mut statuses = Vec::new();
    for r in answers {
        let status = r.status().as_u16();
        if status == 409 {
            let (_, code, _) = error_code(r).await;
            assert_eq!(code, "subscription_pending");
        }
        statuses.push(status);
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(app.sim.count("subscription"), 1, "{statuses:?}");
    assert_eq!(app.sim.count("customer"), 1);
    // Once answered, the same request is a no-op on the live subscription.
    let r = subscribe(&app, &store, &price).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.sim.count("subscription"), 1);
}

#[tokio::test]
async fn a_subscription_whose_every_answer_is_lost_is_adopted_from_stripes_event() {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let price = app.sim.add_price(2900, "usd", Some("month"), true);
    let store = app.create_store("Vendor").await;
    app.sim.fail(
        Method::POST,
        "/v1/subscriptions",
        Fault::AfterCommit(500),
        50,
    );
    let r = subscribe(&app, &store, &price).await;
    assert_eq!(r.status(), 502);
    // Stripe's customer.subscription.created names the store: the record adopts it.
    app.drain().await;
    let view = app
        .get_json(&format!("/api/v1/stores/{store}/subscription"))
        .await;
    assert!(view["subscription_id"].is_string(), "{view}");
    assert_eq!(view["vendor_status"], "active", "{view}");
    assert_eq!(app.sim.count("subscription"), 1);
    // Retried with the answers still lost: nothing new is created, the adopted one is shown.
    let r = subscribe(&app, &store, &price).await;
    assert_eq!(r.status(), 200, "{}", crate::support::log_errors());
    assert_eq!(app.sim.count("subscription"), 1);
    app.sim.clear_faults();
}

#[tokio::test]
async fn an_idempotency_key_is_bound_to_its_request_even_after_a_failed_try() {
    let app = TestApp::spawn().await;
    let (store, _) = keys_store(&app).await;
    app.sim
        .fail(Method::POST, "/v1/payment_intents", Fault::Status(500), 50);
    let first = json!({"amount": 5000, "currency": "usd"});
    let r = create_order(&app, &store, "cart-42", first.clone()).await;
    assert_eq!(r.status(), 502);
    app.sim.clear_faults();
    let (status, code, _) = error_code(
        create_order(
            &app,
            &store,
            "cart-42",
            json!({"amount": 9999, "currency": "eur"}),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (409, "idempotency_key_reused"));
    // The first request, retried, resumes its own order.
    let r = create_order(&app, &store, "cart-42", first).await;
    assert_eq!(r.status(), 201);
    let o: Value = r.json().await.unwrap();
    assert_eq!(
        (o["amount"].as_i64(), o["currency"].as_str()),
        (Some(5000), Some("usd"))
    );

    // Refunds likewise.
    let paid = paid_order(&app, &store, 3000).await;
    let id = paid["id"].as_str().unwrap();
    let refund = |body: Value| {
        app.api(Method::POST, &format!("/api/v1/orders/{id}/refunds"))
            .header("Idempotency-Key", "refund-7")
            .json(&body)
            .send()
    };
    app.sim
        .fail(Method::POST, "/v1/refunds", Fault::Status(500), 50);
    assert_eq!(refund(json!({"amount": 1000})).await.unwrap().status(), 502);
    app.sim.clear_faults();
    let (status, code, _) = error_code(refund(json!({"amount": 2000})).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (409, "idempotency_key_reused"));
    let r = refund(json!({"amount": 1000})).await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(app.sim.count("refund"), 1);
}

#[tokio::test]
async fn a_merchant_signed_event_moves_money_only_as_far_as_stripe_confirms() {
    let app = TestApp::spawn().await;
    let (store, _) = keys_store(&app).await;
    let r = app
        .api(Method::POST, &format!("/api/v1/stores/{store}/orders"))
        .json(&json!({"amount": 2500, "currency": "usd"}))
        .send()
        .await
        .unwrap();
    let o: Value = r.json().await.unwrap();
    let id = o["id"].as_str().unwrap();
    let pi = o["payment_intent"].as_str().unwrap();
    let secret = store_secret(&app, &store).await;
    // The merchant knows its endpoint's secret and signs a success Stripe never saw.
    let mut forged = crate::support::event("payment_intent.succeeded", None, false);
    forged["data"]["object"]["id"] = json!(pi);
    forged["data"]["object"]["status"] = json!("succeeded");
    let r = app.deliver(&store_path(&store), &forged, &secret).await;
    assert_eq!(r.status(), 200);
    app.drain().await;
    assert_eq!(order(&app, id).await["status"], "pending");
    let fetched = app.sim.requests(&format!("/v1/payment_intents/{pi}"));
    assert!(
        fetched.iter().any(|r| r.method == "GET"),
        "the event was not confirmed at Stripe"
    );
    // A forged refund of the order once it is really paid: Stripe's charge says otherwise.
    app.sim.pay(pi, Card::Visa).await;
    app.drain().await;
    let paid = order(&app, id).await;
    assert_eq!(paid["status"], "paid");
    let mut refunded = crate::support::event("charge.refunded", None, false);
    refunded["data"]["object"]["id"] = paid["latest_charge"].clone();
    refunded["data"]["object"]["payment_intent"] = json!(pi);
    refunded["data"]["object"]["amount_refunded"] = json!(2500);
    refunded["data"]["object"]["refunded"] = json!(true);
    let r = app.deliver(&store_path(&store), &refunded, &secret).await;
    assert_eq!(r.status(), 200);
    app.drain().await;
    let still = order(&app, id).await;
    assert_eq!(still["status"], "paid", "{still}");
    assert_eq!(still["amount_refunded"], 0);
}

#[tokio::test]
async fn a_refund_stripe_failed_to_answer_is_made_once_when_asked_again() {
    let app = TestApp::spawn().await;
    let (store, _) = keys_store(&app).await;
    let paid = paid_order(&app, &store, 3000).await;
    let id = paid["id"].as_str().unwrap();
    let refund = |body: Value| {
        app.api(Method::POST, &format!("/api/v1/orders/{id}/refunds"))
            .json(&body)
            .send()
    };
    app.sim
        .fail(Method::POST, "/v1/refunds", Fault::Status(500), 50);
    assert_eq!(refund(json!({})).await.unwrap().status(), 502);
    app.sim.clear_faults();
    // Asked again, with no key: the unanswered refund is resumed, not refused nor doubled.
    let r = refund(json!({})).await.unwrap();
    assert_eq!(r.status(), 201, "{}", crate::support::log_errors());
    let made: Value = r.json().await.unwrap();
    assert_eq!(made["amount"], 3000);
    assert!(made["stripe_refund_id"].is_string());
    app.drain().await;
    assert_eq!(order(&app, id).await["status"], "refunded");
    assert_eq!(app.sim.count("refund"), 1);
    let keys: std::collections::HashSet<_> = app
        .sim
        .requests("/v1/refunds")
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.idempotency_key)
        .collect();
    assert_eq!(keys.len(), 1, "one refund, one key");
}

#[tokio::test]
async fn the_sweep_settles_an_unanswered_refund_and_releases_a_refused_one() {
    let app = TestApp::spawn_with(&[("BURSAR_ORDER_SWEEP_SECS", "1")]).await;
    let (store, _) = keys_store(&app).await;
    let paid = paid_order(&app, &store, 3000).await;
    let id = paid["id"].as_str().unwrap();
    let refund = |body: Value| {
        app.api(Method::POST, &format!("/api/v1/orders/{id}/refunds"))
            .json(&body)
            .send()
    };
    // Unanswered, then answered by the sweep with the refund's own key.
    app.sim
        .fail(Method::POST, "/v1/refunds", Fault::Status(503), 50);
    assert_eq!(refund(json!({"amount": 1000})).await.unwrap().status(), 502);
    app.sim.clear_faults();
    // The sweep asks again; Stripe's charge.refunded then moves the order.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        app.drain().await;
        if order(&app, id).await["amount_refunded"] == 1000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sweep never retried the refund"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(app.sim.count("refund"), 1);
    // Unanswered, then refused by Stripe on the sweep's try: its amount is free again.
    app.sim
        .fail(Method::POST, "/v1/refunds", Fault::Status(503), 50);
    assert_eq!(refund(json!({"amount": 2000})).await.unwrap().status(), 502);
    app.sim.clear_faults();
    app.sim.fail(
        Method::POST,
        "/v1/refunds",
        Fault::Message(400, "Charge has been disputed.".into()),
        1,
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let status: String = sqlx::query_scalar("SELECT status FROM refunds WHERE amount = 2000")
            .fetch_one(app.services.db.pool())
            .await
            .unwrap();
        if status == "failed" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sweep never settled the refund"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = refund(json!({"amount": 2000})).await.unwrap();
    assert_eq!(r.status(), 201, "the refused refund still holds its amount");
    app.drain().await;
    assert_eq!(order(&app, id).await["status"], "refunded");
    assert_eq!(app.sim.count("refund"), 2);
}

#[tokio::test]
async fn a_store_with_live_objects_is_deleted_only_by_force_which_cancels_them_at_stripe() {
    let app = TestApp::spawn().await;
    let price = app.sim.add_price(2900, "usd", Some("month"), true);
    let (store, account) = crate::orders::connect_store(&app).await;
    assert_eq!(subscribe(&app, &store, &price).await.status(), 200);
    let view = app
        .get_json(&format!("/api/v1/stores/{store}/subscription"))
        .await;
    let sub = view["subscription_id"].as_str().unwrap().to_owned();
    let delete = |force: bool| {
        let path = if force {
            format!("/api/v1/stores/{store}?force=true")
        } else {
            format!("/api/v1/stores/{store}")
        };
        app.api(Method::DELETE, &path).send()
    };
    let (status, code, message) = error_code(delete(false).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (409, "store_has_live_objects"));
    assert!(message.contains(&sub), "{message}");
    assert!(message.contains(&account.id), "{message}");
    assert_eq!(
        app.get_json(&format!("/api/v1/stores/{store}")).await["id"],
        store.as_str()
    );

    let r = app
        .api(Method::DELETE, &format!("/api/v1/stores/{store}?force=yes"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    assert_eq!(delete(true).await.unwrap().status(), 200);
    let (_, at_stripe) = app.sim.object(&sub).unwrap();
    assert_eq!(at_stripe["status"], "canceled");
    assert!(
        !app.sim.is_connected(&account.id),
        "the account is still authorized"
    );
    let r = app
        .api(Method::GET, &format!("/api/v1/stores/{store}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_deleted_store_keeps_its_paid_orders_and_refunds() {
    let app = TestApp::spawn().await;
    let (store, _) = keys_store(&app).await;
    let paid = paid_order(&app, &store, 2000).await;
    let id = paid["id"].as_str().unwrap();
    let r = app
        .api(Method::POST, &format!("/api/v1/orders/{id}/refunds"))
        .json(&json!({"amount": 500}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    app.drain().await;
    let r = app
        .api(
            Method::DELETE,
            &format!("/api/v1/stores/{store}?force=true"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let kept = order(&app, id).await;
    assert_eq!(kept["status"], "partially_refunded", "{kept}");
    assert_eq!(kept["amount_refunded"], 500);
}

#[tokio::test]
async fn idempotent_responses_are_kept_sealed() {
    let app = TestApp::spawn().await;
    let (store, _) = keys_store(&app).await;
    let body = json!({"amount": 1200, "currency": "usd"});
    let first = create_order(&app, &store, "seal-1", body.clone()).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let secret = first["client_secret"].as_str().unwrap().to_owned();
    let stored: Vec<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT response_body, response_enc FROM idempotency_keys")
            .fetch_all(app.services.db.pool())
            .await
            .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].0.is_none());
    let sealed = stored[0].1.as_deref().unwrap();
    assert!(!sealed.contains(&secret) && !sealed.contains("client_secret"));
    let replay = create_order(&app, &store, "seal-1", body).await;
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["Idempotent-Replayed"], "true");
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["client_secret"], secret.as_str());
}

#[tokio::test]
async fn a_creation_still_running_at_stripe_is_replayed_under_its_key_never_replaced() {
    let app = TestApp::spawn().await;
    let monthly = app.sim.add_price(2900, "usd", Some("month"), true);
    let yearly = app.sim.add_price(29000, "usd", Some("year"), true);
    let store = app.create_store("Vendor").await;
    // Stripe takes longer than Bursar waits: the first request gives up while Stripe still works.
    app.sim.fail(
        Method::POST,
        "/v1/subscriptions",
        Fault::Delay(std::time::Duration::from_millis(2500)),
        3,
    );
    let first = subscribe(&app, &store, &monthly).await.status().as_u16();
    assert!(first == 200 || first == 502, "{first}");
    // Another price meanwhile: the first creation is replayed (same key, same price), then
    // moved to the new price; a second subscription is never made.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = subscribe(&app, &store, &yearly).await;
        if r.status() == 200 {
            let view: Value = r.json().await.unwrap();
            assert_eq!(view["price_id"], yearly.as_str());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", r.status());
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert_eq!(app.sim.count("subscription"), 1);
    let keys: std::collections::HashSet<_> = app
        .sim
        .requests("/v1/subscriptions")
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.idempotency_key)
        .collect();
    assert_eq!(
        keys.len(),
        1,
        "a creation was made under a second key: {keys:?}"
    );
}

#[tokio::test]
async fn an_event_about_a_stores_previous_subscription_is_never_adopted() {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let price = app.sim.add_price(2900, "usd", Some("month"), true);
    let store = app.create_store("Vendor").await;
    assert_eq!(subscribe(&app, &store, &price).await.status(), 200);
    app.drain().await;
    let old = app
        .get_json(&format!("/api/v1/stores/{store}/subscription"))
        .await["subscription_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .api(
            Method::DELETE,
            &format!("/api/v1/stores/{store}/subscription?now=true"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.drain().await;
    // Subscribing again, every answer lost: the new one is adopted from its own event.
    app.sim.fail(
        Method::POST,
        "/v1/subscriptions",
        Fault::AfterCommit(500),
        50,
    );
    assert_eq!(subscribe(&app, &store, &price).await.status(), 502);
    app.sim.clear_faults();
    // A late update about the previous subscription arrives, signed by Stripe.
    let (_, mut snapshot) = app.sim.object(&old).unwrap();
    snapshot["status"] = json!("past_due");
    let mut late = crate::support::event("customer.subscription.updated", None, false);
    late["data"]["object"] = snapshot;
    let r = app
        .deliver("/webhooks/stripe", &late, crate::support::PLATFORM_SECRET)
        .await;
    assert_eq!(r.status(), 200);
    app.drain().await;
    let view = app
        .get_json(&format!("/api/v1/stores/{store}/subscription"))
        .await;
    assert_ne!(view["subscription_id"], old.as_str(), "{view}");
    assert!(view["subscription_id"].is_string(), "{view}");
    assert_eq!(view["vendor_status"], "active", "{view}");
    assert_eq!(app.sim.count("subscription"), 2);
}

#[tokio::test]
async fn an_unanswered_refund_is_looked_up_before_it_is_asked_again() {
    let app = TestApp::spawn().await;
    let (store, _) = keys_store(&app).await;
    let paid = paid_order(&app, &store, 3000).await;
    let id = paid["id"].as_str().unwrap();
    let refund = |key: Option<&'static str>| {
        let mut r = app
            .api(Method::POST, &format!("/api/v1/orders/{id}/refunds"))
            .json(&json!({ "amount": 1000 }));
        if let Some(k) = key {
            r = r.header("Idempotency-Key", k);
        }
        r.send()
    };
    // Stripe makes the refund; its answers are lost.
    app.sim
        .fail(Method::POST, "/v1/refunds", Fault::AfterCommit(500), 50);
    assert_eq!(refund(None).await.unwrap().status(), 502);
    app.sim.clear_faults();
    // A day and more later Stripe has forgotten the key: asking again under it would make a
    // second refund, so Bursar looks it up first and adopts it.
    sqlx::query("UPDATE refunds SET created_at = created_at - 90000000")
        .execute(app.services.db.pool())
        .await
        .unwrap();
    let r = refund(Some("again")).await.unwrap();
    assert_eq!(r.status(), 201, "{}", crate::support::log_errors());
    let made: Value = r.json().await.unwrap();
    assert!(made["stripe_refund_id"].is_string());
    assert_eq!(app.sim.count("refund"), 1);
    // The key that asked again is bound to that refund: its retry, even with its saved answer
    // lost (a crash before it was saved), finds it rather than making another.
    sqlx::query("DELETE FROM idempotency_keys")
        .execute(app.services.db.pool())
        .await
        .unwrap();
    let again: Value = refund(Some("again")).await.unwrap().json().await.unwrap();
    assert_eq!(again["id"], made["id"]);
    assert_eq!(app.sim.count("refund"), 1);
}

#[tokio::test]
async fn an_unanswered_refund_of_a_store_that_disconnected_stays_counted() {
    let app = TestApp::spawn_with(&[("BURSAR_ORDER_SWEEP_SECS", "1")]).await;
    let (store, _) = keys_store(&app).await;
    let paid = paid_order(&app, &store, 3000).await;
    let id = paid["id"].as_str().unwrap();
    app.sim
        .fail(Method::POST, "/v1/refunds", Fault::AfterCommit(500), 50);
    let r = app
        .api(Method::POST, &format!("/api/v1/orders/{id}/refunds"))
        .json(&json!({ "amount": 1000 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let r = app
        .api(
            Method::DELETE,
            &format!("/api/v1/stores/{store}/connection"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Sweeps come and go: Stripe made it, so it is never released.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let status: String = sqlx::query_scalar("SELECT status FROM refunds")
        .fetch_one(app.services.db.pool())
        .await
        .unwrap();
    assert_eq!(status, "pending");
}

#[tokio::test]
async fn a_forced_deletion_cancels_open_payments_at_stripe() {
    let app = TestApp::spawn().await;
    let (store, _) = keys_store(&app).await;
    let r = app
        .api(Method::POST, &format!("/api/v1/stores/{store}/orders"))
        .json(&json!({"amount": 2500, "currency": "usd"}))
        .send()
        .await
        .unwrap();
    let open: Value = r.json().await.unwrap();
    let (status, code, message) = error_code(
        app.api(Method::DELETE, &format!("/api/v1/stores/{store}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (409, "store_has_live_objects"));
    assert!(message.contains(open["id"].as_str().unwrap()), "{message}");
    let r = app
        .api(
            Method::DELETE,
            &format!("/api/v1/stores/{store}?force=true"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", crate::support::log_errors());
    let pi = app
        .sim
        .payment_intent(open["payment_intent"].as_str().unwrap())
        .unwrap();
    assert_eq!(pi["status"], "canceled");
    assert_eq!(
        order(&app, open["id"].as_str().unwrap()).await["status"],
        "canceled"
    );
}

#[tokio::test]
async fn a_forced_deletion_finds_and_cancels_what_lost_answers_made() {
    let app = TestApp::spawn().await;
    let price = app.sim.add_price(2900, "usd", Some("month"), true);
    let (store, _) = keys_store(&app).await;
    // A subscription and a PaymentIntent Stripe made, whose answers were lost.
    app.sim.fail(
        Method::POST,
        "/v1/subscriptions",
        Fault::AfterCommit(500),
        50,
    );
    app.sim.fail(
        Method::POST,
        "/v1/payment_intents",
        Fault::AfterCommit(500),
        50,
    );
    assert_eq!(subscribe(&app, &store, &price).await.status(), 502);
    let r = app
        .api(Method::POST, &format!("/api/v1/stores/{store}/orders"))
        .json(&json!({"amount": 2500, "currency": "usd"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    app.sim.clear_faults();
    // Unanswered, they are live all the same.
    let (status, code, message) = error_code(
        app.api(Method::DELETE, &format!("/api/v1/stores/{store}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (409, "store_has_live_objects"));
    assert!(
        message.contains("subscription") && message.contains("ord_"),
        "{message}"
    );
    let r = app
        .api(
            Method::DELETE,
            &format!("/api/v1/stores/{store}?force=true"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", crate::support::log_errors());
    assert_eq!(app.sim.count("subscription"), 1);
    let keys: std::collections::HashSet<_> = app
        .sim
        .requests("/v1/payment_intents")
        .into_iter()
        .map(|r| r.idempotency_key)
        .collect();
    assert_eq!(keys.len(), 1, "a second PaymentIntent was asked for");
    let sub: String = sqlx::query_scalar("SELECT subscription_id FROM vendor_subscriptions")
        .fetch_one(app.services.db.pool())
        .await
        .unwrap();
    let (_, at_stripe) = app.sim.object(&sub).unwrap();
    assert_eq!(
        at_stripe["status"], "canceled",
        "the adopted subscription was not canceled"
    );
    let pi: String = sqlx::query_scalar("SELECT payment_intent_id FROM orders")
        .fetch_one(app.services.db.pool())
        .await
        .unwrap();
    assert_eq!(app.sim.payment_intent(&pi).unwrap()["status"], "canceled");
}

//! Orders end to end against the local Stripe, for both connection kinds: creation (one
//! PaymentIntent whatever fails), payment through signed webhooks, declines, refunds, disputes,
//! the re-check when a webhook never arrives, and the checks before Stripe is called.

use reqwest::Method;
use serde_json::{json, Value};

use crate::onboarding::oauth_store;
use crate::support::{error_code, store_path, Fault, SimAccount, TestApp};
use stripe_sim::Card;

/// A `keys` store whose account can take charges, with its own endpoint registered at Stripe.
pub async fn keys_store(app: &TestApp) -> (String, SimAccount) {
    let account = app.sim.add_independent_account(false);
    app.sim
        .update_account(&account.id, |a| a["charges_enabled"] = json!(true));
    let store = app.create_store("Keys shop").await;
    let secret = format!("whsec_{}", crate::support::random(24));
    let r = app
        .api(
            Method::PUT,
            &format!("/api/v1/stores/{store}/connection/keys"),
        )
        .json(&json!({
            "secret_key": account.restricted_key,
            "publishable_key": account.publishable_key,
            "webhook_secret": secret,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.sim.register_account_endpoint(
        &account.id,
        &format!("{}{}", app.url, store_path(&store)),
        &secret,
    );
    (store, account)
}

/// A `keys` store whose endpoint Stripe does not know: no webhook will ever reach Bursar.
pub async fn quiet_keys_store(app: &TestApp) -> (String, SimAccount) {
    let account = app.sim.add_independent_account(false);
    app.sim
        .update_account(&account.id, |a| a["charges_enabled"] = json!(true));
    let store = app.create_store("Quiet shop").await;
    let r = app
        .api(Method::PUT, &format!("/api/v1/stores/{store}/connection/keys"))
        .json(&json!({"secret_key": account.restricted_key, "publishable_key": account.publishable_key}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    (store, account)
}

/// A `connect` store (Standard OAuth), with the platform's Connect endpoint registered.
pub async fn connect_store(app: &TestApp) -> (String, SimAccount) {
    app.register_endpoints();
    oauth_store(app).await
}

/// An order of `store` made from `body` and paid at the local Stripe with a Visa card, its
/// webhook not yet applied (none comes to a quiet store): the order as the API created it.
pub async fn paid_order(app: &TestApp, store: &str, body: Value) -> Value {
    let r = create_order(app, store, body).await;
    assert_eq!(r.status(), 201);
    let order: Value = r.json().await.unwrap();
    app.sim
        .pay(order["payment_intent"].as_str().unwrap(), Card::Visa)
        .await;
    order
}

async fn create_order(app: &TestApp, store: &str, body: Value) -> reqwest::Response {
    app.api(Method::POST, &format!("/api/v1/stores/{store}/orders"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub async fn order(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/api/v1/orders/{id}")).await
}

async fn new_order(app: &TestApp, store: &str, body: Value) -> Value {
    let r = create_order(app, store, body).await;
    assert_eq!(r.status(), 201, "{}", crate::support::log_errors());
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_keys_store_order_is_paid_only_by_stripes_webhook() {
    let app = TestApp::spawn().await;
    let (store, account) = keys_store(&app).await;
    let o = new_order(
        &app,
        &store,
        json!({"amount": 1999, "currency": "usd", "description": "Mug"}),
    )
    .await;
    assert_eq!(o["status"], "pending");
    assert_eq!(o["publishable_key"], account.publishable_key.as_str());
    assert!(o["stripe_account"].is_null());
    let pi = o["payment_intent"].as_str().unwrap().to_owned();
    assert!(o["client_secret"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{pi}_secret_")));
    let created = app.sim.requests("/v1/payment_intents");
    assert_eq!(created.len(), 1);
    assert_eq!(
        created[0].idempotency_key.as_deref(),
        Some(format!("bursar:payment_intent:{}", o["id"].as_str().unwrap()).as_str())
    );
    assert!(created[0].stripe_account.is_none());

    app.sim.pay(&pi, Card::Visa).await;
    app.drain().await;
    let paid = order(&app, o["id"].as_str().unwrap()).await;
    assert_eq!(paid["status"], "paid", "{paid}");
    assert_eq!(paid["status_source"], "webhook");
}

#[tokio::test]
async fn a_connect_store_order_is_a_direct_charge_with_the_platform_fee() {
    let app = TestApp::spawn().await;
    let (store, account) = connect_store(&app).await;
    let o = new_order(
        &app,
        &store,
        json!({"amount": 5000, "currency": "eur", "application_fee_amount": 250, "metadata": {"cart": "42"}}),
    )
    .await;
    assert_eq!(o["stripe_account"], account.id.as_str());
    let created = &app.sim.requests("/v1/payment_intents")[0];
    assert_eq!(created.stripe_account.as_deref(), Some(account.id.as_str()));
    assert!(created.body.contains("application_fee_amount=250"));
    assert!(created.body.contains("metadata%5Bcart%5D=42"));
    let pi = o["payment_intent"].as_str().unwrap();
    app.sim.pay(pi, Card::Visa).await;
    app.drain().await;
    assert_eq!(
        order(&app, o["id"].as_str().unwrap()).await["status"],
        "paid"
    );
}

#[tokio::test]
async fn a_decline_then_a_success_ends_paid_and_keeps_the_decline() {
    let app = TestApp::spawn().await;
    let (store, _) = connect_store(&app).await;
    let o = new_order(&app, &store, json!({"amount": 1200, "currency": "usd"})).await;
    let (id, pi) = (
        o["id"].as_str().unwrap(),
        o["payment_intent"].as_str().unwrap(),
    );
    app.sim.pay(pi, Card::InsufficientFunds).await;
    app.drain().await;
    let failed = order(&app, id).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["failure"]["code"], "insufficient_funds");
    app.sim.pay(pi, Card::Visa).await;
    app.drain().await;
    assert_eq!(order(&app, id).await["status"], "paid");
}

#[tokio::test]
async fn refunds_partial_then_full_and_over_refunds_are_refused_before_stripe() {
    let app = TestApp::spawn().await;
    let (store, _) = keys_store(&app).await;
    let o = new_order(&app, &store, json!({"amount": 3000, "currency": "usd"})).await;
    let id = o["id"].as_str().unwrap();
    let refund = |body: Value| {
        app.api(Method::POST, &format!("/api/v1/orders/{id}/refunds"))
            .json(&body)
            .send()
    };
    // Not paid yet: nothing to refund.
    let (status, code, _) = error_code(refund(json!({})).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (409, "order_not_refundable"));
    app.sim
        .pay(o["payment_intent"].as_str().unwrap(), Card::Visa)
        .await;
    app.drain().await;

    let r = refund(json!({"amount": 1000, "reason": "requested_by_customer"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", crate::support::log_errors());
    app.drain().await;
    let now = order(&app, id).await;
    assert_eq!(now["status"], "partially_refunded", "{now}");
    assert_eq!(now["amount_refunded"], 1000);

    let (status, _, message) = error_code(refund(json!({"amount": 2001})).await.unwrap()).await;
    assert_eq!(status, 400, "{message}");
    assert_eq!(app.sim.requests("/v1/refunds").len(), 1);
    let (status, _, _) = error_code(refund(json!({"reason": "because"})).await.unwrap()).await;
    assert_eq!(status, 400);

    // The rest.
    let r = refund(json!({})).await.unwrap();
    assert_eq!(r.status(), 201, "{}", crate::support::log_errors());
    app.drain().await;
    let now = order(&app, id).await;
    assert_eq!(now["status"], "refunded");
    assert_eq!(now["amount_refunded"], 3000);
}

#[tokio::test]
async fn a_dispute_marks_the_order_and_its_outcome_is_recorded() {
    let app = TestApp::spawn().await;
    let (store, account) = connect_store(&app).await;
    let o = new_order(&app, &store, json!({"amount": 4000, "currency": "usd"})).await;
    let id = o["id"].as_str().unwrap();
    app.sim
        .pay(o["payment_intent"].as_str().unwrap(), Card::Visa)
        .await;
    app.drain().await;
    let charge = app
        .sim
        .payment_intent(o["payment_intent"].as_str().unwrap())
        .unwrap()["latest_charge"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, dispute) = app.sim.dispute(&account.id, &charge).await;
    app.drain().await;
    assert_eq!(order(&app, id).await["status"], "disputed");
    app.sim.close_dispute(&account.id, &dispute, true).await;
    app.drain().await;
    let closed = order(&app, id).await;
    assert_eq!(closed["status"], "disputed");
    assert_eq!(closed["dispute_status"], "won");
}

#[tokio::test]
async fn the_same_request_twice_makes_one_order_and_one_payment_intent() {
    let app = TestApp::spawn().await;
    let (store, _) = keys_store(&app).await;
    let send = || {
        app.api(Method::POST, &format!("/api/v1/stores/{store}/orders"))
            .header("Idempotency-Key", "order-7781")
            .json(&json!({"amount": 2500, "currency": "usd"}))
            .send()
    };
    let first: Value = send().await.unwrap().json().await.unwrap();
    let second = send().await.unwrap();
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);
    assert_eq!(app.sim.count("payment_intent"), 1);
}

#[tokio::test]
async fn stripe_failures_during_creation_are_retried_into_one_payment_intent() {
    let app = TestApp::spawn().await;
    let (store, _) = keys_store(&app).await;
    for (n, fault) in [
        Fault::Status(500),
        Fault::Status(429),
        Fault::AfterCommit(500),
        Fault::Drop,
    ]
    .into_iter()
    .enumerate()
    {
        app.sim
            .fail(Method::POST, "/v1/payment_intents", fault.clone(), 1);
        let o = new_order(
            &app,
            &store,
            json!({"amount": 1000 + n as i64, "currency": "usd"}),
        )
        .await;
        assert!(o["payment_intent"].is_string(), "{fault:?}: {o}");
        assert_eq!(
            app.sim.count("payment_intent"),
            n + 1,
            "{fault:?} made a second PaymentIntent"
        );
        let attempts: Vec<_> = app
            .sim
            .requests("/v1/payment_intents")
            .into_iter()
            .filter(|r| r.body.contains(&format!("amount={}", 1000 + n)))
            .collect();
        assert_eq!(attempts.len(), 2, "{fault:?}");
        assert_eq!(attempts[0].idempotency_key, attempts[1].idempotency_key);
    }
}

#[tokio::test]
async fn an_order_whose_webhook_never_arrives_is_settled_by_the_sweep() {
    let app = TestApp::spawn_with(&[
        ("BURSAR_AUTO_WEBHOOK_ENDPOINTS", "false"),
        ("BURSAR_ORDER_SWEEP_SECS", "1"),
        ("BURSAR_ORDER_PENDING_SECS", "1"),
    ])
    .await;
    // The store's endpoint is never registered at Stripe: no webhook will come.
    let account = app.sim.add_independent_account(false);
    app.sim
        .update_account(&account.id, |a| a["charges_enabled"] = json!(true));
    let store = app.create_store("Quiet shop").await;
    app.api(
        Method::PUT,
        &format!("/api/v1/stores/{store}/connection/keys"),
    )
    .json(
        &json!({"secret_key": account.restricted_key, "publishable_key": account.publishable_key}),
    )
    .send()
    .await
    .unwrap();
    let o = new_order(&app, &store, json!({"amount": 900, "currency": "usd"})).await;
    let id = o["id"].as_str().unwrap();
    app.sim
        .pay(o["payment_intent"].as_str().unwrap(), Card::Visa)
        .await;
    assert_eq!(order(&app, id).await["status"], "pending");
    for _ in 0..100 {
        if order(&app, id).await["status"] == "paid" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let settled = order(&app, id).await;
    assert_eq!(settled["status"], "paid", "{settled}");
    assert_eq!(settled["status_source"], "sync");
}

#[tokio::test]
async fn sync_on_demand_applies_stripes_answer() {
    let app = TestApp::spawn().await;
    let (store, _) = connect_store(&app).await;
    let o = new_order(&app, &store, json!({"amount": 700, "currency": "usd"})).await;
    let id = o["id"].as_str().unwrap();
    let r = app
        .api(Method::POST, &format!("/api/v1/orders/{id}/sync"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "pending");
    let r = app
        .api(Method::POST, "/api/v1/orders/ord_nosuch/sync")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn an_event_about_another_stores_payment_intent_changes_nothing() {
    let app = TestApp::spawn().await;
    let (store_a, _) = keys_store(&app).await;
    let (store_b, account_b) = keys_store(&app).await;
    let o = new_order(&app, &store_a, json!({"amount": 1500, "currency": "usd"})).await;
    // Store B's own endpoint, correctly signed, claims A's PaymentIntent succeeded.
    let mut e = crate::support::event("payment_intent.succeeded", None, false);
    e["data"]["object"]["id"] = o["payment_intent"].clone();
    e["data"]["object"]["status"] = json!("succeeded");
    let secret = "whsec_storebsecret0000";
    app.api(
        Method::PUT,
        &format!("/api/v1/stores/{store_b}/connection/webhook-secret"),
    )
    .json(&json!({"webhook_secret": secret}))
    .send()
    .await
    .unwrap();
    let r = app.deliver(&store_path(&store_b), &e, secret).await;
    assert_eq!(r.status(), 200);
    app.drain().await;
    assert_eq!(
        order(&app, o["id"].as_str().unwrap()).await["status"],
        "pending"
    );
    assert!(app
        .sim
        .payment_intent(o["payment_intent"].as_str().unwrap())
        .is_some());
    let _ = account_b;
}

#[tokio::test]
async fn orders_are_refused_before_stripe_when_input_or_store_is_wrong() {
    let app = TestApp::spawn().await;
    let unconnected = app.create_store("Nothing").await;
    let (status, code, _) = error_code(
        create_order(
            &app,
            &unconnected,
            json!({"amount": 1000, "currency": "usd"}),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (409, "store_not_connected"));

    // An account Stripe has not enabled for charges yet.
    let (disabled, _, _) = app.connected_store().await;
    let (status, code, _) =
        error_code(create_order(&app, &disabled, json!({"amount": 1000, "currency": "usd"})).await)
            .await;
    assert_eq!((status, code.as_str()), (409, "charges_disabled"));

    let (store, _) = keys_store(&app).await;
    for body in [
        json!({"amount": 0, "currency": "usd"}),
        json!({"amount": -100, "currency": "usd"}),
        json!({"amount": 10.5, "currency": "usd"}),
        json!({"amount": "100", "currency": "usd"}),
        json!({"amount": 49, "currency": "usd"}),
        json!({"amount": 100_000_000, "currency": "usd"}),
        json!({"amount": 1000, "currency": "usdx"}),
        json!({"amount": 1000}),
        json!({"amount": 1000, "currency": "usd", "application_fee_amount": 10}),
        json!({"amount": 1000, "currency": "usd", "customer_id": "not-a-customer"}),
        json!({"amount": 1000, "currency": "usd", "metadata": {"": "x"}}),
        json!({"amount": 1000, "currency": "usd", "extra": true}),
    ] {
        let r = create_order(&app, &store, body.clone()).await;
        assert_eq!(r.status(), 400, "{body}");
    }
    assert!(app.sim.requests("/v1/payment_intents").is_empty());
    // A zero-decimal currency takes whole units.
    assert_eq!(
        create_order(&app, &store, json!({"amount": 500, "currency": "JPY"}))
            .await
            .status(),
        201
    );

    let r = app
        .anon(Method::POST, &format!("/api/v1/stores/{store}/orders"))
        .json(&json!({"amount": 1000, "currency": "usd"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        app.api(Method::GET, "/api/v1/orders/ord_nosuch")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

async fn create_customer(app: &TestApp, store: &str, email: &str) -> Value {
    let r = app
        .api(Method::POST, &format!("/api/v1/stores/{store}/customers"))
        .json(&json!({"email": email, "name": "Ana Lima", "metadata": {"crm": "77"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", crate::support::log_errors());
    r.json().await.unwrap()
}

#[tokio::test]
async fn customers_live_in_their_stores_account_and_follow_its_events() {
    let app = TestApp::spawn().await;
    let (store, account) = keys_store(&app).await;
    let c = create_customer(&app, &store, "ana@shop.example").await;
    let cus = c["stripe_customer_id"].as_str().unwrap().to_owned();
    let made = app.sim.requests("/v1/customers");
    assert_eq!(made.len(), 1);
    assert_eq!(
        made[0].idempotency_key.as_deref(),
        Some(format!("bursar:customer:{}", c["id"].as_str().unwrap()).as_str())
    );
    assert_eq!(app.sim.object(&cus).unwrap().0, account.id);

    // An order for this customer (by Bursar's id or Stripe's) is made for that Stripe customer.
    for id in [c["id"].as_str().unwrap(), cus.as_str()] {
        let o = new_order(
            &app,
            &store,
            json!({"amount": 1000, "currency": "usd", "customer_id": id}),
        )
        .await;
        assert_eq!(o["customer_id"], cus.as_str());
    }
    assert!(app
        .sim
        .requests("/v1/payment_intents")
        .iter()
        .all(|r| r.body.contains(&format!("customer={cus}"))));

    // Changes made at Stripe (here through its API, as the merchant's Dashboard would) come back
    // as events to the store's endpoint; deleted is final.
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
    let now: Value = app
        .get_json(&format!("/api/v1/customers/{}", c["id"].as_str().unwrap()))
        .await;
    assert_eq!(now["email"], "ana.lima@shop.example", "{now}");
    let r = stripe
        .delete(format!("{}/v1/customers/{cus}", app.sim.url))
        .bearer_auth(&account.secret_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.drain().await;
    let now: Value = app
        .get_json(&format!("/api/v1/customers/{}", c["id"].as_str().unwrap()))
        .await;
    assert_eq!(now["deleted"], true);
    let (status, code, _) = error_code(
        create_order(
            &app,
            &store,
            json!({"amount": 1000, "currency": "usd", "customer_id": c["id"]}),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "customer_not_found"));

    // Bad input.
    for body in [
        json!({"email": "nope"}),
        json!({}),
        json!({"email": "a@b.example", "x": 1}),
    ] {
        let r = app
            .api(Method::POST, &format!("/api/v1/stores/{store}/customers"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
    }
}

#[tokio::test]
async fn another_stores_customer_is_refused() {
    let app = TestApp::spawn().await;
    let (store_a, _) = keys_store(&app).await;
    let (store_b, _) = keys_store(&app).await;
    let c = create_customer(&app, &store_a, "bo@shop.example").await;
    for id in [&c["id"], &c["stripe_customer_id"]] {
        let r = create_order(
            &app,
            &store_b,
            json!({"amount": 1000, "currency": "usd", "customer_id": id}),
        )
        .await;
        let (status, code, _) = error_code(r).await;
        assert_eq!((status, code.as_str()), (400, "customer_not_found"));
    }
    assert!(app.sim.requests("/v1/payment_intents").is_empty());
    let listed: Value = app
        .get_json(&format!("/api/v1/stores/{store_b}/orders"))
        .await;
    assert_eq!(listed["data"], json!([]));
}

#[tokio::test]
async fn late_and_duplicate_events_never_move_an_order_back() {
    let app = TestApp::spawn().await;
    let (store, _) = keys_store(&app).await;
    let o = new_order(&app, &store, json!({"amount": 2000, "currency": "usd"})).await;
    let id = o["id"].as_str().unwrap();
    let pi = o["payment_intent"].as_str().unwrap();
    app.sim.pay(pi, Card::Visa).await;
    app.drain().await;
    let r = app
        .api(Method::POST, &format!("/api/v1/orders/{id}/refunds"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", crate::support::log_errors());
    app.drain().await;
    assert_eq!(order(&app, id).await["status"], "refunded");
    // A late, older payment_failed (an earlier attempt) arrives now, twice.
    let mut failed = crate::support::event("payment_intent.payment_failed", None, false);
    failed["data"]["object"]["id"] = json!(pi);
    failed["created"] = json!(crate::support::now() - 3600);
    let endpoint = store_path(&store);
    let secret: String = {
        let s = bursar::domain::StoreId::parse(&store).unwrap();
        secrecy::ExposeSecret::expose_secret(
            &bursar::service::connections::webhook_secret(&app.services, &s)
                .await
                .unwrap()
                .unwrap(),
        )
        .to_owned()
    };
    for _ in 0..2 {
        assert_eq!(app.deliver(&endpoint, &failed, &secret).await.status(), 200);
    }
    app.drain().await;
    let now = order(&app, id).await;
    assert_eq!(now["status"], "refunded", "{now}");
    assert_eq!(now["amount_refunded"], 2000);
}

#[tokio::test]
async fn a_refund_retried_after_a_lost_answer_is_made_once() {
    let app = TestApp::spawn().await;
    let (store, _) = keys_store(&app).await;
    let o = new_order(&app, &store, json!({"amount": 3000, "currency": "usd"})).await;
    let id = o["id"].as_str().unwrap();
    app.sim
        .pay(o["payment_intent"].as_str().unwrap(), Card::Visa)
        .await;
    app.drain().await;
    let send = || {
        app.api(Method::POST, &format!("/api/v1/orders/{id}/refunds"))
            .header("Idempotency-Key", "refund-42")
            .json(&json!({"amount": 1200}))
            .send()
    };
    // Stripe makes the refund every time but its answers are lost, past Bursar's retries.
    app.sim
        .fail(Method::POST, "/v1/refunds", Fault::AfterCommit(500), 20);
    let r = send().await.unwrap();
    assert_eq!(r.status(), 502);
    app.sim.clear_faults();
    let r = send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", crate::support::log_errors());
    let refund: Value = r.json().await.unwrap();
    assert!(refund["stripe_refund_id"].is_string());
    assert_eq!(app.sim.count("refund"), 1, "a second refund was made");
    let keys: std::collections::HashSet<_> = app
        .sim
        .requests("/v1/refunds")
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.idempotency_key)
        .collect();
    assert_eq!(keys.len(), 1);
}

/// A mistyped field is named, with what it expects, in the API's error format.
#[tokio::test]
async fn a_mistyped_field_is_named_with_what_it_expects() {
    let app = TestApp::spawn().await;
    let (store, _) = keys_store(&app).await;
    let r = app
        .api(Method::POST, &format!("/api/v1/stores/{store}/orders"))
        .json(&json!({"amount": "forty-two", "currency": "usd"}))
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_code(r).await;
    assert_eq!((status, code.as_str()), (400, "invalid_request"));
    assert!(
        message.contains("`amount`") && message.contains("expected an integer"),
        "{message}"
    );
    assert!(!message.contains("line 1"), "{message}");
}

/// An order may name the shop's page to go back to: allow-listed, and offered on the hosted
/// page's result.
#[tokio::test]
async fn the_result_page_offers_the_way_back_the_order_names() {
    let app = TestApp::spawn().await;
    let (store, _) = keys_store(&app).await;
    let back = format!("{}/orders/1042", crate::support::RETURN_PREFIX);
    let r = create_order(
        &app,
        &store,
        json!({"amount": 1000, "currency": "usd", "return_url": "https://evil.example/x"}),
    )
    .await;
    let (status, code, _) = error_code(r).await;
    assert_eq!((status, code.as_str()), (400, "return_url_not_allowed"));
    let o = new_order(
        &app,
        &store,
        json!({"amount": 1000, "currency": "usd", "return_url": back}),
    )
    .await;
    assert_eq!(o["return_url"], back.as_str());
    app.sim
        .pay(o["payment_intent"].as_str().unwrap(), Card::Visa)
        .await;
    let result = format!("{}/result", o["checkout_url"].as_str().unwrap());
    let html = reqwest::get(&result).await.unwrap().text().await.unwrap();
    assert!(html.contains("Payment received"), "{html}");
    assert!(html.contains(&format!("href=\"{back}\"")), "{html}");
}

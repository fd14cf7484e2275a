//! Vendor billing against the local Stripe: the platform subscribes a store, Stripe's events
//! (trial end, failed payment, retries, cancellation, action required, payment) move the store's
//! vendor status, and nothing resurrects a cancelled subscription.

use reqwest::Method;
use serde_json::{json, Value};
use stripe_sim::CardBehavior;

use crate::support::{error_code, TestApp, PLATFORM_SECRET};

async fn subscribe(app: &TestApp, store: &str, body: Value) -> reqwest::Response {
    app.api(Method::PUT, &format!("/api/v1/stores/{store}/subscription"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn subscription(app: &TestApp, store: &str) -> Value {
    app.get_json(&format!("/api/v1/stores/{store}/subscription"))
        .await
}

/// A store subscribed to a monthly price.
async fn subscribed(app: &TestApp, trial_days: Option<i64>) -> (String, Value) {
    let price = app.sim.add_price(2900, "usd", Some("month"), true);
    let store = app.create_store("Vendor").await;
    let mut body = json!({ "price_id": price });
    if let Some(d) = trial_days {
        body["trial_days"] = json!(d);
    }
    let r = subscribe(app, &store, body).await;
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    app.drain().await;
    (store, view)
}

#[tokio::test]
async fn trial_failed_payments_and_stripe_giving_up_suspend_the_store() {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    app.sim.set_max_retries(2);
    let (store, view) = subscribed(&app, Some(14)).await;
    assert_eq!(view["vendor_status"], "trialing", "{view}");
    assert!(view["trial_end"].is_i64());
    let sub = view["subscription_id"].as_str().unwrap().to_owned();
    let customer = view["customer_id"].as_str().unwrap().to_owned();
    // The customer and subscription live on the platform account.
    assert!(app
        .sim
        .requests("/v1/subscriptions")
        .iter()
        .all(|r| r.stripe_account.is_none()));

    app.sim.set_customer_card(&customer, CardBehavior::Declines);
    app.sim.end_trial(&sub).await;
    app.drain().await;
    let now = subscription(&app, &store).await;
    assert_eq!(now["vendor_status"], "past_due", "{now}");
    assert!(now["last_payment_error"].is_string());

    app.sim.retry_invoice(&sub).await;
    app.sim.retry_invoice(&sub).await;
    app.drain().await;
    let now = subscription(&app, &store).await;
    assert_eq!(now["vendor_status"], "suspended", "{now}");
    assert_eq!(now["ended_reason"], "payment_failed");
}

#[tokio::test]
async fn action_required_surfaces_the_invoice_url_and_paying_restores_the_store() {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let (store, view) = subscribed(&app, None).await;
    assert_eq!(view["vendor_status"], "active", "{view}");
    let sub = view["subscription_id"].as_str().unwrap().to_owned();
    app.sim.set_customer_card(
        view["customer_id"].as_str().unwrap(),
        CardBehavior::RequiresAction,
    );
    app.sim.advance_period(&sub).await;
    app.drain().await;
    let now = subscription(&app, &store).await;
    assert_eq!(now["vendor_status"], "past_due", "{now}");
    let url = now["hosted_invoice_url"].as_str().unwrap();
    assert!(url.starts_with(&app.sim.url), "{url}");

    app.sim
        .pay_invoice(now["latest_invoice"].as_str().unwrap())
        .await;
    app.drain().await;
    let now = subscription(&app, &store).await;
    assert_eq!(now["vendor_status"], "active", "{now}");
    assert!(now["hosted_invoice_url"].is_null());
}

#[tokio::test]
async fn cancel_at_period_end_then_now() {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let (store, view) = subscribed(&app, None).await;
    let sub = view["subscription_id"].as_str().unwrap().to_owned();
    let r = app
        .api(
            Method::DELETE,
            &format!("/api/v1/stores/{store}/subscription"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let now: Value = r.json().await.unwrap();
    assert_eq!(now["cancel_at_period_end"], true);
    assert_eq!(now["vendor_status"], "active");
    app.sim.period_end(&sub).await;
    app.drain().await;
    let now = subscription(&app, &store).await;
    assert_eq!(now["vendor_status"], "canceled", "{now}");

    // Another store's subscription, cancelled now, ends at once; there is nothing left to cancel.
    let (other, _) = subscribed(&app, None).await;
    let r = app
        .api(
            Method::DELETE,
            &format!("/api/v1/stores/{other}/subscription?now=true"),
        )
        .send()
        .await
        .unwrap();
    let now: Value = r.json().await.unwrap();
    assert_eq!(now["vendor_status"], "canceled", "{now}");
    let (status, code, _) = error_code(
        app.api(
            Method::DELETE,
            &format!("/api/v1/stores/{other}/subscription?now=true"),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (409, "subscription_not_active"));
}

#[tokio::test]
async fn a_late_update_after_deletion_keeps_it_cancelled() {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let (store, view) = subscribed(&app, None).await;
    let sub = view["subscription_id"].as_str().unwrap().to_owned();
    let mut active: Value = reqwest::Client::new()
        .get(format!("{}/v1/subscriptions/{sub}", app.sim.url))
        .bearer_auth(&app.sim.platform_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
    // A stale `updated` (older snapshot, still active) arrives late, twice.
    active["status"] = json!("active");
    let mut late = crate::support::event("customer.subscription.updated", None, false);
    late["data"]["object"] = active;
    late["created"] = json!(crate::support::now() - 600);
    for _ in 0..2 {
        let r = app
            .deliver("/webhooks/stripe", &late, PLATFORM_SECRET)
            .await;
        assert_eq!(r.status(), 200);
    }
    app.drain().await;
    assert_eq!(
        subscription(&app, &store).await["vendor_status"],
        "canceled"
    );
}

#[tokio::test]
async fn deleting_the_platform_customer_ends_the_subscription() {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let (store, view) = subscribed(&app, None).await;
    let customer = view["customer_id"].as_str().unwrap();
    let r = reqwest::Client::new()
        .delete(format!("{}/v1/customers/{customer}", app.sim.url))
        .bearer_auth(&app.sim.platform_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.drain().await;
    let now = subscription(&app, &store).await;
    assert_eq!(now["vendor_status"], "canceled", "{now}");
}

#[tokio::test]
async fn suspended_stores_may_be_refused_new_orders() {
    let app = TestApp::spawn_with(&[("BURSAR_SUSPENDED_STORES_CAN_SELL", "false")]).await;
    app.register_endpoints();
    app.sim.set_max_retries(1);
    let (store, view) = subscribed(&app, None).await;
    // The store also sells, with its own keys.
    let account = app.sim.add_independent_account(false);
    app.sim
        .update_account(&account.id, |a| a["charges_enabled"] = json!(true));
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
    let sub = view["subscription_id"].as_str().unwrap().to_owned();
    app.sim.set_customer_card(
        view["customer_id"].as_str().unwrap(),
        CardBehavior::Declines,
    );
    app.sim.advance_period(&sub).await;
    app.sim.retry_invoice(&sub).await;
    app.drain().await;
    assert_eq!(
        subscription(&app, &store).await["vendor_status"],
        "suspended"
    );
    let r = app
        .api(Method::POST, &format!("/api/v1/stores/{store}/orders"))
        .json(&json!({"amount": 1000, "currency": "usd"}))
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (409, "store_suspended"),
        "{message}"
    );
}

#[tokio::test]
async fn subscription_input_is_checked() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Vendor").await;
    let one_time = app.sim.add_price(5000, "usd", None, true);
    let inactive = app.sim.add_price(5000, "usd", Some("month"), false);
    for (price, code) in [
        (one_time.as_str(), "price_not_usable"),
        (inactive.as_str(), "price_not_usable"),
        ("price_1; DROP TABLE", "invalid_request"),
        ("", "invalid_request"),
    ] {
        let (status, got, _) =
            error_code(subscribe(&app, &store, json!({"price_id": price})).await).await;
        assert_eq!((status, got.as_str()), (400, code), "{price}");
    }
    for missing in ["price_missing0001", "gold-monthly"] {
        let (status, _, message) =
            error_code(subscribe(&app, &store, json!({"price_id": missing})).await).await;
        assert_eq!(status, 422, "{missing}: {message}");
    }
    assert!(app.sim.requests("/v1/subscriptions").is_empty());
    let ok = app.sim.add_price(5000, "usd", Some("month"), true);
    assert_eq!(
        subscribe(&app, "st_nosuchstore", json!({"price_id": ok}))
            .await
            .status(),
        404
    );
    let r = app
        .anon(Method::PUT, &format!("/api/v1/stores/{store}/subscription"))
        .json(&json!({"price_id": ok}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        app.api(Method::GET, &format!("/api/v1/stores/{store}/subscription"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn billing_events_count_only_from_the_platform_endpoint() {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let (victim, view) = subscribed(&app, None).await;
    // A merchant signs, with its own store's secret, a deletion of another store's subscription.
    let (merchant, _, secret) = app.connected_store().await;
    let mut forged = crate::support::event("customer.subscription.deleted", None, false);
    forged["data"]["object"]["id"] = view["subscription_id"].clone();
    forged["data"]["object"]["status"] = json!("canceled");
    forged["data"]["object"]["cancellation_details"] = json!({"reason": "payment_failed"});
    let r = app
        .deliver(&crate::support::store_path(&merchant), &forged, &secret)
        .await;
    assert_eq!(r.status(), 200);
    app.drain().await;
    assert_eq!(subscription(&app, &victim).await["vendor_status"], "active");
}

#[tokio::test]
async fn a_lost_answer_never_makes_a_second_subscription() {
    let app = TestApp::spawn().await;
    let monthly = app.sim.add_price(2900, "usd", Some("month"), true);
    let yearly = app.sim.add_price(29000, "usd", Some("year"), true);
    let store = app.create_store("Vendor").await;
    // Stripe makes the subscription every time, but its answers are lost past Bursar's retries.
    app.sim.fail(
        Method::POST,
        "/v1/subscriptions",
        stripe_sim::Fault::AfterCommit(500),
        20,
    );
    let r = subscribe(&app, &store, json!({ "price_id": monthly })).await;
    assert_eq!(r.status(), 502);
    app.sim.clear_faults();
    // Another price while the first creation is unconfirmed: Bursar finds what Stripe made,
    // adopts it and moves it to the new price, instead of making a second one.
    let r = subscribe(&app, &store, json!({ "price_id": yearly })).await;
    assert_eq!(r.status(), 200, "{}", crate::support::log_errors());
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["price_id"], yearly.as_str());
    assert_eq!(view["vendor_status"], "active", "{view}");
    assert_eq!(app.sim.count("subscription"), 1, "a second subscription");
    assert_eq!(app.sim.count("customer"), 1, "a second customer");
    let looked_up = app.sim.requests("/v1/subscriptions");
    assert!(
        looked_up.iter().any(|r| r.method == "GET"),
        "Stripe was not asked before creating again"
    );
}

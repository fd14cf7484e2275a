//! Stripe Checkout sessions: an order paid on Stripe's hosted page, settled by
//! `checkout.session.*` events, refundable afterwards; expired sessions close the order.

use reqwest::Method;
use serde_json::{json, Value};

use crate::orders::{connect_store, keys_store, order, quiet_keys_store};
use crate::support::{error_code, TestApp};

fn session_body() -> Value {
    json!({
        "line_items": [
            {"price_data": {"currency": "usd", "unit_amount": 1500, "product_data": {"name": "T-shirt"}}, "quantity": 2},
            {"price_data": {"currency": "usd", "unit_amount": 500, "product_data": {"name": "Socks"}}, "quantity": 1}
        ],
        "success_url": "https://platform.example/vendors/thanks?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://platform.example/vendors/cart",
    })
}

async fn create_session(app: &TestApp, store: &str, body: Value) -> reqwest::Response {
    app.api(
        Method::POST,
        &format!("/api/v1/stores/{store}/checkout-sessions"),
    )
    .json(&body)
    .send()
    .await
    .unwrap()
}

#[tokio::test]
async fn a_checkout_session_order_is_paid_by_its_completion_and_can_be_refunded() {
    let app = TestApp::spawn().await;
    let (store, account) = connect_store(&app).await;
    let mut body = session_body();
    body["application_fee_amount"] = json!(300);
    let r = create_session(&app, &store, body).await;
    assert_eq!(r.status(), 201, "{}", crate::support::log_errors());
    let session: Value = r.json().await.unwrap();
    assert!(session["url"].as_str().unwrap().starts_with(&app.sim.url));
    assert_eq!(session["amount_total"], 3500);
    let sent = &app.sim.requests("/v1/checkout/sessions")[0];
    assert_eq!(sent.stripe_account.as_deref(), Some(account.id.as_str()));
    assert!(sent.body.contains("mode=payment"));
    assert!(sent
        .body
        .contains("payment_intent_data%5Bapplication_fee_amount%5D=300"));
    let id = session["order_id"].as_str().unwrap();
    assert_eq!(order(&app, id).await["status"], "pending");

    app.sim
        .complete_checkout(&account.id, session["id"].as_str().unwrap(), true)
        .await;
    app.drain().await;
    let paid = order(&app, id).await;
    assert_eq!(paid["status"], "paid", "{paid}");
    assert!(paid["payment_intent"].as_str().unwrap().starts_with("pi_"));

    let r = app
        .api(Method::POST, &format!("/api/v1/orders/{id}/refunds"))
        .json(&json!({"amount": 500}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", crate::support::log_errors());
    app.drain().await;
    assert_eq!(order(&app, id).await["status"], "partially_refunded");
}

#[tokio::test]
async fn an_expired_session_closes_its_order() {
    let app = TestApp::spawn().await;
    let (store, account) = keys_store(&app).await;
    let session: Value = create_session(&app, &store, session_body())
        .await
        .json()
        .await
        .unwrap();
    let id = session["order_id"].as_str().unwrap();
    app.sim
        .expire_checkout(&account.id, session["id"].as_str().unwrap())
        .await;
    app.drain().await;
    assert_eq!(order(&app, id).await["status"], "canceled");
}

#[tokio::test]
async fn a_paid_session_whose_event_never_came_is_found_by_the_re_check() {
    let app = TestApp::spawn_with(&[("BURSAR_AUTO_WEBHOOK_ENDPOINTS", "false")]).await;
    let (store, account) = quiet_keys_store(&app).await;
    let session: Value = create_session(&app, &store, session_body())
        .await
        .json()
        .await
        .unwrap();
    let id = session["order_id"].as_str().unwrap();
    app.sim
        .complete_checkout(&account.id, session["id"].as_str().unwrap(), true)
        .await;
    app.drain().await;
    assert_eq!(order(&app, id).await["status"], "pending");
    let r = app
        .api(Method::POST, &format!("/api/v1/orders/{id}/sync"))
        .send()
        .await
        .unwrap();
    let synced: Value = r.json().await.unwrap();
    assert_eq!(synced["status"], "paid", "{synced}");
    assert_eq!(synced["status_source"], "sync");
    assert!(synced["payment_intent"].as_str().is_some());
}

#[tokio::test]
async fn checkout_session_input_is_checked_before_stripe() {
    let app = TestApp::spawn().await;
    let (store, _) = keys_store(&app).await;
    let mut mixed = session_body();
    mixed["line_items"][1]["price_data"]["currency"] = json!("eur");
    let mut no_items = session_body();
    no_items["line_items"] = json!([]);
    let mut bad_url = session_body();
    bad_url["success_url"] = json!("/relative");
    let mut zero = session_body();
    zero["line_items"][0]["quantity"] = json!(0);
    let mut subscription = session_body();
    subscription["mode"] = json!("subscription");
    let mut fee_on_keys = session_body();
    fee_on_keys["application_fee_amount"] = json!(100);
    for body in [mixed, no_items, bad_url, zero, subscription, fee_on_keys] {
        let (status, _, message) =
            error_code(create_session(&app, &store, body.clone()).await).await;
        assert_eq!(status, 400, "{body}: {message}");
    }
    assert!(app.sim.requests("/v1/checkout/sessions").is_empty());
    let unconnected = app.create_store("Nothing").await;
    let (status, code, _) =
        error_code(create_session(&app, &unconnected, session_body()).await).await;
    assert_eq!((status, code.as_str()), (409, "store_not_connected"));
}

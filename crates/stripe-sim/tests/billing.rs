//! Billing on the platform account: prices, subscriptions, invoices, and the test-clock
//! helpers driving trials, renewals, declines, retries and cancellations.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use reqwest::{Method, RequestBuilder};
use serde_json::Value;
use sha2::Sha256;
use stripe_sim::{CardBehavior, StripeSim, PLATFORM_ACCOUNT};

const SECRET: &str = "whsec_platform";

fn call(sim: &StripeSim, method: Method, path: &str) -> RequestBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .request(method, format!("{}{path}", sim.url))
        .bearer_auth(&sim.platform_key)
}

async fn send(r: RequestBuilder) -> (u16, Value) {
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// A platform webhook endpoint keeping what it received.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<(HeaderMap, Bytes)>>>);

impl Receiver {
    async fn start(sim: &StripeSim) -> Self {
        let receiver = Self::default();
        let kept = receiver.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| async move {
                kept.0.lock().unwrap().push((headers, body));
                "ok"
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        sim.register_endpoint(&url, SECRET, false);
        receiver
    }

    fn types(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| {
                let e: Value = serde_json::from_slice(b).unwrap();
                e["type"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    /// Event `id`, after checking its signature.
    fn verified(&self, id: &str) -> Value {
        let kept = self.0.lock().unwrap();
        let (headers, body) = kept
            .iter()
            .find(|(_, b)| serde_json::from_slice::<Value>(b).unwrap()["id"] == id)
            .unwrap_or_else(|| panic!("{id} was not delivered here"));
        let signature = headers["stripe-signature"].to_str().unwrap();
        let (t, v1) = signature.split_once(",v1=").unwrap();
        let t = t.strip_prefix("t=").unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        mac.verify_slice(&hex::decode(v1).unwrap())
            .expect("the signature matches");
        let event: Value = serde_json::from_slice(body).unwrap();
        assert!(event.get("account").is_none(), "a platform event");
        event
    }

    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

async fn customer(sim: &StripeSim) -> String {
    let (status, c) = send(call(sim, Method::POST, "/v1/customers").form(&[
        ("email", "vendor@example.com"),
        ("name", "Vendor"),
        ("metadata[bursar_store_id]", "store_1"),
    ]))
    .await;
    assert_eq!(status, 200, "{c}");
    c["id"].as_str().unwrap().to_owned()
}

async fn subscribe(sim: &StripeSim, customer: &str, price: &str, extra: &[(&str, &str)]) -> Value {
    let mut form = vec![
        ("customer", customer),
        ("items[0][price]", price),
        ("payment_behavior", "default_incomplete"),
        ("metadata[bursar_store_id]", "store_1"),
    ];
    form.extend_from_slice(extra);
    let (status, s) = send(call(sim, Method::POST, "/v1/subscriptions").form(&form)).await;
    assert_eq!(status, 200, "{s}");
    s
}

fn types(sim: &StripeSim, ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|id| sim.event(id).unwrap()["type"].as_str().unwrap().to_owned())
        .collect()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn prices_are_served_and_checked_on_subscribe() {
    let sim = StripeSim::start().await;
    let monthly = sim.add_price(2000, "usd", Some("month"), true);
    let once = sim.add_price(500, "usd", None, true);
    let archived = sim.add_price(2000, "usd", Some("month"), false);
    let (status, p) = send(call(&sim, Method::GET, &format!("/v1/prices/{monthly}"))).await;
    assert_eq!(status, 200);
    assert_eq!(p["object"], "price");
    assert_eq!(p["type"], "recurring");
    assert_eq!(p["unit_amount"], 2000);
    assert_eq!(p["recurring"]["interval"], "month");
    assert_eq!(p["recurring"]["interval_count"], 1);
    assert!(p["product"].as_str().unwrap().starts_with("prod_"));
    let (_, p) = send(call(&sim, Method::GET, &format!("/v1/prices/{once}"))).await;
    assert_eq!(p["type"], "one_time");
    assert!(p["recurring"].is_null());
    let (status, _) = send(call(&sim, Method::GET, "/v1/prices/price_nope")).await;
    assert_eq!(status, 404);
    // Another account does not see the platform's prices.
    let store = sim.add_account(false);
    let (status, _) = send(
        call(&sim, Method::GET, &format!("/v1/prices/{monthly}"))
            .header("Stripe-Account", &store.id),
    )
    .await;
    assert_eq!(status, 404);

    let cus = customer(&sim).await;
    for (price, message) in [
        (&once, "type=recurring"),
        (&archived, "inactive"),
        (&"price_nope".to_owned(), "No such price"),
    ] {
        let (status, e) = send(call(&sim, Method::POST, "/v1/subscriptions").form(&[
            ("customer", cus.as_str()),
            ("items[0][price]", price.as_str()),
        ]))
        .await;
        assert_eq!(status, 400, "{e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(message),
            "{e}"
        );
        assert_eq!(e["error"]["param"], "items[0][price]");
    }
    assert_eq!(sim.count("subscription"), 0);
}

#[tokio::test]
async fn a_subscription_without_trial_is_paid_at_once_and_expands_its_invoice() {
    let sim = StripeSim::start().await;
    let hook = Receiver::start(&sim).await;
    let price = sim.add_price(2900, "usd", Some("month"), true);
    let cus = customer(&sim).await;
    hook.clear();
    let s = subscribe(&sim, &cus, &price, &[("expand[]", "latest_invoice")]).await;
    assert_eq!(s["status"], "active");
    assert!(s["id"].as_str().unwrap().starts_with("sub_"));
    assert_eq!(s["cancel_at_period_end"], false);
    assert!(s["canceled_at"].is_null());
    assert!(s["cancellation_details"]["reason"].is_null());
    assert!(s["trial_end"].is_null());
    assert_eq!(s["metadata"]["bursar_store_id"], "store_1");
    let item = &s["items"]["data"][0];
    assert!(item["id"].as_str().unwrap().starts_with("si_"));
    assert_eq!(item["price"]["id"], price.as_str());
    assert_eq!(item["current_period_end"], s["current_period_end"]);
    assert!(s["current_period_end"].as_i64() > s["current_period_start"].as_i64());
    let inv = &s["latest_invoice"];
    assert_eq!(inv["object"], "invoice");
    assert_eq!(inv["status"], "paid");
    assert_eq!(inv["amount_due"], 2900);
    assert_eq!(inv["billing_reason"], "subscription_create");
    assert_eq!(inv["subscription"], s["id"]);
    assert_eq!(
        inv["hosted_invoice_url"],
        format!("{}/invoice/{}", sim.url, id(inv)).as_str()
    );
    assert_eq!(
        hook.types(),
        ["customer.subscription.created", "invoice.paid"]
    );

    let (status, got) = send(call(
        &sim,
        Method::GET,
        &format!("/v1/subscriptions/{}", id(&s)),
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(got["latest_invoice"], id(inv).as_str());
    let (status, got) = send(call(
        &sim,
        Method::GET,
        &format!("/v1/invoices/{}", id(inv)),
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(got["customer"], cus.as_str());
    assert_eq!(sim.object(&id(&s)).unwrap().0, PLATFORM_ACCOUNT);
}

#[tokio::test]
async fn a_declined_trial_end_is_past_due_then_retries_cancel_it() {
    let sim = StripeSim::start().await;
    let hook = Receiver::start(&sim).await;
    let price = sim.add_price(2000, "usd", Some("month"), true);
    let cus = customer(&sim).await;
    hook.clear();
    let s = subscribe(&sim, &cus, &price, &[("trial_period_days", "14")]).await;
    let sub = id(&s);
    assert_eq!(s["status"], "trialing");
    assert_eq!(s["trial_end"], s["current_period_end"]);
    assert_eq!(hook.types(), ["customer.subscription.created"]);

    sim.set_customer_card(&cus, CardBehavior::Declines);
    let ids = sim.end_trial(&sub).await;
    assert_eq!(
        types(&sim, &ids),
        ["invoice.payment_failed", "customer.subscription.updated"]
    );
    let failed = hook.verified(&ids[0]);
    let inv = &failed["data"]["object"];
    assert_eq!(inv["status"], "open");
    assert_eq!(inv["attempt_count"], 1);
    assert!(inv["next_payment_attempt"].is_i64());
    assert_eq!(inv["billing_reason"], "subscription_cycle");
    assert_eq!(inv["subscription"], sub.as_str());
    let updated = hook.verified(&ids[1]);
    assert_eq!(updated["data"]["object"]["status"], "past_due");
    assert_eq!(updated["data"]["previous_attributes"]["status"], "trialing");
    let pi = sim
        .payment_intent(inv["payment_intent"].as_str().unwrap())
        .unwrap();
    assert_eq!(pi["status"], "requires_payment_method");

    sim.set_max_retries(2);
    let ids = sim.retry_invoice(&sub).await;
    assert_eq!(types(&sim, &ids), ["invoice.payment_failed"]);
    assert_eq!(
        sim.event(&ids[0]).unwrap()["data"]["object"]["attempt_count"],
        2
    );
    let ids = sim.retry_invoice(&sub).await;
    assert_eq!(
        types(&sim, &ids),
        ["invoice.payment_failed", "customer.subscription.deleted"]
    );
    let last = hook.verified(&ids[0]);
    assert_eq!(last["data"]["object"]["attempt_count"], 3);
    assert!(last["data"]["object"]["next_payment_attempt"].is_null());
    let deleted = hook.verified(&ids[1])["data"]["object"].clone();
    assert_eq!(deleted["status"], "canceled");
    assert_eq!(deleted["cancellation_details"]["reason"], "payment_failed");
    assert!(deleted["ended_at"].is_i64());
    let (_, got) = send(call(&sim, Method::GET, &format!("/v1/subscriptions/{sub}"))).await;
    assert_eq!(got["status"], "canceled");
}

#[tokio::test]
async fn action_required_is_paid_on_the_hosted_invoice_page() {
    let sim = StripeSim::start().await;
    let hook = Receiver::start(&sim).await;
    let price = sim.add_price(2000, "usd", Some("month"), true);
    let cus = customer(&sim).await;
    let sub = id(&subscribe(&sim, &cus, &price, &[("trial_period_days", "7")]).await);
    sim.set_customer_card(&cus, CardBehavior::RequiresAction);
    let ids = sim.end_trial(&sub).await;
    assert_eq!(
        types(&sim, &ids),
        [
            "invoice.payment_action_required",
            "customer.subscription.updated"
        ]
    );
    let inv = hook.verified(&ids[0])["data"]["object"].clone();
    let url = inv["hosted_invoice_url"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("{}/invoice/{}", sim.url, id(&inv)));
    let pi = sim
        .payment_intent(inv["payment_intent"].as_str().unwrap())
        .unwrap();
    assert_eq!(pi["status"], "requires_action");
    assert_eq!(sim.object(&sub).unwrap().1["status"], "past_due");

    // The vendor opens the hosted page and pays.
    let html = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(html.contains("id=\"pay\""), "{html}");
    assert!(html.contains(&format!("action=\"/invoice/{}/pay\"", id(&inv))));
    hook.clear();
    let r = reqwest::Client::new()
        .post(format!("{url}/pay"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("id=\"paid\""));
    assert_eq!(
        hook.types(),
        ["invoice.paid", "customer.subscription.updated"]
    );
    let (_, got) = send(call(
        &sim,
        Method::GET,
        &format!("/v1/invoices/{}", id(&inv)),
    ))
    .await;
    assert_eq!(got["status"], "paid");
    assert_eq!(sim.object(&sub).unwrap().1["status"], "active");
}

#[tokio::test]
async fn pay_invoice_and_renewals() {
    let sim = StripeSim::start().await;
    let _hook = Receiver::start(&sim).await;
    let price = sim.add_price(2000, "usd", Some("month"), true);
    let cus = customer(&sim).await;
    let s = subscribe(&sim, &cus, &price, &[]).await;
    let sub = id(&s);
    let first_end = s["current_period_end"].as_i64().unwrap();

    let ids = sim.advance_period(&sub).await;
    assert_eq!(
        types(&sim, &ids),
        ["invoice.paid", "customer.subscription.updated"]
    );
    let updated = sim.event(&ids[1]).unwrap();
    assert_eq!(updated["data"]["object"]["current_period_start"], first_end);
    assert_eq!(
        updated["data"]["previous_attributes"]["current_period_end"],
        first_end
    );

    sim.set_customer_card(&cus, CardBehavior::Declines);
    let ids = sim.advance_period(&sub).await;
    assert_eq!(
        types(&sim, &ids),
        ["invoice.payment_failed", "customer.subscription.updated"]
    );
    let inv = id(&sim.event(&ids[0]).unwrap()["data"]["object"]);
    let ids = sim.pay_invoice(&inv).await;
    assert_eq!(
        types(&sim, &ids),
        ["invoice.paid", "customer.subscription.updated"]
    );
    let s = sim.event(&ids[1]).unwrap()["data"].clone();
    assert_eq!(s["object"]["status"], "active");
    assert_eq!(s["previous_attributes"]["status"], "past_due");

    // A price change is announced with what it was.
    let yearly = sim.add_price(20000, "usd", Some("year"), true);
    let item = s["object"]["items"]["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, changed) = send(
        call(&sim, Method::POST, &format!("/v1/subscriptions/{sub}")).form(&[
            ("items[0][id]", item.as_str()),
            ("items[0][price]", yearly.as_str()),
            ("proration_behavior", "none"),
        ]),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["items"]["data"][0]["price"]["id"], yearly.as_str());
    let last = sim.deliveries().last().unwrap().event_id.clone();
    let e = sim.event(&last).unwrap();
    assert_eq!(e["type"], "customer.subscription.updated");
    assert_eq!(
        e["data"]["previous_attributes"]["items"]["data"][0]["price"]["id"],
        price.as_str()
    );
}

#[tokio::test]
async fn cancel_at_period_end_then_period_end_and_cancel_now() {
    let sim = StripeSim::start().await;
    let hook = Receiver::start(&sim).await;
    let price = sim.add_price(2000, "usd", Some("month"), true);
    let cus = customer(&sim).await;
    let sub = id(&subscribe(&sim, &cus, &price, &[]).await);
    hook.clear();
    let (status, s) = send(
        call(&sim, Method::POST, &format!("/v1/subscriptions/{sub}"))
            .form(&[("cancel_at_period_end", "true")]),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["cancel_at_period_end"], true);
    assert_eq!(s["status"], "active");
    assert_eq!(hook.types(), ["customer.subscription.updated"]);
    let ids = sim.period_end(&sub).await;
    assert_eq!(types(&sim, &ids), ["customer.subscription.deleted"]);
    let s = hook.verified(&ids[0])["data"]["object"].clone();
    assert_eq!(s["status"], "canceled");
    assert_eq!(
        s["cancellation_details"]["reason"],
        "cancellation_requested"
    );
    assert_eq!(s["ended_at"], s["current_period_end"]);

    // Canceled now, then a customer deleted with a live subscription.
    let other = id(&subscribe(&sim, &cus, &price, &[]).await);
    hook.clear();
    let (status, s) = send(
        call(&sim, Method::DELETE, &format!("/v1/subscriptions/{other}"))
            .form(&[("invoice_now", "false"), ("prorate", "false")]),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["status"], "canceled");
    assert_eq!(
        s["cancellation_details"]["reason"],
        "cancellation_requested"
    );
    assert_eq!(hook.types(), ["customer.subscription.deleted"]);
    let (status, _) = send(call(
        &sim,
        Method::DELETE,
        &format!("/v1/subscriptions/{other}"),
    ))
    .await;
    assert_eq!(status, 404);

    let third = id(&subscribe(&sim, &cus, &price, &[("trial_period_days", "30")]).await);
    hook.clear();
    let (status, _) = send(call(&sim, Method::DELETE, &format!("/v1/customers/{cus}"))).await;
    assert_eq!(status, 200);
    assert_eq!(
        hook.types(),
        ["customer.subscription.deleted", "customer.deleted"]
    );
    assert_eq!(sim.object(&third).unwrap().1["status"], "canceled");
}

#[tokio::test]
async fn delete_customer_helper_cancels_subscriptions_first() {
    let sim = StripeSim::start().await;
    let _hook = Receiver::start(&sim).await;
    let price = sim.add_price(2000, "usd", Some("month"), true);
    let cus = customer(&sim).await;
    let sub = id(&subscribe(&sim, &cus, &price, &[]).await);
    let ids = sim.delete_customer(&cus).await;
    assert_eq!(
        types(&sim, &ids),
        ["customer.subscription.deleted", "customer.deleted"]
    );
    assert_eq!(sim.object(&sub).unwrap().1["status"], "canceled");
}

#[tokio::test]
async fn a_decline_on_create_is_incomplete_or_refused() {
    let sim = StripeSim::start().await;
    let hook = Receiver::start(&sim).await;
    let price = sim.add_price(2000, "usd", Some("month"), true);
    let cus = customer(&sim).await;
    sim.set_customer_card(&cus, CardBehavior::Declines);
    let (status, e) = send(call(&sim, Method::POST, "/v1/subscriptions").form(&[
        ("customer", cus.as_str()),
        ("items[0][price]", price.as_str()),
        ("payment_behavior", "error_if_incomplete"),
    ]))
    .await;
    assert_eq!(status, 402, "{e}");
    assert_eq!(e["error"]["type"], "card_error");
    assert_eq!(sim.count("subscription"), 0);
    hook.clear();
    let s = subscribe(&sim, &cus, &price, &[]).await;
    assert_eq!(s["status"], "incomplete");
    assert_eq!(
        hook.types(),
        ["customer.subscription.created", "invoice.payment_failed"]
    );
    sim.set_customer_card(&cus, CardBehavior::Succeeds);
    let ids = sim.retry_invoice(&id(&s)).await;
    assert_eq!(
        types(&sim, &ids),
        ["invoice.paid", "customer.subscription.updated"]
    );
    assert_eq!(sim.object(&id(&s)).unwrap().1["status"], "active");
}

#[tokio::test]
async fn an_idempotent_create_makes_one_subscription() {
    let sim = StripeSim::start().await;
    let hook = Receiver::start(&sim).await;
    let price = sim.add_price(2000, "usd", Some("month"), true);
    let cus = customer(&sim).await;
    hook.clear();
    let form = [
        ("customer", cus.as_str()),
        ("items[0][price]", price.as_str()),
        ("trial_period_days", "14"),
    ];
    let create = || {
        call(&sim, Method::POST, "/v1/subscriptions")
            .header("Idempotency-Key", "store_1-subscribe")
            .form(&form)
    };
    let first = create().send().await.unwrap();
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    let again = create().send().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(first["id"], again["id"]);
    assert_eq!(sim.count("subscription"), 1);
    assert_eq!(hook.types(), ["customer.subscription.created"]);
}

//! Payments against a real HTTP client: PaymentIntents and test cards, account scoping,
//! refunds, disputes, customers, Checkout Sessions, and faults around creation.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};
use sha2::Sha256;
use stripe_sim::{Card, Fault, SimAccount, StripeSim, PLATFORM_ACCOUNT};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A request with `key`, acting on `account` when given.
fn call(
    sim: &StripeSim,
    key: &str,
    account: Option<&str>,
    method: Method,
    path: &str,
) -> RequestBuilder {
    let mut r = client()
        .request(method, format!("{}{path}", sim.url))
        .bearer_auth(key);
    if let Some(a) = account {
        r = r.header("Stripe-Account", a);
    }
    r
}

async fn json(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn send(r: RequestBuilder) -> (u16, Value) {
    json(r.send().await.unwrap()).await
}

/// A webhook endpoint that answers 200 and keeps what it received.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<(HeaderMap, Bytes)>>>);

impl Receiver {
    async fn start() -> (Self, String) {
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
        (receiver, url)
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

    /// Event `id`, after checking its signature with `secret`.
    fn verified(&self, id: &str, secret: &str) -> Value {
        let kept = self.0.lock().unwrap();
        let (headers, body) = kept
            .iter()
            .find(|(_, b)| serde_json::from_slice::<Value>(b).unwrap()["id"] == id)
            .unwrap_or_else(|| panic!("{id} was not delivered here"));
        let signature = headers["stripe-signature"].to_str().unwrap();
        let (t, v1) = signature.split_once(",v1=").unwrap();
        let t = t.strip_prefix("t=").unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        mac.verify_slice(&hex::decode(v1).unwrap())
            .expect("the signature matches");
        serde_json::from_slice(body).unwrap()
    }
}

async fn create_pi(
    sim: &StripeSim,
    key: &str,
    account: Option<&str>,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let mut form = vec![("amount", "2000"), ("currency", "usd")];
    form.extend_from_slice(extra);
    send(call(sim, key, account, Method::POST, "/v1/payment_intents").form(&form)).await
}

/// A store paying with its own key: an account not connected to the platform, with its own
/// endpoint.
async fn keys_store(sim: &StripeSim) -> (SimAccount, Receiver) {
    let store = sim.add_independent_account(false);
    let (receiver, hook) = Receiver::start().await;
    sim.register_account_endpoint(&store.id, &hook, "whsec_store");
    (store, receiver)
}

#[tokio::test]
async fn a_direct_charge_declines_then_succeeds_and_is_announced() {
    let sim = StripeSim::start().await;
    let (connect, hook) = Receiver::start().await;
    sim.register_endpoint(&hook, "whsec_connect", true);
    let (platform, platform_hook) = Receiver::start().await;
    sim.register_endpoint(&platform_hook, "whsec_platform", false);
    let store = sim.add_account(false);
    let key = sim.platform_key.clone();

    let (status, pi) = create_pi(
        &sim,
        &key,
        Some(&store.id),
        &[
            ("application_fee_amount", "150"),
            ("description", "Order 1"),
            ("metadata[order_id]", "ord_1"),
            ("automatic_payment_methods[enabled]", "true"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{pi}");
    let id = pi["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("pi_"));
    assert_eq!(pi["object"], "payment_intent");
    assert_eq!(pi["status"], "requires_payment_method");
    assert!(pi["client_secret"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{id}_secret_")));
    assert_eq!(pi["amount"], 2000);
    assert_eq!(pi["currency"], "usd");
    assert_eq!(pi["amount_received"], 0);
    assert_eq!(pi["application_fee_amount"], 150);
    assert_eq!(pi["application"], sim.client_id.as_str());
    assert_eq!(pi["latest_charge"], Value::Null);
    assert_eq!(pi["last_payment_error"], Value::Null);
    assert_eq!(pi["metadata"], json!({"order_id": "ord_1"}));
    assert_eq!(pi["livemode"], false);
    assert!(pi["created"].as_i64().unwrap() > 1_700_000_000);

    // A decline over the API: 402, and the PaymentIntent can be paid again.
    let confirm = format!("/v1/payment_intents/{id}/confirm");
    let (status, body) = send(
        call(&sim, &key, Some(&store.id), Method::POST, &confirm)
            .form(&[("payment_method", "pm_card_chargeDeclined")]),
    )
    .await;
    assert_eq!(status, 402, "{body}");
    let error = &body["error"];
    assert_eq!(error["type"], "card_error");
    assert_eq!(error["code"], "card_declined");
    assert_eq!(error["decline_code"], "generic_decline");
    assert_eq!(error["message"], "Your card was declined.");
    assert_eq!(error["payment_intent"]["status"], "requires_payment_method");
    let failed = &error["payment_intent"]["last_payment_error"];
    assert_eq!(failed["decline_code"], "generic_decline");
    assert_eq!(failed["code"], "card_declined");

    let (status, body) = send(
        call(&sim, &key, Some(&store.id), Method::POST, &confirm).form(&[
            ("payment_method_data[type]", "card"),
            ("payment_method_data[card][number]", "4000000000009995"),
        ]),
    )
    .await;
    assert_eq!(status, 402);
    assert_eq!(body["error"]["decline_code"], "insufficient_funds");

    // The customer pays in the browser.
    let event_id = sim.pay(&id, Card::Visa).await;
    let event = connect.verified(&event_id, "whsec_connect");
    assert_eq!(event["type"], "payment_intent.succeeded");
    assert_eq!(event["account"], store.id.as_str());
    assert_eq!(event["api_version"], stripe_sim::API_VERSION);
    let paid = &event["data"]["object"];
    assert_eq!(paid["status"], "succeeded");
    assert_eq!(paid["amount_received"], 2000);
    assert_eq!(paid["last_payment_error"], Value::Null);
    let charge_id = paid["latest_charge"].as_str().unwrap();
    assert!(charge_id.starts_with("ch_"));
    assert_eq!(
        connect.types(),
        [
            "payment_intent.created",
            "charge.failed",
            "payment_intent.payment_failed",
            "charge.failed",
            "payment_intent.payment_failed",
            "charge.succeeded",
            "payment_intent.succeeded",
        ]
    );
    assert_eq!(sim.payment_intent(&id).unwrap()["status"], "succeeded");

    let (status, charge) = send(call(
        &sim,
        &key,
        Some(&store.id),
        Method::GET,
        &format!("/v1/charges/{charge_id}"),
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(charge["amount_refunded"], 0);
    assert_eq!(charge["refunded"], false);
    assert_eq!(charge["payment_intent"], id.as_str());
    assert_eq!(charge["metadata"]["order_id"], "ord_1");
    // The platform's fee, and the platform's own endpoint told of it.
    let fee = charge["application_fee"].as_str().unwrap();
    let (status, fee) = send(call(
        &sim,
        &key,
        None,
        Method::GET,
        &format!("/v1/application_fees/{fee}"),
    ))
    .await;
    assert_eq!((status, fee["amount"].as_i64()), (200, Some(150)));
    assert_eq!(platform.types(), ["application_fee.created"]);

    // Paid is final: confirming again is refused.
    let (status, body) = send(
        call(&sim, &key, Some(&store.id), Method::POST, &confirm)
            .form(&[("payment_method", "pm_card_visa")]),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "payment_intent_unexpected_state");

    // expand[] and retrieval.
    let (_, got) = send(call(
        &sim,
        &key,
        Some(&store.id),
        Method::GET,
        &format!("/v1/payment_intents/{id}?expand[]=latest_charge"),
    ))
    .await;
    assert_eq!(got["latest_charge"]["id"], charge_id);

    // Redelivery: the same event, again.
    assert_eq!(sim.redeliver(&event_id).await, vec![200]);
    assert_eq!(connect.types().len(), 8);
}

#[tokio::test]
async fn payments_are_reachable_only_from_their_account() {
    let sim = StripeSim::start().await;
    let key = sim.platform_key.clone();
    let a = sim.add_account(false);
    let b = sim.add_account(false);
    let (status, pi) = create_pi(&sim, &key, Some(&a.id), &[]).await;
    assert_eq!(status, 200);
    let path = format!("/v1/payment_intents/{}", pi["id"].as_str().unwrap());
    let (status, body) = send(call(&sim, &key, None, Method::GET, &path)).await;
    assert_eq!(status, 404, "the platform alone does not see it");
    assert_eq!(body["error"]["code"], "resource_missing");
    let (status, _) = send(call(&sim, &key, Some(&b.id), Method::GET, &path)).await;
    assert_eq!(status, 404, "nor does another account");
    let (status, _) = send(call(&sim, &b.secret_key, None, Method::GET, &path)).await;
    assert_eq!(status, 404);
    let (status, _) = send(call(&sim, &b.secret_key, Some(&a.id), Method::GET, &path)).await;
    assert_eq!(status, 403);
    let (status, _) = send(call(&sim, &a.secret_key, None, Method::GET, &path)).await;
    assert_eq!(status, 200, "its own key does");
    let confirm = format!("{path}/confirm");
    let (status, _) = send(
        call(&sim, &key, Some(&b.id), Method::POST, &confirm)
            .form(&[("payment_method", "pm_card_visa")]),
    )
    .await;
    assert_eq!(status, 404);

    // Application fees need the platform acting on the account.
    let (status, body) = create_pi(
        &sim,
        &a.secret_key,
        None,
        &[("application_fee_amount", "10")],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "application_fee_amount");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Stripe-Account"));
    let (status, body) = create_pi(&sim, &key, None, &[("application_fee_amount", "10")]).await;
    assert_eq!(status, 400, "{body}");

    // A customer of another account does not exist here.
    let (status, customer) = send(
        call(&sim, &key, Some(&b.id), Method::POST, "/v1/customers")
            .form(&[("email", "jo@example.com")]),
    )
    .await;
    assert_eq!(status, 200);
    let cus = customer["id"].as_str().unwrap();
    let (status, body) = create_pi(&sim, &key, Some(&a.id), &[("customer", cus)]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "resource_missing");
    assert_eq!(body["error"]["param"], "customer");
    assert_eq!(
        body["error"]["message"],
        format!("No such customer: '{cus}'")
    );
    let (status, pi) = create_pi(&sim, &key, Some(&b.id), &[("customer", cus)]).await;
    assert_eq!((status, pi["customer"].as_str()), (200, Some(cus)));

    // Parameters Stripe does not know, and bad amounts.
    let (status, body) = create_pi(&sim, &key, Some(&a.id), &[("colour", "red")]).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "Received unknown parameter: colour"
    );
    let (status, body) = send(
        call(&sim, &key, Some(&a.id), Method::POST, "/v1/payment_intents")
            .form(&[("amount", "20"), ("currency", "usd")]),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("amount_too_small"))
    );
    let (status, body) = send(
        call(&sim, &key, Some(&a.id), Method::POST, "/v1/payment_intents")
            .form(&[("amount", "2000"), ("currency", "xyz")]),
    )
    .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("currency"))
    );
    assert_eq!(sim.count("payment_intent"), 2);
}

#[tokio::test]
async fn an_own_key_store_gets_its_events_on_its_own_endpoint() {
    let sim = StripeSim::start().await;
    let (connect, hook) = Receiver::start().await;
    sim.register_endpoint(&hook, "whsec_connect", true);
    let (store, own) = keys_store(&sim).await;
    let (status, pi) = create_pi(&sim, &store.secret_key, None, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(pi["application"], Value::Null);
    let event_id = sim.pay(pi["id"].as_str().unwrap(), Card::Declined).await;
    let event = own.verified(&event_id, "whsec_store");
    assert_eq!(event["type"], "payment_intent.payment_failed");
    assert!(event.get("account").is_none());
    assert_eq!(
        event["data"]["object"]["last_payment_error"]["message"],
        "Your card was declined."
    );
    assert!(connect.types().is_empty(), "not a connected account");
    let delivery = sim.deliveries().pop().unwrap();
    assert_eq!(delivery.account.as_deref(), Some(store.id.as_str()));
    assert!(!delivery.connect);
}

#[tokio::test]
async fn refunds_are_bounded_by_what_was_paid() {
    let sim = StripeSim::start().await;
    let (store, own) = keys_store(&sim).await;
    let key = store.secret_key.clone();
    let (_, pi) = create_pi(&sim, &key, None, &[]).await;
    let pi_id = pi["id"].as_str().unwrap();
    let refund = |form: Vec<(&'static str, String)>| {
        send(call(&sim, &key, None, Method::POST, "/v1/refunds").form(&form))
    };
    let (status, body) = refund(vec![("payment_intent", pi_id.into())]).await;
    assert_eq!(status, 400, "nothing paid yet: {body}");

    sim.pay(pi_id, Card::Visa).await;
    let (status, partial) = refund(vec![
        ("payment_intent", pi_id.into()),
        ("amount", "500".into()),
        ("reason", "requested_by_customer".into()),
        ("metadata[order_id]", "ord_9".into()),
    ])
    .await;
    assert_eq!(status, 200, "{partial}");
    assert!(partial["id"].as_str().unwrap().starts_with("re_"));
    assert_eq!(partial["object"], "refund");
    assert_eq!(partial["status"], "succeeded");
    assert_eq!(partial["amount"], 500);
    assert_eq!(partial["payment_intent"], pi_id);
    let charge = sim.object(partial["charge"].as_str().unwrap()).unwrap().1;
    assert_eq!(charge["amount_refunded"], 500);
    assert_eq!(charge["refunded"], false);

    let (status, body) = refund(vec![
        ("payment_intent", pi_id.into()),
        ("amount", "2000".into()),
    ])
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "Refund amount ($20.00) is greater than unrefunded amount on charge ($15.00)"
    );
    let (status, body) = refund(vec![
        ("payment_intent", pi_id.into()),
        ("refund_application_fee", "true".into()),
    ])
    .await;
    assert_eq!(status, 400, "not a Connect charge: {body}");

    let (status, rest) = refund(vec![("charge", partial["charge"].as_str().unwrap().into())]).await;
    assert_eq!((status, rest["amount"].as_i64()), (200, Some(1500)));
    let (status, body) = refund(vec![("payment_intent", pi_id.into())]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "charge_already_refunded");

    let (status, got) = send(call(
        &sim,
        &key,
        None,
        Method::GET,
        &format!("/v1/refunds/{}", rest["id"].as_str().unwrap()),
    ))
    .await;
    assert_eq!((status, got["amount"].as_i64()), (200, Some(1500)));
    let refunded: Vec<Value> = own
        .types()
        .iter()
        .zip(own.0.lock().unwrap().iter())
        .filter(|(t, _)| *t == "charge.refunded")
        .map(|(_, (_, b))| serde_json::from_slice(b).unwrap())
        .collect();
    assert_eq!(refunded.len(), 2);
    assert_eq!(refunded[0]["data"]["object"]["amount_refunded"], 500);
    assert_eq!(
        refunded[0]["data"]["previous_attributes"],
        json!({"amount_refunded": 0, "refunded": false})
    );
    assert_eq!(refunded[1]["data"]["object"]["refunded"], true);
    assert_eq!(sim.count("refund"), 2);
}

#[tokio::test]
async fn refunding_a_direct_charge_can_return_the_fee() {
    let sim = StripeSim::start().await;
    let key = sim.platform_key.clone();
    let store = sim.add_account(false);
    let (_, pi) = create_pi(
        &sim,
        &key,
        Some(&store.id),
        &[("application_fee_amount", "200")],
    )
    .await;
    let pi_id = pi["id"].as_str().unwrap();
    sim.pay(pi_id, Card::Visa).await;
    let (status, _) = send(
        call(&sim, &key, Some(&store.id), Method::POST, "/v1/refunds").form(&[
            ("payment_intent", pi_id),
            ("amount", "1000"),
            ("refund_application_fee", "true"),
        ]),
    )
    .await;
    assert_eq!(status, 200);
    let pi = sim.payment_intent(pi_id).unwrap();
    let (_, charge) = sim.object(pi["latest_charge"].as_str().unwrap()).unwrap();
    let fee = charge["application_fee"].as_str().unwrap().to_owned();
    let (owner, fee) = sim.object(&fee).unwrap();
    assert_eq!(owner, PLATFORM_ACCOUNT);
    assert_eq!(fee["amount_refunded"], 100, "half the charge, half the fee");
}

#[tokio::test]
async fn a_lost_answer_is_replayed_to_the_retry() {
    let sim = StripeSim::start().await;
    let key = sim.platform_key.clone();
    let store = sim.add_account(false);
    let create = |idempotency_key: &'static str| {
        call(
            &sim,
            &key,
            Some(&store.id),
            Method::POST,
            "/v1/payment_intents",
        )
        .header("Idempotency-Key", idempotency_key)
        .form(&[("amount", "2000"), ("currency", "usd")])
        .send()
    };

    // Refused before Stripe did anything: nothing made.
    sim.fail(Method::POST, "/v1/payment_intents", Fault::Status(429), 1);
    assert_eq!(create("order-1").await.unwrap().status(), 429);
    assert_eq!(sim.count("payment_intent"), 0);

    // Made, but the answer was lost.
    sim.fail(
        Method::POST,
        "/v1/payment_intents",
        Fault::AfterCommit(500),
        1,
    );
    let r = create("order-1").await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(sim.count("payment_intent"), 1);
    let r = create("order-1").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let (_, first) = json(r).await;
    assert_eq!(sim.count("payment_intent"), 1);

    // Made, and the connection dropped before any answer.
    sim.fail(Method::POST, "/v1/payment_intents", Fault::Drop, 1);
    let dropped = create("order-2").await;
    assert!(dropped.is_err(), "no answer: {dropped:?}");
    assert_eq!(sim.count("payment_intent"), 2);
    let (status, second) = json(create("order-2").await.unwrap()).await;
    assert_eq!(status, 200);
    assert_ne!(second["id"], first["id"]);
    assert_eq!(sim.count("payment_intent"), 2);
    let (status, again) = json(create("order-1").await.unwrap()).await;
    assert_eq!((status, &again["id"]), (200, &first["id"]));
}

#[tokio::test]
async fn customers_are_created_changed_and_deleted_with_events() {
    let sim = StripeSim::start().await;
    let (store, own) = keys_store(&sim).await;
    let key = store.secret_key.clone();
    let (status, c) = send(
        call(&sim, &key, None, Method::POST, "/v1/customers").form(&[
            ("email", "jo@example.com"),
            ("name", "Jo"),
            ("metadata[bursar_id]", "c_1"),
        ]),
    )
    .await;
    assert_eq!(status, 200, "{c}");
    let id = c["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("cus_"));
    assert_eq!(c["object"], "customer");
    assert_eq!(c["email"], "jo@example.com");
    assert_eq!(c["metadata"], json!({"bursar_id": "c_1"}));
    let path = format!("/v1/customers/{id}");
    let (status, c) =
        send(call(&sim, &key, None, Method::POST, &path).form(&[("email", "jo@example.org")]))
            .await;
    assert_eq!((status, c["email"].as_str()), (200, Some("jo@example.org")));
    let (status, _) =
        send(call(&sim, &key, None, Method::POST, &path).form(&[("email", "not-an-email")])).await;
    assert_eq!(status, 400);
    let (status, gone) = send(call(&sim, &key, None, Method::DELETE, &path)).await;
    assert_eq!(status, 200);
    assert_eq!(
        gone,
        json!({"id": id, "object": "customer", "deleted": true})
    );
    let (status, got) = send(call(&sim, &key, None, Method::GET, &path)).await;
    assert_eq!((status, &got["deleted"]), (200, &json!(true)));
    let (status, _) = create_pi(&sim, &key, None, &[("customer", &id)]).await;
    assert_eq!(status, 400, "a deleted customer cannot pay");
    assert_eq!(
        own.types(),
        ["customer.created", "customer.updated", "customer.deleted"]
    );
    let updated: Value = {
        let kept = own.0.lock().unwrap();
        serde_json::from_slice(&kept[1].1).unwrap()
    };
    assert_eq!(
        updated["data"]["previous_attributes"],
        json!({"email": "jo@example.com"})
    );
}

#[tokio::test]
async fn disputes_open_and_close() {
    let sim = StripeSim::start().await;
    let (store, own) = keys_store(&sim).await;
    let (_, pi) = create_pi(&sim, &store.secret_key, None, &[]).await;
    let pi_id = pi["id"].as_str().unwrap();
    sim.pay(pi_id, Card::Visa).await;
    let charge = sim.payment_intent(pi_id).unwrap()["latest_charge"]
        .as_str()
        .unwrap()
        .to_owned();
    let (opened, dispute_id) = sim.dispute(&store.id, &charge).await;
    let event = own.verified(&opened, "whsec_store");
    assert_eq!(event["type"], "charge.dispute.created");
    let dispute = &event["data"]["object"];
    assert_eq!(dispute["id"], dispute_id.as_str());
    assert_eq!(dispute["status"], "needs_response");
    assert_eq!(dispute["charge"], charge.as_str());
    assert_eq!(dispute["payment_intent"], pi_id);
    assert_eq!(dispute["amount"], 2000);
    let (status, body) = send(
        call(&sim, &store.secret_key, None, Method::POST, "/v1/refunds")
            .form(&[("charge", charge.as_str())]),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("charge_disputed"))
    );
    let closed = sim.close_dispute(&store.id, &dispute_id, false).await;
    let event = own.verified(&closed, "whsec_store");
    assert_eq!(event["type"], "charge.dispute.closed");
    assert_eq!(event["data"]["object"]["status"], "lost");
}

#[tokio::test]
async fn checkout_sessions_are_paid_on_their_page_or_expire() {
    let sim = StripeSim::start().await;
    let (connect, hook) = Receiver::start().await;
    sim.register_endpoint(&hook, "whsec_connect", true);
    let key = sim.platform_key.clone();
    let store = sim.add_account(false);
    let create = |extra: Vec<(&'static str, &'static str)>| {
        let mut form = vec![
            ("mode", "payment"),
            ("line_items[0][price_data][currency]", "eur"),
            ("line_items[0][price_data][unit_amount]", "1500"),
            ("line_items[0][price_data][product_data][name]", "T-shirt"),
            ("line_items[0][quantity]", "2"),
            ("line_items[1][price_data][currency]", "eur"),
            ("line_items[1][price_data][unit_amount]", "500"),
            ("line_items[1][price_data][product_data][name]", "Socks"),
            ("line_items[1][quantity]", "1"),
            (
                "success_url",
                "http://bursar.test/done?session={CHECKOUT_SESSION_ID}",
            ),
            ("cancel_url", "http://bursar.test/cancel"),
            ("client_reference_id", "ord_7"),
            ("metadata[order_id]", "ord_7"),
        ];
        form.extend(extra);
        send(
            call(
                &sim,
                &key,
                Some(&store.id),
                Method::POST,
                "/v1/checkout/sessions",
            )
            .form(&form),
        )
    };
    let (status, s) = create(vec![
        ("payment_intent_data[application_fee_amount]", "300"),
        ("payment_intent_data[metadata][order_id]", "ord_7"),
    ])
    .await;
    assert_eq!(status, 200, "{s}");
    let id = s["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("cs_test_"));
    assert_eq!(s["object"], "checkout.session");
    assert_eq!(s["url"], format!("{}/pay/{id}", sim.url));
    assert_eq!(s["status"], "open");
    assert_eq!(s["payment_status"], "unpaid");
    assert_eq!(s["amount_total"], 3500);
    assert_eq!(s["currency"], "eur");
    assert_eq!(s["client_reference_id"], "ord_7");
    assert_eq!(s["metadata"], json!({"order_id": "ord_7"}));
    assert_eq!(s["payment_intent"], Value::Null);
    assert!(s.get("line_items").is_none());
    let (_, expanded) = send(call(
        &sim,
        &key,
        Some(&store.id),
        Method::GET,
        &format!("/v1/checkout/sessions/{id}?expand[]=line_items"),
    ))
    .await;
    assert_eq!(expanded["line_items"]["data"][0]["amount_total"], 3000);
    let (status, _) = send(call(
        &sim,
        &key,
        None,
        Method::GET,
        &format!("/v1/checkout/sessions/{id}"),
    ))
    .await;
    assert_eq!(status, 404);

    let event_id = sim.complete_checkout(&store.id, &id, true).await;
    let event = connect.verified(&event_id, "whsec_connect");
    assert_eq!(event["type"], "checkout.session.completed");
    assert_eq!(event["account"], store.id.as_str());
    let done = &event["data"]["object"];
    assert_eq!(done["status"], "complete");
    assert_eq!(done["payment_status"], "paid");
    let pi = sim
        .payment_intent(done["payment_intent"].as_str().unwrap())
        .unwrap();
    assert_eq!(pi["status"], "succeeded");
    assert_eq!(pi["amount"], 3500);
    assert_eq!(pi["application_fee_amount"], 300);
    assert_eq!(pi["metadata"], json!({"order_id": "ord_7"}));
    assert!(connect.types().ends_with(&[
        "payment_intent.succeeded".into(),
        "checkout.session.completed".into()
    ]));

    // Fees need the platform acting on the account.
    let (status, _) = send(
        call(
            &sim,
            &store.secret_key,
            None,
            Method::POST,
            "/v1/checkout/sessions",
        )
        .form(&[
            ("mode", "payment"),
            ("line_items[0][price_data][currency]", "eur"),
            ("line_items[0][price_data][unit_amount]", "1500"),
            ("line_items[0][price_data][product_data][name]", "T-shirt"),
            ("line_items[0][quantity]", "1"),
            ("payment_intent_data[application_fee_amount]", "300"),
        ]),
    )
    .await;
    assert_eq!(status, 400);

    // The hosted page: a decline stays on it, a good card goes to success_url.
    let (_, s) = create(vec![]).await;
    let page = client()
        .get(s["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("€35.00"), "{html}");
    let pay = |card: &'static str| {
        client()
            .post(format!("{}/{card}", s["url"].as_str().unwrap()))
            .send()
    };
    let declined = pay("declined").await.unwrap();
    assert_eq!(declined.status(), 200);
    assert!(declined
        .text()
        .await
        .unwrap()
        .contains("Your card was declined."));
    let paid = pay("visa").await.unwrap();
    assert_eq!(paid.status(), 302);
    let session_id = s["id"].as_str().unwrap();
    assert_eq!(
        paid.headers()["location"],
        format!("http://bursar.test/done?session={session_id}").as_str()
    );

    let (_, s) = create(vec![]).await;
    let expired = sim
        .expire_checkout(&store.id, s["id"].as_str().unwrap())
        .await;
    let event = connect.verified(&expired, "whsec_connect");
    assert_eq!(event["type"], "checkout.session.expired");
    assert_eq!(event["data"]["object"]["status"], "expired");
}

#[tokio::test]
async fn manual_capture_and_cancel() {
    let sim = StripeSim::start().await;
    let (store, own) = keys_store(&sim).await;
    let key = store.secret_key.clone();
    let (status, pi) = create_pi(
        &sim,
        &key,
        None,
        &[
            ("capture_method", "manual"),
            ("confirm", "true"),
            ("payment_method", "pm_card_visa"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{pi}");
    assert_eq!(pi["status"], "requires_capture");
    assert_eq!(pi["amount_capturable"], 2000);
    let id = pi["id"].as_str().unwrap();
    let (status, captured) = send(
        call(
            &sim,
            &key,
            None,
            Method::POST,
            &format!("/v1/payment_intents/{id}/capture"),
        )
        .form(&[("amount_to_capture", "1500")]),
    )
    .await;
    assert_eq!(status, 200, "{captured}");
    assert_eq!(captured["status"], "succeeded");
    assert_eq!(captured["amount_received"], 1500);
    let (_, charge) = sim
        .object(captured["latest_charge"].as_str().unwrap())
        .unwrap();
    assert_eq!(charge["amount_refunded"], 500, "the rest was released");

    let (_, pi) = create_pi(&sim, &key, None, &[]).await;
    let id = pi["id"].as_str().unwrap();
    let cancel = format!("/v1/payment_intents/{id}/cancel");
    let (status, canceled) = send(
        call(&sim, &key, None, Method::POST, &cancel).form(&[("cancellation_reason", "abandoned")]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(canceled["cancellation_reason"], "abandoned");
    assert_eq!(own.types().last().unwrap(), "payment_intent.canceled");
    let (status, body) = send(call(&sim, &key, None, Method::POST, &cancel)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("payment_intent_unexpected_state"))
    );
}

//! What a customer's browser does, without a browser: the Stripe.js stand-in as served, and
//! the requests it makes (`confirmCardPayment`: the publishable key and client secret in a
//! form body, `_stripe_account` for a connected account), sent here with reqwest exactly as
//! the script sends them. Also what a publishable key may not do, and CORS.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use reqwest::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CONTENT_TYPE, ORIGIN};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use stripe_sim::{Fault, SimAccount, StripeSim};

/// The page's origin: another port, as Bursar's checkout page is.
const PAGE: &str = "http://127.0.0.1:8080";

/// A webhook endpoint that answers 200 and keeps the events it received.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Value>>>);

impl Receiver {
    async fn start() -> (Self, String) {
        let receiver = Self::default();
        let kept = receiver.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: Bytes| async move {
                kept.0
                    .lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                "ok"
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, url)
    }

    fn events(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }

    fn types(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// A PaymentIntent made by the server side: `(id, client_secret)`.
async fn create_pi(sim: &StripeSim, key: &str, account: Option<&str>) -> (String, String) {
    let mut r = reqwest::Client::new()
        .post(format!("{}/v1/payment_intents", sim.url))
        .bearer_auth(key)
        .form(&[
            ("amount", "2000"),
            ("currency", "usd"),
            ("metadata[order_id]", "ord_1"),
        ]);
    if let Some(a) = account {
        r = r.header("Stripe-Account", a);
    }
    let pi: Value = r.send().await.unwrap().json().await.unwrap();
    (
        pi["id"].as_str().unwrap().to_owned(),
        pi["client_secret"].as_str().unwrap().to_owned(),
    )
}

/// What `stripe.confirmCardPayment(clientSecret, {payment_method: {card}})` sends for `pi`:
/// a CORS simple request from the page, the key and account in the body.
async fn browser_confirm(
    sim: &StripeSim,
    pk: &str,
    stripe_account: Option<&str>,
    pi: &str,
    client_secret: &str,
    number: &str,
) -> (StatusCode, Option<String>, Value) {
    let mut form = vec![
        ("client_secret", client_secret),
        ("payment_method_data[type]", "card"),
        ("payment_method_data[card][number]", number),
        ("payment_method_data[card][exp_month]", "12"),
        ("payment_method_data[card][exp_year]", "34"),
        ("payment_method_data[card][cvc]", "123"),
        (
            "payment_method_data[billing_details][address][postal_code]",
            "94107",
        ),
        ("key", pk),
    ];
    if let Some(a) = stripe_account {
        form.push(("_stripe_account", a));
    }
    let r = reqwest::Client::new()
        .post(format!("{}/v1/payment_intents/{pi}/confirm", sim.url))
        .header(ORIGIN, PAGE)
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let cors = r
        .headers()
        .get(ACCESS_CONTROL_ALLOW_ORIGIN)
        .map(|v| v.to_str().unwrap().to_owned());
    (status, cors, r.json().await.unwrap())
}

/// A store on its own keys (not connected), with its own webhook endpoint.
async fn keys_store(sim: &StripeSim) -> (SimAccount, Receiver) {
    let store = sim.add_independent_account(false);
    let (receiver, hook) = Receiver::start().await;
    sim.register_account_endpoint(&store.id, &hook, "whsec_store");
    (store, receiver)
}

#[tokio::test]
async fn the_stripe_js_stand_in_is_served_as_javascript_to_any_origin() {
    let sim = StripeSim::start().await;
    assert_eq!(sim.js_url(), format!("{}/js.stripe.com/v3/", sim.url));
    for path in ["/js.stripe.com/v3/", "/js.stripe.com/v3"] {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", sim.url))
            .header(ORIGIN, PAGE)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript"));
        assert_eq!(r.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        let js = r.text().await.unwrap();
        for needle in [
            "confirmCardPayment",
            "window.Stripe",
            "document.currentScript",
            "'cardnumber'",
            "'exp-date'",
            "'cvc'",
            "'postal'",
            "application/x-www-form-urlencoded",
            "_stripe_account",
        ] {
            assert!(js.contains(needle), "the script lacks {needle}");
        }
    }
    assert_eq!(sim.requests("/js.stripe.com/v3/").len(), 1);
}

#[tokio::test]
async fn a_publishable_key_and_client_secret_confirm_and_the_payment_is_announced_first() {
    let sim = StripeSim::start().await;
    let (store, hook) = keys_store(&sim).await;
    let (pi, secret) = create_pi(&sim, &store.secret_key, None).await;

    let (status, cors, body) = browser_confirm(
        &sim,
        &store.publishable_key,
        None,
        &pi,
        &secret,
        "4242424242424242",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(cors.as_deref(), Some("*"));
    assert_eq!(body["id"], pi.as_str());
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["client_secret"], secret.as_str());
    assert!(body["payment_method"].as_str().unwrap().starts_with("pm_"));
    // What only a secret key sees stays out of the browser's copy.
    for hidden in [
        "metadata",
        "customer",
        "latest_charge",
        "application_fee_amount",
    ] {
        assert!(body.get(hidden).is_none(), "{hidden} shown to the browser");
    }

    // The events were delivered before the answer came.
    assert_eq!(
        hook.types(),
        [
            "payment_intent.created",
            "charge.succeeded",
            "payment_intent.succeeded"
        ]
    );
    let succeeded = &hook.events()[2]["data"]["object"];
    assert_eq!(succeeded["metadata"]["order_id"], "ord_1");
    assert_eq!(sim.payment_intent(&pi).unwrap()["status"], "succeeded");

    // Recorded as sent: the key in the body, no Authorization, no account.
    let recorded = sim.requests(&format!("/v1/payment_intents/{pi}/confirm"));
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        recorded[0].param("key").as_deref(),
        Some(store.publishable_key.as_str())
    );
    assert_eq!(recorded[0].param("_stripe_account"), None);
    assert_eq!(recorded[0].stripe_account, None);

    // Paid is final, for the browser too.
    let (status, _, body) = browser_confirm(
        &sim,
        &store.publishable_key,
        None,
        &pi,
        &secret,
        "4242424242424242",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "payment_intent_unexpected_state");
    assert!(body["error"]["payment_intent"].get("metadata").is_none());
}

#[tokio::test]
async fn declines_answer_402_with_the_card_error_stripe_js_resolves_with() {
    let sim = StripeSim::start().await;
    let (store, hook) = keys_store(&sim).await;
    let (pi, secret) = create_pi(&sim, &store.secret_key, None).await;

    let (status, cors, body) = browser_confirm(
        &sim,
        &store.publishable_key,
        None,
        &pi,
        &secret,
        "4000000000000002",
    )
    .await;
    assert_eq!(status, 402);
    assert_eq!(cors.as_deref(), Some("*"));
    let error = &body["error"];
    assert_eq!(error["type"], "card_error");
    assert_eq!(error["code"], "card_declined");
    assert_eq!(error["decline_code"], "generic_decline");
    assert_eq!(error["message"], "Your card was declined.");
    assert_eq!(error["payment_intent"]["id"], pi.as_str());
    assert_eq!(error["payment_intent"]["status"], "requires_payment_method");
    assert_eq!(
        error["payment_intent"]["last_payment_error"]["decline_code"],
        "generic_decline"
    );
    assert!(error["payment_intent"].get("metadata").is_none());

    let (status, _, body) = browser_confirm(
        &sim,
        &store.publishable_key,
        None,
        &pi,
        &secret,
        "4000000000009995",
    )
    .await;
    assert_eq!(status, 402);
    assert_eq!(body["error"]["decline_code"], "insufficient_funds");
    assert_eq!(
        body["error"]["message"],
        "Your card has insufficient funds."
    );

    // A card already expired, as Stripe checks raw card data.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/payment_intents/{pi}/confirm", sim.url))
        .form(&[
            ("client_secret", secret.as_str()),
            ("payment_method_data[type]", "card"),
            ("payment_method_data[card][number]", "4242424242424242"),
            ("payment_method_data[card][exp_month]", "1"),
            ("payment_method_data[card][exp_year]", "20"),
            ("key", store.publishable_key.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 402);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_expiry_year");

    // The customer tries again and pays.
    let (status, _, body) = browser_confirm(
        &sim,
        &store.publishable_key,
        None,
        &pi,
        &secret,
        "4242424242424242",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        hook.types(),
        [
            "payment_intent.created",
            "charge.failed",
            "payment_intent.payment_failed",
            "charge.failed",
            "payment_intent.payment_failed",
            "charge.succeeded",
            "payment_intent.succeeded"
        ]
    );
}

#[tokio::test]
async fn a_wrong_or_missing_client_secret_or_another_accounts_key_is_refused() {
    let sim = StripeSim::start().await;
    let (store, hook) = keys_store(&sim).await;
    let (pi, secret) = create_pi(&sim, &store.secret_key, None).await;
    let (other_pi, other_secret) = create_pi(&sim, &store.secret_key, None).await;

    // Another PaymentIntent's secret.
    let (status, _, body) = browser_confirm(
        &sim,
        &store.publishable_key,
        None,
        &pi,
        &other_secret,
        "4242424242424242",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["param"], "client_secret");
    assert_eq!(
        body["error"]["message"],
        "The client_secret provided does not match the client_secret associated with the \
         PaymentIntent."
    );

    // No secret at all.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/payment_intents/{pi}/confirm", sim.url))
        .form(&[
            ("payment_method_data[type]", "card"),
            ("payment_method_data[card][number]", "4242424242424242"),
            ("key", store.publishable_key.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["param"], "client_secret");

    // Another account's publishable key (the merchant's page configured with the wrong one).
    let stranger = sim.add_independent_account(false);
    let (status, _, body) = browser_confirm(
        &sim,
        &stranger.publishable_key,
        None,
        &pi,
        &secret,
        "4242424242424242",
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "resource_missing");
    assert_eq!(
        body["error"]["message"],
        format!("No such payment_intent: '{pi}'")
    );

    // An unknown publishable key.
    let (status, _, body) = browser_confirm(
        &sim,
        "pk_test_nobody00000000000",
        None,
        &pi,
        &secret,
        "4242424242424242",
    )
    .await;
    assert_eq!(status, 401);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Invalid API Key provided: pk_test_"));

    // Nothing was paid, nothing but the creations announced.
    for id in [&pi, &other_pi] {
        assert_eq!(
            sim.payment_intent(id).unwrap()["status"],
            "requires_payment_method"
        );
    }
    assert_eq!(
        hook.types(),
        ["payment_intent.created", "payment_intent.created"]
    );
}

#[tokio::test]
async fn a_publishable_key_can_do_nothing_else() {
    let sim = StripeSim::start().await;
    let (store, _hook) = keys_store(&sim).await;
    let (pi, secret) = create_pi(&sim, &store.secret_key, None).await;
    let refused = "This API call cannot be made with a publishable API key. Please use a secret \
                   API key. You can find a list of your API keys at \
                   https://dashboard.stripe.com/account/apikeys.";
    let http = reqwest::Client::new();
    let create = [("amount", "2000"), ("currency", "usd")];

    for pk in [&store.publishable_key, &sim.platform_publishable_key] {
        // In the body, as Stripe.js would send it…
        let mut form = create.to_vec();
        form.push(("key", pk.as_str()));
        let r = http
            .post(format!("{}/v1/payment_intents", sim.url))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["message"], refused);

        // …or as the bearer, as the mobile SDKs send it.
        let r = http
            .post(format!("{}/v1/payment_intents", sim.url))
            .bearer_auth(pk)
            .form(&create)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);

        // No reading the PaymentIntent, client secret or not.
        let r = http
            .get(format!(
                "{}/v1/payment_intents/{pi}?key={pk}&client_secret={secret}",
                sim.url
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);

        // No capture, cancel or refund.
        for path in [
            format!("/v1/payment_intents/{pi}/cancel"),
            format!("/v1/payment_intents/{pi}/capture"),
            "/v1/refunds".to_owned(),
            "/v1/customers".to_owned(),
        ] {
            let r = http
                .post(format!("{}{path}", sim.url))
                .form(&[
                    ("key", pk.as_str()),
                    ("client_secret", secret.as_str()),
                    ("payment_intent", pi.as_str()),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{path}");
        }
    }
    assert_eq!(sim.count("payment_intent"), 1);
    assert_eq!(
        sim.payment_intent(&pi).unwrap()["status"],
        "requires_payment_method"
    );
}

#[tokio::test]
async fn the_platform_publishable_key_confirms_a_connected_accounts_payment_with_stripe_account() {
    let sim = StripeSim::start().await;
    let (connect, hook) = Receiver::start().await;
    sim.register_endpoint(&hook, "whsec_connect", true);
    let store = sim.add_account(false);
    let pk = sim.platform_publishable_key.clone();
    assert!(pk.starts_with("pk_test_"));
    let (pi, secret) = create_pi(&sim, &sim.platform_key, Some(&store.id)).await;
    let path = format!("/v1/payment_intents/{pi}/confirm");

    // Without the account, the PaymentIntent is not the platform's.
    let (status, _, body) =
        browser_confirm(&sim, &pk, None, &pi, &secret, "4242424242424242").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        body["error"]["message"],
        format!("No such payment_intent: '{pi}'")
    );

    // A fault aimed at the store meets the browser's request too.
    sim.fail_for(&store.id, Method::POST, &path, Fault::Status(500), 1);
    let (status, cors, _) =
        browser_confirm(&sim, &pk, Some(&store.id), &pi, &secret, "4242424242424242").await;
    assert_eq!(status, 500);
    assert_eq!(cors.as_deref(), Some("*"));

    let (status, _, body) =
        browser_confirm(&sim, &pk, Some(&store.id), &pi, &secret, "4242424242424242").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "succeeded");
    assert_eq!(sim.payment_intent(&pi).unwrap()["status"], "succeeded");
    let (owner, _) = sim.object(&pi).unwrap();
    assert_eq!(owner, store.id);
    let events = connect.events();
    let succeeded = events
        .iter()
        .find(|e| e["type"] == "payment_intent.succeeded")
        .expect("payment_intent.succeeded delivered");
    assert_eq!(succeeded["account"], store.id.as_str());
    assert_eq!(succeeded["data"]["object"]["id"], pi.as_str());

    // What the tests can see of it: the account went in the body, not a header.
    let recorded = sim.requests(&path);
    assert_eq!(recorded.len(), 3);
    let last = recorded.last().unwrap();
    assert_eq!(
        last.param("_stripe_account").as_deref(),
        Some(store.id.as_str())
    );
    assert_eq!(last.param("key").as_deref(), Some(pk.as_str()));
    assert_eq!(last.stripe_account, None);

    // The platform's key reaches only connected accounts; an account's own key only itself.
    let outsider = sim.add_independent_account(false);
    let (other_pi, other_secret) = create_pi(&sim, &outsider.secret_key, None).await;
    let (status, _, body) = browser_confirm(
        &sim,
        &pk,
        Some(&outsider.id),
        &other_pi,
        &other_secret,
        "4242424242424242",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "account_invalid");
    let (status, _, _) = browser_confirm(
        &sim,
        &outsider.publishable_key,
        Some(&store.id),
        &other_pi,
        &other_secret,
        "4242424242424242",
    )
    .await;
    assert_eq!(status, 403);
    // …and naming itself is fine.
    let (status, _, _) = browser_confirm(
        &sim,
        &outsider.publishable_key,
        Some(&outsider.id),
        &other_pi,
        &other_secret,
        "4242424242424242",
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_platforms_own_payment_and_an_oauth_accounts_publishable_key() {
    let sim = StripeSim::start().await;
    let (pi, secret) = create_pi(&sim, &sim.platform_key, None).await;
    let (status, _, body) = browser_confirm(
        &sim,
        &sim.platform_publishable_key,
        None,
        &pi,
        &secret,
        "5555555555554444",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sim.object(&pi).unwrap().0, stripe_sim::PLATFORM_ACCOUNT);

    // The publishable key the OAuth token exchange hands out confirms that account's payments.
    let (code, account) = sim.authorize(false);
    let token: Value = reqwest::Client::new()
        .post(format!("{}/oauth/token", sim.url))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("client_secret", sim.platform_key.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let oauth_pk = token["stripe_publishable_key"].as_str().unwrap();
    assert_eq!(oauth_pk, account.publishable_key);
    let (pi, secret) = create_pi(&sim, &account.secret_key, None).await;
    let (status, _, body) =
        browser_confirm(&sim, oauth_pk, None, &pi, &secret, "4242424242424242").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn preflights_are_answered_for_the_api() {
    let sim = StripeSim::start().await;
    let r = reqwest::Client::new()
        .request(
            Method::OPTIONS,
            format!("{}/v1/payment_intents/pi_123/confirm", sim.url),
        )
        .header(ORIGIN, PAGE)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "stripe-account")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert_eq!(h["access-control-allow-methods"], "GET, POST, OPTIONS");
    assert_eq!(
        h["access-control-allow-headers"],
        "Content-Type, Authorization, Stripe-Account"
    );
    // Errors are readable cross-origin too.
    let r = reqwest::Client::new()
        .get(format!("{}/v1/payment_intents/pi_123", sim.url))
        .header(ORIGIN, PAGE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
}

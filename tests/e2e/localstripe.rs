//! The hosted payment page against an emulator no one here wrote: the PyPI package
//! `localstripe` (its Stripe.js stand-in, its API, its signed webhooks), in headless Chromium.
//!
//! What localstripe cannot do shapes the setup, never Bursar's behaviour:
//! - it has no `GET /v1/account`, so a pasted key cannot be checked against it: the store's
//!   `keys` connection is saved through Bursar's own persistence (`db::connections::upsert_keys`,
//!   secrets sealed by the vault), as the key check would have saved it;
//! - its `confirmCardPayment` ignores the card typed into its Element and only completes a
//!   PaymentIntent that already awaits 3-D Secure: the test attaches the card (a 3-D Secure test
//!   card) to the order's PaymentIntent through localstripe's API, as a wallet would, and the
//!   customer completes authentication on Bursar's page.
//!
//! Needs `localstripe` (`.ci/run` installs it in /opt/localstripe; `LOCALSTRIPE` overrides).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, Locator};
use reqwest::Method;
use serde_json::{json, Value};

use crate::browser::{browser, start_driver};
use crate::support::TestApp;

struct LocalStripe {
    child: Child,
    url: String,
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_localstripe() -> LocalStripe {
    let program = std::env::var("LOCALSTRIPE").unwrap_or_else(|_| {
        if std::path::Path::new("/opt/localstripe/bin/localstripe").exists() {
            "/opt/localstripe/bin/localstripe".into()
        } else {
            "localstripe".into()
        }
    });
    let mut child = Command::new(&program)
        .args(["--port", "0", "--from-scratch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} does not start ({e}): pip install localstripe"));
    let stdout = child.stdout.take().unwrap();
    let mut ls = LocalStripe {
        child,
        url: String::new(),
    };
    // "======== Running on http://[::]:33815 ========"; the rest of its output is drained, so
    // it never writes into a closed pipe.
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    for line in lines.by_ref() {
        if let Some(port) = line
            .split("]:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
        {
            ls.url = format!("http://127.0.0.1:{port}");
            std::thread::spawn(move || lines.for_each(drop));
            return ls;
        }
    }
    panic!("localstripe did not say where it listens");
}

/// A call to localstripe's API with the store's secret key.
async fn ls(url: &str, key: &str, path: &str, form: &[(&str, &str)]) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .bearer_auth(key)
        .form(form)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap_or_default();
    assert!(status.is_success(), "localstripe {path}: {status} {body}");
    body
}

/// What a wallet does before the customer authenticates: the card on the PaymentIntent,
/// confirmed, now waiting for 3-D Secure.
async fn attach_card(url: &str, key: &str, payment_intent: &str, number: &str) {
    let pm = ls(
        url,
        key,
        "/v1/payment_methods",
        &[
            ("type", "card"),
            ("card[number]", number),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2034"),
            ("card[cvc]", "123"),
        ],
    )
    .await;
    let path = format!("/v1/payment_intents/{payment_intent}");
    ls(
        url,
        key,
        &path,
        &[("payment_method", pm["id"].as_str().unwrap())],
    )
    .await;
    let confirmed = ls(url, key, &format!("{path}/confirm"), &[]).await;
    assert_eq!(confirmed["status"], "requires_action", "{confirmed}");
}

async fn authenticate(b: &Client) {
    for _ in 0..100 {
        for button in b
            .find_all(Locator::Css("body > div > button"))
            .await
            .unwrap()
        {
            if button.text().await.unwrap() == "Complete authentication" {
                button.click().await.unwrap();
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("localstripe's authentication dialog never appeared");
}

async fn pay_on_page(b: &Client, checkout_url: &str, number: &str) {
    b.goto(checkout_url).await.unwrap();
    let field = b
        .wait()
        .for_element(Locator::Css("#card-element input[placeholder=number]"))
        .await
        .unwrap();
    field.send_keys(number).await.unwrap();
    for (placeholder, value) in [("exp_month", "12"), ("exp_year", "34"), ("cvc", "123")] {
        b.find(Locator::Css(&format!(
            "#card-element input[placeholder={placeholder}]"
        )))
        .await
        .unwrap()
        .send_keys(value)
        .await
        .unwrap();
    }
    b.find(Locator::Id("pay"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    authenticate(b).await;
}

async fn wait_for_status(app: &TestApp, order: &str, status: &str) -> Value {
    let mut now = Value::Null;
    for _ in 0..100 {
        now = app.get_json(&format!("/api/v1/orders/{order}")).await;
        if now["status"] == status {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("order never became {status}: {now}");
}

#[tokio::test]
async fn a_customer_pays_on_the_hosted_page_against_localstripe() {
    let localstripe = start_localstripe();
    let platform_key = format!("sk_test_platform{}", crate::support::random(16));
    let app = TestApp::spawn_with(&[
        ("STRIPE_API_BASE", &localstripe.url),
        ("STRIPE_SECRET_KEY", &platform_key),
        (
            "STRIPE_JS_URL",
            &format!("{}/js.stripe.com/v3/", localstripe.url),
        ),
    ])
    .await;
    let store = app.create_store("Local shop").await;
    let id = bursar::domain::StoreId::parse(&store).unwrap();
    let secret_key = format!("sk_test_{}", crate::support::random(24));
    let webhook_secret = format!("whsec_{}", crate::support::random(24));
    let binding = |field| bursar::service::connections::binding(&id, field);
    let sealed_key = app.services.vault.seal(
        &secrecy::SecretString::from(secret_key.clone()),
        binding(bursar::service::connections::SECRET_KEY_FIELD),
    );
    let sealed_webhook = app.services.vault.seal(
        &secrecy::SecretString::from(webhook_secret.clone()),
        binding(bursar::service::connections::WEBHOOK_SECRET_FIELD),
    );
    let account = bursar::domain::AccountId::parse("acct_1LocalStripeShop").unwrap();
    let mut tx = app.services.db.begin_write().await.unwrap();
    bursar::db::connections::upsert_keys(
        &mut tx,
        &id,
        &bursar::db::connections::NewKeys {
            mode: bursar::domain::Mode::Test,
            account_id: &account,
            key_kind: bursar::domain::KeyKind::Secret,
            publishable_key: &format!("pk_test_{}", crate::support::random(24)),
            secret_key_enc: &sealed_key,
            webhook_secret_enc: Some(&sealed_webhook),
            account: &bursar::db::connections::AccountState {
                charges_enabled: true,
                payouts_enabled: true,
                details_submitted: true,
                requirements: None,
            },
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // localstripe's webhooks, registered as a Dashboard endpoint would be.
    let r = reqwest::Client::new()
        .post(format!("{}/_config/webhooks/bursar", localstripe.url))
        .form(&[
            ("url", format!("{}/webhooks/stripe/stores/{store}", app.url)),
            ("secret", webhook_secret.clone()),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    let driver = start_driver().await;
    let b = browser(&driver).await;
    let new_order = || async {
        let r = app
            .api(Method::POST, &format!("/api/v1/stores/{store}/orders"))
            .json(&json!({"amount": 4200, "currency": "eur"}))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 201, "{body}");
        body
    };

    // A card that authenticates and pays: the page lands on the result, Stripe's webhook (and
    // the page's re-check) mark the order paid.
    let order = new_order().await;
    let pi = order["payment_intent"].as_str().unwrap();
    attach_card(&localstripe.url, &secret_key, pi, "4000002500003155").await;
    pay_on_page(
        &b,
        order["checkout_url"].as_str().unwrap(),
        "4000002500003155",
    )
    .await;
    let title = b
        .wait()
        .for_element(Locator::Id("result-title"))
        .await
        .unwrap();
    assert_eq!(title.text().await.unwrap(), "Payment received");
    let id = order["id"].as_str().unwrap();
    wait_for_status(&app, id, "paid").await;
    // localstripe's own signed webhook arrives about a second later and is applied too.
    let mut applied = false;
    for _ in 0..50 {
        let events: Value = app
            .get_json("/api/v1/events?type=payment_intent.succeeded")
            .await;
        if events["data"]
            .as_array()
            .is_some_and(|d| d.iter().any(|e| e["status"] == "applied"))
        {
            applied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        applied,
        "localstripe's payment_intent.succeeded was not received and applied"
    );

    // A card declined at charge time: the page shows the decline, the order is not paid.
    let order = new_order().await;
    let pi = order["payment_intent"].as_str().unwrap();
    attach_card(&localstripe.url, &secret_key, pi, "4000008260003178").await;
    pay_on_page(
        &b,
        order["checkout_url"].as_str().unwrap(),
        "4000008260003178",
    )
    .await;
    let message = b.find(Locator::Id("payment-message")).await.unwrap();
    let mut text = String::new();
    for _ in 0..100 {
        text = message.text().await.unwrap();
        if !text.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text.contains("declined"), "{text}");
    let id = order["id"].as_str().unwrap();
    let failed = wait_for_status(&app, id, "failed").await;
    assert!(failed["failure"]["code"].is_string(), "{failed}");
    b.close().await.unwrap();
}

/// Waits until an event of `event_type` from localstripe was received and applied.
async fn wait_applied(app: &TestApp, event_type: &str) {
    for _ in 0..100 {
        let events: Value = app
            .get_json(&format!("/api/v1/events?type={event_type}"))
            .await;
        if events["data"]
            .as_array()
            .is_some_and(|d| d.iter().any(|e| e["status"] == "applied"))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("localstripe's {event_type} was not received and applied");
}

#[tokio::test]
async fn the_platform_bills_a_vendor_against_localstripe() {
    let localstripe = start_localstripe();
    let platform_key = format!("sk_test_platform{}", crate::support::random(16));
    let app = TestApp::spawn_with(&[
        ("STRIPE_API_BASE", &localstripe.url),
        ("STRIPE_SECRET_KEY", &platform_key),
    ])
    .await;
    // localstripe's signed webhooks go to the platform endpoint, with the platform's secret.
    let r = reqwest::Client::new()
        .post(format!("{}/_config/webhooks/platform", localstripe.url))
        .form(&[
            ("url", format!("{}/webhooks/stripe", app.url)),
            ("secret", crate::support::PLATFORM_SECRET.to_owned()),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    // localstripe has Plans, not Prices: Bursar takes a Plan id where it takes a price id.
    for (id, interval, amount) in [
        ("basic-monthly", "month", "2900"),
        ("basic-yearly", "year", "29000"),
    ] {
        ls(
            &localstripe.url,
            &platform_key,
            "/v1/plans",
            &[
                ("id", id),
                ("amount", amount),
                ("currency", "usd"),
                ("interval", interval),
                ("product[name]", "Marketplace seat"),
            ],
        )
        .await;
    }
    let store = app.create_store("Vendor").await;
    let put = |plan: &'static str| {
        let app = &app;
        let store = store.clone();
        async move {
            let r = app
                .api(Method::PUT, &format!("/api/v1/stores/{store}/subscription"))
                .json(&json!({"price_id": plan, "trial_days": 14}))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            assert_eq!(status, 200, "{body}");
            body
        }
    };

    // Subscribed during a trial: no invoice yet; localstripe's signed
    // customer.subscription.created reaches the platform endpoint and is applied.
    let view = put("basic-monthly").await;
    let subscription = view["subscription_id"].as_str().unwrap().to_owned();
    let customer = view["customer_id"].as_str().unwrap().to_owned();
    assert!(subscription.starts_with("sub_"), "{view}");
    assert_eq!(view["price_id"], "basic-monthly");
    wait_applied(&app, "customer.subscription.created").await;

    // The vendor adds a card (on Stripe's page, in life), then moves to the yearly plan: Stripe
    // invoices the change and charges the card, and the vendor is active.
    let pm = ls(
        &localstripe.url,
        &platform_key,
        "/v1/payment_methods",
        &[
            ("type", "card"),
            ("card[number]", "4242424242424242"),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2034"),
            ("card[cvc]", "123"),
        ],
    )
    .await;
    let pm = pm["id"].as_str().unwrap();
    ls(
        &localstripe.url,
        &platform_key,
        &format!("/v1/payment_methods/{pm}/attach"),
        &[("customer", &customer)],
    )
    .await;
    ls(
        &localstripe.url,
        &platform_key,
        &format!("/v1/customers/{customer}"),
        &[("invoice_settings[default_payment_method]", pm)],
    )
    .await;
    let view = put("basic-yearly").await;
    assert_eq!(view["price_id"], "basic-yearly", "{view}");
    assert_eq!(view["subscription_id"], subscription.as_str());
    assert_eq!(view["vendor_status"], "active", "{view}");
    wait_applied(&app, "invoice.payment_succeeded").await;

    // Cancelled at the period's end, then at once: Stripe's deletion event keeps it cancelled.
    let cancel = |now: bool| {
        let app = &app;
        let store = store.clone();
        async move {
            let r = app
                .api(
                    Method::DELETE,
                    &format!("/api/v1/stores/{store}/subscription?now={now}"),
                )
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    let view = cancel(false).await;
    assert_eq!(view["cancel_at_period_end"], true, "{view}");
    assert_eq!(view["vendor_status"], "active");
    let view = cancel(true).await;
    assert_eq!(view["vendor_status"], "canceled", "{view}");
    wait_applied(&app, "customer.subscription.deleted").await;
    app.drain().await;
    let view = app
        .get_json(&format!("/api/v1/stores/{store}/subscription"))
        .await;
    assert_eq!(view["vendor_status"], "canceled", "{view}");
    assert_eq!(view["status"], "canceled");
}

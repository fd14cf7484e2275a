//! A real browser through the merchant pages: headless Debian Chromium driven over WebDriver
//! (chromedriver) with fantoccini. It opens a signed key-entry link, submits a bad key and reads
//! the inline error, submits good keys and lands on the platform's return page; then it runs
//! the Standard OAuth round trip through the local Stripe's authorize page.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's `chromium` and
//! `chromium-driver`; `.ci/run` installs them). Other paths: `CHROMIUM`, `CHROMEDRIVER`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::pages::connect_link;
use crate::support::TestApp;

pub struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn path_of(var: &str, default: &str) -> String {
    let path = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: install Debian's chromium and chromium-driver (or set {var})"
    );
    path
}

pub async fn start_driver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(path_of("CHROMEDRIVER", "/usr/bin/chromedriver"))
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    // Owned by the guard at once, so it is killed and reaped on every path.
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if reqwest::get(format!("{}/status", driver.url)).await.is_ok() {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start on {}", driver.url);
}

pub async fn browser(driver: &Driver) -> Client {
    let profile = tempfile::tempdir().unwrap().keep();
    let caps = json!({
        "goog:chromeOptions": {
            "binary": path_of("CHROMIUM", "/usr/bin/chromium"),
            // The flags this machine needs: no sandbox as root, and no background network
            // traffic to hosts a closed network refuses.
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

/// The platform's own page the merchant returns to.
async fn platform_site() -> String {
    let app = axum::Router::new().route(
        "/vendors/{*rest}",
        axum::routing::get(|| async {
            axum::response::Html(
                "<!doctype html><title>Platform</title><h1 id=welcome>Welcome back</h1>",
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn wait_for_url(b: &Client, prefix: &str) -> String {
    for _ in 0..100 {
        let url = b.current_url().await.unwrap().to_string();
        if url.starts_with(prefix) {
            return url;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the browser never reached {prefix}; it is on {}",
        b.current_url().await.unwrap()
    );
}

async fn fill(b: &Client, id: &str, value: &str) {
    let field = b.find(Locator::Id(id)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

#[tokio::test]
async fn a_merchant_connects_in_a_real_browser() {
    let site = platform_site().await;
    let allow = format!("{site}/vendors");
    let app = TestApp::spawn_with(&[("BURSAR_RETURN_URL_ALLOWLIST", &allow)]).await;
    let driver = start_driver().await;
    let b = browser(&driver).await;

    // Key entry: a bad key is explained on the page; good keys return to the platform.
    let store = app.create_store("Acme Outfitters").await;
    let back = format!("{site}/vendors/acme");
    let link = connect_link(&app, &store, Some(&back)).await;
    b.goto(&link).await.unwrap();
    b.wait()
        .for_element(Locator::Id("secret_key"))
        .await
        .unwrap();
    let source = b.source().await.unwrap();
    assert!(source.contains("Acme Outfitters"), "{source}");
    // On a phone-sized window the long webhook URL wraps inside the card, and the button is
    // styled as one.
    b.set_window_size(390, 844).await.unwrap();
    let fits = b
        .execute(
            "const card = document.querySelector('main').getBoundingClientRect();
             const url = document.querySelector('#webhook_help code').getBoundingClientRect();
             const button = getComputedStyle(document.getElementById('save'));
             return [url.right <= card.right + 0.5, document.documentElement.scrollWidth <= window.innerWidth,
                     button.backgroundColor];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(fits[0], true, "the webhook URL overflows its card");
    assert_eq!(fits[1], true, "the page scrolls sideways");
    assert_ne!(fits[2], "rgba(0, 0, 0, 0)", "the button is unstyled");
    assert_ne!(fits[2], "rgb(239, 239, 239)", "the button is unstyled");
    fill(&b, "secret_key", "rk_test_thisisnotakey12345").await;
    fill(&b, "publishable_key", "pk_test_thisisnotakey12345").await;
    b.find(Locator::Id("save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let error = b.wait().for_element(Locator::Id("error")).await.unwrap();
    let text = error.text().await.unwrap();
    assert!(text.contains("Stripe refused this key"), "{text}");

    let account = app.sim.add_account(false);
    fill(&b, "secret_key", &account.restricted_key).await;
    fill(&b, "publishable_key", &account.publishable_key).await;
    b.find(Locator::Id("save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(wait_for_url(&b, &back).await, back);
    b.wait().for_element(Locator::Id("welcome")).await.unwrap();
    assert_eq!(app.account(&store).await["account_id"], account.id.as_str());

    // Standard OAuth: Bursar's authorize URL, Stripe's consent page, the callback, home.
    let oauth_store = app.create_store("Beta Bikes").await;
    let back = format!("{site}/vendors/beta");
    let r = app
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/stores/{oauth_store}/onboarding"),
        )
        .json(&json!({"type": "standard", "return_url": back}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let authorize = r.json::<serde_json::Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    b.goto(&authorize).await.unwrap();
    b.find(Locator::Id("connect"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(wait_for_url(&b, &back).await, back);
    let view = app.account(&oauth_store).await;
    assert_eq!(view["connect_type"], "standard");
    assert_eq!(view["connected"], true);

    b.close().await.unwrap();
}

async fn pay_with(b: &Client, number: &str) {
    for (name, value) in [
        ("cardnumber", number),
        ("exp-date", "12 / 34"),
        ("cvc", "123"),
        ("postal", "10001"),
    ] {
        let input = b
            .find(Locator::Css(&format!("#card-element input[name={name}]")))
            .await
            .unwrap();
        input.clear().await.unwrap();
        input.send_keys(value).await.unwrap();
    }
    b.find(Locator::Id("pay"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_customer_pays_on_the_hosted_page_in_a_real_browser() {
    let app = TestApp::spawn().await;
    let driver = start_driver().await;
    let b = browser(&driver).await;
    for connect in [false, true] {
        let (store, _) = if connect {
            crate::orders::connect_store(&app).await
        } else {
            crate::orders::keys_store(&app).await
        };
        let r = app
            .api(
                reqwest::Method::POST,
                &format!("/api/v1/stores/{store}/orders"),
            )
            .json(&json!({"amount": 2599, "currency": "usd", "description": "Blue mug"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let order: serde_json::Value = r.json().await.unwrap();
        let id = order["id"].as_str().unwrap();
        b.goto(order["checkout_url"].as_str().unwrap())
            .await
            .unwrap();
        b.wait()
            .for_element(Locator::Css("#card-element input[name=cardnumber]"))
            .await
            .unwrap();
        assert_eq!(
            b.find(Locator::Id("amount"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
            "25.99 USD"
        );

        // A declined card: the page says so and the order is not paid.
        pay_with(&b, "4000000000000002").await;
        let message = b.find(Locator::Id("payment-message")).await.unwrap();
        let mut text = String::new();
        for _ in 0..100 {
            text = message.text().await.unwrap();
            if !text.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(text.to_lowercase().contains("declined"), "{text}");
        app.drain().await;
        let now = app.get_json(&format!("/api/v1/orders/{id}")).await;
        assert_ne!(now["status"], "paid");

        // A good card: the result page shows the order as Stripe has it.
        pay_with(&b, "4242424242424242").await;
        let title = b
            .wait()
            .for_element(Locator::Id("result-title"))
            .await
            .unwrap();
        assert_eq!(title.text().await.unwrap(), "Payment received");
        let paid = app.get_json(&format!("/api/v1/orders/{id}")).await;
        assert_eq!(paid["status"], "paid", "{paid}");
        if connect {
            let confirms: Vec<_> = app.sim.requests(&format!(
                "/v1/payment_intents/{}/confirm",
                order["payment_intent"].as_str().unwrap()
            ));
            assert!(confirms
                .iter()
                .any(|c| c.body.contains("_stripe_account=acct_")));
        }
    }
    b.close().await.unwrap();
}

/// `/api/docs` renders the OpenAPI document in a real browser, under its own strict policy,
/// with every script and style served by Bursar (a CDN is never reached).
#[tokio::test]
async fn the_api_reference_renders_in_a_real_browser() {
    let app = TestApp::spawn().await;
    let r = app
        .anon(reqwest::Method::GET, "/api/docs")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let html = r.text().await.unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    let driver = start_driver().await;
    let b = browser(&driver).await;
    b.goto(&format!("{}/api/docs", app.url)).await.unwrap();
    // Swagger UI lists each operation as an `opblock`, once it has fetched the document.
    let op = b
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(fantoccini::Locator::Css("#operations-orders-create_order"))
        .await
        .expect("the reference lists the operations");
    assert!(op.text().await.unwrap().contains("/stores/{id}/orders"));
    b.close().await.unwrap();
}

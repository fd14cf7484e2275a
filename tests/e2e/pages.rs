//! The merchant key-entry pages over plain HTTP: signed links (unsigned, expired, tampered,
//! off-list return URL), the CSRF token, inline errors, the success redirect and the headers
//! every page carries. The browser drives the same pages in `browser.rs`.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{error_code, TestApp, RETURN_PREFIX};

pub async fn connect_link(app: &TestApp, store: &str, return_url: Option<&str>) -> String {
    let r = app
        .api(
            Method::POST,
            &format!("/api/v1/stores/{store}/connect-link"),
        )
        .json(&json!({ "return_url": return_url }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The form's hidden fields and the CSRF cookie, as a browser would hold them.
pub async fn open_form(app: &TestApp, link: &str) -> (Vec<(String, String)>, String) {
    let r = app.browserless().get(link).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let html = r.text().await.unwrap();
    let fields = ["store_id", "return_url", "expires", "signature", "csrf"]
        .iter()
        .map(|name| {
            let marker = format!("name=\"{name}\" value=\"");
            let start = html.find(&marker).unwrap() + marker.len();
            let end = start + html[start..].find('"').unwrap();
            let value = html[start..end].replace("&#38;", "&").replace("&amp;", "&");
            (name.to_string(), value)
        })
        .collect();
    (fields, cookie)
}

async fn submit(
    app: &TestApp,
    fields: &[(String, String)],
    cookie: Option<&str>,
    keys: &[(&str, &str)],
) -> reqwest::Response {
    let mut form: Vec<(String, String)> = fields.to_vec();
    form.extend(keys.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut r = app
        .browserless()
        .post(format!("{}/stripe/connect", app.url))
        .form(&form);
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn good_keys_through_the_form_connect_the_store_and_return() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Acme").await;
    let back = format!("{RETURN_PREFIX}/acme");
    let link = connect_link(&app, &store, Some(&back)).await;
    let page = app.browserless().get(&link).send().await.unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert!(
        csp.contains("form-action 'self' https://platform.example"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    let html = page.text().await.unwrap();
    assert!(html.contains("<label for=\"secret_key\">") && html.contains("Acme"));
    assert!(!html.contains("<script"));

    let account = app.sim.add_account(false);
    let (fields, cookie) = open_form(&app, &link).await;
    let r = submit(
        &app,
        &fields,
        Some(&cookie),
        &[
            ("secret_key", &account.restricted_key),
            ("publishable_key", &account.publishable_key),
            ("webhook_secret", "whsec_formsecret123"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], back.as_str());
    let view = app.account(&store).await;
    assert_eq!(view["account_id"], account.id.as_str());
    assert_eq!(view["kind"], "keys");
    assert!(!crate::support::logs().contains(&account.restricted_key));
    // The link has done its work: it cannot replace the connection, even with valid keys.
    let again = app.browserless().get(&link).send().await.unwrap();
    assert_eq!(again.status(), 409);
    let other_account = app.sim.add_account(false);
    let r = submit(
        &app,
        &fields,
        Some(&cookie),
        &[
            ("secret_key", &other_account.restricted_key),
            ("publishable_key", &other_account.publishable_key),
        ],
    )
    .await;
    assert_eq!(r.status(), 409);
    assert_eq!(app.account(&store).await["account_id"], account.id.as_str());

    // Without a return URL the merchant lands on Bursar's success page.
    let other = app.create_store("Other").await;
    let link = connect_link(&app, &other, None).await;
    let (fields, cookie) = open_form(&app, &link).await;
    let second = app.sim.add_account(false);
    let r = submit(
        &app,
        &fields,
        Some(&cookie),
        &[
            ("secret_key", &second.restricted_key),
            ("publishable_key", &second.publishable_key),
        ],
    )
    .await;
    assert_eq!(
        r.headers()["location"],
        format!("/stripe/success/{other}").as_str()
    );
    let r = app
        .anon(Method::GET, &format!("/stripe/success/{other}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Stripe account connected"));
    // It says so of connected stores only: not of one without a connection, nor of an unknown id.
    let bare = app.create_store("Bare").await;
    let r = app
        .anon(Method::GET, &format!("/stripe/success/{bare}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("Not connected yet") && !text.contains("is connected"),
        "{text}"
    );
    for unknown in ["st_01nosuchstore0000000000000", "not-an-id"] {
        let r = app
            .anon(Method::GET, &format!("/stripe/success/{unknown}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{unknown}");
    }
}

#[tokio::test]
async fn a_bad_key_is_explained_inline_and_nothing_is_saved() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Acme").await;
    let link = connect_link(&app, &store, None).await;
    let (fields, cookie) = open_form(&app, &link).await;
    let r = submit(
        &app,
        &fields,
        Some(&cookie),
        &[
            ("secret_key", "rk_test_notarealkey0000000000"),
            ("publishable_key", "pk_test_abc12345678"),
        ],
    )
    .await;
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    assert!(html.contains("Stripe refused this key"), "{html}");
    assert!(
        !html.contains("rk_test_notarealkey0000000000"),
        "the key was echoed"
    );
    assert!(html.contains("value=\"pk_test_abc12345678\""));

    let r = submit(
        &app,
        &fields,
        Some(&cookie),
        &[
            ("secret_key", "not-a-key"),
            ("publishable_key", "pk_test_abc12345678"),
        ],
    )
    .await;
    assert_eq!(r.status(), 422);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("The secret key must be a Stripe secret"),
        "a sentence a merchant reads: {text}"
    );
    assert_eq!(app.account(&store).await["connected"], false);
}

#[tokio::test]
async fn the_form_needs_its_csrf_cookie() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Acme").await;
    let link = connect_link(&app, &store, None).await;
    let (fields, _) = open_form(&app, &link).await;
    let account = app.sim.add_account(false);
    let keys = [
        ("secret_key", account.restricted_key.as_str()),
        ("publishable_key", account.publishable_key.as_str()),
    ];
    for cookie in [None, Some("bursar_csrf=someoneelses")] {
        let r = submit(&app, &fields, cookie, &keys).await;
        assert_eq!(r.status(), 403);
    }
    assert_eq!(app.account(&store).await["connected"], false);
    assert!(app.sim.requests("/v1/account").is_empty());
}

#[tokio::test]
async fn unsigned_expired_tampered_and_off_list_links_are_refused() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Acme").await;
    let other = app.create_store("Other").await;
    let link = connect_link(&app, &store, Some(&format!("{RETURN_PREFIX}/a"))).await;
    let get = |url: String| async {
        app.browserless()
            .get(url)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };

    assert_eq!(
        get(format!("{}/stripe/connect?store_id={store}", app.url)).await,
        400
    );
    assert_eq!(get(link.replace(&store, &other)).await, 403);
    assert_eq!(
        get(link.replace("%2Fa&", "%2Fb&").replace("/a&", "/b&")).await,
        403,
        "return URL swapped"
    );
    let mut tampered = link.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    assert_eq!(get(tampered).await, 403);

    let id = bursar::domain::StoreId::parse(&store).unwrap();
    let expired = bursar::service::links::signed_connect_link(
        &app.services,
        &id,
        "",
        crate::support::now() - 1,
    );
    let r = app.browserless().get(&expired).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("expired"));

    // The API refuses to sign an off-list return URL or a silly lifetime.
    for body in [
        json!({"return_url": "https://evil.example/"}),
        json!({"expires_in": 5}),
        json!({"expires_in": "soon"}),
    ] {
        let r = app
            .api(
                Method::POST,
                &format!("/api/v1/stores/{store}/connect-link"),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
    }
    let r = app
        .anon(
            Method::POST,
            &format!("/api/v1/stores/{store}/connect-link"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (status, _, _) = error_code(
        app.api(Method::POST, "/api/v1/stores/st_nosuch/connect-link")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn oversize_form_posts_are_refused() {
    let app = TestApp::spawn().await;
    let big = "x".repeat(64 * 1024);
    let r = app
        .browserless()
        .post(format!("{}/stripe/connect", app.url))
        .form(&[("secret_key", big.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

#[tokio::test]
async fn the_cli_prints_the_link_alone_on_stdout() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Acme").await;
    let dir = tempfile::tempdir().unwrap();
    let out = crate::support::bursar(&app.env, dir.path())
        .args(["connect-link", "--store", &store, "--return-url"])
        .arg(format!("{RETURN_PREFIX}/x"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1);
    let link = stdout.trim();
    assert!(link.starts_with(&format!("{}/stripe/connect?store_id={store}", app.url)));
    assert_eq!(
        app.browserless().get(link).send().await.unwrap().status(),
        200
    );

    let out = crate::support::bursar(&app.env, dir.path())
        .args([
            "connect-link",
            "--store",
            &store,
            "--return-url",
            "https://evil.example/",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("allow-list"));
}

#[tokio::test]
async fn a_key_entry_link_connects_once_and_never_again_after_a_disconnect() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Acme").await;
    let link = connect_link(&app, &store, None).await;
    let (fields, cookie) = open_form(&app, &link).await;
    // Keys Stripe refuses give the link back, so the merchant can correct them.
    let r = submit(
        &app,
        &fields,
        Some(&cookie),
        &[
            ("secret_key", "rk_test_nosuchkey"),
            ("publishable_key", "pk_test_x"),
        ],
    )
    .await;
    assert_eq!(r.status(), 422);
    let account = app.sim.add_account(false);
    let keys = [
        ("secret_key", account.restricted_key.as_str()),
        ("publishable_key", account.publishable_key.as_str()),
    ];
    assert_eq!(
        submit(&app, &fields, Some(&cookie), &keys).await.status(),
        303
    );
    let r = app
        .api(
            Method::DELETE,
            &format!("/api/v1/stores/{store}/connection"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Disconnected, the store would take keys again, but not through the spent link.
    let page = app.browserless().get(&link).send().await.unwrap();
    assert_eq!(page.status(), 403);
    assert!(page.text().await.unwrap().contains("already used"));
    let r = submit(&app, &fields, Some(&cookie), &keys).await;
    assert_eq!(r.status(), 403);
    assert_eq!(app.account(&store).await["connected"], false);
    // A fresh link works.
    let link = connect_link(&app, &store, None).await;
    let (fields, cookie) = open_form(&app, &link).await;
    assert_eq!(
        submit(&app, &fields, Some(&cookie), &keys).await.status(),
        303
    );
}

#[tokio::test]
async fn a_spent_link_stays_spent_whatever_case_its_signature_is_written_in() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Acme").await;
    let link = connect_link(&app, &store, None).await;
    let (fields, cookie) = open_form(&app, &link).await;
    let account = app.sim.add_account(false);
    let keys = [
        ("secret_key", account.restricted_key.as_str()),
        ("publishable_key", account.publishable_key.as_str()),
    ];
    assert_eq!(
        submit(&app, &fields, Some(&cookie), &keys).await.status(),
        303
    );
    app.api(
        Method::DELETE,
        &format!("/api/v1/stores/{store}/connection"),
    )
    .send()
    .await
    .unwrap();
    let mut url = url::Url::parse(&link).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "signature" {
                let (nonce, mac) = v.split_once('.').unwrap();
                format!("{nonce}.{}", mac.to_uppercase())
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let page = app.browserless().get(url.as_str()).send().await.unwrap();
    assert_eq!(page.status(), 403);
    assert!(page.text().await.unwrap().contains("already used"));
}

/// A form body of another type, or with a field sent twice, gets the pages' own HTML error.
#[tokio::test]
async fn an_unreadable_form_gets_the_pages_own_error() {
    let app = TestApp::spawn().await;
    let r = app
        .anon(Method::POST, "/stripe/connect")
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("This form cannot be read"));
    let r = app
        .anon(Method::POST, "/stripe/connect")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("store_id=st_a&store_id=st_b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("sent twice"));
}

/// A merchant who pasted a full secret key without a webhook secret, where Bursar cannot make
/// the endpoint, reads what to check before continuing to the platform.
#[tokio::test]
async fn the_merchant_reads_what_to_check_before_moving_on() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Acme").await;
    let back = format!("{RETURN_PREFIX}/acme");
    let link = connect_link(&app, &store, Some(&back)).await;
    let (fields, cookie) = open_form(&app, &link).await;
    let account = app.sim.add_account(false);
    app.sim.fail(
        Method::POST,
        "/v1/webhook_endpoints",
        crate::support::Fault::Status(403),
        1,
    );
    let r = submit(
        &app,
        &fields,
        Some(&cookie),
        &[
            ("secret_key", &account.secret_key),
            ("publishable_key", &account.publishable_key),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("restricted key (rk_)"), "{html}");
    assert!(html.contains("webhook endpoint"), "{html}");
    assert!(html.contains(&format!("href=\"{back}\"")), "{html}");
    assert_eq!(app.account(&store).await["connected"], true);
}

//! The operator console over plain HTTP: sessions (login, cookie flags, CSRF, logout, expiry,
//! revocation, the login limit), every page behind the session, escaping of what stores,
//! orders and events carry, no secret on any page, and the actions (re-check, refund with its
//! confirmation, replay one and many, redeliver, re-enable, revoke). `console_browser.rs`
//! drives the same pages in a real browser.

use reqwest::{Method, Response};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use stripe_sim::Card;

use crate::support::{event, random, store_path, Fault, TestApp};

pub const SESSION_COOKIE: &str = "bursar_console";
const LOGIN_COOKIE: &str = "bursar_console_login";

/// Every page a browser can open, with ids that need not exist: the session is checked first.
const PAGES: &[&str] = &[
    "/console",
    "/console/doctor",
    "/console/stores",
    "/console/stores/st_nosuchstore",
    "/console/orders",
    "/console/orders?status=pending",
    "/console/orders/ord_nosuchorder",
    "/console/events",
    "/console/events/1",
    "/console/notifications",
    "/console/api-keys",
];

/// Every form's target.
const FORMS: &[&str] = &[
    "/console/logout",
    "/console/doctor",
    "/console/orders/ord_nosuchorder/sync",
    "/console/orders/ord_nosuchorder/refund",
    "/console/events/1/replay",
    "/console/events/replay",
    "/console/notifications/msg_nosuch/redeliver",
    "/console/endpoints/ne_nosuch/enable",
    "/console/api-keys/key_nosuch/revoke",
];

const SCRIPT: &str = "<script>alert(1)</script>";
const IMG: &str = "<img src=x onerror=alert(1)>";

/// The whole `Set-Cookie` header that sets `name`, if the answer has one.
pub fn set_cookie(r: &Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{name}=")))
}

/// `name=value` of the cookie `name` sets, as a `Cookie` header sends it back.
fn cookie_pair(r: &Response, name: &str) -> String {
    let header = set_cookie(r, name).unwrap_or_else(|| panic!("no {name} cookie set"));
    header.split(';').next().unwrap().to_owned()
}

/// The value of the first `<input name="{name}" value="…">` of a page.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field in {html}"))
        + marker.len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end].to_owned()
}

/// The login form's token and its cookie, as a browser holds them.
async fn login_form(app: &TestApp) -> (String, String) {
    let r = app
        .browserless()
        .get(format!("{}/console/login", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = cookie_pair(&r, LOGIN_COOKIE);
    let html = r.text().await.unwrap();
    (hidden(&html, "csrf_token"), cookie)
}

/// Posts the login form with `key`, as a browser that opened it.
async fn submit_login(app: &TestApp, key: &str) -> Response {
    submit_login_forwarded(app, key, None).await
}

/// The login form sent with an `X-Forwarded-For` header, as a proxy in front would send it.
async fn submit_login_forwarded(app: &TestApp, key: &str, forwarded: Option<&str>) -> Response {
    let (token, cookie) = login_form(app).await;
    let mut request = app
        .browserless()
        .post(format!("{}/console/login", app.url))
        .header("cookie", cookie);
    if let Some(chain) = forwarded {
        request = request.header("x-forwarded-for", chain);
    }
    request
        .form(&[("api_key", key), ("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap()
}

/// A signed-in browser, as far as HTTP goes: its session cookie and its pages' CSRF token.
pub struct Operator {
    client: reqwest::Client,
    base: String,
    pub cookie: String,
    pub csrf: String,
}

impl Operator {
    pub async fn sign_in(app: &TestApp) -> Self {
        Self::sign_in_with(app, &app.api_key).await
    }

    pub async fn sign_in_with(app: &TestApp, key: &str) -> Self {
        let r = submit_login(app, key).await;
        assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
        assert_eq!(r.headers()["location"], "/console");
        let mut operator = Self {
            client: app.browserless(),
            base: app.url.clone(),
            cookie: cookie_pair(&r, SESSION_COOKIE),
            csrf: String::new(),
        };
        let html = operator.html("/console").await;
        operator.csrf = hidden(&html, "csrf_token");
        operator
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap()
    }

    /// A page that must answer 200.
    pub async fn html(&self, path: &str) -> String {
        let r = self.get(path).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "{path}: {text}");
        text
    }

    /// Posts `form` as it is (no CSRF token added).
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Response {
        self.client
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// Posts `form` with the session's CSRF token, as the page's form does.
    pub async fn act(&self, path: &str, form: &[(&str, &str)]) -> Response {
        let mut fields = vec![("csrf_token", self.csrf.as_str())];
        fields.extend_from_slice(form);
        self.post(path, &fields).await
    }
}

fn assert_to_login(r: &Response, what: &str) {
    assert_eq!(r.status(), 303, "{what}");
    assert_eq!(r.headers()["location"], "/console/login", "{what}");
}

async fn sessions(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM console_sessions")
        .fetch_one(app.services.db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn without_a_session_every_page_and_form_sends_the_browser_to_log_in() {
    let app = TestApp::spawn().await;
    let client = app.browserless();
    let unknown = format!("{SESSION_COOKIE}={}", "A".repeat(43));
    for cookie in [
        None,
        Some("bursar_console=nonsense"),
        Some(unknown.as_str()),
    ] {
        for path in PAGES {
            let mut r = client.get(format!("{}{path}", app.url));
            if let Some(c) = cookie {
                r = r.header("cookie", c);
            }
            assert_to_login(&r.send().await.unwrap(), path);
        }
        for path in FORMS {
            let mut r = client
                .post(format!("{}{path}", app.url))
                .form(&[("csrf_token", "whatever")]);
            if let Some(c) = cookie {
                r = r.header("cookie", c);
            }
            assert_to_login(&r.send().await.unwrap(), path);
        }
        // An address that is no console page tells nothing either.
        let mut r = client.get(format!("{}/console/no/such/page", app.url));
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        assert_to_login(&r.send().await.unwrap(), "/console/no/such/page");
    }

    // Signed in, such an address gets the console's own page, under its headers.
    let admin = Operator::sign_in(&app).await;
    let r = admin.get("/console/no/such/page").await;
    assert_eq!(r.status(), 404);
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    let html = r.text().await.unwrap();
    assert!(
        html.contains("There is no console page at this address."),
        "{html}"
    );
    assert!(html.contains("Log out"), "{html}");

    // The login page itself: the policy, no framing, not cached, no inline script.
    let r = client
        .get(format!("{}/console/login", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    for directive in [
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "script-src 'self'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    assert!(html.contains("name=\"api_key\"") && html.contains("name=\"csrf_token\""));
    assert!(html.contains("<label for=\"api_key\">"));
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script src=\"/console/assets/console.js\"")
            .count(),
        "only our own script file: {html}"
    );
    for (asset, kind) in [
        ("console.css", "text/css"),
        ("console.js", "text/javascript"),
    ] {
        let r = client
            .get(format!("{}/console/assets/{asset}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
    }
}

#[tokio::test]
async fn a_good_key_opens_a_strict_session_and_a_wrong_one_is_refused() {
    let app = TestApp::spawn().await;
    let r = submit_login(&app, "bsr_notakeyatall0000000000000000000").await;
    assert_eq!(r.status(), 401);
    assert!(set_cookie(&r, SESSION_COOKIE).is_none());
    let html = r.text().await.unwrap();
    assert!(
        html.contains("not accepted") && html.contains("name=\"api_key\""),
        "{html}"
    );
    assert_eq!(sessions(&app).await, 0);

    let r = submit_login(&app, &app.api_key).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console");
    let header = set_cookie(&r, SESSION_COOKIE).unwrap();
    let attributes: Vec<&str> = header.split(';').map(str::trim).collect();
    for wanted in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(attributes.contains(&wanted), "{header}");
    }
    assert!(
        !attributes.contains(&"Secure"),
        "http:// serves no Secure cookie: {header}"
    );
    // The login form's token is spent.
    let login = set_cookie(&r, LOGIN_COOKIE).unwrap();
    assert!(login.contains("Max-Age=0"), "{login}");
    let token = cookie_pair(&r, SESSION_COOKIE)["bursar_console=".len()..].to_owned();
    assert_eq!(token.len(), 43, "32 random bytes, base64url");
    let stored: String = sqlx::query_scalar("SELECT id_hash FROM console_sessions")
        .fetch_one(app.services.db.pool())
        .await
        .unwrap();
    assert_eq!(stored, hex::encode(Sha256::digest(token.as_bytes())));
    assert!(
        !crate::support::logs().contains(&token),
        "the session id is never logged"
    );

    let operator = Operator::sign_in(&app).await;
    let overview = operator.html("/console").await;
    assert!(overview.contains("Overview") && overview.contains("id=\"logout\""));
    // Signed in, the login page sends the browser on.
    let again = operator.get("/console/login").await;
    assert_eq!(again.status(), 303);
    assert_eq!(again.headers()["location"], "/console");
    for path in PAGES
        .iter()
        .filter(|p| !p.contains("nosuch") && !p.ends_with("/1"))
    {
        operator.html(path).await;
    }
    for (path, status) in [
        ("/console/stores/st_nosuchstore", 404),
        ("/console/orders/ord_nosuchorder", 404),
        ("/console/events/1", 404),
        ("/console/orders?status=bogus", 400),
        ("/console/events?status=bogus", 400),
    ] {
        assert_eq!(operator.get(path).await.status(), status, "{path}");
    }
}

#[tokio::test]
async fn a_post_without_the_right_csrf_token_is_refused() {
    let app = TestApp::spawn().await;
    // The login form: no token, a wrong one, or no cookie to match.
    let (token, cookie) = login_form(&app).await;
    let login = format!("{}/console/login", app.url);
    let client = app.browserless();
    let attempts = [
        (
            Some(cookie.as_str()),
            vec![("api_key", app.api_key.as_str())],
        ),
        (
            Some(cookie.as_str()),
            vec![("api_key", app.api_key.as_str()), ("csrf_token", "wrong")],
        ),
        (
            None,
            vec![
                ("api_key", app.api_key.as_str()),
                ("csrf_token", token.as_str()),
            ],
        ),
    ];
    for (cookie, form) in attempts {
        let mut r = client.post(&login).form(&form);
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        assert_eq!(r.send().await.unwrap().status(), 403);
    }
    assert_eq!(sessions(&app).await, 0);

    // Signed in: every form needs the session's own token.
    let operator = Operator::sign_in(&app).await;
    let other = Operator::sign_in(&app).await;
    assert_ne!(operator.csrf, other.csrf, "each session has its own token");
    for path in FORMS {
        assert_eq!(operator.post(path, &[]).await.status(), 403, "{path}");
        let wrong = [("csrf_token", "wrong")];
        assert_eq!(operator.post(path, &wrong).await.status(), 403, "{path}");
        let others = [("csrf_token", other.csrf.as_str())];
        assert_eq!(operator.post(path, &others).await.status(), 403, "{path}");
    }
    operator.html("/console").await;
}

#[tokio::test]
async fn logging_out_ends_the_session() {
    let app = TestApp::spawn().await;
    let operator = Operator::sign_in(&app).await;
    let r = operator.act("/console/logout", &[]).await;
    assert_to_login(&r, "logout");
    let cleared = set_cookie(&r, SESSION_COOKIE).unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_to_login(&operator.get("/console").await, "after logout");
    assert_eq!(sessions(&app).await, 0);
}

#[tokio::test]
async fn an_expired_or_idle_session_asks_to_log_in_again() {
    let app = TestApp::spawn().await;
    let now = bursar::clock::now_ms();
    let operator = Operator::sign_in(&app).await;
    sqlx::query("UPDATE console_sessions SET expires_at = $1")
        .bind(now - 1)
        .execute(app.services.db.pool())
        .await
        .unwrap();
    assert_to_login(&operator.get("/console").await, "expired");

    let operator = Operator::sign_in(&app).await;
    sqlx::query("UPDATE console_sessions SET last_seen_at = $1 WHERE expires_at > $2")
        .bind(now - 31 * 60 * 1000)
        .bind(now)
        .execute(app.services.db.pool())
        .await
        .unwrap();
    assert_to_login(&operator.get("/console").await, "idle");

    // Signing in again clears out the sessions that can no longer be used.
    Operator::sign_in(&app).await;
    assert_eq!(sessions(&app).await, 1);
}

#[tokio::test]
async fn a_revoked_key_ends_its_sessions() {
    let app = TestApp::spawn().await;
    let (ops, ops_key) = bursar::service::api_keys::create(&app.services.db, "ops")
        .await
        .unwrap();
    let ops_key = secrecy::ExposeSecret::expose_secret(&ops_key).to_owned();
    let admin = Operator::sign_in(&app).await;
    let operator = Operator::sign_in_with(&app, &ops_key).await;
    operator.html("/console").await;

    // Revoked through the API: its sessions are gone.
    let r = app
        .api(Method::DELETE, &format!("/api/v1/api-keys/{ops}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_to_login(&operator.get("/console").await, "revoked key");
    assert_eq!(sessions(&app).await, 1, "the other key's session stays");
    admin.html("/console").await;

    // Even a session whose row outlived its key's revocation opens nothing.
    let (_, spare_key) = bursar::service::api_keys::create(&app.services.db, "spare")
        .await
        .unwrap();
    let spare =
        Operator::sign_in_with(&app, secrecy::ExposeSecret::expose_secret(&spare_key)).await;
    sqlx::query("UPDATE api_keys SET revoked_at = 1 WHERE name = 'spare'")
        .execute(app.services.db.pool())
        .await
        .unwrap();
    assert_to_login(&spare.get("/console").await, "revoked in the table");

    // Revoked from the console, this session's own key included.
    let (own, own_key) = bursar::service::api_keys::create(&app.services.db, "own")
        .await
        .unwrap();
    let own_operator =
        Operator::sign_in_with(&app, secrecy::ExposeSecret::expose_secret(&own_key)).await;
    let page = own_operator.html("/console/api-keys").await;
    assert!(page.contains("this session"), "{page}");
    let r = own_operator
        .act(&format!("/console/api-keys/{own}/revoke"), &[])
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console/api-keys?done=revoked");
    assert_to_login(
        &own_operator.get("/console/api-keys").await,
        "own key revoked",
    );
    let keys = admin.html("/console/api-keys").await;
    assert!(keys.contains("revoked"));
    let r = admin
        .act("/console/api-keys/key_nosuchkey/revoke", &[])
        .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn failed_logins_are_limited_per_address() {
    let app = TestApp::spawn().await;
    // Posts without the form's token (what another site can make a browser send) are refused
    // and spend none of the address's tries: the operator can still sign in.
    for _ in 0..20 {
        let r = app
            .browserless()
            .post(format!("{}/console/login", app.url))
            .form(&[("api_key", "bsr_wrongwrongwrongwrongwrongwrong12")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }
    assert_eq!(submit_login(&app, &app.api_key).await.status(), 303);
    for _ in 0..10 {
        let r = submit_login(&app, "bsr_wrongwrongwrongwrongwrongwrong12").await;
        assert_eq!(r.status(), 401);
    }
    // Held back now, even with the right key.
    let r = submit_login(&app, &app.api_key).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "60");
    assert!(set_cookie(&r, SESSION_COOKIE).is_none());
    // No proxy is trusted, so naming another address in X-Forwarded-For changes nothing.
    let r = submit_login_forwarded(&app, &app.api_key, Some("198.51.100.99")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(sessions(&app).await, 1, "only the session opened before");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_limit_is_per_forwarded_client() {
    // The test's connections come from 127.0.0.1: here that is the proxy in front.
    let app = TestApp::spawn_with(&[("BURSAR_TRUSTED_PROXIES", "127.0.0.1")]).await;
    let guesser = Some("198.51.100.7");
    for _ in 0..10 {
        let r = submit_login_forwarded(&app, "bsr_wrongwrongwrongwrongwrongwrong12", guesser).await;
        assert_eq!(r.status(), 401);
    }
    assert_eq!(
        submit_login_forwarded(&app, &app.api_key, guesser)
            .await
            .status(),
        429
    );
    // What the guesser writes to the left of what the proxy appended is not read.
    let spoofed = Some("203.0.113.1, 198.51.100.7");
    assert_eq!(
        submit_login_forwarded(&app, &app.api_key, spoofed)
            .await
            .status(),
        429
    );
    // Another client behind the same proxy still signs in.
    let r = submit_login_forwarded(&app, &app.api_key, Some("198.51.100.8")).await;
    assert_eq!(r.status(), 303);
    assert_eq!(sessions(&app).await, 1);
}

/// A `keys` store that can take charges, named and described with markup, connected with a
/// full secret key and a webhook secret: (store, its secret key, its webhook secret).
async fn hostile_store(app: &TestApp) -> (String, String, String) {
    let account = app.sim.add_independent_account(false);
    app.sim
        .update_account(&account.id, |a| a["charges_enabled"] = json!(true));
    let r = app
        .api(Method::POST, "/api/v1/stores")
        .json(&json!({
            "name": SCRIPT,
            "external_id": "\"><svg/onload=alert(1)>",
            "metadata": { "note": IMG },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let store = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let webhook_secret = format!("whsec_{}", random(24));
    let r = app
        .api(
            Method::PUT,
            &format!("/api/v1/stores/{store}/connection/keys"),
        )
        .json(&json!({
            "secret_key": account.secret_key,
            "publishable_key": account.publishable_key,
            "webhook_secret": webhook_secret,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    (store, account.secret_key, webhook_secret)
}

#[tokio::test]
async fn pages_escape_what_stores_orders_and_events_carry_and_show_no_secret() {
    let app = TestApp::spawn().await;
    let (store, secret_key, webhook_secret) = hostile_store(&app).await;
    let r = app
        .api(Method::POST, &format!("/api/v1/stores/{store}/orders"))
        .json(&json!({
            "amount": 1999, "currency": "usd", "description": SCRIPT,
            "metadata": { "gift": IMG },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let order: Value = r.json().await.unwrap();
    let order_id = order["id"].as_str().unwrap().to_owned();
    let client_secret = order["client_secret"].as_str().unwrap().to_owned();
    let mut payout = event("payout.failed", None, false);
    payout["data"]["object"]["failure_message"] = json!(IMG);
    payout["data"]["object"]["failure_code"] = json!(SCRIPT);
    let r = app
        .deliver(&store_path(&store), &payout, &webhook_secret)
        .await;
    assert_eq!(r.status(), 200);
    app.drain().await;
    let events = app
        .get_json(&format!("/api/v1/events?store_id={store}"))
        .await;
    let seq = events["data"][0]["id"].as_i64().unwrap();

    bursar::service::api_keys::create(&app.services.db, SCRIPT)
        .await
        .unwrap();
    let operator = Operator::sign_in(&app).await;
    let pages = [
        "/console".to_owned(),
        "/console/stores".to_owned(),
        "/console/stores?q=SCRIPT".to_owned(),
        format!("/console/stores/{store}"),
        "/console/orders".to_owned(),
        format!("/console/orders?store_id={store}"),
        format!("/console/orders/{order_id}"),
        "/console/events".to_owned(),
        format!("/console/events/{seq}"),
        "/console/notifications".to_owned(),
        "/console/api-keys".to_owned(),
    ];
    let escaped_script = "&#60;script&#62;alert(1)&#60;/script&#62;";
    let escaped_img = "&#60;img src=x onerror=alert(1)&#62;";
    for path in &pages {
        let html = operator.html(path).await;
        for raw in [SCRIPT, IMG, "<svg"] {
            assert!(!html.contains(raw), "{path} shows {raw} unescaped");
        }
        for secret in [
            secret_key.as_str(),
            webhook_secret.as_str(),
            client_secret.as_str(),
            app.api_key.as_str(),
            &operator.cookie["bursar_console=".len()..],
        ] {
            assert!(!html.contains(secret), "{path} shows a secret");
        }
        assert!(!html.contains("sk_test_"), "{path} shows a secret key");
        assert!(!html.contains("whsec_"), "{path} shows a webhook secret");
    }
    let store_page = operator.html(&format!("/console/stores/{store}")).await;
    assert!(store_page.contains(escaped_script), "{store_page}");
    assert!(store_page.contains(escaped_img), "{store_page}");
    assert!(store_page.contains("&#34;&#62;&#60;svg/onload=alert(1)&#62;"));
    let found = operator.html("/console/stores?q=script").await;
    assert!(found.contains(&store), "the search by name finds it");
    let order_page = operator.html(&format!("/console/orders/{order_id}")).await;
    assert!(order_page.contains(escaped_script) && order_page.contains(escaped_img));
    assert!(order_page.contains("19.99 USD"), "{order_page}");
    let event_page = operator.html(&format!("/console/events/{seq}")).await;
    assert!(event_page.contains(escaped_img), "{event_page}");
    assert!(event_page.contains("<pre id=\"payload\""));
    let keys = operator.html("/console/api-keys").await;
    assert!(keys.contains(escaped_script), "a key's name: {keys}");
    assert!(
        keys.contains(&format!("{}…", &app.api_key[..8])),
        "the key's masked form"
    );
}

#[tokio::test]
async fn recheck_and_refund_with_its_confirmation() {
    let app = TestApp::spawn_with(&[("BURSAR_AUTO_WEBHOOK_ENDPOINTS", "false")]).await;
    let (store, _) = crate::orders::quiet_keys_store(&app).await;
    let order =
        crate::orders::paid_order(&app, &store, json!({"amount": 2500, "currency": "usd"})).await;
    let id = order["id"].as_str().unwrap().to_owned();
    let operator = Operator::sign_in(&app).await;
    let path = format!("/console/orders/{id}");
    let page = operator.html(&path).await;
    assert!(page.contains("id=\"order-status\">pending<"), "{page}");
    assert!(
        !page.contains("id=\"refund\""),
        "no refund before it is paid"
    );

    // Re-check: Stripe's answer moves it.
    let r = operator.act(&format!("{path}/sync"), &[]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        format!("{path}?done=synced").as_str()
    );
    let page = operator.html(&format!("{path}?done=synced")).await;
    assert!(page.contains("id=\"order-status\">paid<"), "{page}");
    assert!(page.contains("id=\"notice\""));

    // A refund: the amount, then a confirmation page, then the refund, once.
    let refund = format!("{path}/refund");
    let r = operator
        .act(&refund, &[("amount", "abc"), ("reason", "")])
        .await;
    assert_eq!(r.status(), 400);
    let r = operator
        .act(
            &refund,
            &[("amount", "5.00"), ("reason", "requested_by_customer")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let confirm = r.text().await.unwrap();
    assert!(confirm.contains("5.00 USD"), "{confirm}");
    let key = hidden(&confirm, "idempotency_key");
    assert_eq!(
        app.get_json(&format!("/api/v1/orders/{id}")).await["amount_refunded"],
        0
    );
    let confirmed = [
        ("amount", "5.00"),
        ("reason", "requested_by_customer"),
        ("idempotency_key", key.as_str()),
        ("confirm", "yes"),
    ];
    for _ in 0..2 {
        let r = operator.act(&refund, &confirmed).await;
        assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    }
    let refunds: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM refunds WHERE order_id = $1")
        .bind(&id)
        .fetch_one(app.services.db.pool())
        .await
        .unwrap();
    assert_eq!(refunds, 1, "the same confirmation sent twice refunds once");
    // The same confirmation with another amount is refused, not a second refund.
    let changed = [
        ("amount", "6.00"),
        ("reason", "requested_by_customer"),
        ("idempotency_key", key.as_str()),
        ("confirm", "yes"),
    ];
    assert_eq!(operator.act(&refund, &changed).await.status(), 409);
    let page = operator.html(&path).await;
    assert!(
        page.contains("5.00 USD") && page.contains("id=\"refunds\""),
        "{page}"
    );
    assert_eq!(refunded(&app, &id).await, [500]);

    // Stripe makes the next refund but its answer is lost, and every retry meets a 500: the
    // confirmation comes back with the same key, and sending it again refunds once.
    app.sim
        .fail(Method::POST, "/v1/refunds", Fault::AfterCommit(500), 1);
    app.sim
        .fail(Method::POST, "/v1/refunds", Fault::Status(500), 100);
    let r = operator
        .act(&refund, &[("amount", "3.00"), ("reason", "")])
        .await;
    let key = hidden(&r.text().await.unwrap(), "idempotency_key");
    let confirmed = [
        ("amount", "3.00"),
        ("reason", ""),
        ("idempotency_key", key.as_str()),
        ("confirm", "yes"),
    ];
    let r = operator.act(&refund, &confirmed).await;
    assert!(r.status().is_server_error(), "{}", r.status());
    let again = r.text().await.unwrap();
    assert!(again.contains("id=\"refund-warning\""), "{again}");
    assert_eq!(
        hidden(&again, "idempotency_key"),
        key,
        "the same key to send again"
    );
    // A new refund meanwhile is told that the lost one is still counted.
    let r = operator
        .act(&refund, &[("amount", "1.00"), ("reason", "")])
        .await;
    assert!(
        r.text().await.unwrap().contains("id=\"refund-warning\""),
        "the unanswered refund is named before another is made"
    );
    app.sim.clear_faults();
    let r = operator.act(&refund, &confirmed).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    assert_eq!(
        refunded(&app, &id).await,
        [500, 300],
        "5.00 then 3.00, the lost one made once"
    );
}

/// The amounts of an order's refunds Stripe made, in order, each with its own Stripe refund.
async fn refunded(app: &TestApp, order: &str) -> Vec<i64> {
    let rows: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT amount, stripe_refund_id FROM refunds WHERE order_id = $1 ORDER BY created_at",
    )
    .bind(order)
    .fetch_all(app.services.db.pool())
    .await
    .unwrap();
    let ids: std::collections::HashSet<_> = rows.iter().map(|(_, s)| s.clone().unwrap()).collect();
    assert_eq!(ids.len(), rows.len(), "one Stripe refund each: {rows:?}");
    rows.into_iter().map(|(a, _)| a).collect()
}

#[tokio::test]
async fn events_are_replayed_one_at_a_time_or_by_filter() {
    let app = TestApp::spawn().await;
    let (store, account, secret) = app.connected_store().await;
    let ids = app.dead_events_of(&store, &account.id, &secret, 3).await;
    let operator = Operator::sign_in(&app).await;
    let list = operator.html("/console/events?status=dead").await;
    for id in &ids {
        assert!(list.contains(id.as_str()), "{list}");
    }
    let overview = operator.html("/console").await;
    assert!(overview.contains("id=\"dead-events\">3<"), "{overview}");

    // One.
    let seq = app.event(&ids[0]).await["id"].as_i64().unwrap();
    let r = operator
        .act(&format!("/console/events/{seq}/replay"), &[])
        .await;
    assert_eq!(r.status(), 303);
    app.wait_for_event(&ids[0], |e| e["status"] == "applied")
        .await;
    let page = operator.html(&format!("/console/events/{seq}")).await;
    assert!(page.contains("id=\"event-status\">applied<"), "{page}");

    // The rest, by their filter, after the confirmation page says how many.
    let filter = [
        ("status", "dead"),
        ("type", "account.updated"),
        ("store_id", store.as_str()),
    ];
    let r = operator.act("/console/events/replay", &filter).await;
    assert_eq!(r.status(), 200);
    let confirm = r.text().await.unwrap();
    assert!(confirm.contains("id=\"replay-count\">2<"), "{confirm}");
    let (through, count) = (hidden(&confirm, "through"), hidden(&confirm, "count"));
    assert_eq!(count, "2");
    // An event that dies after the count is not replayed with them.
    let later = app.dead_events_of(&store, &account.id, &secret, 1).await;
    let mut confirmed = filter.to_vec();
    confirmed.push(("through", through.as_str()));
    confirmed.push(("count", count.as_str()));
    confirmed.push(("confirm", "yes"));
    let r = operator.act("/console/events/replay", &confirmed).await;
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        to.contains("replayed=2") && to.contains("status=dead"),
        "{to}"
    );
    for id in &ids {
        app.wait_for_event(id, |e| e["status"] == "applied").await;
    }
    let after = operator.html(&to).await;
    assert!(after.contains("2 event(s) queued"), "{after}");
    assert_eq!(app.event(&later[0]).await["status"], "dead");
    // A bulk replay needs a filter: the whole inbox is not one click away.
    let r = operator
        .act(
            "/console/events/replay",
            &[("status", ""), ("type", ""), ("store_id", "")],
        )
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("needs a filter"));
}

#[tokio::test]
async fn deliveries_are_sent_again_and_disabled_endpoints_enabled() {
    let app = TestApp::spawn_with(&[("BURSAR_ALLOW_PRIVATE_NOTIFICATION_TARGETS", "true")]).await;
    let r = app
        .api(Method::POST, "/api/v1/notification-endpoints")
        .json(&json!({"url": "https://127.0.0.1:9/hooks", "events": ["store.connected"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let endpoint: Value = r.json().await.unwrap();
    let ne = endpoint["id"].as_str().unwrap().to_owned();
    let endpoint_secret = endpoint["secret"].as_str().unwrap().to_owned();
    // A connection tells the endpoint (and the delivery fails: nothing listens there).
    app.connected_store().await;
    let log = app.get_json("/api/v1/notifications").await;
    let msg = log["data"][0]["id"].as_str().unwrap().to_owned();
    let r = app
        .api(
            Method::PATCH,
            &format!("/api/v1/notification-endpoints/{ne}"),
        )
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let operator = Operator::sign_in(&app).await;
    let page = operator.html("/console/notifications").await;
    assert!(page.contains(&ne) && page.contains(&msg), "{page}");
    assert!(page.contains(&format!("/console/endpoints/{ne}/enable")));
    assert!(!page.contains(&endpoint_secret) && !page.contains("whsec_"));
    let bad = operator
        .get(&format!(
            "/console/notifications?endpoint_id={ne}&status=bogus"
        ))
        .await;
    assert_eq!(bad.status(), 400);

    let r = operator
        .act(&format!("/console/notifications/{msg}/redeliver"), &[])
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/console/notifications?done=redelivered"
    );
    let r = operator
        .act("/console/notifications/msg_nosuchmessage/redeliver", &[])
        .await;
    assert_eq!(r.status(), 404);

    let r = operator
        .act(&format!("/console/endpoints/{ne}/enable"), &[])
        .await;
    assert_eq!(r.status(), 303);
    let now = app
        .get_json(&format!("/api/v1/notification-endpoints/{ne}"))
        .await;
    assert_eq!(now["disabled"], false, "{now}");
    let page = operator.html("/console/notifications?done=enabled").await;
    assert!(page.contains("enabled again"), "{page}");
}

#[tokio::test]
async fn an_order_page_lists_the_events_that_moved_it_and_what_the_platform_was_told() {
    let app = TestApp::spawn_mode(
        &[("BURSAR_ALLOW_PRIVATE_NOTIFICATION_TARGETS", "true")],
        true,
    )
    .await;
    let r = app
        .api(Method::POST, "/api/v1/notification-endpoints")
        .json(&json!({"url": "http://127.0.0.1:9/hooks", "events": ["order.paid"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (store, _) = crate::orders::keys_store(&app).await;
    let mut orders = Vec::new();
    for _ in 0..2 {
        let r = app
            .api(Method::POST, &format!("/api/v1/stores/{store}/orders"))
            .json(&json!({"amount": 1800, "currency": "usd"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        orders.push(r.json::<Value>().await.unwrap());
    }
    // The first is paid through Stripe's webhook; the second is left pending.
    app.sim
        .pay(orders[0]["payment_intent"].as_str().unwrap(), Card::Visa)
        .await;
    app.drain().await;
    let operator = Operator::sign_in(&app).await;
    let paid = operator
        .html(&format!(
            "/console/orders/{}",
            orders[0]["id"].as_str().unwrap()
        ))
        .await;
    assert!(paid.contains("id=\"order-status\">paid<"), "{paid}");
    let events = paid
        .split("id=\"order-events\"")
        .nth(1)
        .expect("the events that moved it are listed");
    assert!(events.contains("payment_intent.succeeded"), "{events}");
    let told = paid
        .split("id=\"order-notifications\"")
        .nth(1)
        .expect("its notifications are listed");
    assert!(told.contains("order.paid"), "{told}");

    let pending = operator
        .html(&format!(
            "/console/orders/{}",
            orders[1]["id"].as_str().unwrap()
        ))
        .await;
    let events = pending
        .split("id=\"order-events\"")
        .nth(1)
        .expect("its own creation event is listed");
    assert!(
        events.contains("payment_intent.created") && !events.contains("payment_intent.succeeded"),
        "only its own events: {events}"
    );
    assert!(
        !pending.contains("id=\"order-notifications\""),
        "the other order's notification is not its own: {pending}"
    );
}

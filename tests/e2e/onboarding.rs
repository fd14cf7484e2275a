//! Connect onboarding against the local Stripe: Standard OAuth (callback success, denied,
//! forged, expired, replayed state), Express with Account Links and Bursar's refresh URL, login
//! links, Accounts v2 with thin events, and disconnecting.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{error_code, TestApp, RETURN_PREFIX};

fn return_url() -> String {
    format!("{RETURN_PREFIX}/acme/done")
}

async fn onboard(app: &TestApp, store: &str, kind: &str) -> reqwest::Response {
    app.api(Method::POST, &format!("/api/v1/stores/{store}/onboarding"))
        .json(&json!({ "type": kind, "return_url": return_url() }))
        .send()
        .await
        .unwrap()
}

fn query(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The OAuth callback as Stripe's redirect would call it; the response is not followed.
async fn callback(app: &TestApp, params: &[(&str, &str)]) -> reqwest::Response {
    app.browserless()
        .get(format!("{}/stripe/oauth/callback", app.url))
        .query(params)
        .send()
        .await
        .unwrap()
}

async fn standard_state(app: &TestApp, store: &str) -> String {
    let r = onboard(app, store, "standard").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    query(body["url"].as_str().unwrap(), "state").unwrap()
}

/// A store connected through Standard OAuth to a new simulated account.
pub async fn oauth_store(app: &TestApp) -> (String, crate::support::SimAccount) {
    let store = app.create_store("Connected").await;
    let state = standard_state(app, &store).await;
    let (code, account) = app.sim.authorize(false);
    let r = callback(app, &[("code", &code), ("state", &state)]).await;
    assert_eq!(r.status(), 303);
    (store, account)
}

#[tokio::test]
async fn standard_oauth_connects_the_account_and_the_code_never_reaches_logs() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Acme").await;
    let r = onboard(&app, &store, "standard").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let url = body["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/oauth/authorize?", app.sim.url)));
    assert_eq!(query(url, "response_type").as_deref(), Some("code"));
    assert_eq!(query(url, "scope").as_deref(), Some("read_write"));
    assert_eq!(query(url, "client_id"), Some(app.sim.client_id.clone()));
    assert_eq!(
        query(url, "redirect_uri"),
        Some(format!("{}/stripe/oauth/callback", app.url))
    );
    let state = query(url, "state").unwrap();

    let (code, account) = app.sim.authorize(false);
    let r = callback(
        &app,
        &[("code", &code), ("state", &state), ("scope", "read_write")],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], return_url().as_str());

    let view = app.account(&store).await;
    assert_eq!(view["kind"], "connect");
    assert_eq!(view["connect_type"], "standard");
    assert_eq!(view["account_id"], account.id.as_str());
    assert_eq!(view["mode"], "test");
    assert_eq!(view["connected"], true);
    // The exchange used the platform key at the Connect base; the account was then read with
    // the platform key and `Stripe-Account`.
    assert_eq!(app.sim.requests("/oauth/token").len(), 1);
    let fetched = app.sim.requests("/v1/account");
    assert!(fetched
        .iter()
        .all(|r| r.stripe_account.as_deref() == Some(account.id.as_str())));
    assert!(
        !crate::support::logs().contains(&code),
        "the OAuth code reached the logs"
    );

    // The same state again (a replayed redirect) changes nothing.
    let (code2, _) = app.sim.authorize(false);
    let r = callback(&app, &[("code", &code2), ("state", &state)]).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("already used"));
    assert_eq!(app.account(&store).await["account_id"], account.id.as_str());
    assert_eq!(app.sim.requests("/oauth/token").len(), 1);
}

#[tokio::test]
async fn a_denied_authorization_shows_a_page_and_leaves_the_store_unchanged() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Acme").await;
    let state = standard_state(&app, &store).await;
    let r = callback(
        &app,
        &[
            ("error", "access_denied"),
            ("error_description", "The user denied your request"),
            ("state", &state),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let html = r.text().await.unwrap();
    assert!(html.contains("You declined to connect"), "{html}");
    assert_eq!(app.account(&store).await["connected"], false);
    assert!(app.sim.requests("/oauth/token").is_empty());
}

#[tokio::test]
async fn forged_tampered_expired_and_missing_states_are_refused() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Acme").await;
    let (code, _) = app.sim.authorize(false);
    let state = standard_state(&app, &store).await;

    let mut tampered = state.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    let forged = format!("{}.{}", "a".repeat(32), "b".repeat(64));
    for bad in [tampered.as_str(), forged.as_str(), "nonsense", ""] {
        let r = callback(&app, &[("code", &code), ("state", bad)]).await;
        assert_eq!(r.status(), 400, "state {bad:?}");
    }
    let r = callback(&app, &[("code", &code)]).await;
    assert_eq!(r.status(), 400);

    // Expired: the grant's row says when; the token itself is still correctly signed.
    sqlx::query("UPDATE onboarding_grants SET expires_at = 1")
        .execute(app.services.db.pool())
        .await
        .unwrap();
    let r = callback(&app, &[("code", &code), ("state", &state)]).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("expired"));

    assert_eq!(app.account(&store).await["connected"], false);
    assert!(app.sim.requests("/oauth/token").is_empty());
}

#[tokio::test]
async fn a_code_stripe_refuses_is_explained_in_plain_words() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Acme").await;
    let state = standard_state(&app, &store).await;
    let r = callback(&app, &[("code", "ac_doesnotexist"), ("state", &state)]).await;
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(html.contains("invalid, expired or already used"), "{html}");
    assert!(html.contains("Authorization code does not exist"), "{html}");
    assert_eq!(app.account(&store).await["connected"], false);
}

#[tokio::test]
async fn onboarding_input_is_checked() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Acme").await;
    let path = format!("/api/v1/stores/{store}/onboarding");
    let send = |body: Value| app.api(Method::POST, &path).json(&body).send();

    // Off the allow-list, including look-alike hosts and paths.
    for url in [
        "https://evil.example/vendors",
        "https://platform.example.evil.com/vendors/x",
        "https://platform.example/vendorsX",
        "http://platform.example/vendors/x",
        "javascript:alert(1)",
        "not a url",
    ] {
        let (status, code, _) = error_code(
            send(json!({"type": "standard", "return_url": url}))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, code.as_str()),
            (400, "return_url_not_allowed"),
            "{url}"
        );
    }
    let (status, _, _) = error_code(
        send(json!({"type": "custom", "return_url": return_url()}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    let (status, code, _) = error_code(send(json!({"type": "express"})).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "invalid_request"));
    let r = app
        .anon(Method::POST, &path)
        .json(&json!({"type": "standard", "return_url": return_url()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = onboard(&app, "st_doesnotexist", "express").await;
    assert_eq!(r.status(), 404);
    let r = app
        .api(Method::POST, &path)
        .header("content-type", "application/json")
        .body("{\"type\":")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(app.sim.requests("/v1/accounts").is_empty());
}

#[tokio::test]
async fn express_creates_one_account_and_state_comes_from_account_updated() {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let store = app.create_store("Acme").await;
    let r = onboard(&app, &store, "express").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let account = body["account_id"].as_str().unwrap().to_owned();
    let link = body["url"].as_str().unwrap().to_owned();
    assert!(link.starts_with(&app.sim.url), "{link}");

    let created = app.sim.requests("/v1/accounts");
    assert_eq!(created.len(), 1);
    assert_eq!(
        created[0].idempotency_key.as_deref(),
        Some(format!("bursar:express_account:{store}").as_str())
    );
    assert!(created[0].body.contains("express"));
    let links = app.sim.requests("/v1/account_links");
    assert_eq!(links.len(), 1);
    assert!(links[0].body.contains("type=account_onboarding"));
    assert!(links[0].body.contains("stripe%2Fonboarding%2Frefresh"));

    let view = app.account(&store).await;
    assert_eq!(view["connect_type"], "express");
    assert_eq!(view["account_id"], account.as_str());
    assert_eq!(view["charges_enabled"], false);

    // Onboarding again while unfinished reuses the account and mints a new link.
    let again: Value = onboard(&app, &store, "express").await.json().await.unwrap();
    assert_eq!(again["account_id"], account.as_str());
    assert_ne!(again["url"], link.as_str());
    assert_eq!(app.sim.requests("/v1/accounts").len(), 1);

    // Finishing onboarding at Stripe sends account.updated; only that moves the store.
    app.sim.complete_onboarding(&account).await;
    app.drain().await;
    let view = app.account(&store).await;
    assert_eq!(view["charges_enabled"], true, "{view}");
    assert_eq!(view["payouts_enabled"], true);
    assert_eq!(view["details_submitted"], true);
}

#[tokio::test]
async fn an_expired_or_used_account_link_comes_back_through_bursars_refresh_url() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Acme").await;
    let body: Value = onboard(&app, &store, "express").await.json().await.unwrap();
    let link = body["url"].as_str().unwrap();
    let client = app.browserless();
    let first = client.get(link).send().await.unwrap();
    assert_eq!(first.status(), 200);
    // Single-use: the second visit is sent to the refresh URL, which is Bursar's.
    let second = client.get(link).send().await.unwrap();
    assert!(second.status().is_redirection());
    let refresh = second.headers()["location"].to_str().unwrap().to_owned();
    assert!(refresh.starts_with(&format!("{}/stripe/onboarding/refresh?grant=", app.url)));
    let r = client.get(&refresh).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let fresh = r.headers()["location"].to_str().unwrap();
    assert!(fresh.starts_with(&app.sim.url) && fresh != link, "{fresh}");
    assert_eq!(client.get(fresh).send().await.unwrap().status(), 200);

    // A tampered or unknown grant mints nothing.
    let links_before = app.sim.requests("/v1/account_links").len();
    let mut tampered = refresh.clone();
    tampered.pop();
    tampered.push('x');
    for bad in [tampered, format!("{}/stripe/onboarding/refresh", app.url)] {
        let r = client.get(&bad).send().await.unwrap();
        assert!(r.status().is_client_error(), "{bad}");
    }
    assert_eq!(app.sim.requests("/v1/account_links").len(), links_before);
}

#[tokio::test]
async fn express_login_links_only_for_express_stores() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Acme").await;
    let path = format!("/api/v1/stores/{store}/account/login-link");
    let (status, code, _) = error_code(app.api(Method::POST, &path).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "not_express"));
    onboard(&app, &store, "express").await;
    let r = app.api(Method::POST, &path).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["url"].as_str().unwrap().starts_with(&app.sim.url));
    assert_eq!(
        app.anon(Method::POST, &path).send().await.unwrap().status(),
        401
    );
}

#[tokio::test]
async fn a_connected_store_must_disconnect_before_onboarding_again() {
    let app = TestApp::spawn().await;
    let (store, _, _) = app.connected_store().await;
    let (status, code, _) = error_code(onboard(&app, &store, "standard").await).await;
    assert_eq!((status, code.as_str()), (409, "already_connected"));
}

#[tokio::test]
async fn disconnecting_a_standard_store_deauthorizes_it_at_stripe() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Acme").await;
    let state = standard_state(&app, &store).await;
    let (code, account) = app.sim.authorize(false);
    assert_eq!(
        callback(&app, &[("code", &code), ("state", &state)])
            .await
            .status(),
        303
    );

    // Stripe unavailable: the connection is kept so the operator can retry.
    app.sim.fail(
        Method::POST,
        "/oauth/deauthorize",
        crate::support::Fault::Status(500),
        10,
    );
    let r = app
        .api(
            Method::DELETE,
            &format!("/api/v1/stores/{store}/connection"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(app.account(&store).await["connected"], true);
    app.sim.clear_faults();

    let r = app
        .api(
            Method::DELETE,
            &format!("/api/v1/stores/{store}/connection"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let calls = app.sim.requests("/oauth/deauthorize");
    let last = calls.last().unwrap();
    assert!(last
        .body
        .contains(&format!("stripe_user_id={}", account.id)));
    assert!(last
        .body
        .contains(&format!("client_id={}", app.sim.client_id)));
    assert_eq!(app.account(&store).await["connected"], false);
}

#[tokio::test]
async fn accounts_v2_onboarding_and_thin_events_resolve_end_to_end() {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let store = app.create_store("Acme").await;
    let r = onboard(&app, &store, "v2").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let account = body["account_id"].as_str().unwrap().to_owned();
    let created = app.sim.requests("/v2/core/accounts");
    assert_eq!(created.len(), 1);
    let sent: Value = serde_json::from_str(&created[0].body).unwrap();
    assert_eq!(
        sent["configuration"]["merchant"]["capabilities"]["card_payments"]["requested"],
        true
    );
    assert_eq!(app.sim.requests("/v2/core/account_links").len(), 1);
    let view = app.account(&store).await;
    assert_eq!(view["connect_type"], "v2");
    assert_eq!(view["charges_enabled"], false);
    assert!(!view["requirements"]["currently_due"]
        .as_array()
        .unwrap()
        .is_empty());

    // Completing onboarding makes Stripe send thin v2.core.account* events to the platform
    // endpoint; the worker fetches each event and the account, then applies the capability.
    app.sim.complete_onboarding(&account).await;
    app.drain().await;
    let view = app.account(&store).await;
    assert_eq!(view["charges_enabled"], true, "{view}");
    assert_eq!(view["requirements"]["currently_due"], json!([]));
    let events: Value = app
        .get_json("/api/v1/events?type=v2.core.account%5Brequirements%5D.updated")
        .await;
    let thin = &events["data"][0];
    assert_eq!(thin["status"], "applied", "{events}");
    let id = thin["event_id"].as_str().or(thin["id"].as_str()).unwrap();
    assert_eq!(app.sim.requests(&format!("/v2/core/events/{id}")).len(), 1);
}

#[tokio::test]
async fn a_thin_event_for_an_unknown_account_is_recorded_unrouted_and_duplicates_are_absorbed() {
    let app = TestApp::spawn().await;
    app.register_endpoints();
    let stranger = app.sim.add_account(false);
    let id = app
        .sim
        .emit_thin("v2.core.account[requirements].updated", &stranger.id)
        .await;
    app.drain().await;
    let e = app.event(&id).await;
    assert_eq!(e["status"], "unrouted", "{e}");
    // The same thin payload again is a duplicate.
    let payload = e["payload"].clone();
    assert_eq!(payload["object"], "v2.core.event");
    assert!(payload.get("data").is_none());
    let r = app
        .deliver(
            "/webhooks/stripe",
            &payload,
            crate::support::PLATFORM_SECRET,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["duplicate"], true);
    assert_eq!(app.event_count().await, 1);
    assert!(app
        .sim
        .requests(&format!("/v2/core/events/{id}"))
        .is_empty());
}

#[tokio::test]
async fn a_code_exchange_whose_answer_is_lost_is_not_retried_blind_and_a_fresh_link_finishes_it() {
    let app = TestApp::spawn().await;
    let store = app.create_store("Acme").await;
    let state = standard_state(&app, &store).await;
    let (code, _) = app.sim.authorize(false);
    // Stripe exchanges the code, but its answer never arrives.
    app.sim.fail(
        Method::POST,
        "/oauth/token",
        crate::support::Fault::AfterCommit(500),
        1,
    );
    let r = callback(&app, &[("code", &code), ("state", &state)]).await;
    assert_eq!(r.status(), 502);
    let html = r.text().await.unwrap();
    assert!(html.contains("may or may not be connected"), "{html}");
    // One exchange: a retry would only have spent the code and answered invalid_grant.
    assert_eq!(app.sim.requests("/oauth/token").len(), 1);
    // The merchant starts again from the platform: the new code connects the store.
    let state = standard_state(&app, &store).await;
    let (code, account) = app.sim.authorize(false);
    let r = callback(&app, &[("code", &code), ("state", &state)]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(app.account(&store).await["account_id"], account.id.as_str());
}

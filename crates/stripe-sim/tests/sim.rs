//! The simulator against a real HTTP client, as Bursar meets it.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};
use sha2::Sha256;
use stripe_sim::{Fault, StripeSim};

const VERSION: &str = "2025-10-29.clover";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn platform(sim: &StripeSim, method: Method, path: &str) -> RequestBuilder {
    client()
        .request(method, format!("{}{path}", sim.url))
        .bearer_auth(&sim.platform_key)
}

async fn json(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn location(r: &Response) -> url::Url {
    url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap()
}

fn query(url: &url::Url, key: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// The `action` of the form whose button has `id`.
fn form_action(html: &str, id: &str) -> String {
    let button = html.find(&format!("id=\"{id}\"")).expect("the button");
    let form = html[..button].rfind("action=\"").expect("its form") + "action=\"".len();
    html[form..].split('"').next().unwrap().to_owned()
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

    fn events(&self) -> Vec<(HeaderMap, Value)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(h, b)| (h.clone(), serde_json::from_slice(b).unwrap()))
            .collect()
    }

    /// The raw body of the one event of `event_type`, after checking its signature.
    fn verified(&self, event_type: &str, secret: &str) -> Value {
        let kept = self.0.lock().unwrap();
        let (headers, body) = kept
            .iter()
            .find(|(_, b)| serde_json::from_slice::<Value>(b).unwrap()["type"] == event_type)
            .unwrap_or_else(|| panic!("no {event_type} delivered"));
        assert_eq!(
            headers["content-type"], "application/json; charset=utf-8",
            "content type"
        );
        assert_eq!(
            headers["user-agent"],
            "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
        );
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

async fn create_express(sim: &StripeSim, key: Option<&str>) -> Response {
    let mut r = platform(sim, Method::POST, "/v1/accounts").form(&[
        ("controller[stripe_dashboard][type]", "express"),
        ("controller[fees][payer]", "application"),
        ("controller[losses][payments]", "application"),
        ("capabilities[card_payments][requested]", "true"),
        ("capabilities[transfers][requested]", "true"),
        ("metadata[store]", "st_1"),
    ]);
    if let Some(k) = key {
        r = r.header("Idempotency-Key", k);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn oauth_codes_are_single_use_and_errors_are_oauth_shaped() {
    let sim = StripeSim::start().await;
    let authorize = |client_id: &str| {
        client()
            .get(format!("{}/oauth/authorize", sim.url))
            .query(&[
                ("response_type", "code"),
                ("client_id", client_id),
                ("scope", "read_write"),
                ("state", "st4te"),
                (
                    "redirect_uri",
                    "http://bursar.test/stripe/oauth/callback?x=1",
                ),
            ])
            .send()
    };
    assert_eq!(authorize("ca_unknown").await.unwrap().status(), 400);
    let page = authorize(&sim.client_id).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<title>Connect with Stripe (local simulator)</title>"));
    let connect = form_action(&html, "connect");
    let r = client()
        .post(format!("{}{connect}", sim.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let back = location(&r);
    assert_eq!(back.path(), "/stripe/oauth/callback");
    assert_eq!(query(&back, "x").as_deref(), Some("1"));
    assert_eq!(query(&back, "state").as_deref(), Some("st4te"));
    assert_eq!(query(&back, "scope").as_deref(), Some("read_write"));
    let code = query(&back, "code").unwrap();
    assert!(code.starts_with("ac_"));
    let account = sim.last_oauth_account().unwrap();

    let exchange = |code: String| {
        platform(&sim, Method::POST, "/oauth/token")
            .form(&[("grant_type", "authorization_code"), ("code", &code)])
            .send()
    };
    let (status, token) = json(exchange(code.clone()).await.unwrap()).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["stripe_user_id"], account.id.as_str());
    assert_eq!(token["access_token"], account.secret_key.as_str());
    assert_eq!(token["livemode"], false);
    assert_eq!(token["token_type"], "bearer");
    assert_eq!(token["scope"], "read_write");
    assert!(token["refresh_token"].as_str().unwrap().starts_with("rt_"));
    assert!(token["stripe_publishable_key"]
        .as_str()
        .unwrap()
        .starts_with("pk_test_"));
    let me = |key: String| {
        client()
            .get(format!("{}/v1/account", sim.url))
            .bearer_auth(key)
            .send()
    };
    let (status, me_now) = json(me(account.secret_key.clone()).await.unwrap()).await;
    assert_eq!(
        (status, me_now["charges_enabled"].clone()),
        (200, json!(true))
    );
    assert_eq!(me_now["type"], "standard");

    // Reusing a code fails and revokes what it issued.
    let (status, body) = json(exchange(code).await.unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("already been used"));
    assert_eq!(me(account.secret_key.clone()).await.unwrap().status(), 401);

    let (status, body) = json(exchange("ac_nope".into()).await.unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"error": "invalid_grant", "error_description": "Authorization code does not exist: ac_nope"})
    );
    let (expired, _) = sim.authorize(false);
    sim.expire_oauth_codes();
    let (status, body) = json(exchange(expired).await.unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let r = client()
        .post(format!("{}/oauth/token", sim.url))
        .bearer_auth("sk_test_wrong_key_123456")
        .form(&[("grant_type", "authorization_code"), ("code", "ac_x")])
        .send()
        .await
        .unwrap();
    let (status, text) = (r.status(), r.text().await.unwrap());
    assert_eq!(status, 401);
    assert!(text.contains("invalid_client") && !text.contains("sk_test_wrong"));
    let (status, body) = json(
        client()
            .post(format!("{}/oauth/token", sim.url))
            .form(&[
                ("grant_type", "password"),
                ("client_secret", sim.platform_key.as_str()),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );

    // Deny sends the user back with Stripe's error.
    let html = authorize(&sim.client_id)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let deny = form_action(&html, "deny");
    let r = client()
        .post(format!("{}{deny}", sim.url))
        .send()
        .await
        .unwrap();
    let back = location(&r);
    assert_eq!(query(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(query(&back, "state").as_deref(), Some("st4te"));
    assert!(back
        .as_str()
        .contains("error_description=The+user+denied+your+request"));
}

#[tokio::test]
async fn a_connected_accounts_objects_need_stripe_account() {
    let sim = StripeSim::start().await;
    let account = sim.add_account(false);
    let mut payout = stripe_sim::fixtures::object("payout").unwrap();
    payout["id"] = json!("po_sim1");
    sim.put_object(&account.id, payout);

    let (status, body) = json(
        platform(&sim, Method::GET, "/v1/payouts/po_sim1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "resource_missing");
    assert_eq!(body["error"]["message"], "No such payout: 'po_sim1'");
    let r = platform(&sim, Method::GET, "/v1/payouts/po_sim1")
        .header("Stripe-Account", &account.id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let own = client()
        .get(format!("{}/v1/payouts/po_sim1", sim.url))
        .bearer_auth(&account.restricted_key)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    let requests = sim.requests("/v1/payouts/po_sim1");
    assert_eq!(requests.len(), 3);
    assert_eq!(
        requests[1].stripe_account.as_deref(),
        Some(account.id.as_str())
    );

    let mut person = stripe_sim::fixtures::object("person").unwrap();
    person["id"] = json!("person_sim1");
    sim.put_object(&account.id, person);
    let path = format!("/v1/accounts/{}/persons/person_sim1", account.id);
    let r = platform(&sim, Method::GET, &path).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = platform(&sim, Method::GET, &path)
        .header("Stripe-Account", &account.id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // An account not connected to the platform is out of the platform key's reach.
    let other = sim.add_independent_account(false);
    let (status, body) = json(
        platform(&sim, Method::GET, "/v1/balance")
            .header("Stripe-Account", &other.id)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("does not have access to account '{}'", other.id)));
    assert!(!message.contains(&sim.platform_key), "the key is masked");
    let (status, balance) = json(
        platform(&sim, Method::GET, "/v1/balance")
            .header("Stripe-Account", &account.id)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, balance["object"].as_str()), (200, Some("balance")));
}

#[tokio::test]
async fn a_deauthorized_account_is_unreachable_and_announced() {
    let sim = StripeSim::start().await;
    let (receiver, hook) = Receiver::start().await;
    sim.register_endpoint(&hook, "whsec_connect", true);
    let (code, account) = sim.authorize(false);
    let r = client()
        .post(format!("{}/oauth/token", sim.url))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("client_secret", sim.platform_key.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let deauthorize = |client_id: String| {
        platform(&sim, Method::POST, "/oauth/deauthorize")
            .form(&[
                ("client_id", client_id.as_str()),
                ("stripe_user_id", account.id.as_str()),
            ])
            .send()
    };
    let (status, body) = json(deauthorize("ca_other".into()).await.unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, body) = json(deauthorize(sim.client_id.clone()).await.unwrap()).await;
    assert_eq!(
        (status, body),
        (200, json!({ "stripe_user_id": account.id }))
    );

    let event = receiver.verified("account.application.deauthorized", "whsec_connect");
    assert_eq!(event["account"], account.id.as_str());
    assert_eq!(event["data"]["object"]["id"], sim.client_id.as_str());
    assert_eq!(event["data"]["object"]["object"], "application");
    let deliveries = sim.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].status, 200);
    assert!(!sim.is_connected(&account.id));

    let r = platform(&sim, Method::GET, "/v1/account")
        .header("Stripe-Account", &account.id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client()
        .get(format!("{}/v1/account", sim.url))
        .bearer_auth(&account.secret_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the OAuth token is revoked");
    let (status, body) = json(deauthorize(sim.client_id.clone()).await.unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error_description"],
        format!("No such user: {}", account.id)
    );
}

#[tokio::test]
async fn idempotency_keys_replay_the_first_create() {
    let sim = StripeSim::start().await;
    let (status, first) = json(create_express(&sim, Some("k1")).await).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["type"], "express");
    assert_eq!(first["charges_enabled"], false);
    assert_eq!(first["metadata"]["store"], "st_1");
    assert_eq!(first["capabilities"]["card_payments"], "inactive");
    assert_eq!(
        first["requirements"]["disabled_reason"],
        "requirements.past_due"
    );
    assert!(!first["requirements"]["currently_due"]
        .as_array()
        .unwrap()
        .is_empty());
    let again = create_express(&sim, Some("k1")).await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let (_, again) = json(again).await;
    assert_eq!(again["id"], first["id"]);
    let (_, other) = json(create_express(&sim, Some("k2")).await).await;
    assert_ne!(other["id"], first["id"]);
    let (status, body) = json(
        platform(&sim, Method::POST, "/v1/accounts")
            .header("Idempotency-Key", "k1")
            .form(&[("type", "custom")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (400, Some("idempotency_error"))
    );
    let recorded = &sim.requests("/v1/accounts")[0];
    assert_eq!(recorded.idempotency_key.as_deref(), Some("k1"));
    assert!(recorded
        .body
        .contains("capabilities%5Bcard_payments%5D%5Brequested%5D=true"));
}

#[tokio::test]
async fn account_links_are_single_use_and_onboarding_is_announced() {
    let sim = StripeSim::start().await;
    let (receiver, hook) = Receiver::start().await;
    sim.register_endpoint(&hook, "whsec_connect", true);
    let (_, account) = json(create_express(&sim, None).await).await;
    let id = account["id"].as_str().unwrap();
    let link = |extra: &[(&str, &str)]| {
        let mut form = vec![
            ("account", id),
            ("type", "account_onboarding"),
            ("refresh_url", "http://bursar.test/refresh"),
            ("return_url", "http://bursar.test/return"),
        ];
        form.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        form.extend(extra.iter().copied().filter(|(_, v)| !v.is_empty()));
        platform(&sim, Method::POST, "/v1/account_links")
            .form(&form)
            .send()
    };
    let (status, body) = json(link(&[("refresh_url", "")]).await.unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "parameter_missing");
    let (status, body) = json(link(&[("account", "acct_1Unknown")]).await.unwrap()).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = json(link(&[]).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], "account_link");
    assert_eq!(
        body["expires_at"].as_i64().unwrap() - body["created"].as_i64().unwrap(),
        300
    );
    let url = body["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/setup/e/{id}/", sim.url)));

    let page = client().get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<title>Onboarding (local simulator)</title>"));
    let second = client().get(url).send().await.unwrap();
    assert_eq!(second.status(), 302);
    assert_eq!(location(&second).as_str(), "http://bursar.test/refresh");

    let complete = form_action(&html, "complete");
    let r = client()
        .post(format!("{}{complete}", sim.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r).as_str(), "http://bursar.test/return");
    let event = receiver.verified("account.updated", "whsec_connect");
    assert_eq!(event["account"], id);
    assert_eq!(event["data"]["object"]["charges_enabled"], true);
    assert_eq!(
        event["data"]["previous_attributes"]["charges_enabled"],
        false
    );
    let (_, now) = json(
        platform(&sim, Method::GET, &format!("/v1/accounts/{id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(now["payouts_enabled"], true);
    assert_eq!(now["requirements"]["currently_due"], json!([]));

    let (status, login) = json(
        platform(
            &sim,
            Method::POST,
            &format!("/v1/accounts/{id}/login_links"),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(login["url"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}/express/{id}/", sim.url)));
    let standard = sim.add_account(false);
    let r = platform(
        &sim,
        Method::POST,
        &format!("/v1/accounts/{}/login_links", standard.id),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 400);

    // Expired links send the user to refresh_url too.
    let (_, body) = json(link(&[]).await.unwrap()).await;
    sim.expire_account_links();
    let r = client()
        .get(body["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(location(&r).as_str(), "http://bursar.test/refresh");
}

#[tokio::test]
async fn complete_onboarding_delivers_a_signed_account_updated() {
    let sim = StripeSim::start().await;
    let (receiver, hook) = Receiver::start().await;
    let (platform_receiver, platform_hook) = Receiver::start().await;
    sim.register_endpoint(&hook, "whsec_c", true);
    sim.register_endpoint(&platform_hook, "whsec_p", false);
    let (_, account) = json(create_express(&sim, None).await).await;
    let id = account["id"].as_str().unwrap();
    let ids = sim.complete_onboarding(id).await;
    assert_eq!(ids.len(), 1);
    let event = receiver.verified("account.updated", "whsec_c");
    assert_eq!(event["id"], ids[0].as_str());
    assert_eq!(event["object"], "event");
    assert_eq!(event["api_version"], VERSION);
    assert_eq!(event["livemode"], false);
    assert_eq!(event["pending_webhooks"], 1);
    assert_eq!(
        event["request"],
        json!({"id": null, "idempotency_key": null})
    );
    assert!(platform_receiver.events().is_empty());

    let (_, statuses) = sim
        .deliver_event("balance.available", None, json!({"object": "balance"}))
        .await;
    assert_eq!(statuses, vec![200]);
    let event = platform_receiver.verified("balance.available", "whsec_p");
    assert!(event.get("account").is_none());
}

#[tokio::test]
async fn accounts_v2_with_links_and_thin_events() {
    let sim = StripeSim::start().await;
    let (receiver, hook) = Receiver::start().await;
    sim.register_endpoint(&hook, "whsec_p", false);
    let body = json!({
        "contact_email": "shop@example.com",
        "display_name": "Shop",
        "identity": { "country": "us" },
        "dashboard": "express",
        "configuration": { "merchant": { "capabilities": { "card_payments": { "requested": true } } } },
        "defaults": { "responsibilities": { "fees_collector": "application", "losses_collector": "application" } },
        "include": ["configuration.merchant", "requirements"],
    });
    let r = platform(&sim, Method::POST, "/v2/core/accounts")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "Stripe-Version is required");
    let (status, account) = json(
        platform(&sim, Method::POST, "/v2/core/accounts")
            .header("Stripe-Version", VERSION)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{account}");
    let id = account["id"].as_str().unwrap().to_owned();
    assert_eq!(account["object"], "v2.core.account");
    assert!(humantime::parse_rfc3339_weak(account["created"].as_str().unwrap()).is_ok());
    let card = &account["configuration"]["merchant"]["capabilities"]["card_payments"];
    assert_eq!(card["status"], "restricted");
    assert_eq!(card["status_details"][0]["code"], "requirements_past_due");
    assert_eq!(
        account["requirements"]["summary"]["minimum_deadline"]["status"],
        "currently_due"
    );
    assert!(!account["requirements"]["entries"]
        .as_array()
        .unwrap()
        .is_empty());
    // Reachable through v1 as well.
    let r = platform(&sim, Method::GET, "/v1/account")
        .header("Stripe-Account", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (status, link) = json(
        platform(&sim, Method::POST, "/v2/core/account_links")
            .header("Stripe-Version", VERSION)
            .json(&json!({
                "account": id,
                "use_case": { "type": "account_onboarding", "account_onboarding": {
                    "configurations": ["merchant"],
                    "refresh_url": "http://bursar.test/refresh",
                    "return_url": "http://bursar.test/return",
                }},
            }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{link}");
    assert_eq!(link["object"], "v2.core.account_link");
    assert!(humantime::parse_rfc3339_weak(link["expires_at"].as_str().unwrap()).is_ok());
    let url = link["url"].as_str().unwrap();
    let html = client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let complete = form_action(&html, "complete");
    let r = client()
        .post(format!("{}{complete}", sim.url))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&r).as_str(), "http://bursar.test/return");

    let thin: Vec<Value> = receiver.events().into_iter().map(|(_, e)| e).collect();
    let types: Vec<&str> = thin.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "v2.core.account[requirements].updated",
            "v2.core.account[configuration.merchant].capability_status_updated"
        ]
    );
    let event = receiver.verified("v2.core.account[requirements].updated", "whsec_p");
    assert_eq!(event["object"], "v2.core.event");
    assert!(event.get("data").is_none(), "thin events carry no data");
    assert_eq!(event["related_object"]["id"], id.as_str());

    let fetch = |event_id: String, context: Option<&str>| {
        let mut r = platform(&sim, Method::GET, &format!("/v2/core/events/{event_id}"))
            .header("Stripe-Version", VERSION);
        if let Some(c) = context {
            r = r.header("Stripe-Context", c);
        }
        r.send()
    };
    let event_id = thin[1]["id"].as_str().unwrap().to_owned();
    let (status, full) = json(fetch(event_id.clone(), None).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(full["data"]["updated_capability"], "card_payments");
    assert_eq!(
        full["related_object"]["url"],
        format!("/v2/core/accounts/{id}")
    );
    let created = full["created"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.contains('.'), "{created}");
    let (status, _) = json(fetch(event_id, Some(&id)).await.unwrap()).await;
    assert_eq!(
        status, 404,
        "the event is the platform's, not the account's"
    );
    let (status, missing) = json(fetch("evt_test_nope".into(), None).await.unwrap()).await;
    assert_eq!(
        (status, missing["error"]["type"].as_str()),
        (404, Some("invalid_request_error"))
    );

    let (_, now) = json(
        platform(
            &sim,
            Method::GET,
            &format!("/v2/core/accounts/{id}?include=configuration.merchant&include=requirements"),
        )
        .header("Stripe-Version", VERSION)
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        now["configuration"]["merchant"]["capabilities"]["card_payments"]["status"],
        "active"
    );
    assert_eq!(now["requirements"]["entries"], json!([]));
    let (_, bare) = json(
        platform(&sim, Method::GET, &format!("/v2/core/accounts/{id}"))
            .header("Stripe-Version", VERSION)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(bare["configuration"].is_null() && bare["requirements"].is_null());

    let emitted = sim.emit_thin("v2.core.account.updated", &id).await;
    let (status, _) = json(fetch(emitted, None).await.unwrap()).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn faults_reach_every_route() {
    let sim = StripeSim::start().await;
    sim.fail(Method::POST, "/oauth/token", Fault::Status(503), 1);
    sim.fail(
        Method::GET,
        "/v2/core/events/evt_x",
        Fault::StatusNoRetry(500),
        1,
    );
    let r = platform(&sim, Method::POST, "/oauth/token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let r = platform(&sim, Method::GET, "/v2/core/events/evt_x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(r.headers()["stripe-should-retry"], "false");
    let r = platform(&sim, Method::POST, "/oauth/token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "the fault was used up");
}

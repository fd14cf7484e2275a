//! `/api/openapi.json` against the running app. A tour calls every documented operation and
//! checks each answer against the document: its status must be listed for that operation, its
//! media type must be the one listed, and a JSON body must match the listed schema, with every
//! object closed to fields the document does not name. The router must also refuse every
//! method a documented path does not list, and the tour must reach every operation.

use std::collections::{BTreeSet, HashMap};

use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};

use crate::support::{self, store_path, TestApp, INTERNAL_SECRET, PLATFORM_SECRET, RETURN_PREFIX};
use stripe_sim::Card;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

struct Spec {
    doc: Value,
    /// Component schemas, closed to undocumented properties, for validation.
    components: Value,
}

impl Spec {
    async fn load(app: &TestApp) -> Self {
        let r = app
            .anon(Method::GET, "/api/openapi.json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        let doc: Value = r.json().await.unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let mut components = doc["components"].clone();
        close_objects(&mut components["schemas"]);
        Self { doc, components }
    }

    fn paths(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.doc["paths"].as_object().unwrap().iter()
    }

    /// The documented path a concrete one matches; a literal segment beats a parameter.
    fn template(&self, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.split('/').collect();
        self.paths()
            .map(|(t, _)| t)
            .filter(|t| {
                let ts: Vec<&str> = t.split('/').collect();
                ts.len() == segments.len()
                    && ts
                        .iter()
                        .zip(&segments)
                        .all(|(t, s)| t == s || (t.starts_with('{') && !s.is_empty()))
            })
            .min_by_key(|t| t.matches('{').count())
            .cloned()
    }

    /// Asserts the answer is one the document lists for this operation, in form and schema.
    fn check(&self, method: &str, template: &str, answer: &Answer) {
        let what = format!(
            "{} {template} answered {}",
            method.to_uppercase(),
            answer.status
        );
        let op = &self.doc["paths"][template][method];
        assert!(op.is_object(), "{what}: the operation is not documented");
        let response = &op["responses"][answer.status.to_string()];
        assert!(
            response.is_object(),
            "{what}: the status is not documented: {}",
            answer.text
        );
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            assert!(answer.text.is_empty(), "{what}: documented without a body");
            return;
        };
        let media = answer.content_type.split(';').next().unwrap().trim();
        let Some(documented) = content.get(media) else {
            panic!("{what}: {media} is not documented ({:?})", content.keys());
        };
        if media != "application/json" {
            return;
        }
        let body: Value = serde_json::from_str(&answer.text)
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", answer.text));
        let mut schema = documented["schema"].clone();
        schema["components"] = self.components.clone();
        let validator = jsonschema::draft202012::new(&schema)
            .unwrap_or_else(|e| panic!("{what}: the schema does not compile: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{what}: {errors:#?}\n{body:#}");
    }
}

/// `additionalProperties: false` on every object schema that lists its properties, except
/// those merged into others with `allOf` (closing them would refuse the others' fields).
fn close_objects(schemas: &mut Value) {
    let merged: BTreeSet<String> = schemas
        .as_object()
        .unwrap()
        .values()
        .filter_map(|s| s.get("allOf").and_then(Value::as_array))
        .flatten()
        .filter_map(|s| s.get("$ref").and_then(Value::as_str))
        .map(|r| r.rsplit('/').next().unwrap().to_owned())
        .collect();
    fn close(schema: &mut Value) {
        match schema {
            Value::Object(map) => {
                if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                    map.insert("additionalProperties".into(), json!(false));
                }
                map.values_mut().for_each(close);
            }
            Value::Array(items) => items.iter_mut().for_each(close),
            _ => {}
        }
    }
    for (name, schema) in schemas.as_object_mut().unwrap() {
        if !merged.contains(name) && schema.get("allOf").is_none() {
            close(schema);
        }
    }
}

struct Answer {
    status: u16,
    content_type: String,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

/// Sends requests through a client that does not follow redirects, checks each answer against
/// the document and remembers which operations were called.
struct Tour<'a> {
    app: &'a TestApp,
    spec: Spec,
    client: reqwest::Client,
    called: BTreeSet<(String, String)>,
}

impl<'a> Tour<'a> {
    async fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            spec: Spec::load(app).await,
            client: app.browserless(),
            called: BTreeSet::new(),
        }
    }

    fn anon(&self, method: Method, path: &str) -> RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.app.url)
        };
        self.client.request(method, url)
    }

    fn api(&self, method: Method, path: &str) -> RequestBuilder {
        self.anon(method, path).bearer_auth(&self.app.api_key)
    }

    /// Sends, checks against the document, and asserts the status.
    async fn expect(&mut self, request: RequestBuilder, status: u16) -> Value {
        let answer = self.send(request).await;
        assert_eq!(answer.status, status, "{}", answer.text);
        answer.json()
    }

    async fn send(&mut self, request: RequestBuilder) -> Answer {
        let request = request.build().unwrap();
        let method = request.method().as_str().to_lowercase();
        let path = request.url().path().to_owned();
        let template = self
            .spec
            .template(&path)
            .unwrap_or_else(|| panic!("{path} is not documented"));
        let r = self.client.execute(request).await.unwrap();
        let answer = Answer {
            status: r.status().as_u16(),
            content_type: r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
            text: r.text().await.unwrap(),
        };
        self.spec.check(&method, &template, &answer);
        self.called.insert((method, template));
        answer
    }

    async fn webhook(&mut self, path: &str, event: &Value, secret: &str) -> Answer {
        let body = serde_json::to_vec(event).unwrap();
        let signature = bursar::stripe::signature::sign(&body, secret, support::now());
        let request = self
            .anon(Method::POST, path)
            .header("Content-Type", "application/json")
            .header("Stripe-Signature", signature)
            .body(body);
        self.send(request).await
    }
}

#[tokio::test]
async fn every_route_is_documented_and_answers_as_documented() {
    let app = TestApp::spawn_with(&[("BURSAR_ALLOW_PRIVATE_NOTIFICATION_TARGETS", "true")]).await;
    let mut t = Tour::new(&app).await;
    let sim = &app.sim;

    // Operations.
    t.expect(t.anon(Method::GET, "/healthz"), 200).await;
    t.expect(t.anon(Method::GET, "/metrics"), 200).await;
    t.expect(t.anon(Method::GET, "/api/openapi.json"), 200)
        .await;
    t.expect(t.anon(Method::GET, "/api/docs"), 200).await;
    t.expect(t.anon(Method::GET, "/api/docs/swagger-ui.css"), 200)
        .await;
    t.expect(t.anon(Method::GET, "/api/docs/no-such-asset.js"), 404)
        .await;

    // Stores.
    let created = t
        .expect(
            t.api(Method::POST, "/api/v1/stores")
                .json(&json!({"name": "Tour", "metadata": {"k": "v"}})),
            201,
        )
        .await;
    let store = created["id"].as_str().unwrap().to_owned();
    let s = |tail: &str| format!("/api/v1/stores/{store}{tail}");
    t.expect(t.api(Method::POST, "/api/v1/stores").json(&json!({})), 400)
        .await;
    t.expect(
        t.anon(Method::POST, "/api/v1/stores")
            .json(&json!({"name": "x"})),
        401,
    )
    .await;
    t.expect(
        t.api(Method::POST, "/api/v1/stores")
            .header("Content-Type", "text/plain")
            .body("name=x"),
        415,
    )
    .await;
    let keyed = |t: &Tour, name: &str| {
        t.api(Method::POST, "/api/v1/stores")
            .header("Idempotency-Key", "tour-1")
            .json(&json!({ "name": name }))
    };
    t.expect(keyed(&t, "Once"), 201).await;
    t.expect(keyed(&t, "Once"), 201).await;
    t.expect(keyed(&t, "Twice"), 409).await;
    t.expect(t.api(Method::GET, "/api/v1/stores?limit=2"), 200)
        .await;
    t.expect(t.api(Method::GET, "/api/v1/stores?cursor=nope"), 400)
        .await;
    t.expect(t.api(Method::GET, &s("")), 200).await;
    t.expect(t.api(Method::GET, "/api/v1/stores/st_nosuchstore"), 404)
        .await;

    // A keys connection, its webhook secret and account.
    let account = sim.add_independent_account(false);
    sim.update_account(&account.id, |a| a["charges_enabled"] = json!(true));
    let whsec = format!("whsec_{}", support::random(24));
    t.expect(
        t.api(Method::PUT, &s("/connection/keys")).json(&json!({
            "secret_key": "rk_test_unknown0000000000000000",
            "publishable_key": account.publishable_key,
        })),
        422,
    )
    .await;
    t.expect(
        t.api(Method::PUT, &s("/connection/keys")).json(&json!({
            "secret_key": account.restricted_key,
            "publishable_key": account.publishable_key,
            "webhook_secret": whsec,
        })),
        200,
    )
    .await;
    sim.register_account_endpoint(
        &account.id,
        &format!("{}{}", app.url, store_path(&store)),
        &whsec,
    );
    t.expect(
        t.api(Method::PUT, &s("/connection/webhook-secret"))
            .json(&json!({ "webhook_secret": "nope" })),
        400,
    )
    .await;
    t.expect(
        t.api(Method::PUT, &s("/connection/webhook-secret"))
            .json(&json!({ "webhook_secret": whsec })),
        200,
    )
    .await;
    t.expect(t.api(Method::GET, &s("/account")), 200).await;
    t.expect(t.api(Method::POST, &s("/account/login-link")), 400)
        .await;

    // Orders: created, paid through the store's webhook, listed, re-checked, refunded.
    let order = t
        .expect(
            t.api(Method::POST, &s("/orders"))
                .json(&json!({"amount": 2500, "currency": "usd", "metadata": {"cart": "1"}})),
            201,
        )
        .await;
    let order_id = order["id"].as_str().unwrap().to_owned();
    let o = |tail: &str| format!("/api/v1/orders/{order_id}{tail}");
    t.expect(t.api(Method::POST, &o("/refunds")), 409).await;
    let checkout_url = order["checkout_url"].as_str().unwrap().to_owned();
    t.expect(t.anon(Method::GET, &checkout_url), 200).await;
    sim.pay(order["payment_intent"].as_str().unwrap(), Card::Visa)
        .await;
    app.drain().await;
    t.expect(t.anon(Method::GET, &checkout_url), 303).await;
    t.expect(t.anon(Method::GET, &format!("{checkout_url}/result")), 200)
        .await;
    t.expect(t.anon(Method::GET, "/checkout/not-a-token"), 404)
        .await;
    t.expect(t.anon(Method::GET, "/checkout/assets/checkout.js"), 200)
        .await;
    t.expect(t.api(Method::GET, &o("")), 200).await;
    t.expect(t.api(Method::GET, "/api/v1/orders/ord_nosuchorder"), 404)
        .await;
    t.expect(t.api(Method::GET, &s("/orders")), 200).await;
    t.expect(t.api(Method::GET, &s("/orders?limit=0")), 400)
        .await;
    t.expect(t.api(Method::GET, &s("/balance")), 200).await;
    t.expect(t.api(Method::GET, &s("/payouts")), 200).await;
    t.expect(t.api(Method::GET, &s("/payouts?cursor=nope")), 400)
        .await;
    // A multi-vendor order cannot split to a keys store (its account is its own).
    t.expect(
        t.api(Method::POST, "/api/v1/orders").json(&json!({
            "amount": 2500, "currency": "usd",
            "splits": [{"store_id": store, "amount": 1000}],
        })),
        400,
    )
    .await;
    t.expect(t.api(Method::POST, &o("/sync")), 200).await;
    t.expect(
        t.api(Method::POST, &o("/refunds"))
            .json(&json!({"amount": 500})),
        201,
    )
    .await;
    t.expect(t.api(Method::POST, &o("/refunds")).body("{"), 400)
        .await;

    // Customers and Checkout Sessions.
    let customer = t
        .expect(
            t.api(Method::POST, &s("/customers"))
                .json(&json!({"email": "a@example.com"})),
            201,
        )
        .await;
    t.expect(
        t.api(
            Method::GET,
            &format!("/api/v1/customers/{}", customer["id"].as_str().unwrap()),
        ),
        200,
    )
    .await;
    let listed = t.expect(t.api(Method::GET, &s("/customers")), 200).await;
    assert_eq!(listed["data"][0]["id"], customer["id"]);
    t.expect(t.api(Method::GET, &s("/customers?cursor=nope")), 400)
        .await;
    t.expect(
        t.api(Method::POST, &s("/checkout-sessions")).json(&json!({
            "line_items": [{"price_data": {"currency": "usd", "unit_amount": 1200, "product_data": {"name": "Mug"}}, "quantity": 1}],
            "success_url": "https://shop.example/ok",
            "cancel_url": "https://shop.example/cancel",
            "customer_id": customer["id"],
        })),
        201,
    )
    .await;
    let sessions = sim.requests("/v1/checkout/sessions");
    let cus = customer["stripe_customer_id"].as_str().unwrap();
    assert_eq!(
        sessions.last().unwrap().param("customer").as_deref(),
        Some(cus)
    );

    // Vendor billing on the platform account.
    let price = sim.add_price(2900, "usd", Some("month"), true);
    t.expect(t.api(Method::GET, &s("/subscription")), 404).await;
    t.expect(
        t.api(Method::PUT, &s("/subscription"))
            .json(&json!({ "price_id": price })),
        200,
    )
    .await;
    t.expect(t.api(Method::GET, &s("/subscription")), 200).await;
    t.expect(t.api(Method::DELETE, &s("/subscription")), 200)
        .await;

    // The inbox, through each door.
    let mut event = support::event("account.updated", None, false);
    event["data"]["object"]["id"] = json!(account.id);
    let event_id = event["id"].as_str().unwrap().to_owned();
    assert_eq!(
        t.webhook(&store_path(&store), &event, &whsec).await.status,
        200
    );
    let again = t.webhook(&store_path(&store), &event, &whsec).await;
    assert_eq!(again.json()["duplicate"], true);
    let platform_event = support::event("invoice.paid", None, false);
    assert_eq!(
        t.webhook("/webhooks/stripe", &platform_event, PLATFORM_SECRET)
            .await
            .status,
        200
    );
    assert_eq!(
        t.webhook("/webhooks/stripe/connect", &event, "whsec_wrong")
            .await
            .status,
        400
    );
    assert_eq!(
        t.webhook(&store_path("st_nosuchstore"), &event, &whsec)
            .await
            .status,
        404
    );
    app.drain().await;
    t.expect(
        t.api(Method::GET, &format!("/api/v1/events?store_id={store}")),
        200,
    )
    .await;
    t.expect(t.api(Method::GET, "/api/v1/events?status=lost"), 400)
        .await;
    t.expect(
        t.api(Method::GET, &format!("/api/v1/events/{event_id}")),
        200,
    )
    .await;
    t.expect(
        t.api(Method::POST, &format!("/api/v1/events/{event_id}/replay")),
        200,
    )
    .await;
    t.expect(t.api(Method::GET, "/api/v1/events/evt_nosuchevent"), 404)
        .await;
    // Only a dead event is discarded.
    t.expect(
        t.api(Method::POST, &format!("/api/v1/events/{event_id}/discard")),
        409,
    )
    .await;
    t.expect(
        t.api(Method::POST, "/api/v1/events/evt_nosuchevent/discard"),
        404,
    )
    .await;

    // Onboarding another store as Express, and the key-entry pages for a third.
    let express = t
        .expect(
            t.api(Method::POST, "/api/v1/stores")
                .json(&json!({"name": "Express"})),
            201,
        )
        .await;
    let e = |tail: &str| format!("/api/v1/stores/{}{tail}", express["id"].as_str().unwrap());
    t.expect(
        t.api(Method::POST, &e("/onboarding"))
            .json(&json!({"type": "express", "return_url": format!("{RETURN_PREFIX}/done")})),
        200,
    )
    .await;
    t.expect(
        t.api(Method::POST, &e("/onboarding"))
            .json(&json!({"type": "express", "return_url": "https://evil.example/"})),
        400,
    )
    .await;
    t.expect(t.api(Method::POST, &e("/account/login-link")), 200)
        .await;
    t.expect(
        t.api(Method::POST, &e("/connect-link"))
            .json(&json!({"expires_in": 10})),
        400,
    )
    .await;
    let paste = t
        .expect(
            t.api(Method::POST, "/api/v1/stores")
                .json(&json!({"name": "Paste"})),
            201,
        )
        .await;
    let paste_id = paste["id"].as_str().unwrap().to_owned();
    let link = t
        .expect(
            t.api(
                Method::POST,
                &format!("/api/v1/stores/{paste_id}/connect-link"),
            ),
            200,
        )
        .await["url"]
        .as_str()
        .unwrap()
        .to_owned();
    t.expect(t.anon(Method::GET, &link), 200).await;
    t.expect(t.anon(Method::GET, "/stripe/connect"), 400).await;
    t.expect(
        t.anon(Method::POST, "/stripe/connect")
            .form(&[("store_id", paste_id.as_str())]),
        400,
    )
    .await;
    let (fields, cookie) = crate::pages::open_form(&app, &link).await;
    let other = sim.add_independent_account(false);
    let mut form = fields.clone();
    form.push(("secret_key".into(), other.restricted_key.clone()));
    form.push(("publishable_key".into(), other.publishable_key.clone()));
    t.expect(
        t.anon(Method::POST, "/stripe/connect")
            .header("Cookie", &cookie)
            .form(&form),
        303,
    )
    .await;
    t.expect(
        t.anon(Method::GET, &format!("/stripe/success/{paste_id}")),
        200,
    )
    .await;
    t.expect(t.anon(Method::GET, "/stripe/oauth/callback"), 400)
        .await;
    t.expect(t.anon(Method::GET, "/stripe/onboarding/refresh"), 400)
        .await;
    t.expect(t.anon(Method::GET, "/stripe/assets/pages.css"), 200)
        .await;
    t.expect(t.anon(Method::GET, &format!("/stripe/status/{store}")), 200)
        .await;
    t.expect(t.anon(Method::GET, "/stripe/status/st_nosuchstore"), 404)
        .await;
    let internal = format!("/api/internal/stores/{store}/stripe-status");
    t.expect(
        t.anon(Method::GET, &internal)
            .header("X-Internal-Secret", INTERNAL_SECRET),
        200,
    )
    .await;
    t.expect(t.anon(Method::GET, &internal), 401).await;

    // Disconnecting, deleting, and API keys.
    t.expect(
        t.api(
            Method::DELETE,
            &format!("/api/v1/stores/{paste_id}/connection"),
        ),
        200,
    )
    .await;
    t.expect(
        t.api(
            Method::DELETE,
            &format!("/api/v1/stores/{paste_id}/connection"),
        ),
        404,
    )
    .await;
    t.expect(
        t.api(Method::DELETE, &format!("/api/v1/stores/{paste_id}")),
        200,
    )
    .await;
    // Notifications: an endpoint of a type nothing here emits (nothing is sent anywhere).
    let endpoint = t
        .expect(
            t.api(Method::POST, "/api/v1/notification-endpoints").json(
                &json!({"url": "https://127.0.0.1:9/hooks", "events": ["store.payout_paid"]}),
            ),
            201,
        )
        .await;
    let ne = endpoint["id"].as_str().unwrap().to_owned();
    assert!(endpoint["secret"].as_str().unwrap().starts_with("whsec_"));
    t.expect(
        t.api(Method::POST, "/api/v1/notification-endpoints")
            .json(&json!({"url": "https://127.0.0.1:9/hooks", "events": ["order.payed"]})),
        400,
    )
    .await;
    t.expect(t.api(Method::GET, "/api/v1/notification-endpoints"), 200)
        .await;
    let one = t
        .expect(
            t.api(Method::GET, &format!("/api/v1/notification-endpoints/{ne}")),
            200,
        )
        .await;
    assert!(one["secret"].is_null());
    t.expect(
        t.api(
            Method::PATCH,
            &format!("/api/v1/notification-endpoints/{ne}"),
        )
        .json(&json!({"disabled": true})),
        200,
    )
    .await;
    t.expect(
        t.api(
            Method::POST,
            &format!("/api/v1/notification-endpoints/{ne}/rotate-secret"),
        ),
        200,
    )
    .await;
    t.expect(
        t.api(
            Method::POST,
            &format!("/api/v1/notification-endpoints/{ne}/recover"),
        )
        .json(&json!({"since": 0})),
        200,
    )
    .await;
    t.expect(
        t.api(Method::GET, "/api/v1/notifications?status=failed"),
        200,
    )
    .await;
    t.expect(
        t.api(Method::POST, "/api/v1/notifications/msg_nosuch/redeliver"),
        404,
    )
    .await;
    t.expect(
        t.api(
            Method::DELETE,
            &format!("/api/v1/notification-endpoints/{ne}"),
        ),
        200,
    )
    .await;
    let (spare, _) = bursar::service::api_keys::create(&app.services.db, "spare")
        .await
        .unwrap();
    t.expect(t.api(Method::GET, "/api/v1/api-keys"), 200).await;
    t.expect(
        t.api(Method::DELETE, &format!("/api/v1/api-keys/{}", spare)),
        200,
    )
    .await;
    t.expect(t.api(Method::DELETE, "/api/v1/api-keys/key_nosuchkey"), 404)
        .await;

    // The operator console: without a session every page and form sends the browser to the
    // login page; signed in, its pages answer as documented.
    let console_pages = [
        "/console",
        "/console/doctor",
        "/console/stores",
        "/console/stores/st_nosuchstore",
        "/console/orders",
        "/console/orders/ord_nosuchorder",
        "/console/events",
        "/console/events/999999999",
        "/console/notifications",
        "/console/api-keys",
    ];
    for path in console_pages {
        t.expect(t.anon(Method::GET, path), 303).await;
    }
    for path in [
        "/console/logout",
        "/console/doctor",
        "/console/orders/ord_nosuchorder/sync",
        "/console/orders/ord_nosuchorder/refund",
        "/console/events/999999999/replay",
        "/console/events/replay",
        "/console/notifications/msg_nosuch/redeliver",
        "/console/endpoints/ne_nosuch/enable",
        "/console/api-keys/key_nosuch/revoke",
    ] {
        t.expect(t.anon(Method::POST, path), 303).await;
    }
    t.expect(t.anon(Method::GET, "/console/login"), 200).await;
    t.expect(
        t.anon(Method::POST, "/console/login")
            .form(&[("api_key", app.api_key.as_str())]),
        403,
    )
    .await;
    t.expect(t.anon(Method::GET, "/console/assets/console.css"), 200)
        .await;
    t.expect(t.anon(Method::GET, "/console/assets/console.js"), 200)
        .await;
    let operator = crate::console::Operator::sign_in(&app).await;
    for path in console_pages {
        let status = if path.contains("nosuch") || path.ends_with("/999999999") {
            404
        } else {
            200
        };
        t.expect(
            t.anon(Method::GET, path).header("cookie", &operator.cookie),
            status,
        )
        .await;
    }

    let documented: BTreeSet<(String, String)> = t
        .spec
        .paths()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| (m.to_string(), path.clone()))
        })
        .collect();
    let missed: Vec<_> = documented.difference(&t.called).collect();
    assert!(
        missed.is_empty(),
        "operations the tour never called: {missed:?}"
    );
}

/// A documented path answers 405 to every method the document does not list for it (so the
/// router serves nothing there beyond the document), and an undocumented path is a 404.
#[tokio::test]
async fn the_router_serves_no_method_the_document_does_not_list() {
    let app = TestApp::spawn().await;
    let spec = Spec::load(&app).await;
    let params: HashMap<&str, &str> =
        [("{id}", "st_x"), ("{store_id}", "st_x"), ("{token}", "t")].into();
    let mut probed = 0;
    for (template, item) in spec.paths() {
        let path: String = template
            .split('/')
            .map(|seg| params.get(seg).copied().unwrap_or(seg))
            .collect::<Vec<_>>()
            .join("/");
        for method in METHODS.iter().filter(|m| item.get(**m).is_none()) {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = app.api(m, &path).send().await.unwrap();
            assert_eq!(r.status(), 405, "{} {path}", method.to_uppercase());
            probed += 1;
        }
    }
    assert!(probed > 100, "{probed}");
    let r = app
        .api(Method::GET, "/api/v1/nothing-here")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// The `Notification` schema takes the example body of every type (each `data.object` one
/// view, closed to fields the view does not name), and names every type.
#[tokio::test]
async fn the_notification_schema_describes_every_type() {
    let app = TestApp::spawn().await;
    let spec = Spec::load(&app).await;
    let schema = &spec.doc["components"]["schemas"]["Notification"];
    let types: Vec<&str> = schema["properties"]["type"]["enum"]
        .as_array()
        .expect("the types")
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(types, bursar::domain::notification::EVENT_TYPES);
    let mut closed = json!({"$ref": "#/components/schemas/Notification"});
    closed["components"] = spec.components.clone();
    let validator = jsonschema::draft202012::new(&closed).unwrap();
    for kind in bursar::service::notification_types::KINDS {
        let body = bursar::service::notification_types::example_body(kind);
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", kind.event_type);
    }
}

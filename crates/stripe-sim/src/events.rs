//! Events and their delivery, as Stripe sends them: signed POSTs to registered endpoints,
//! snapshot events (`object: "event"`, the object inside) to platform or Connect endpoints, and
//! Accounts v2 thin events (`object: "v2.core.event"`, no data) to platform endpoints, fetched
//! in full with `GET /v2/core/events/{id}`.
//!
//! Events about an object that lives in an account (payments, customers, …) go where Stripe
//! sends them: to that account's own endpoints (no `account` field), and, when it is an account
//! connected to the platform, to the platform's Connect endpoints with `account` set. Objects of
//! the platform's own account go to platform endpoints.
//!
//! Deliveries are awaited one endpoint after the other, so when a helper (or a page action)
//! returns, every endpoint has answered: tests need no sleeps.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::random;
use crate::state::{now, rfc3339, Sim, PLATFORM_ACCOUNT};

/// The API version events are rendered in (Bursar pins the same).
pub const API_VERSION: &str = "2025-10-29.clover";

const USER_AGENT: &str = "Stripe/1.0 (+https://stripe.com/docs/webhooks)";

/// A webhook endpoint the simulator delivers to.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Endpoint {
    pub url: String,
    pub secret: String,
    /// Receives events of connected accounts (`account` set) rather than the platform's own.
    pub connect: bool,
    /// An endpoint of this account (not the platform's): it receives the account's own events,
    /// without an `account` field, as Stripe sends them to an account's endpoints.
    pub account: Option<String>,
    /// Made through `POST /v1/webhook_endpoints` (`we_…`); `None` for one registered by a test.
    pub id: Option<String>,
    /// The event types it receives; `*` is every type.
    pub enabled_events: Vec<String>,
    pub disabled: bool,
    /// What the API shows of it (url, events, status and the rest), for one made by the API.
    pub object: Option<Value>,
}

impl Endpoint {
    /// A test's endpoint: every event, always enabled.
    pub fn registered(url: &str, secret: &str, connect: bool, account: Option<&str>) -> Self {
        Self {
            url: url.to_owned(),
            secret: secret.to_owned(),
            connect,
            account: account.map(str::to_owned),
            id: None,
            enabled_events: vec!["*".to_owned()],
            disabled: false,
            object: None,
        }
    }

    fn receives(&self, event_type: &str) -> bool {
        !self.disabled
            && self
                .enabled_events
                .iter()
                .any(|e| e == "*" || e == event_type)
    }
}

/// One delivery attempt, for tests to assert on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub event_id: String,
    pub event_type: String,
    pub url: String,
    pub connect: bool,
    /// For an endpoint registered with `register_account_endpoint`, its account.
    pub account: Option<String>,
    /// The endpoint's HTTP status; 0 when it could not be reached.
    pub status: u16,
}

/// The `Stripe-Signature` header value for `payload` at `timestamp` (unix seconds):
/// `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<payload>")>`.
pub fn sign(payload: &[u8], secret: &str, timestamp: i64) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// A snapshot event; `account` makes it a Connect event.
pub(crate) fn snapshot(
    sim: &Sim,
    event_type: &str,
    account: Option<&str>,
    object: Value,
    previous_attributes: Option<Value>,
) -> Value {
    let livemode = match account {
        Some(a) => sim.lock().accounts.get(a).map_or(sim.live(), |a| a.live),
        None => sim.live(),
    };
    let mut data = json!({ "object": object });
    if let Some(previous) = previous_attributes {
        data["previous_attributes"] = previous;
    }
    let mut event = json!({
        "id": format!("evt_1{}", random(23)),
        "object": "event",
        "api_version": API_VERSION,
        "created": now(),
        "data": data,
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": null },
        "type": event_type,
    });
    if let Some(a) = account {
        event["account"] = json!(a);
    }
    event
}

/// Delivers a snapshot event to the endpoints of its kind (Connect when it names an account);
/// the status each endpoint answered.
pub(crate) async fn deliver_snapshot(sim: &Sim, event: &Value) -> Vec<u16> {
    deliver(sim, event, event.get("account").is_some()).await
}

/// A snapshot event about `object`, which lives in `owner` (`PLATFORM_ACCOUNT` for the
/// platform's own): kept for `GET /v1/events/{id}` and `StripeSim::redeliver`, and delivered
/// to `owner`'s endpoints and, for a connected account, to Connect endpoints. The event id.
pub(crate) async fn emit(
    sim: &Sim,
    owner: &str,
    event_type: &str,
    object: Value,
    previous_attributes: Option<Value>,
) -> String {
    let livemode = object["livemode"].as_bool();
    let mut event = snapshot(sim, event_type, None, object, previous_attributes);
    if let Some(live) = livemode {
        event["livemode"] = json!(live);
    } else if let Some(a) = sim.lock().accounts.get(owner) {
        event["livemode"] = json!(a.live);
    }
    let id = event["id"].as_str().unwrap_or_default().to_owned();
    {
        let mut state = sim.lock();
        state
            .events
            .insert(id.clone(), (owner.to_owned(), event.clone()));
        state.event_order.push(id.clone());
    }
    deliver_for(sim, owner, &event).await;
    id
}

/// An event to emit once the state lock is released: what changed, in which account.
pub(crate) struct Pending {
    pub owner: String,
    pub event_type: &'static str,
    pub object: Value,
    pub previous_attributes: Option<Value>,
}

impl Pending {
    pub fn new(owner: &str, event_type: &'static str, object: &Value) -> Self {
        Self {
            owner: owner.to_owned(),
            event_type,
            object: object.clone(),
            previous_attributes: None,
        }
    }

    pub fn previous(mut self, previous: Value) -> Self {
        self.previous_attributes = Some(previous);
        self
    }
}

/// Emits `events` in order; their ids.
pub(crate) async fn emit_all(sim: &Sim, events: Vec<Pending>) -> Vec<String> {
    let mut ids = Vec::with_capacity(events.len());
    for e in events {
        ids.push(emit(sim, &e.owner, e.event_type, e.object, e.previous_attributes).await);
    }
    ids
}

/// Delivers `event` (without an `account` field) as an event of `owner`; the statuses.
pub(crate) async fn deliver_for(sim: &Sim, owner: &str, event: &Value) -> Vec<u16> {
    if owner == PLATFORM_ACCOUNT {
        return deliver(sim, event, false).await;
    }
    let mut statuses = deliver_to(sim, event, |e| e.account.as_deref() == Some(owner)).await;
    let connected = sim.lock().reachable(owner).is_some();
    if connected {
        let mut connect = event.clone();
        connect["account"] = json!(owner);
        statuses.extend(deliver(sim, &connect, true).await);
    }
    statuses
}

/// Creates an Accounts v2 event about `account` (kept for `GET /v2/core/events/{id}`) and
/// delivers its thin form to the platform endpoints; the event id.
pub(crate) async fn emit_thin(
    sim: &Sim,
    event_type: &str,
    account: &str,
    data: Value,
    context: Option<&str>,
) -> String {
    let livemode = sim
        .lock()
        .accounts
        .get(account)
        .map_or(sim.live(), |a| a.live);
    let id = format!("evt_{}{}", if livemode { "" } else { "test_" }, random(28));
    let mut thin = json!({
        "id": id,
        "object": "v2.core.event",
        "type": event_type,
        "livemode": livemode,
        "created": rfc3339(now()),
        "related_object": {
            "id": account,
            "type": "v2.core.account",
            "url": format!("/v2/core/accounts/{account}"),
        },
    });
    if let Some(c) = context {
        thin["context"] = json!(c);
    }
    let mut full = thin.clone();
    full["data"] = data;
    full["reason"] = Value::Null;
    sim.lock().thin_events.insert(id.clone(), full);
    deliver(sim, &thin, false).await;
    id
}

/// What `GET /v2/core/events/{id}` returns for a thin event's `data`.
pub(crate) fn thin_data(event_type: &str) -> Value {
    if event_type.ends_with("capability_status_updated") {
        json!({ "updated_capability": "card_payments" })
    } else {
        json!({})
    }
}

/// To the platform's endpoints (`connect`: its Connect endpoints).
async fn deliver(sim: &Sim, event: &Value, connect: bool) -> Vec<u16> {
    deliver_to(sim, event, |e| e.connect == connect && e.account.is_none()).await
}

async fn deliver_to(sim: &Sim, event: &Value, which: impl Fn(&Endpoint) -> bool) -> Vec<u16> {
    let event_type = event["type"].as_str().unwrap_or_default();
    let endpoints: Vec<Endpoint> = sim
        .lock()
        .endpoints
        .iter()
        .filter(|e| which(e) && e.receives(event_type))
        .cloned()
        .collect();
    let body = serde_json::to_vec(event).expect("events serialize");
    let mut statuses = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        let signature = sign(&body, &endpoint.secret, now());
        let status = sim
            .http
            .post(&endpoint.url)
            .header("Content-Type", "application/json; charset=utf-8")
            .header("User-Agent", USER_AGENT)
            .header("Stripe-Signature", signature)
            .body(body.clone())
            .send()
            .await
            .map_or(0, |r| r.status().as_u16());
        sim.lock().deliveries.push(Delivery {
            event_id: event["id"].as_str().unwrap_or_default().to_owned(),
            event_type: event["type"].as_str().unwrap_or_default().to_owned(),
            url: endpoint.url,
            connect: endpoint.connect,
            account: endpoint.account,
            status,
        });
        statuses.push(status);
    }
    statuses
}

/// `previous_attributes` for a change from `old` to `new`: the old value of every field that
/// changed, descending into objects so only what changed is listed (as Stripe does).
pub(crate) fn previous_attributes(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut changed = serde_json::Map::new();
            for (k, ov) in o {
                match n.get(k) {
                    Some(nv) if nv == ov => {}
                    Some(nv) if ov.is_object() && nv.is_object() => {
                        changed.insert(k.clone(), previous_attributes(ov, nv));
                    }
                    _ => {
                        changed.insert(k.clone(), ov.clone());
                    }
                }
            }
            for k in n.keys().filter(|k| !o.contains_key(*k)) {
                changed.insert(k.clone(), Value::Null);
            }
            Value::Object(changed)
        }
        _ => old.clone(),
    }
}

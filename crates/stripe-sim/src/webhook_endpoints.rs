//! Webhook endpoints made through the API (`/v1/webhook_endpoints`), which then receive the
//! events they enable, signed with the secret returned once at creation; and the event list
//! (`GET /v1/events`) an account's events can be caught up from.
//!
//! As in Stripe: an endpoint belongs to the account whose key made it (the platform's own, or,
//! with `connect=true`, its Connect endpoint, or a connected or independent account's); each
//! account may have 16; the secret is shown only by the create call.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::events::Endpoint;
use crate::http::{ok, ApiError, ApiResult, Form};
use crate::objects::acting;
use crate::params::{self, reject_unknown};
use crate::random;
use crate::state::{now, Sim, PLATFORM_ACCOUNT};

/// Stripe's limit of endpoints per account (and mode).
pub const MAX_ENDPOINTS: usize = 16;

const CREATE: &[&str] = &[
    "url",
    "enabled_events",
    "connect",
    "api_version",
    "description",
    "metadata",
];
const UPDATE: &[&str] = &[
    "url",
    "enabled_events",
    "disabled",
    "description",
    "metadata",
];

pub(crate) fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/v1/webhook_endpoints", post(create).get(list))
        .route(
            "/v1/webhook_endpoints/{id}",
            get(retrieve).post(update).delete(delete),
        )
        .route("/v1/events", get(events))
}

fn valid_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
}

fn events_param(form: &Form) -> Result<Vec<String>, ApiError> {
    let events: Vec<String> = form
        .all("enabled_events")
        .into_iter()
        .map(str::to_owned)
        .collect();
    if events.is_empty() {
        return Err(ApiError::missing("enabled_events"));
    }
    if let Some(bad) = events
        .iter()
        .find(|e| *e != "*" && (!e.contains('.') || e.contains(char::is_whitespace)))
    {
        return Err(ApiError::invalid(format!("Invalid event type: {bad}")).param("enabled_events"));
    }
    Ok(events)
}

/// `POST /v1/webhook_endpoints`.
async fn create(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let form = Form::parse(&body);
    reject_unknown(&form, CREATE)?;
    let url = form.get("url").ok_or_else(|| ApiError::missing("url"))?;
    if !valid_url(url) {
        return Err(ApiError::invalid(format!("Invalid URL: {url}")).param("url"));
    }
    let enabled_events = events_param(&form)?;
    let connect = params::boolean(&form, "connect")?.unwrap_or(false);
    if connect && acting.owner != PLATFORM_ACCOUNT {
        return Err(ApiError::invalid(
            "Only Connect platforms can create Connect webhook endpoints.",
        )
        .param("connect"));
    }
    let metadata = params::metadata(&form, "metadata")?;
    let id = format!("we_1{}", random(23));
    let secret = format!("whsec_{}", random(32));
    let object = json!({
        "id": id,
        "object": "webhook_endpoint",
        "api_version": form.get("api_version"),
        "application": null,
        "created": now(),
        "description": form.get("description"),
        "enabled_events": enabled_events,
        "livemode": acting.live,
        "metadata": metadata,
        "status": "enabled",
        "url": url,
    });
    {
        let mut state = sim.lock();
        let owned = state
            .endpoints
            .iter()
            .filter(|e| e.id.is_some() && owner_of(e) == acting.owner)
            .count();
        if owned >= MAX_ENDPOINTS {
            return Err(ApiError::invalid(format!(
                "You have reached the maximum of {MAX_ENDPOINTS} {} webhook endpoints.",
                if acting.live { "live" } else { "test" }
            )));
        }
        state.endpoints.push(Endpoint {
            url: url.to_owned(),
            secret: secret.clone(),
            connect,
            account: (acting.owner != PLATFORM_ACCOUNT).then(|| acting.owner.clone()),
            id: Some(id),
            enabled_events,
            disabled: false,
            object: Some(object.clone()),
        });
    }
    let mut shown = object;
    shown["secret"] = json!(secret);
    ok(shown)
}

/// The account an endpoint belongs to.
fn owner_of(e: &Endpoint) -> String {
    e.account
        .clone()
        .unwrap_or_else(|| PLATFORM_ACCOUNT.to_owned())
}

/// The API form of endpoint `id` of `owner`.
fn find(sim: &Sim, owner: &str, id: &str) -> Result<Value, ApiError> {
    sim.lock()
        .endpoints
        .iter()
        .find(|e| e.id.as_deref() == Some(id) && owner_of(e) == owner)
        .and_then(|e| e.object.clone())
        .ok_or_else(|| ApiError::no_such("webhook_endpoint", id))
}

async fn retrieve(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    ok(find(&sim, &acting.owner, &id)?)
}

/// `GET /v1/webhook_endpoints`: the account's endpoints, newest first.
async fn list(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let form = Form::parse(query.unwrap_or_default().as_bytes());
    let limit = limit(&form)?;
    let mut all: Vec<Value> = sim
        .lock()
        .endpoints
        .iter()
        .filter(|e| owner_of(e) == acting.owner)
        .filter_map(|e| e.object.clone())
        .collect();
    all.reverse();
    ok(page(all, &form, limit, "/v1/webhook_endpoints"))
}

async fn update(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let form = Form::parse(&body);
    reject_unknown(&form, UPDATE)?;
    let url = form.get("url");
    if let Some(url) = url.filter(|u| !valid_url(u)) {
        return Err(ApiError::invalid(format!("Invalid URL: {url}")).param("url"));
    }
    let events = if form.has("enabled_events") {
        Some(events_param(&form)?)
    } else {
        None
    };
    let disabled = params::boolean(&form, "disabled")?;
    let mut state = sim.lock();
    let e = state
        .endpoints
        .iter_mut()
        .find(|e| e.id.as_deref() == Some(id.as_str()) && owner_of(e) == acting.owner)
        .ok_or_else(|| ApiError::no_such("webhook_endpoint", &id))?;
    let object = e.object.get_or_insert_with(|| json!({}));
    if let Some(url) = url {
        e.url = url.to_owned();
        object["url"] = json!(url);
    }
    if let Some(events) = events {
        object["enabled_events"] = json!(events);
        e.enabled_events = events;
    }
    if let Some(d) = disabled {
        e.disabled = d;
        object["status"] = json!(if d { "disabled" } else { "enabled" });
    }
    if let Some(d) = form.get("description") {
        object["description"] = json!(d);
    }
    let mut metadata = object["metadata"].as_object().cloned().unwrap_or_default();
    params::update_metadata(&mut metadata, &form, "metadata")?;
    object["metadata"] = Value::Object(metadata);
    ok(object.clone())
}

async fn delete(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let mut state = sim.lock();
    let before = state.endpoints.len();
    state
        .endpoints
        .retain(|e| !(e.id.as_deref() == Some(id.as_str()) && owner_of(e) == acting.owner));
    if state.endpoints.len() == before {
        return Err(ApiError::no_such("webhook_endpoint", &id));
    }
    ok(json!({ "id": id, "object": "webhook_endpoint", "deleted": true }))
}

pub(crate) fn limit(form: &Form) -> Result<usize, ApiError> {
    match params::integer(form, "limit")? {
        None => Ok(10),
        Some(n) if (1..=100).contains(&n) => Ok(n as usize),
        Some(_) => {
            Err(ApiError::invalid("Invalid limit: must be between 1 and 100").param("limit"))
        }
    }
}

/// One page of `all` (newest first) after `starting_after`, or the page just newer than
/// `ending_before` (still newest first), as Stripe's cursors work.
pub(crate) fn page(all: Vec<Value>, form: &Form, limit: usize, url: &str) -> Value {
    let position = |id: &str| all.iter().position(|o| o["id"] == id);
    let (data, has_more) = if let Some(before) = form.get("ending_before") {
        let end = position(before).unwrap_or(0);
        let start = end.saturating_sub(limit);
        (all[start..end].to_vec(), start > 0)
    } else {
        let start = form
            .get("starting_after")
            .and_then(position)
            .map_or(0, |i| i + 1);
        let end = (start + limit).min(all.len());
        (all[start..end].to_vec(), end < all.len())
    };
    json!({ "object": "list", "data": data, "has_more": has_more, "url": url })
}

/// `GET /v1/events`: the acting account's events, newest first, filtered by `type`, `types[]`
/// and `created[gt|gte|lt|lte]`; Stripe keeps 30 days of them.
async fn events(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let form = Form::parse(query.unwrap_or_default().as_bytes());
    reject_unknown(
        &form,
        &[
            "created",
            "type",
            "types",
            "limit",
            "starting_after",
            "ending_before",
            "delivery_success",
        ],
    )?;
    if form.get("type").is_some() && form.has("types") {
        return Err(ApiError::invalid(
            "You may only specify one of these parameters: type, types.",
        ));
    }
    let limit = limit(&form)?;
    let types: Vec<&str> = form.all("types");
    let one_type = form.get("type");
    let bound = |op: &str| params::integer(&form, &format!("created[{op}]"));
    let (gt, gte, lt, lte) = (bound("gt")?, bound("gte")?, bound("lt")?, bound("lte")?);
    let created_eq = params::integer(&form, "created")?;
    let retained = now() - 30 * 86_400;
    let all: Vec<Value> = {
        let state = sim.lock();
        state
            .event_order
            .iter()
            .rev()
            .filter_map(|id| state.events.get(id))
            .filter(|(owner, _)| *owner == acting.owner)
            .map(|(_, e)| e)
            .filter(|e| {
                let t = e["type"].as_str().unwrap_or_default();
                let c = e["created"].as_i64().unwrap_or_default();
                c >= retained
                    && one_type.is_none_or(|x| x == t)
                    && (types.is_empty() || types.contains(&t))
                    && gt.is_none_or(|b| c > b)
                    && gte.is_none_or(|b| c >= b)
                    && lt.is_none_or(|b| c < b)
                    && lte.is_none_or(|b| c <= b)
                    && created_eq.is_none_or(|b| c == b)
            })
            .cloned()
            .collect()
    };
    ok(page(all, &form, limit, "/v1/events"))
}

/// The API form of every endpoint made through the API, with its owner and secret, oldest
/// first: for tests.
pub(crate) fn all(sim: &Sim) -> Vec<Value> {
    sim.lock()
        .endpoints
        .iter()
        .filter_map(|e| {
            let mut o = e.object.clone()?;
            o["owner"] = json!(owner_of(e));
            o["connect"] = json!(e.connect);
            o["secret"] = json!(e.secret);
            Some(o)
        })
        .collect()
}

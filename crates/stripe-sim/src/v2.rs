//! Accounts v2 (`/v2/core/…`): JSON bodies, `Stripe-Context` instead of `Stripe-Account`, a
//! required `Stripe-Version`, RFC 3339 timestamps, and `include` to ask for the account's
//! heavier parts. An account made here is also a v1 account (same id), as in Stripe.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use crate::accounts::{example, mark_due, new_id};
use crate::auth::{authenticate, header, no_access, Caller, STRIPE_CONTEXT};
use crate::http::{ok, ApiError, ApiResult, Form};
use crate::onboarding::{issue, valid_url};
use crate::state::{now, rfc3339, Account, Sim};

/// What a new account owes before its capabilities turn active.
const DUE_AT_CREATION: [&str; 4] = [
    "representative.first_name",
    "representative.last_name",
    "identity.attestations.terms_of_service.account",
    "payout_methods.bank_account",
];

/// Parts of an account returned only when `include` names them.
const INCLUDABLE: [&str; 4] = [
    "defaults",
    "identity",
    "requirements",
    "future_requirements",
];

pub(crate) fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/v2/core/accounts", post(create))
        .route("/v2/core/accounts/{id}", get(retrieve))
        .route("/v2/core/account_links", post(create_link))
        .route("/v2/core/events/{id}", get(event))
}

/// v2 wants an explicit API version on every request.
fn authenticate_v2(sim: &Sim, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let caller = authenticate(sim, headers, STRIPE_CONTEXT)?;
    if header(headers, "Stripe-Version").is_none() {
        return Err(ApiError::invalid(
            "The Stripe-Version header is required for /v2 requests. Set it to the API version \
             you are integrating against.",
        )
        .code("stripe_version_missing"));
    }
    Ok(caller)
}

fn platform_only(caller: &Caller) -> Result<(), ApiError> {
    if caller.platform && caller.account.is_none() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "This request must be made with the platform's key, without Stripe-Context.",
        ))
    }
}

fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(ApiError::invalid("The request body is not a JSON object.").code("invalid_body")),
    }
}

/// `POST /v2/core/accounts`.
async fn create(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    platform_only(&authenticate_v2(&sim, &headers)?)?;
    let body = json_body(&body)?;
    if !matches!(
        body["dashboard"].as_str(),
        None | Some("full" | "express" | "none")
    ) {
        return Err(
            ApiError::invalid("Invalid dashboard: must be one of full, express or none.")
                .code("invalid_value"),
        );
    }
    let include: Vec<&str> = body["include"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let id = new_id();
    let live = sim.live();
    let v2 = build(&id, &body, live);
    let shown = view(&v2, &include);
    let mut account = Account::new(v1_of(&id, &body), live, true);
    account.v2 = Some(v2);
    sim.lock().accounts.insert(id, account);
    ok(shown)
}

/// `GET /v2/core/accounts/{id}?include=…&include=…`.
async fn retrieve(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let caller = authenticate_v2(&sim, &headers)?;
    let query = Form::parse(query.unwrap_or_default().as_bytes());
    let include = query.all("include");
    let state = sim.lock();
    let Some(a) = state.accounts.get(&id) else {
        return Err(ApiError::no_such("account", &id));
    };
    let visible = match &caller.account {
        Some(acting) => *acting == id,
        None => a.reachable(),
    };
    if !visible {
        return Err(no_access(&caller.key, &id));
    }
    let full = a.v2.clone().unwrap_or_else(|| from_v1(&a.v1, a.live));
    ok(view(&full, &include))
}

/// `POST /v2/core/account_links`: a link to the same hosted onboarding page as v1's.
async fn create_link(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let caller = authenticate_v2(&sim, &headers)?;
    platform_only(&caller)?;
    let body = json_body(&body)?;
    let account = body["account"]
        .as_str()
        .ok_or_else(|| ApiError::missing("account"))?;
    let use_case = &body["use_case"];
    let kind = use_case["type"]
        .as_str()
        .ok_or_else(|| ApiError::missing("use_case.type"))?;
    if !matches!(kind, "account_onboarding" | "account_update") {
        return Err(ApiError::invalid(
            "Invalid use_case.type: must be one of account_onboarding or account_update.",
        )
        .code("invalid_value"));
    }
    let url = |name: &str| {
        let param = format!("use_case.{kind}.{name}");
        match use_case[kind][name].as_str() {
            None => Err(ApiError::missing(&param)),
            Some(u) if !valid_url(u) => {
                Err(ApiError::invalid(format!("Not a valid URL: {param}")).code("invalid_value"))
            }
            Some(u) => Ok(u.to_owned()),
        }
    };
    let (refresh_url, return_url) = (url("refresh_url")?, url("return_url")?);
    let mut state = sim.lock();
    let Some(live) = state.reachable(account).map(|a| a.live) else {
        return Err(no_access(&caller.key, account));
    };
    let (url, created, expires_at) =
        issue(&mut state, &sim.url, account, &refresh_url, &return_url);
    ok(json!({
        "object": "v2.core.account_link",
        "account": account,
        "created": rfc3339(created),
        "expires_at": rfc3339(expires_at),
        "livemode": live,
        "url": url,
        "use_case": use_case,
    }))
}

/// `GET /v2/core/events/{id}`: a thin event in full. An event lives in its context: it is found
/// only with the `Stripe-Context` it was emitted in (none for the platform's own).
async fn event(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let caller = authenticate_v2(&sim, &headers)?;
    let state = sim.lock();
    match state.thin_events.get(&id) {
        Some(e) if caller.platform && e["context"].as_str() == caller.account.as_deref() => {
            ok(e.clone())
        }
        _ => Err(ApiError::no_such("event", &id)),
    }
}

/// The full v2 account (every includable part) made from a create request.
fn build(id: &str, body: &Value, live: bool) -> Value {
    let mut configuration = Map::new();
    let mut requested = Vec::new();
    if let Some(configs) = body["configuration"].as_object() {
        for (name, config) in configs {
            let mut config = config.clone();
            if let Some(caps) = config.get_mut("capabilities") {
                restrict(caps, name, "", &mut requested);
            }
            if config.is_object() {
                config["applied"] = json!(true);
            }
            configuration.insert(name.clone(), config);
        }
    }
    let entries: Vec<Value> = DUE_AT_CREATION
        .iter()
        .map(|d| due_entry(d, &requested))
        .collect();
    json!({
        "id": id,
        "object": "v2.core.account",
        "applied_configurations": configuration.keys().collect::<Vec<_>>(),
        "closed": false,
        "configuration": configuration,
        "contact_email": body["contact_email"],
        "created": rfc3339(now()),
        "dashboard": body["dashboard"],
        "defaults": body["defaults"],
        "display_name": body["display_name"],
        "identity": body["identity"],
        "livemode": live,
        "metadata": body.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "requirements": {
            "entries": entries,
            "summary": { "minimum_deadline": { "status": "currently_due", "time": null } },
        },
    })
}

/// Turns every `{"requested": true}` under a configuration's capabilities into a restricted
/// capability, collecting `(configuration, capability)` for the requirements' impact.
fn restrict(caps: &mut Value, config: &str, prefix: &str, requested: &mut Vec<(String, String)>) {
    let Some(caps) = caps.as_object_mut() else {
        return;
    };
    for (name, cap) in caps.iter_mut() {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match cap.get("requested") {
            Some(Value::Bool(true)) => {
                *cap = json!({
                    "status": "restricted",
                    "status_details": [
                        { "code": "requirements_past_due", "resolution": "provide_info" }
                    ],
                });
                requested.push((config.to_owned(), path));
            }
            Some(_) => {}
            None => restrict(cap, config, &path, requested),
        }
    }
}

fn due_entry(description: &str, requested: &[(String, String)]) -> Value {
    let restricts: Vec<Value> = requested
        .iter()
        .map(|(config, cap)| {
            json!({
                "capability": cap,
                "configuration": config,
                "deadline": { "status": "currently_due" },
            })
        })
        .collect();
    json!({
        "awaiting_action_from": "user",
        "description": description,
        "errors": [],
        "impact": { "restricts_capabilities": restricts },
        "minimum_deadline": { "status": "currently_due" },
        "reference": null,
        "requested_reasons": [{ "code": "routine_onboarding" }],
    })
}

/// The account as a response shows it: parts not named by `include` are null.
fn view(account: &Value, include: &[&str]) -> Value {
    let mut v = account.clone();
    for part in INCLUDABLE {
        if v.get(part).is_some() && !include.contains(&part) {
            v[part] = Value::Null;
        }
    }
    let configs: Vec<&str> = include
        .iter()
        .filter_map(|i| i.strip_prefix("configuration."))
        .collect();
    v["configuration"] = match v["configuration"].as_object() {
        Some(all) if !configs.is_empty() => Value::Object(
            all.iter()
                .filter(|(k, _)| configs.contains(&k.as_str()))
                .map(|(k, c)| (k.clone(), c.clone()))
                .collect(),
        ),
        _ => Value::Null,
    };
    v
}

/// The v1 face of an account created through v2.
fn v1_of(id: &str, body: &Value) -> Value {
    let dashboard = body["dashboard"].as_str().unwrap_or("full");
    let mut a = example(id);
    a["type"] = json!(match dashboard {
        "express" => "express",
        "none" => "custom",
        _ => "standard",
    });
    let responsibilities = &body["defaults"]["responsibilities"];
    a["controller"] = json!({
        "fees": { "payer": responsibilities["fees_collector"].as_str().unwrap_or("stripe") },
        "is_controller": true,
        "losses": { "payments": responsibilities["losses_collector"].as_str().unwrap_or("stripe") },
        "stripe_dashboard": { "type": dashboard },
        "type": "application",
    });
    a["email"] = body["contact_email"].clone();
    a["country"] = json!(body["identity"]["country"]
        .as_str()
        .unwrap_or("us")
        .to_uppercase());
    a["business_profile"]["name"] = body["display_name"].clone();
    a["metadata"] = body.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut caps = Map::new();
    if let Some(requested) = body["configuration"]["merchant"]["capabilities"].as_object() {
        for (name, cap) in requested {
            if cap["requested"] == true {
                caps.insert(name.clone(), json!("inactive"));
            }
        }
    }
    a["capabilities"] = Value::Object(caps);
    mark_due(&mut a);
    a
}

/// The v2 face of an account created through v1 (or OAuth), for `GET /v2/core/accounts/{id}`.
fn from_v1(v1: &Value, live: bool) -> Value {
    let capabilities: Map<String, Value> = v1["capabilities"]
        .as_object()
        .map(|caps| {
            caps.iter()
                .map(|(name, status)| {
                    let cap = if status == "active" {
                        json!({ "status": "active", "status_details": [] })
                    } else {
                        json!({
                            "status": "restricted",
                            "status_details": [
                                { "code": "requirements_past_due", "resolution": "provide_info" }
                            ],
                        })
                    };
                    (name.clone(), cap)
                })
                .collect()
        })
        .unwrap_or_default();
    let due: Vec<Value> = v1["requirements"]["currently_due"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|d| due_entry(d, &[]))
        .collect();
    let summary = if due.is_empty() {
        Value::Null
    } else {
        json!({ "status": "currently_due", "time": null })
    };
    json!({
        "id": v1["id"],
        "object": "v2.core.account",
        "applied_configurations": ["merchant"],
        "closed": false,
        "configuration": { "merchant": { "applied": true, "capabilities": capabilities } },
        "contact_email": v1["email"],
        "created": rfc3339(v1["created"].as_i64().unwrap_or_default()),
        "dashboard": v1["controller"]["stripe_dashboard"]["type"],
        "defaults": null,
        "display_name": v1["business_profile"]["name"],
        "identity": { "country": v1["country"].as_str().map(str::to_lowercase) },
        "livemode": live,
        "metadata": v1["metadata"],
        "requirements": { "entries": due, "summary": { "minimum_deadline": summary } },
    })
}

/// Onboarding done: every requested capability active, nothing due.
pub(crate) fn mark_onboarded(account: &mut Value) {
    fn activate(caps: &mut Value) {
        let Some(caps) = caps.as_object_mut() else {
            return;
        };
        for cap in caps.values_mut() {
            if cap.get("status").is_some() {
                cap["status"] = json!("active");
                cap["status_details"] = json!([]);
            } else {
                activate(cap);
            }
        }
    }
    if let Some(configs) = account["configuration"].as_object_mut() {
        for config in configs.values_mut() {
            if let Some(caps) = config.get_mut("capabilities") {
                activate(caps);
            }
        }
    }
    account["requirements"] = json!({ "entries": [], "summary": { "minimum_deadline": null } });
}

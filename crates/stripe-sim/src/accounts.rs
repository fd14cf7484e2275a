//! Accounts v1: retrieving (`/v1/account`, `/v1/accounts/{id}`), creating connected accounts
//! (`POST /v1/accounts`), and Express login links with the page they open.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use crate::auth::{authenticate, no_access, STRIPE_ACCOUNT};
use crate::fixtures;
use crate::http::{escape, ok, page, ApiError, ApiResult, Form};
use crate::state::{now, Account, Sim, State as SimState};
use crate::{random, SimAccount};

/// What a new Express or Custom account still owes before it may take charges.
const DUE_AT_CREATION: [&str; 4] = [
    "business_type",
    "external_account",
    "tos_acceptance.date",
    "tos_acceptance.ip",
];

pub(crate) fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/v1/account", get(current))
        .route("/v1/accounts", post(create))
        .route("/v1/accounts/{id}", get(by_id))
        .route("/v1/accounts/{id}/login_links", post(login_link))
        .route("/express/{account}/{token}", get(express_dashboard))
}

pub(crate) fn new_id() -> String {
    format!("acct_1{}", random(15))
}

/// Stripe's example account under a new id, created now.
pub(crate) fn example(id: &str) -> Value {
    let mut a = fixtures::required("account");
    a["id"] = json!(id);
    a["created"] = json!(now());
    a["external_accounts"]["url"] = json!(format!("/v1/accounts/{id}/external_accounts"));
    a
}

/// Fresh keys for account `id` in live or test mode.
pub(crate) fn fresh_keys(id: &str, live: bool) -> SimAccount {
    let mode = if live { "live" } else { "test" };
    SimAccount {
        id: id.to_owned(),
        secret_key: format!("sk_{mode}_{}", random(24)),
        restricted_key: format!("rk_{mode}_{}", random(24)),
        publishable_key: format!("pk_{mode}_{}", random(24)),
    }
}

/// Stores `account` and makes its secret and restricted keys open it (and its publishable key
/// act on it where Stripe.js may).
pub(crate) fn insert_with_keys(state: &mut SimState, account: Account) -> SimAccount {
    let id = account.v1["id"].as_str().unwrap_or_default().to_owned();
    let keys = fresh_keys(&id, account.live);
    state.keys.insert(keys.secret_key.clone(), id.clone());
    state.keys.insert(keys.restricted_key.clone(), id.clone());
    state
        .publishable_keys
        .insert(keys.publishable_key.clone(), id.clone());
    state.accounts.insert(id, account);
    keys
}

/// The state of an account created moments ago: nothing submitted, nothing enabled.
pub(crate) fn mark_due(a: &mut Value) {
    let due = json!(DUE_AT_CREATION);
    a["charges_enabled"] = json!(false);
    a["payouts_enabled"] = json!(false);
    a["details_submitted"] = json!(false);
    let r = &mut a["requirements"];
    r["currently_due"] = due.clone();
    r["eventually_due"] = due.clone();
    r["past_due"] = due;
    r["current_deadline"] = Value::Null;
    r["disabled_reason"] = json!("requirements.past_due");
}

/// The state of an account whose owner finished onboarding: every requested capability active.
pub(crate) fn mark_onboarded(a: &mut Value) {
    a["charges_enabled"] = json!(true);
    a["payouts_enabled"] = json!(true);
    a["details_submitted"] = json!(true);
    for key in ["requirements", "future_requirements"] {
        let r = &mut a[key];
        for list in [
            "currently_due",
            "eventually_due",
            "past_due",
            "pending_verification",
        ] {
            r[list] = json!([]);
        }
        r["current_deadline"] = Value::Null;
        r["disabled_reason"] = Value::Null;
    }
    if let Some(caps) = a["capabilities"].as_object_mut() {
        for status in caps.values_mut() {
            *status = json!("active");
        }
    }
    if a["tos_acceptance"]["date"].is_null() {
        a["tos_acceptance"]["date"] = json!(now());
        a["tos_acceptance"]["ip"] = json!("127.0.0.1");
    }
}

async fn current(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> ApiResult {
    let caller = authenticate(&sim, &headers, STRIPE_ACCOUNT)?;
    let Some(id) = caller.account else {
        return ok(json!({
            "id": crate::PLATFORM_ACCOUNT,
            "object": "account",
            "charges_enabled": true,
            "payouts_enabled": true,
        }));
    };
    match sim.lock().accounts.get(&id) {
        Some(a) => ok(a.v1.clone()),
        None => Err(no_access(&caller.key, &id)),
    }
}

/// An account is visible to itself, and to the platform while connected to it.
async fn by_id(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let caller = authenticate(&sim, &headers, STRIPE_ACCOUNT)?;
    let state = sim.lock();
    let Some(account) = state.accounts.get(&id) else {
        return Err(ApiError::no_such("account", &id));
    };
    let visible = match &caller.account {
        Some(acting) => *acting == id,
        None => account.reachable(),
    };
    if !visible {
        return Err(no_access(&caller.key, &id));
    }
    ok(account.v1.clone())
}

/// `POST /v1/accounts`: a new connected account, with `type` or with `controller[…]`.
async fn create(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let caller = authenticate(&sim, &headers, STRIPE_ACCOUNT)?;
    if !caller.platform || caller.account.is_some() {
        return Err(ApiError::invalid(
            "You can only create new accounts if you've signed up for Connect, which you can \
             learn how to do at https://stripe.com/docs/connect.",
        ));
    }
    let form = Form::parse(&body);
    let (kind, controller) = kind_and_controller(&form)?;
    let id = new_id();
    let mut a = example(&id);
    a["type"] = json!(kind);
    a["controller"] = controller;
    a["country"] = json!(form.get("country").unwrap_or("US").to_uppercase());
    a["email"] = form.get("email").map_or(Value::Null, |e| json!(e));
    a["business_type"] = form.get("business_type").map_or(Value::Null, |t| json!(t));
    a["metadata"] = form
        .children("metadata")
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect::<Map<_, _>>()
        .into();
    a["capabilities"] = requested_capabilities(&form);
    mark_due(&mut a);
    sim.lock()
        .accounts
        .insert(id, Account::new(a.clone(), sim.live(), true));
    ok(a)
}

/// The account's `type` and `controller`. Classic `type` implies a controller; a `controller`
/// implies a type (Express dashboard → `express`, full → `standard`, none → `custom` when the
/// platform collects requirements, else `none`).
fn kind_and_controller(form: &Form) -> Result<(&'static str, Value), ApiError> {
    let controller = |fees: &str, losses: &str, collection: &str, dashboard: &str| {
        json!({
            "fees": { "payer": fees },
            "is_controller": true,
            "losses": { "payments": losses },
            "requirement_collection": collection,
            "stripe_dashboard": { "type": dashboard },
            "type": "application",
        })
    };
    match (form.get("type"), form.has("controller")) {
        (Some(_), true) => Err(ApiError::invalid(
            "You cannot provide both `type` and `controller`. Use `controller` to describe the \
             account's configuration.",
        )
        .param("type")),
        (Some("express"), false) => Ok((
            "express",
            controller("application_express", "application", "stripe", "express"),
        )),
        (Some("standard"), false) => Ok((
            "standard",
            controller("account", "stripe", "stripe", "full"),
        )),
        (Some("custom"), false) => Ok((
            "custom",
            controller("application_custom", "application", "application", "none"),
        )),
        (Some(_), false) => Err(ApiError::invalid(
            "Invalid type: must be one of custom, express, or standard",
        )
        .param("type")),
        (None, true) => {
            let dashboard = form
                .get("controller[stripe_dashboard][type]")
                .unwrap_or("full");
            let collection = form
                .get("controller[requirement_collection]")
                .unwrap_or("stripe");
            let kind = match dashboard {
                "express" => "express",
                "full" => "standard",
                "none" if collection == "application" => "custom",
                "none" => "none",
                _ => {
                    return Err(ApiError::invalid(
                        "Invalid controller[stripe_dashboard][type]: must be one of express, \
                         full, or none",
                    )
                    .param("controller[stripe_dashboard][type]"))
                }
            };
            Ok((
                kind,
                controller(
                    form.get("controller[fees][payer]").unwrap_or("account"),
                    form.get("controller[losses][payments]").unwrap_or("stripe"),
                    collection,
                    dashboard,
                ),
            ))
        }
        (None, false) => Err(ApiError::missing("type")),
    }
}

/// `capabilities[card_payments][requested]=true` → `{"card_payments": "inactive"}`: requested,
/// and inactive until onboarding is done.
fn requested_capabilities(form: &Form) -> Value {
    let mut caps = Map::new();
    for (key, value) in form.pairs() {
        let Some(name) = key
            .strip_prefix("capabilities[")
            .and_then(|k| k.strip_suffix("][requested]"))
        else {
            continue;
        };
        if value == "true" {
            caps.insert(name.to_owned(), json!("inactive"));
        }
    }
    Value::Object(caps)
}

/// `POST /v1/accounts/{id}/login_links`: a single-use link into an Express account's dashboard.
async fn login_link(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let caller = authenticate(&sim, &headers, STRIPE_ACCOUNT)?;
    let mut state = sim.lock();
    let account = match state.reachable(&id) {
        Some(a) if caller.platform && caller.account.is_none() => a,
        _ => return Err(no_access(&caller.key, &id)),
    };
    if account.v1["type"] != "express" {
        return Err(ApiError::invalid(
            "You can only create login links for accounts that use the Express Dashboard and \
             are connected to your platform.",
        )
        .param("account"));
    }
    let token = random(24);
    state.login_links.insert(token.clone(), id.clone());
    ok(json!({
        "object": "login_link",
        "created": now(),
        "url": format!("{}/express/{id}/{token}", sim.url),
    }))
}

/// The Express Dashboard a login link opens (once, like Stripe's).
async fn express_dashboard(
    State(sim): State<Arc<Sim>>,
    Path((account, token)): Path<(String, String)>,
) -> Response {
    let title = "Express Dashboard (local simulator)";
    let mut state = sim.lock();
    if state.login_links.get(&token) != Some(&account) {
        return page(
            StatusCode::NOT_FOUND,
            title,
            "<p id=\"expired\">This login link has expired or was already used.</p>",
        );
    }
    state.login_links.remove(&token);
    let a = state.accounts.get(&account).map(|a| a.v1.clone());
    let a = a.unwrap_or_default();
    page(
        StatusCode::OK,
        title,
        &format!(
            "<p>Account <code id=\"account\">{}</code></p>\
             <p>Charges enabled: <span id=\"charges-enabled\">{}</span>; payouts enabled: \
             <span id=\"payouts-enabled\">{}</span></p>",
            escape(&account),
            a["charges_enabled"],
            a["payouts_enabled"],
        ),
    )
    .into_response()
}

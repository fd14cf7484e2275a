//! Objects that live in one account (payouts, persons, charges, …), made by the payments
//! routes or put there by tests with `StripeSim::put_object`. As in Stripe, an object is found
//! only from the account that owns it: fetched with the platform key but without
//! `Stripe-Account`, a connected account's payout does not exist. Routes naming the account in
//! their path (`/v1/accounts/{id}/persons/{person}`) are held to the same rule: the platform
//! reaches them with `Stripe-Account`. That is stricter than Stripe, which also answers the
//! platform key alone there, so a client that passes here works against Stripe too.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::{get, MethodRouter};
use axum::Router;
use serde_json::Value;

use crate::auth::{authenticate, Caller, STRIPE_ACCOUNT};
use crate::http::{ok, ApiError, ApiResult, Form};
use crate::params;
use crate::state::{Sim, State as SimState, PLATFORM_ACCOUNT};

pub(crate) fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/v1/charges/{id}", owned("charge"))
        .route("/v1/application_fees/{id}", owned("application_fee"))
        .route("/v1/events/{id}", get(event))
        .route("/v1/balance", get(balance))
        .route("/v1/accounts/{id}/persons/{object}", get(person))
        .route(
            "/v1/accounts/{id}/external_accounts/{object}",
            get(external_account),
        )
}

/// The key an object is stored under: its id, or its type for id-less objects (`balance`).
pub(crate) fn storage_key(object: &serde_json::Value) -> String {
    object["id"]
        .as_str()
        .or_else(|| object["object"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// `GET /v1/{resource}s/{id}` in the acting account, with `expand[]`.
pub(crate) fn owned(resource: &'static str) -> MethodRouter<Arc<Sim>> {
    get(
        move |State(sim): State<Arc<Sim>>,
              headers: HeaderMap,
              Path(id): Path<String>,
              RawQuery(query): RawQuery| async move {
            let owner = acting_account(&sim, &headers)?;
            let expand = params::expand(&Form::parse(query.unwrap_or_default().as_bytes()));
            let state = sim.lock();
            match state.objects.get(&(owner.clone(), id.clone())) {
                Some(o) if o["object"] == resource => {
                    ok(expanded(&state, &owner, o.clone(), &expand)?)
                }
                _ => Err(ApiError::no_such(resource, &id)),
            }
        },
    )
}

/// `GET /v1/events/{id}`: a snapshot event of the acting account.
async fn event(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let owner = acting_account(&sim, &headers)?;
    match sim.lock().events.get(&id) {
        Some((o, e)) if *o == owner => ok(e.clone()),
        _ => Err(ApiError::no_such("event", &id)),
    }
}

/// Who acts on which account, as the payments routes need it.
pub(crate) struct Acting {
    /// The account acted on (`PLATFORM_ACCOUNT` for the platform's own).
    pub owner: String,
    /// The platform acting on a connected account (`Stripe-Account`, or an OAuth access
    /// token): what may set application fees.
    pub as_platform: bool,
    /// Live-mode key.
    pub live: bool,
}

pub(crate) fn acting(sim: &Sim, headers: &HeaderMap) -> Result<Acting, ApiError> {
    Ok(acting_as(sim, authenticate(sim, headers, STRIPE_ACCOUNT)?))
}

/// The account `caller` acts on, and how.
pub(crate) fn acting_as(sim: &Sim, caller: Caller) -> Acting {
    let owner = caller
        .account
        .clone()
        .unwrap_or_else(|| PLATFORM_ACCOUNT.to_owned());
    let oauth = sim
        .lock()
        .accounts
        .get(&owner)
        .is_some_and(|a| a.oauth_tokens.contains(&caller.key));
    let as_platform = (caller.platform && caller.account.is_some()) || oauth;
    let live = if caller.platform {
        sim.live()
    } else {
        ["sk_live_", "rk_live_", "pk_live_"]
            .iter()
            .any(|p| caller.key.starts_with(p))
    };
    Acting {
        owner,
        as_platform,
        live,
    }
}

/// `object` with the ids named by `paths` replaced by the objects of `owner` they name
/// (`latest_charge`, `customer`, `payment_intent.latest_charge`, a session's `line_items`).
/// An id the simulator does not keep (a payment method, a balance transaction) stays an id.
pub(crate) fn expanded(
    state: &SimState,
    owner: &str,
    mut object: Value,
    paths: &[String],
) -> Result<Value, ApiError> {
    for path in paths {
        expand_one(state, owner, &mut object, path, path)?;
    }
    Ok(object)
}

fn expand_one(
    state: &SimState,
    owner: &str,
    object: &mut Value,
    path: &str,
    whole: &str,
) -> Result<(), ApiError> {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let cannot = || {
        ApiError::invalid(format!("This property cannot be expanded ({whole}).")).param("expand")
    };
    if head == "line_items" && object["object"] == "checkout.session" {
        let id = object["id"].as_str().unwrap_or_default();
        object["line_items"] = state
            .hidden
            .get(id)
            .map_or(Value::Null, |h| h["line_items"].clone());
        return Ok(());
    }
    let Some(field) = object.get_mut(head) else {
        return Err(cannot());
    };
    match field {
        Value::Null => {}
        Value::String(id) => {
            if let Some(found) = state.objects.get(&(owner.to_owned(), id.clone())) {
                *field = found.clone();
            }
        }
        Value::Object(_) => {}
        _ => return Err(cannot()),
    }
    match rest {
        Some(rest) if field.is_object() => expand_one(state, owner, field, rest, whole),
        _ => Ok(()),
    }
}

async fn person(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    let owner = acting_account(&sim, &headers)?;
    find(&sim, &owner, Some(&account), "person", &["person"], &id)
}

async fn external_account(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    let owner = acting_account(&sim, &headers)?;
    find(
        &sim,
        &owner,
        Some(&account),
        "external account",
        &["bank_account", "card"],
        &id,
    )
}

/// The acting account's balance: the one a test put there, else Stripe's example.
async fn balance(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> ApiResult {
    let owner = acting_account(&sim, &headers)?;
    let state = sim.lock();
    if let Some(b) = state.objects.get(&(owner.clone(), "balance".to_owned())) {
        return ok(b.clone());
    }
    let live = state.accounts.get(&owner).map_or(sim.live(), |a| a.live);
    ok(crate::balances::balance(&state, &owner, live))
}

/// The account a request acts on: the key's own, or the one `Stripe-Account` names.
fn acting_account(sim: &Sim, headers: &HeaderMap) -> Result<String, ApiError> {
    let caller = authenticate(sim, headers, STRIPE_ACCOUNT)?;
    Ok(caller
        .account
        .unwrap_or_else(|| PLATFORM_ACCOUNT.to_owned()))
}

/// The object `id` of `owner`. Routes naming an account in their path (`in_path`) find
/// objects only when acting as that account.
fn find(
    sim: &Sim,
    owner: &str,
    in_path: Option<&str>,
    resource: &str,
    types: &[&str],
    id: &str,
) -> ApiResult {
    if in_path.is_some_and(|a| a != owner) {
        return Err(ApiError::no_such(resource, id));
    }
    match sim.lock().objects.get(&(owner.to_owned(), id.to_owned())) {
        Some(o) if types.iter().any(|t| o["object"] == *t) => ok(o.clone()),
        _ => Err(ApiError::no_such(resource, id)),
    }
}

/// The `object`s `owner` holds, newest first (by `created`, then id), as Stripe lists them.
pub(crate) fn newest_first(state: &crate::state::State, owner: &str, object: &str) -> Vec<Value> {
    let mut all: Vec<Value> = state
        .objects
        .iter()
        .filter(|((o, _), v)| o == owner && v["object"] == object)
        .map(|(_, v)| v.clone())
        .collect();
    all.sort_by(|a, b| {
        (b["created"].as_i64(), b["id"].as_str()).cmp(&(a["created"].as_i64(), a["id"].as_str()))
    });
    all
}

/// Saves `object` in `owner`'s account, under its id.
pub(crate) fn store(state: &mut SimState, owner: &str, object: &Value) {
    let id = object["id"].as_str().unwrap_or_default().to_owned();
    state.objects.insert((owner.to_owned(), id), object.clone());
}

//! Objects that live in one account (payouts, persons, customers, …), put there by tests with
//! `StripeSim::put_object`. As in Stripe, an object is found only from the account that owns
//! it: fetched with the platform key but without `Stripe-Account`, a connected account's
//! payout does not exist. Routes naming the account in their path
//! (`/v1/accounts/{id}/persons/{person}`) are held to the same rule: the platform reaches them
//! with `Stripe-Account`. That is stricter than Stripe, which also answers the platform key
//! alone there, so a client that passes here works against Stripe too.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, MethodRouter};
use axum::Router;
use serde_json::json;

use crate::auth::{authenticate, STRIPE_ACCOUNT};
use crate::fixtures;
use crate::http::{ok, ApiError, ApiResult};
use crate::state::{Sim, PLATFORM_ACCOUNT};

pub(crate) fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/v1/payouts/{id}", owned("payout"))
        .route("/v1/customers/{id}", owned("customer"))
        .route("/v1/payment_intents/{id}", owned("payment_intent"))
        .route("/v1/charges/{id}", owned("charge"))
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

/// `GET /v1/{resource}s/{id}` in the acting account.
fn owned(resource: &'static str) -> MethodRouter<Arc<Sim>> {
    get(
        move |State(sim): State<Arc<Sim>>, headers: HeaderMap, Path(id): Path<String>| async move {
            let owner = acting_account(&sim, &headers)?;
            find(&sim, &owner, None, resource, &[resource], &id)
        },
    )
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
    let mut b = fixtures::required("balance");
    b["livemode"] = json!(live);
    ok(b)
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

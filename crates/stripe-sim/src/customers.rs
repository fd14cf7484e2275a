//! Customers of an account: create, retrieve, update, delete, each announced
//! (`customer.created|updated|deleted`). A deleted customer is still retrievable as Stripe's
//! stub `{id, object, deleted: true}`, and can no longer be used or changed.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Router;
use serde_json::{json, Map, Value};

use crate::events::{emit_all, previous_attributes, Pending};
use crate::fixtures;
use crate::http::{ok, ApiError, ApiResult, Form};
use crate::objects::{acting, owned};
use crate::params::{self, reject_unknown};
use crate::random;
use crate::state::{now, Sim};

const PARAMS: &[&str] = &[
    "email",
    "name",
    "description",
    "phone",
    "metadata",
    "address",
    "shipping",
    "preferred_locales",
    "invoice_settings",
    "payment_method",
    "balance",
    "tax_exempt",
    "tax_id_data",
    "test_clock",
    "source",
    "coupon",
    "promotion_code",
    "invoice_prefix",
    "next_invoice_sequence",
    "tax",
    "cash_balance",
    "default_source",
];

/// The string fields a create or update sets as given.
const FIELDS: [&str; 4] = ["email", "name", "description", "phone"];

pub(crate) fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/v1/customers", axum::routing::post(create))
        .route(
            "/v1/customers/{id}",
            owned("customer").post(update).delete(delete),
        )
}

fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty() && domain.contains('.') && !email.contains(char::is_whitespace)
}

/// Applies the string fields of `form` to `c`.
fn apply(c: &mut Value, form: &Form) -> Result<(), ApiError> {
    for field in FIELDS {
        if !form.pairs().any(|(k, _)| k == field) {
            continue;
        }
        match form.get(field) {
            Some(email) if field == "email" && !valid_email(email) => {
                return Err(
                    ApiError::invalid(format!("Invalid email address: {email}")).param("email")
                );
            }
            Some(v) => c[field] = json!(v),
            // An empty value unsets the field, as in Stripe.
            None => c[field] = Value::Null,
        }
    }
    let mut metadata = c["metadata"].as_object().cloned().unwrap_or_default();
    params::update_metadata(&mut metadata, form, "metadata")?;
    c["metadata"] = Value::Object(metadata);
    Ok(())
}

/// `POST /v1/customers`.
async fn create(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let form = Form::parse(&body);
    reject_unknown(&form, PARAMS)?;
    let mut c = fixtures::required("customer");
    let id = format!("cus_{}", random(14));
    c["id"] = json!(id);
    c["address"] = Value::Null;
    c["created"] = json!(now());
    c["currency"] = Value::Null;
    c["discount"] = Value::Null;
    c["invoice_prefix"] = json!(random(8).to_uppercase());
    c["livemode"] = json!(acting.live);
    c["metadata"] = Value::Object(Map::new());
    c["shipping"] = Value::Null;
    apply(&mut c, &form)?;
    sim.lock()
        .objects
        .insert((acting.owner.clone(), id), c.clone());
    emit_all(
        &sim,
        vec![Pending::new(&acting.owner, "customer.created", &c)],
    )
    .await;
    ok(c)
}

/// `POST /v1/customers/{id}`.
async fn update(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let form = Form::parse(&body);
    reject_unknown(&form, PARAMS)?;
    let (c, previous) = {
        let mut state = sim.lock();
        let c = match state.objects.get_mut(&(acting.owner.clone(), id.clone())) {
            Some(c) if c["object"] == "customer" && c["deleted"] != true => c,
            _ => return Err(ApiError::no_such("customer", &id)),
        };
        let mut changed = c.clone();
        apply(&mut changed, &form)?;
        let previous = previous_attributes(c, &changed);
        *c = changed.clone();
        (changed, previous)
    };
    if previous.as_object().is_some_and(|p| !p.is_empty()) {
        emit_all(
            &sim,
            vec![Pending::new(&acting.owner, "customer.updated", &c).previous(previous)],
        )
        .await;
    }
    ok(c)
}

/// `DELETE /v1/customers/{id}`.
async fn delete(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let stub = json!({ "id": id, "object": "customer", "deleted": true });
    let c = {
        let mut state = sim.lock();
        let c = match state.objects.get_mut(&(acting.owner.clone(), id.clone())) {
            Some(c) if c["object"] == "customer" && c["deleted"] != true => c,
            _ => return Err(ApiError::no_such("customer", &id)),
        };
        std::mem::replace(c, stub.clone())
    };
    let mut events = Vec::new();
    crate::billing::cancel_for_customer(&mut sim.lock(), &acting.owner, &id, &mut events);
    events.push(Pending::new(&acting.owner, "customer.deleted", &c));
    emit_all(&sim, events).await;
    ok(stub)
}

/// What `DELETE /v1/customers/{id}` does, for `StripeSim::delete_customer`: the customer's
/// subscriptions canceled (`customer.subscription.deleted` each) and `customer.deleted`.
pub(crate) async fn delete_helper(sim: &Sim, id: &str) -> Result<Vec<String>, String> {
    let (owner, c, events) = {
        let mut state = sim.lock();
        let owner = state
            .objects
            .iter()
            .find(|((_, oid), c)| oid == id && c["object"] == "customer" && c["deleted"] != true)
            .map(|((owner, _), _)| owner.clone())
            .ok_or_else(|| format!("No such customer: '{id}'"))?;
        let stub = json!({ "id": id, "object": "customer", "deleted": true });
        let c = state
            .objects
            .insert((owner.clone(), id.to_owned()), stub)
            .unwrap_or_default();
        let mut events = Vec::new();
        crate::billing::cancel_for_customer(&mut state, &owner, id, &mut events);
        (owner, c, events)
    };
    let mut events = events;
    events.push(Pending::new(&owner, "customer.deleted", &c));
    Ok(emit_all(sim, events).await)
}

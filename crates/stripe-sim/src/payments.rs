//! Payments as Stripe takes them: PaymentIntents (create, retrieve, confirm with test cards,
//! capture, cancel), the charges they make, and application fees on direct charges (the test
//! cards are in `cards.rs`, refunds and disputes in `refunds.rs`). Every object lives in the account that acted (the key's own, or the one
//! `Stripe-Account` names) and is found only from there.
//!
//! A confirmation that fails answers 402 with a `card_error`, leaves a failed charge behind
//! and puts the PaymentIntent back to `requires_payment_method` with `last_payment_error`, as
//! Stripe does; a later confirmation may still succeed.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use crate::auth::{self, bearer, is_publishable, STRIPE_ACCOUNT};
use crate::cards::{card_from_form, payment_method_id, payment_method_object, Card, TestCard};
use crate::events::{emit_all, Pending};
use crate::fixtures;
use crate::http::{ApiError, ApiResult, Form};
use crate::objects::{acting, acting_as, expanded, owned, Acting};
use crate::params::{self, reject_unknown};
use crate::random;
use crate::state::{now, Sim, State as SimState, PLATFORM_ACCOUNT};

const CREATE_PARAMS: &[&str] = &[
    "amount",
    "currency",
    "description",
    "customer",
    "metadata",
    "application_fee_amount",
    "automatic_payment_methods",
    "payment_method_types",
    "capture_method",
    "confirm",
    "payment_method",
    "payment_method_data",
    "receipt_email",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "setup_future_usage",
    "on_behalf_of",
    "transfer_data",
    "transfer_group",
    "return_url",
    "off_session",
    "payment_method_options",
    "shipping",
    "confirmation_method",
    "error_on_requires_action",
    "mandate_data",
    "radar_options",
    "use_stripe_sdk",
    "payment_method_configuration",
    "excluded_payment_method_types",
];

const CONFIRM_PARAMS: &[&str] = &[
    "payment_method",
    "payment_method_data",
    "return_url",
    "off_session",
    "payment_method_types",
    "receipt_email",
    "setup_future_usage",
    "shipping",
    "capture_method",
    "mandate_data",
    "payment_method_options",
    "error_on_requires_action",
    "use_stripe_sdk",
    "radar_options",
    "client_secret",
    // Sent by Stripe.js along with `payment_method_data`.
    "expected_payment_method_type",
];

const CONFIRMABLE: [&str; 3] = [
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
];

const CANCELABLE: [&str; 5] = [
    "requires_payment_method",
    "requires_capture",
    "requires_confirmation",
    "requires_action",
    "processing",
];

pub(crate) fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/v1/payment_intents", post(create))
        .route("/v1/payment_intents/{id}", owned("payment_intent"))
        .route("/v1/payment_intents/{id}/confirm", post(confirm_route))
        .route("/v1/payment_intents/{id}/capture", post(capture_route))
        .route("/v1/payment_intents/{id}/cancel", post(cancel_route))
}

pub(crate) fn id(prefix: &str) -> String {
    format!("{prefix}{}", random(23))
}

/// What a new PaymentIntent is made of.
pub(crate) struct NewIntent {
    pub amount: i64,
    pub currency: String,
    pub description: Option<String>,
    pub customer: Option<String>,
    pub metadata: Map<String, Value>,
    pub application_fee_amount: Option<i64>,
    /// The Connect application that created it (`ca_…`), for direct charges.
    pub application: Option<String>,
    pub payment_method_types: Option<Vec<String>>,
    pub capture_method: String,
    pub receipt_email: Option<String>,
    pub transfer_data: Value,
    pub transfer_group: Option<String>,
    pub livemode: bool,
}

/// A new PaymentIntent, stored in `owner`, with its `payment_intent.created`.
pub(crate) fn create_intent(
    state: &mut SimState,
    owner: &str,
    n: NewIntent,
    events: &mut Vec<Pending>,
) -> Value {
    let id = id("pi_3");
    let mut pi = fixtures::required("payment_intent");
    let automatic = n.payment_method_types.is_none();
    pi["id"] = json!(id);
    pi["client_secret"] = json!(format!("{id}_secret_{}", random(25)));
    pi["amount"] = json!(n.amount);
    pi["amount_capturable"] = json!(0);
    pi["amount_received"] = json!(0);
    pi["amount_details"] = json!({ "tip": {} });
    pi["application"] = json!(n.application);
    pi["application_fee_amount"] = json!(n.application_fee_amount);
    pi["automatic_payment_methods"] = if automatic {
        json!({ "allow_redirects": "always", "enabled": true })
    } else {
        Value::Null
    };
    pi["canceled_at"] = Value::Null;
    pi["cancellation_reason"] = Value::Null;
    pi["capture_method"] = json!(n.capture_method);
    pi["confirmation_method"] = json!("automatic");
    pi["created"] = json!(now());
    pi["currency"] = json!(n.currency);
    pi["customer"] = json!(n.customer);
    pi["description"] = json!(n.description);
    pi["last_payment_error"] = Value::Null;
    pi["latest_charge"] = Value::Null;
    pi["livemode"] = json!(n.livemode);
    pi["metadata"] = Value::Object(n.metadata);
    pi["next_action"] = Value::Null;
    pi["payment_method"] = Value::Null;
    pi["payment_method_configuration_details"] = Value::Null;
    pi["payment_method_options"] = json!({ "card": { "request_three_d_secure": "automatic" } });
    pi["payment_method_types"] = json!(n
        .payment_method_types
        .unwrap_or_else(|| vec!["card".into()]));
    pi["processing"] = Value::Null;
    pi["receipt_email"] = json!(n.receipt_email);
    pi["shipping"] = Value::Null;
    pi["status"] = json!("requires_payment_method");
    pi["transfer_data"] = n.transfer_data;
    pi["transfer_group"] = json!(n.transfer_group);
    if let Some(o) = pi.as_object_mut() {
        o.remove("managed_payments");
    }
    state.objects.insert((owner.to_owned(), id), pi.clone());
    events.push(Pending::new(owner, "payment_intent.created", &pi));
    pi
}

/// `POST /v1/payment_intents` (with `confirm=true`, confirmed at once).
async fn create(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let acting = match acting(&sim, &headers) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let form = Form::parse(&body);
    let mut events = Vec::new();
    let result = {
        let mut state = sim.lock();
        match create_locked(&sim, &mut state, &acting, &form, &mut events) {
            Err(e) => Err(e),
            Ok((pi, None)) => Ok(pi),
            Ok((pi, Some(card))) => {
                let id = pi["id"].as_str().unwrap_or_default().to_owned();
                confirm_locked(&mut state, &acting.owner, &id, card, &mut events)
            }
        }
    };
    emit_all(&sim, events).await;
    match result {
        Ok(pi) => respond(&sim, &acting.owner, pi, &form),
        Err(e) => e.into_response(),
    }
}

/// The object, expanded as `form` asks, as a 200.
pub(crate) fn respond(sim: &Sim, owner: &str, object: Value, form: &Form) -> Response {
    let state = sim.lock();
    match expanded(&state, owner, object, &params::expand(form)) {
        Ok(o) => Json(o).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Validates and stores a new PaymentIntent; with `confirm=true`, the card to confirm with.
fn create_locked(
    sim: &Sim,
    state: &mut SimState,
    acting: &Acting,
    form: &Form,
    events: &mut Vec<Pending>,
) -> Result<(Value, Option<&'static TestCard>), ApiError> {
    reject_unknown(form, CREATE_PARAMS)?;
    if form.get("amount").is_none() {
        return Err(ApiError::missing("amount"));
    }
    let currency = params::currency(form, "currency")?;
    let amount = params::charge_amount(form, "amount", &currency)?;
    params::exclusive(form, "automatic_payment_methods", "payment_method_types")?;
    let customer = form.get("customer").map(str::to_owned);
    if let Some(c) = &customer {
        live_customer(state, &acting.owner, c).map_err(|e| e.param("customer"))?;
    }
    let transfer_data = match form.get("transfer_data[destination]") {
        Some(d) => {
            if state.reachable(d).is_none() || acting.owner != PLATFORM_ACCOUNT {
                return Err(ApiError::invalid(format!("No such destination: '{d}'"))
                    .code("resource_missing")
                    .param("transfer_data[destination]"));
            }
            match params::positive(form, "transfer_data[amount]")? {
                Some(part) if part > amount => {
                    return Err(ApiError::invalid(format!(
                        "The transfer amount ({part}) must be less than or equal to the PaymentIntent's amount ({amount})."
                    ))
                    .param("transfer_data[amount]"))
                }
                Some(part) => json!({ "destination": d, "amount": part }),
                None => json!({ "destination": d }),
            }
        }
        None if form.get("transfer_data[amount]").is_some() => {
            return Err(ApiError::missing("transfer_data[destination]"))
        }
        None => Value::Null,
    };
    let fee = params::non_negative(form, "application_fee_amount")?;
    if fee.is_some() && !transfer_data["amount"].is_null() {
        return Err(ApiError::invalid(
            "You cannot set both application_fee_amount and transfer_data[amount]: the platform keeps what is not transferred.",
        )
        .param("application_fee_amount"));
    }
    if fee.is_some() && !acting.as_platform && transfer_data.is_null() {
        return Err(ApiError::invalid(
            "Can only apply an application_fee_amount when the PaymentIntent is attempting a \
             direct payment (using an OAuth key or Stripe-Account header) or destination \
             payment (using `transfer_data[destination]`).",
        )
        .param("application_fee_amount"));
    }
    if fee.is_some_and(|f| f > amount) {
        return Err(ApiError::invalid(format!(
            "The application fee amount ({}) must be less than or equal to the PaymentIntent's \
             amount ({}).",
            params::money(fee.unwrap_or_default(), &currency),
            params::money(amount, &currency)
        ))
        .param("application_fee_amount"));
    }
    let capture_method = params::one_of(
        form,
        "capture_method",
        &["automatic", "automatic_async", "manual"],
    )?
    .unwrap_or("automatic_async");
    let types: Vec<String> = form
        .all("payment_method_types")
        .into_iter()
        .map(str::to_owned)
        .collect();
    if let Some(enabled) = params::boolean(form, "automatic_payment_methods[enabled]")? {
        if !enabled && types.is_empty() {
            return Err(ApiError::missing("payment_method_types"));
        }
    }
    let confirm = params::boolean(form, "confirm")?.unwrap_or(false);
    let card = card_from_form(state, form)?;
    if card.is_some() && !confirm && form.has("payment_method_data") {
        return Err(ApiError::invalid(
            "`payment_method_data` can only be passed along with `confirm=true`.",
        )
        .param("payment_method_data"));
    }
    if confirm && card.is_none() {
        return Err(missing_payment_method());
    }
    let metadata = params::metadata(form, "metadata")?;
    let n = NewIntent {
        amount,
        currency,
        description: form.get("description").map(str::to_owned),
        customer,
        metadata,
        application_fee_amount: fee,
        application: acting.as_platform.then(|| sim.client_id.clone()),
        payment_method_types: (!types.is_empty()).then_some(types),
        capture_method: capture_method.to_owned(),
        receipt_email: form.get("receipt_email").map(str::to_owned),
        transfer_data,
        transfer_group: form.get("transfer_group").map(str::to_owned),
        livemode: acting.live,
    };
    let mut pi = create_intent(state, &acting.owner, n, events);
    let id = pi["id"].as_str().unwrap_or_default().to_owned();
    match (card, confirm) {
        (Some(card), true) => Ok((pi, Some(card))),
        (Some(card), false) => {
            // Attached, to be confirmed later.
            let pm = payment_method_id(state, card);
            pi["payment_method"] = json!(pm);
            pi["status"] = json!("requires_confirmation");
            state.objects.insert((acting.owner.clone(), id), pi.clone());
            if let Some(created) = events.last_mut() {
                created.object = pi.clone();
            }
            Ok((pi, None))
        }
        (None, _) => Ok((pi, None)),
    }
}

/// The customer `id` of `owner`, if it exists and is not deleted; else Stripe's 400.
pub(crate) fn live_customer(state: &SimState, owner: &str, id: &str) -> Result<(), ApiError> {
    match state.objects.get(&(owner.to_owned(), id.to_owned())) {
        Some(c) if c["object"] == "customer" && c["deleted"] != true => Ok(()),
        _ => Err(ApiError::no_such("customer", id).status(StatusCode::BAD_REQUEST)),
    }
}

fn missing_payment_method() -> ApiError {
    ApiError::invalid(
        "You cannot confirm this PaymentIntent because it's missing a payment method. You can \
         either update the PaymentIntent with a payment method and then confirm it again, or \
         confirm it again directly with a payment method.",
    )
    .code("payment_intent_unexpected_state")
}

/// A charge of `pi` with `card`: succeeded (captured or not) or failed.
fn new_charge(pi: &Value, card: &TestCard, pm: &str, captured: bool) -> Value {
    let amount = pi["amount"].as_i64().unwrap_or_default();
    let mut ch = fixtures::required("charge");
    ch["id"] = json!(id("ch_3"));
    ch["amount"] = json!(amount);
    ch["amount_captured"] = json!(if captured { amount } else { 0 });
    ch["amount_refunded"] = json!(0);
    ch["application"] = pi["application"].clone();
    ch["application_fee"] = Value::Null;
    ch["application_fee_amount"] = pi["application_fee_amount"].clone();
    ch["balance_transaction"] = json!(id("txn_3"));
    ch["billing_details"]["name"] = Value::Null;
    ch["captured"] = json!(captured);
    ch["created"] = json!(now());
    ch["currency"] = pi["currency"].clone();
    ch["customer"] = pi["customer"].clone();
    ch["description"] = pi["description"].clone();
    ch["disputed"] = json!(false);
    ch["livemode"] = pi["livemode"].clone();
    ch["metadata"] = pi["metadata"].clone();
    ch["outcome"] = json!({
        "advice_code": null,
        "network_advice_code": null,
        "network_decline_code": null,
        "network_status": "approved_by_network",
        "reason": null,
        "risk_level": "normal",
        "risk_score": 32,
        "seller_message": "Payment complete.",
        "type": "authorized",
    });
    ch["paid"] = json!(true);
    ch["payment_intent"] = pi["id"].clone();
    ch["payment_method"] = json!(pm);
    let details = &mut ch["payment_method_details"]["card"];
    details["brand"] = json!(card.brand);
    details["network"] = json!(card.brand);
    details["last4"] = json!(card.last4());
    details["exp_month"] = json!(12);
    details["exp_year"] = json!(2034);
    details["fingerprint"] = json!(random(16));
    details["installments"] = Value::Null;
    details["wallet"] = Value::Null;
    details["three_d_secure"] = Value::Null;
    details["overcapture"]["maximum_amount_capturable"] = json!(amount);
    details["amount_authorized"] = json!(amount);
    ch["receipt_email"] = pi["receipt_email"].clone();
    ch["receipt_url"] = Value::Null;
    ch["refunded"] = json!(false);
    ch["shipping"] = Value::Null;
    ch["source"] = Value::Null;
    ch["status"] = json!("succeeded");
    ch["transfer_data"] = pi["transfer_data"].clone();
    if let Some(o) = ch.as_object_mut() {
        // Not part of a charge since API version 2022-11-15 unless expanded.
        o.remove("refunds");
    }
    if let Some((code, decline_code, message)) = card.decline {
        ch["amount_captured"] = json!(0);
        ch["balance_transaction"] = Value::Null;
        ch["captured"] = json!(false);
        ch["failure_code"] = json!(code);
        ch["failure_message"] = json!(message);
        ch["outcome"]["network_status"] = json!("declined_by_network");
        ch["outcome"]["reason"] = json!(decline_code);
        ch["outcome"]["seller_message"] =
            json!("The bank did not return any further details with this decline.");
        ch["outcome"]["type"] = json!("issuer_declined");
        ch["paid"] = json!(false);
        ch["status"] = json!("failed");
    }
    ch
}

/// Confirms PaymentIntent `id` of `owner` with `card`: the PaymentIntent after, or Stripe's
/// error (402 `card_error` for a decline, whose state change is kept).
pub(crate) fn confirm_locked(
    state: &mut SimState,
    owner: &str,
    id: &str,
    card: &TestCard,
    events: &mut Vec<Pending>,
) -> Result<Value, ApiError> {
    let key = (owner.to_owned(), id.to_owned());
    let mut pi = match state.objects.get(&key) {
        Some(pi) if pi["object"] == "payment_intent" => pi.clone(),
        _ => return Err(ApiError::no_such("payment_intent", id)),
    };
    let status = pi["status"].as_str().unwrap_or_default().to_owned();
    if status == "succeeded" {
        return Err(ApiError::invalid(
            "You cannot confirm this PaymentIntent because it has already succeeded after being \
             previously confirmed.",
        )
        .code("payment_intent_unexpected_state")
        .with("payment_intent", pi));
    }
    if !CONFIRMABLE.contains(&status.as_str()) {
        return Err(ApiError::invalid(format!(
            "You cannot confirm this PaymentIntent because it has a status of {status}. Only a \
             PaymentIntent with one of the following statuses may be confirmed: \
             requires_confirmation, requires_payment_method, requires_action."
        ))
        .code("payment_intent_unexpected_state")
        .with("payment_intent", pi));
    }
    let types: Vec<&str> = pi["payment_method_types"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !types.contains(&"card") {
        return Err(ApiError::invalid(format!(
            "The PaymentMethod provided (card) is not allowed for this PaymentIntent. Please \
             attach a PaymentMethod of one of the following types: {}. Alternatively update \
             the allowed payment_method_types for this PaymentIntent to include \"card\".",
            types.join(", ")
        ))
        .code("payment_intent_incompatible_payment_method")
        .param("payment_method"));
    }
    let pm = payment_method_id(state, card);
    let manual = pi["capture_method"] == "manual";
    let mut charge = new_charge(&pi, card, &pm, !manual);
    let charge_id = charge["id"].as_str().unwrap_or_default().to_owned();
    pi["latest_charge"] = json!(charge_id);
    if let Some((code, decline_code, message)) = card.decline {
        let error = json!({
            "charge": charge_id,
            "code": code,
            "decline_code": decline_code,
            "doc_url": format!("https://stripe.com/docs/error-codes/{}", code.replace('_', "-")),
            "message": message,
            "payment_method": payment_method_object(&pm, card, &pi["livemode"]),
            "type": "card_error",
        });
        pi["status"] = json!("requires_payment_method");
        pi["payment_method"] = Value::Null;
        pi["last_payment_error"] = error;
        state
            .objects
            .insert((owner.to_owned(), charge_id.clone()), charge.clone());
        state.objects.insert(key, pi.clone());
        events.push(Pending::new(owner, "charge.failed", &charge));
        events.push(Pending::new(owner, "payment_intent.payment_failed", &pi));
        return Err(
            ApiError::new(StatusCode::PAYMENT_REQUIRED, "card_error", message)
                .code(code)
                .with("decline_code", json!(decline_code))
                .with("charge", json!(charge_id))
                .with("doc_url", pi["last_payment_error"]["doc_url"].clone())
                .with(
                    "payment_method",
                    pi["last_payment_error"]["payment_method"].clone(),
                )
                .with("payment_intent", pi),
        );
    }
    let amount = pi["amount"].clone();
    pi["payment_method"] = json!(pm);
    pi["last_payment_error"] = Value::Null;
    if manual {
        pi["status"] = json!("requires_capture");
        pi["amount_capturable"] = amount;
    } else {
        pi["status"] = json!("succeeded");
        pi["amount_received"] = amount;
        if let Some(fee) = application_fee(state, owner, &pi, &charge) {
            charge["application_fee"] = fee["id"].clone();
            events.push(Pending::new(
                PLATFORM_ACCOUNT,
                "application_fee.created",
                &fee,
            ));
        }
        // A destination charge: the platform's charge sends all but its fee to the account.
        if let (PLATFORM_ACCOUNT, Some(destination)) =
            (owner, pi["transfer_data"]["destination"].as_str())
        {
            let gross = pi["amount"].as_i64().unwrap_or(0);
            let fee = pi["application_fee_amount"].as_i64().unwrap_or(0);
            let part = pi["transfer_data"]["amount"]
                .as_i64()
                .unwrap_or(gross - fee);
            let transfer = crate::transfers::make(
                state,
                crate::transfers::NewTransfer {
                    amount: part,
                    currency: pi["currency"].as_str().unwrap_or("usd").to_owned(),
                    destination: destination.to_owned(),
                    source_transaction: Some(charge_id.clone()),
                    transfer_group: pi["transfer_group"].as_str().map(str::to_owned).or_else(
                        || Some(format!("group_{}", pi["id"].as_str().unwrap_or_default())),
                    ),
                    description: None,
                    metadata: Map::new(),
                    livemode: pi["livemode"] == true,
                },
                events,
            );
            charge["transfer"] = transfer["id"].clone();
            charge["transfer_group"] = transfer["transfer_group"].clone();
        }
    }
    state
        .objects
        .insert((owner.to_owned(), charge_id), charge.clone());
    state.objects.insert(key, pi.clone());
    events.push(Pending::new(owner, "charge.succeeded", &charge));
    events.push(Pending::new(
        owner,
        if manual {
            "payment_intent.amount_capturable_updated"
        } else {
            "payment_intent.succeeded"
        },
        &pi,
    ));
    Ok(pi)
}

/// The platform's application fee on a captured direct charge, stored on the platform.
fn application_fee(state: &mut SimState, owner: &str, pi: &Value, charge: &Value) -> Option<Value> {
    let amount = pi["application_fee_amount"].as_i64()?;
    if owner == PLATFORM_ACCOUNT {
        return None;
    }
    let id = id("fee_1");
    let fee = json!({
        "id": id,
        "object": "application_fee",
        "account": owner,
        "amount": amount,
        "amount_refunded": 0,
        "application": pi["application"],
        "balance_transaction": format!("txn_1{}", random(23)),
        "charge": charge["id"],
        "created": now(),
        "currency": pi["currency"],
        "fee_source": { "charge": charge["id"], "type": "charge" },
        "livemode": pi["livemode"],
        "originating_transaction": null,
        "refunded": false,
        "refunds": {
            "object": "list",
            "data": [],
            "has_more": false,
            "total_count": 0,
            "url": format!("/v1/application_fees/{id}/refunds"),
        },
    });
    state
        .objects
        .insert((PLATFORM_ACCOUNT.to_owned(), id), fee.clone());
    Some(fee)
}

/// `POST /v1/payment_intents/{id}/confirm`, with a secret key, or as Stripe.js calls it from
/// the customer's browser: the publishable key of the account holding the PaymentIntent (or
/// the platform's, naming the connected account) with the PaymentIntent's `client_secret`.
/// The browser gets the PaymentIntent without what only a secret key may see.
async fn confirm_route(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let publishable = bearer(&headers).filter(|k| is_publishable(k));
    let acting = match &publishable {
        Some(pk) => acting_as(
            &sim,
            auth::publishable(&sim, pk, auth::header(&headers, STRIPE_ACCOUNT))?,
        ),
        None => acting(&sim, &headers)?,
    };
    let client = publishable.is_some();
    let form = Form::parse(&body);
    reject_unknown(&form, CONFIRM_PARAMS)?;
    let mut events = Vec::new();
    let confirmed = {
        let mut state = sim.lock();
        let key = (acting.owner.clone(), id.clone());
        let stored = match state.objects.get(&key) {
            Some(pi) if pi["object"] == "payment_intent" => pi.clone(),
            _ => return Err(ApiError::no_such("payment_intent", &id)),
        };
        match form.get("client_secret") {
            Some(secret) if stored["client_secret"] != secret => {
                return Err(ApiError::invalid(
                    "The client_secret provided does not match the client_secret associated \
                     with the PaymentIntent.",
                )
                .param("client_secret"));
            }
            None if client => return Err(ApiError::missing("client_secret")),
            _ => {}
        }
        let card = match card_from_form(&state, &form)? {
            Some(card) => card,
            None => stored["payment_method"]
                .as_str()
                .and_then(|pm| state.hidden.get(pm))
                .and_then(|h| h["card"].as_str())
                .and_then(TestCard::by_payment_method)
                .ok_or_else(missing_payment_method)?,
        };
        confirm_locked(&mut state, &acting.owner, &id, card, &mut events)
    };
    emit_all(&sim, events).await;
    if !client {
        return Ok(respond(&sim, &acting.owner, confirmed?, &form));
    }
    match confirmed {
        Ok(pi) => Ok(Json(for_publishable_key(&pi)).into_response()),
        Err(mut e) => {
            if let Some(pi) = e.extra.get_mut("payment_intent") {
                *pi = for_publishable_key(pi);
            }
            Err(e)
        }
    }
}

/// The fields of a PaymentIntent a publishable key may see (Stripe's "retrievable with
/// publishable key"): no customer, metadata, charge, fee or transfer.
const PUBLISHABLE_FIELDS: &[&str] = &[
    "id",
    "object",
    "amount",
    "amount_details",
    "automatic_payment_methods",
    "canceled_at",
    "cancellation_reason",
    "capture_method",
    "client_secret",
    "confirmation_method",
    "created",
    "currency",
    "description",
    "last_payment_error",
    "livemode",
    "next_action",
    "payment_method",
    "payment_method_configuration_details",
    "payment_method_types",
    "processing",
    "receipt_email",
    "setup_future_usage",
    "shipping",
    "status",
];

pub(crate) fn for_publishable_key(pi: &Value) -> Value {
    let mut out = Map::new();
    for f in PUBLISHABLE_FIELDS {
        if let Some(v) = pi.get(*f) {
            out.insert((*f).to_owned(), v.clone());
        }
    }
    Value::Object(out)
}

/// `POST /v1/payment_intents/{id}/capture` (`capture_method=manual`).
async fn capture_route(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let form = Form::parse(&body);
    reject_unknown(
        &form,
        &[
            "amount_to_capture",
            "application_fee_amount",
            "metadata",
            "statement_descriptor",
            "statement_descriptor_suffix",
            "final_capture",
            "transfer_data",
        ],
    )?;
    let mut events = Vec::new();
    let pi = {
        let mut guard = sim.lock();
        let state = &mut *guard;
        let key = (acting.owner.clone(), id.clone());
        let mut pi = match state.objects.get(&key) {
            Some(pi) if pi["object"] == "payment_intent" => pi.clone(),
            _ => return Err(ApiError::no_such("payment_intent", &id)),
        };
        let status = pi["status"].as_str().unwrap_or_default().to_owned();
        if status != "requires_capture" {
            return Err(ApiError::invalid(format!(
                "This PaymentIntent could not be captured because it has a status of {status}. \
                 Only a PaymentIntent with one of the following statuses may be captured: \
                 requires_capture."
            ))
            .code("payment_intent_unexpected_state"));
        }
        let capturable = pi["amount_capturable"].as_i64().unwrap_or_default();
        let amount = params::positive(&form, "amount_to_capture")?.unwrap_or(capturable);
        if amount > capturable {
            return Err(ApiError::invalid(format!(
                "The amount_to_capture ({amount}) must be less than or equal to the \
                 PaymentIntent's amount_capturable ({capturable})."
            ))
            .param("amount_to_capture"));
        }
        if let Some(fee) = params::non_negative(&form, "application_fee_amount")? {
            pi["application_fee_amount"] = json!(fee);
        }
        params::update_metadata(
            pi["metadata"]
                .as_object_mut()
                .expect("metadata is an object"),
            &form,
            "metadata",
        )?;
        let charge_key = (
            acting.owner.clone(),
            pi["latest_charge"].as_str().unwrap_or_default().to_owned(),
        );
        let mut charge = state.objects.get(&charge_key).cloned().unwrap_or_default();
        pi["status"] = json!("succeeded");
        pi["amount_capturable"] = json!(0);
        pi["amount_received"] = json!(amount);
        charge["captured"] = json!(true);
        charge["amount_captured"] = json!(amount);
        charge["amount_refunded"] = json!(capturable - amount);
        if let Some(fee) = application_fee(state, &acting.owner, &pi, &charge) {
            charge["application_fee"] = fee["id"].clone();
            events.push(Pending::new(
                PLATFORM_ACCOUNT,
                "application_fee.created",
                &fee,
            ));
        }
        state.objects.insert(charge_key, charge.clone());
        state.objects.insert(key, pi.clone());
        events.push(Pending::new(&acting.owner, "charge.captured", &charge));
        events.push(Pending::new(&acting.owner, "payment_intent.succeeded", &pi));
        pi
    };
    emit_all(&sim, events).await;
    Ok(respond(&sim, &acting.owner, pi, &form))
}

/// `POST /v1/payment_intents/{id}/cancel`.
async fn cancel_route(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let form = Form::parse(&body);
    reject_unknown(&form, &["cancellation_reason"])?;
    let reason = params::one_of(
        &form,
        "cancellation_reason",
        &[
            "duplicate",
            "fraudulent",
            "requested_by_customer",
            "abandoned",
        ],
    )?;
    let mut events = Vec::new();
    let pi = {
        let mut state = sim.lock();
        let key = (acting.owner.clone(), id.clone());
        let mut pi = match state.objects.get(&key) {
            Some(pi) if pi["object"] == "payment_intent" => pi.clone(),
            _ => return Err(ApiError::no_such("payment_intent", &id)),
        };
        let status = pi["status"].as_str().unwrap_or_default().to_owned();
        if !CANCELABLE.contains(&status.as_str()) {
            return Err(ApiError::invalid(format!(
                "You cannot cancel this PaymentIntent because it has a status of {status}. \
                 Only a PaymentIntent with one of the following statuses may be canceled: \
                 requires_payment_method, requires_capture, requires_confirmation, \
                 requires_action, processing."
            ))
            .code("payment_intent_unexpected_state"));
        }
        if status == "requires_capture" {
            // The authorization is released.
            let charge_key = (
                acting.owner.clone(),
                pi["latest_charge"].as_str().unwrap_or_default().to_owned(),
            );
            if let Some(charge) = state.objects.get_mut(&charge_key) {
                charge["amount_refunded"] = charge["amount"].clone();
                charge["refunded"] = json!(true);
            }
        }
        pi["status"] = json!("canceled");
        pi["canceled_at"] = json!(now());
        pi["cancellation_reason"] = json!(reason);
        pi["amount_capturable"] = json!(0);
        state.objects.insert(key, pi.clone());
        events.push(Pending::new(&acting.owner, "payment_intent.canceled", &pi));
        pi
    };
    emit_all(&sim, events).await;
    Ok(respond(&sim, &acting.owner, pi, &form))
}

/// What a customer paying in their browser does (Stripe.js confirming the PaymentIntent):
/// the id of the `payment_intent.succeeded` (or `.payment_failed`, or, for manual capture,
/// `.amount_capturable_updated`) event, after every event was delivered.
pub(crate) async fn pay(sim: &Sim, id: &str, card: Card) -> Result<String, String> {
    let mut events = Vec::new();
    let result = {
        let mut state = sim.lock();
        let owner = state
            .objects
            .iter()
            .find(|((_, oid), o)| oid == id && o["object"] == "payment_intent")
            .map(|((owner, _), _)| owner.clone())
            .ok_or_else(|| format!("No such payment_intent: '{id}'"))?;
        confirm_locked(&mut state, &owner, id, card.test_card(), &mut events)
    };
    if let Err(e) = &result {
        if e.status != StatusCode::PAYMENT_REQUIRED {
            return Err(e.message.clone());
        }
    }
    let kinds: Vec<&str> = events.iter().map(|e| e.event_type).collect();
    let ids = emit_all(sim, events).await;
    Ok(kinds
        .iter()
        .zip(ids)
        .filter(|(k, _)| k.starts_with("payment_intent."))
        .map(|(_, id)| id)
        .next_back()
        .unwrap_or_default())
}

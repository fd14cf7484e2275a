//! Billing on an account (the platform billing its stores): prices, subscriptions with one
//! item, and the hosted invoice page (invoices are made and charged in `invoices.rs`). Time does not pass by itself: tests move
//! a subscription through its life with `StripeSim`'s helpers (`end_trial`, `advance_period`,
//! `retry_invoice`, `pay_invoice`, `period_end`), the way a Stripe test clock would, and each
//! delivers the events Stripe sends for that step, awaited.
//!
//! What a customer's default payment method does on the next charge is set per customer with
//! `set_customer_card` (it succeeds until told otherwise). An invoice is paid through a
//! PaymentIntent kept in the same account (`invoice.payment_intent`), whose own events are not
//! sent.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::calendar::{add_intervals, period_end_after, DAY};
use crate::events::{emit_all, previous_attributes, Pending};
use crate::fixtures;
use crate::http::{escape, ok, page, ApiError, ApiResult, Form};
use crate::invoices::{attempt, failure_event, new_invoice, price_of, Attempt, CardBehavior};
use crate::objects::{acting, expanded, owned, store};
use crate::params::{self, reject_unknown};
use crate::payments::{id, live_customer};
use crate::random;
use crate::state::{now, Sim, State as SimState};

/// Billing settings tests change.
#[derive(Default)]
pub(crate) struct Books {
    /// Customer id → what its default card does.
    pub cards: HashMap<String, CardBehavior>,
    /// Smart Retries before the subscription is canceled; `None` is [`DEFAULT_MAX_RETRIES`].
    pub max_retries: Option<u32>,
}

/// Failed retries after which a subscription is canceled, unless `set_max_retries` says
/// otherwise.
pub const DEFAULT_MAX_RETRIES: u32 = 4;

const CREATE_PARAMS: &[&str] = &[
    "customer",
    "items",
    "trial_period_days",
    "metadata",
    "payment_behavior",
    "collection_method",
    "days_until_due",
    "description",
    "default_payment_method",
    "off_session",
    "payment_settings",
    "proration_behavior",
];

const UPDATE_PARAMS: &[&str] = &[
    "items",
    "cancel_at_period_end",
    "proration_behavior",
    "metadata",
    "payment_behavior",
    "description",
    "default_payment_method",
    "off_session",
    "payment_settings",
];

const CANCEL_PARAMS: &[&str] = &["invoice_now", "prorate", "cancellation_details"];

const PAYMENT_BEHAVIORS: &[&str] = &[
    "allow_incomplete",
    "default_incomplete",
    "error_if_incomplete",
    "pending_if_incomplete",
];

const TITLE: &str = "Invoice (local simulator)";

pub(crate) fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/v1/prices/{id}", owned("price"))
        .route("/v1/invoices/{id}", owned("invoice"))
        .route("/v1/subscriptions", post(create).get(list))
        .route(
            "/v1/subscriptions/{id}",
            owned("subscription").post(update).delete(cancel_route),
        )
        .route("/invoice/{id}", get(invoice_page))
        .route("/invoice/{id}/pay", post(invoice_pay_page))
}

/// `GET /v1/subscriptions`: the acting account's subscriptions, newest first, filtered by
/// `customer`, `price` and `status` (by default all but canceled ones, as at Stripe; `all` for
/// every one).
async fn list(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let form = Form::parse(query.unwrap_or_default().as_bytes());
    reject_unknown(
        &form,
        &[
            "customer",
            "price",
            "status",
            "limit",
            "starting_after",
            "ending_before",
        ],
    )?;
    let limit = crate::webhook_endpoints::limit(&form)?;
    let status = form.get("status").unwrap_or("");
    const STATUSES: &[&str] = &[
        "",
        "all",
        "active",
        "past_due",
        "unpaid",
        "canceled",
        "incomplete",
        "incomplete_expired",
        "trialing",
        "paused",
        "ended",
    ];
    if !STATUSES.contains(&status) {
        return Err(ApiError::invalid(format!("Invalid status: {status}")).param("status"));
    }
    let all: Vec<Value> = crate::objects::newest_first(&sim.lock(), &acting.owner, "subscription")
        .into_iter()
        .filter(|o| form.get("customer").is_none_or(|c| o["customer"] == c))
        .filter(|o| {
            form.get("price")
                .is_none_or(|p| o["items"]["data"][0]["price"]["id"] == p)
        })
        .filter(|o| match status {
            "" => o["status"] != "canceled",
            "all" => true,
            "ended" => matches!(
                o["status"].as_str(),
                Some("canceled" | "incomplete_expired")
            ),
            s => o["status"] == s,
        })
        .collect();
    ok(crate::webhook_endpoints::page(
        all,
        &form,
        limit,
        "/v1/subscriptions",
    ))
}

/// A new price in `owner` (`interval`: `day`, `week`, `month`, `year`, or `None` for one-time).
pub(crate) fn add_price(
    sim: &Sim,
    owner: &str,
    unit_amount: i64,
    currency: &str,
    interval: Option<&str>,
    active: bool,
) -> String {
    if let Some(i) = interval {
        assert!(
            ["day", "week", "month", "year"].contains(&i),
            "stripe-sim: a price's interval is day, week, month or year, not {i}"
        );
    }
    let mut p = fixtures::required("price");
    let id = id("price_1");
    p["id"] = json!(id);
    p["active"] = json!(active);
    p["created"] = json!(now());
    p["currency"] = json!(currency.to_ascii_lowercase());
    p["custom_unit_amount"] = Value::Null;
    p["livemode"] = json!(sim.live());
    p["product"] = json!(format!("prod_{}", random(14)));
    p["transform_quantity"] = Value::Null;
    p["unit_amount"] = json!(unit_amount);
    p["unit_amount_decimal"] = json!(unit_amount.to_string());
    match interval {
        Some(i) => {
            p["type"] = json!("recurring");
            p["recurring"] = json!({
                "interval": i,
                "interval_count": 1,
                "meter": null,
                "trial_period_days": null,
                "usage_type": "licensed",
            });
        }
        None => {
            p["type"] = json!("one_time");
            p["recurring"] = Value::Null;
        }
    }
    sim.lock().objects.insert((owner.to_owned(), id.clone()), p);
    id
}

// ---------------------------------------------------------------------------------------------
// Time

/// An object of `kind` wherever it lives: (owner, object).
fn find(state: &SimState, kind: &str, id: &str) -> Option<(String, Value)> {
    state
        .objects
        .iter()
        .find(|((_, oid), o)| oid == id && o["object"] == kind)
        .map(|((owner, _), o)| (owner.clone(), o.clone()))
}

/// The legacy `plan` of an item, from its price.
fn plan(price: &Value) -> Value {
    json!({
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": "per_unit",
        "created": price["created"],
        "currency": price["currency"],
        "interval": price["recurring"]["interval"],
        "interval_count": price["recurring"]["interval_count"],
        "livemode": price["livemode"],
        "metadata": {},
        "meter": null,
        "nickname": null,
        "product": price["product"],
        "tiers_mode": null,
        "transform_usage": null,
        "trial_period_days": null,
        "usage_type": "licensed",
    })
}

/// A recurring, active price of `owner` for `param`; Stripe's 400 otherwise.
fn usable_price(state: &SimState, owner: &str, id: &str, param: &str) -> Result<Value, ApiError> {
    let price = match state.objects.get(&(owner.to_owned(), id.to_owned())) {
        Some(p) if p["object"] == "price" => p.clone(),
        _ => {
            return Err(ApiError::no_such("price", id)
                .status(StatusCode::BAD_REQUEST)
                .param(param))
        }
    };
    if price["active"] != true {
        return Err(ApiError::invalid(format!(
            "The price specified is inactive. This field only accepts active prices. ({id})"
        ))
        .param(param));
    }
    if price["type"] != "recurring" {
        return Err(ApiError::invalid(
            "The price specified is set to `type=one_time` but this field only accepts prices \
             with `type=recurring`.",
        )
        .param(param));
    }
    Ok(price)
}

fn set_period(sub: &mut Value, start: i64, end: i64) {
    sub["current_period_start"] = json!(start);
    sub["current_period_end"] = json!(end);
    if let Some(items) = sub["items"]["data"].as_array_mut() {
        for item in items {
            item["current_period_start"] = json!(start);
            item["current_period_end"] = json!(end);
        }
    }
}

fn behavior(state: &SimState, customer: &Value) -> CardBehavior {
    customer
        .as_str()
        .and_then(|c| state.billing.cards.get(c).copied())
        .unwrap_or_default()
}

/// A new subscription item for `price`.
fn item(sub_id: &str, price: &Value) -> Value {
    json!({
        "id": format!("si_{}", random(14)),
        "object": "subscription_item",
        "billing_thresholds": null,
        "created": now(),
        "current_period_end": null,
        "current_period_start": null,
        "discounts": [],
        "metadata": {},
        "plan": plan(price),
        "price": price,
        "quantity": 1,
        "subscription": sub_id,
        "tax_rates": [],
    })
}

// ---------------------------------------------------------------------------------------------
// Routes

fn card_error(code: &'static str, decline_code: &str, message: &str) -> ApiError {
    ApiError::new(StatusCode::PAYMENT_REQUIRED, "card_error", message)
        .code(code)
        .with("decline_code", json!(decline_code))
}

/// `POST /v1/subscriptions`.
async fn create(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let owner = acting.owner.clone();
    let form = Form::parse(&body);
    reject_unknown(&form, CREATE_PARAMS)?;
    let customer = form
        .get("customer")
        .ok_or_else(|| ApiError::missing("customer"))?
        .to_owned();
    let price_id = form
        .get("items[0][price]")
        .ok_or_else(|| ApiError::missing("items"))?
        .to_owned();
    if form.pairs().any(|(k, _)| {
        k.starts_with("items[") && !k.starts_with("items[0]")
            || k.starts_with("items[0][price_data]")
    }) {
        return Err(ApiError::invalid(
            "stripe-sim: subscriptions have exactly one item, `items[0][price]`.",
        )
        .param("items"));
    }
    if let Some(q) = params::positive(&form, "items[0][quantity]")? {
        if q != 1 {
            return Err(ApiError::invalid("stripe-sim: an item's quantity is 1.")
                .param("items[0][quantity]"));
        }
    }
    let trial_days = params::integer(&form, "trial_period_days")?;
    if trial_days.is_some_and(|d| !(0..=730).contains(&d)) {
        return Err(ApiError::invalid(
            "Invalid trial_period_days: must be between 0 and 730 days.",
        )
        .param("trial_period_days"));
    }
    let trial_days = trial_days.filter(|d| *d > 0);
    let payment_behavior =
        params::one_of(&form, "payment_behavior", PAYMENT_BEHAVIORS)?.unwrap_or("allow_incomplete");
    let collection = params::one_of(
        &form,
        "collection_method",
        &["charge_automatically", "send_invoice"],
    )?
    .unwrap_or("charge_automatically");
    let days_until_due = params::positive(&form, "days_until_due")?;
    if collection == "send_invoice" && days_until_due.is_none() && trial_days.is_none() {
        return Err(ApiError::invalid(
            "Missing required param: days_until_due. `days_until_due` is required when \
             `collection_method` is `send_invoice`.",
        )
        .code("parameter_missing")
        .param("days_until_due"));
    }
    let metadata = params::metadata(&form, "metadata")?;
    let expand = params::expand(&form);

    let mut pending = Vec::new();
    let response = {
        let mut state = sim.lock();
        live_customer(&state, &owner, &customer).map_err(|e| e.param("customer"))?;
        let price = usable_price(&state, &owner, &price_id, "items[0][price]")?;
        let card = behavior(&state, &json!(customer));
        if collection == "charge_automatically"
            && trial_days.is_none()
            && payment_behavior == "error_if_incomplete"
        {
            match card {
                CardBehavior::Succeeds => {}
                CardBehavior::Declines => {
                    return Err(card_error(
                        "card_declined",
                        "generic_decline",
                        "Your card was declined.",
                    ))
                }
                CardBehavior::RequiresAction => {
                    return Err(card_error(
                        "authentication_required",
                        "authentication_required",
                        "Your card was declined. This transaction requires authentication.",
                    ))
                }
            }
        }
        let t = now();
        let sub_id = format!("sub_1{}", random(23));
        let (end, trial_end) = match trial_days {
            Some(d) => (t + d * DAY, Some(t + d * DAY)),
            None => (add_intervals(t, &price, 1), None),
        };
        let mut sub = fixtures::required("subscription");
        let fields = json!({
            "id": sub_id,
            "application": null,
            "application_fee_percent": null,
            "automatic_tax": { "disabled_reason": null, "enabled": false, "liability": null },
            "billing_cycle_anchor": trial_end.unwrap_or(t),
            "billing_cycle_anchor_config": null,
            "billing_mode": { "type": "flexible", "flexible": { "proration_discounts": "included" }, "updated_at": t },
            "billing_thresholds": null,
            "cancel_at": null,
            "cancel_at_period_end": false,
            "canceled_at": null,
            "cancellation_details": { "comment": null, "feedback": null, "reason": null },
            "collection_method": collection,
            "created": t,
            "currency": price["currency"],
            "customer": customer,
            "days_until_due": days_until_due,
            "default_payment_method": null,
            "description": form.get("description"),
            "discounts": [],
            "ended_at": null,
            "items": {
                "object": "list",
                "data": [item(&sub_id, &price)],
                "has_more": false,
                "total_count": 1,
                "url": format!("/v1/subscription_items?subscription={sub_id}"),
            },
            "latest_invoice": null,
            "livemode": acting.live,
            "metadata": metadata,
            "next_pending_invoice_item_invoice": null,
            "on_behalf_of": null,
            "pause_collection": null,
            "pending_invoice_item_interval": null,
            "pending_setup_intent": null,
            "pending_update": null,
            "schedule": null,
            "start_date": t,
            "status": if trial_days.is_some() { "trialing" } else { "active" },
            "test_clock": null,
            "transfer_data": null,
            "trial_end": trial_end,
            "trial_settings": { "end_behavior": { "missing_payment_method": "create_invoice" } },
            "trial_start": trial_end.map(|_| t),
        });
        for (k, v) in fields.as_object().expect("an object") {
            sub[k] = v.clone();
        }
        if let Some(o) = sub.as_object_mut() {
            o.remove("billing_schedules");
            o.remove("managed_payments");
        }
        set_period(&mut sub, t, end);
        let amount = if trial_days.is_some() {
            0
        } else {
            price["unit_amount"].as_i64().unwrap_or_default()
        };
        let mut inv = new_invoice(
            &mut state,
            &sim,
            &owner,
            &sub,
            "subscription_create",
            amount,
            (t, end),
        );
        sub["latest_invoice"] = inv["id"].clone();
        let mut invoice_event = None;
        if amount > 0 && collection == "charge_automatically" {
            let outcome = attempt(&mut state, &owner, &mut inv, Some(card), acting.live);
            if outcome != Attempt::Paid {
                sub["status"] = json!("incomplete");
            }
            invoice_event = Some(failure_event(outcome));
        } else if amount > 0 {
            invoice_event = Some("invoice.finalized");
        }
        store(&mut state, &owner, &sub);
        pending.push(Pending::new(&owner, "customer.subscription.created", &sub));
        if let Some(e) = invoice_event {
            pending.push(Pending::new(&owner, e, &inv));
        }
        expanded(&state, &owner, sub, &expand)?
    };
    emit_all(&sim, pending).await;
    ok(response)
}

/// `POST /v1/subscriptions/{id}`: change the item's price, `cancel_at_period_end`, metadata.
async fn update(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let owner = acting.owner;
    let form = Form::parse(&body);
    reject_unknown(&form, UPDATE_PARAMS)?;
    params::one_of(
        &form,
        "proration_behavior",
        &["always_invoice", "create_prorations", "none"],
    )?;
    params::one_of(&form, "payment_behavior", PAYMENT_BEHAVIORS)?;
    let cancel_at_period_end = params::boolean(&form, "cancel_at_period_end")?;
    let expand = params::expand(&form);
    let mut pending = Vec::new();
    let response = {
        let mut state = sim.lock();
        let mut sub = match state.objects.get(&(owner.clone(), id.clone())) {
            Some(s) if s["object"] == "subscription" => s.clone(),
            _ => return Err(ApiError::no_such("subscription", &id)),
        };
        let old = sub.clone();
        let ended = matches!(
            sub["status"].as_str(),
            Some("canceled" | "incomplete_expired")
        );
        if ended && (form.has("items") || cancel_at_period_end.is_some()) {
            return Err(ApiError::invalid(
                "A canceled subscription can only update its cancellation_details and metadata.",
            ));
        }
        if form.has("items") {
            let item_id = form
                .get("items[0][id]")
                .ok_or_else(|| {
                    ApiError::invalid(
                        "stripe-sim: change the subscription's item with `items[0][id]` and \
                         `items[0][price]`; adding items is not simulated.",
                    )
                    .param("items[0][id]")
                })?
                .to_owned();
            if sub["items"]["data"][0]["id"] != item_id.as_str() {
                return Err(ApiError::invalid(format!(
                    "Subscription item {item_id} does not belong to subscription {id}."
                ))
                .param("items[0][id]"));
            }
            if let Some(price_id) = form.get("items[0][price]") {
                let price = usable_price(&state, &owner, price_id, "items[0][price]")?;
                if price["currency"] != sub["currency"] {
                    return Err(ApiError::invalid(format!(
                        "The price specified uses currency `{}` but the subscription uses `{}`.",
                        price["currency"].as_str().unwrap_or_default(),
                        sub["currency"].as_str().unwrap_or_default()
                    ))
                    .param("items[0][price]"));
                }
                sub["items"]["data"][0]["price"] = price.clone();
                sub["items"]["data"][0]["plan"] = plan(&price);
            }
        }
        if let Some(cancel) = cancel_at_period_end {
            sub["cancel_at_period_end"] = json!(cancel);
            if cancel {
                sub["cancel_at"] = sub["current_period_end"].clone();
                sub["canceled_at"] = json!(now());
                sub["cancellation_details"]["reason"] = json!("cancellation_requested");
            } else {
                sub["cancel_at"] = Value::Null;
                sub["canceled_at"] = Value::Null;
                sub["cancellation_details"]["reason"] = Value::Null;
            }
        }
        let mut metadata = sub["metadata"].as_object().cloned().unwrap_or_default();
        params::update_metadata(&mut metadata, &form, "metadata")?;
        sub["metadata"] = Value::Object(metadata);
        store(&mut state, &owner, &sub);
        updated(&mut pending, &owner, &old, &sub);
        expanded(&state, &owner, sub, &expand)?
    };
    emit_all(&sim, pending).await;
    ok(response)
}

/// `DELETE /v1/subscriptions/{id}`: canceled now.
async fn cancel_route(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let owner = acting.owner;
    let mut raw = query.unwrap_or_default().into_bytes();
    if !body.is_empty() {
        if !raw.is_empty() {
            raw.push(b'&');
        }
        raw.extend_from_slice(&body);
    }
    let form = Form::parse(&raw);
    reject_unknown(&form, CANCEL_PARAMS)?;
    params::boolean(&form, "invoice_now")?;
    params::boolean(&form, "prorate")?;
    let expand = params::expand(&form);
    let (sub, pending) = {
        let mut state = sim.lock();
        match state.objects.get(&(owner.clone(), id.clone())) {
            Some(s) if s["object"] == "subscription" && s["status"] != "canceled" => {}
            _ => return Err(ApiError::no_such("subscription", &id)),
        }
        let mut pending = Vec::new();
        let sub = cancel_locked(
            &mut state,
            &owner,
            &id,
            "cancellation_requested",
            now(),
            &mut pending,
        );
        (expanded(&state, &owner, sub, &expand)?, pending)
    };
    emit_all(&sim, pending).await;
    ok(sub)
}

/// Cancels subscription `id` of `owner` (`reason`, ended at `ended_at`), with its
/// `customer.subscription.deleted`.
fn cancel_locked(
    state: &mut SimState,
    owner: &str,
    id: &str,
    reason: &str,
    ended_at: i64,
    pending: &mut Vec<Pending>,
) -> Value {
    let key = (owner.to_owned(), id.to_owned());
    let mut sub = state.objects[&key].clone();
    sub["status"] = json!("canceled");
    if sub["canceled_at"].is_null() || sub["cancel_at_period_end"] != true {
        sub["canceled_at"] = json!(now());
    }
    sub["ended_at"] = json!(ended_at);
    sub["cancellation_details"]["reason"] = json!(reason);
    store(state, owner, &sub);
    pending.push(Pending::new(owner, "customer.subscription.deleted", &sub));
    sub
}

/// Cancels every live subscription of `customer` (a deleted customer's), with their events.
pub(crate) fn cancel_for_customer(
    state: &mut SimState,
    owner: &str,
    customer: &str,
    pending: &mut Vec<Pending>,
) {
    let mut ids: Vec<(i64, String)> = state
        .objects
        .iter()
        .filter(|((o, _), s)| {
            o == owner
                && s["object"] == "subscription"
                && s["customer"] == customer
                && !matches!(
                    s["status"].as_str(),
                    Some("canceled" | "incomplete_expired")
                )
        })
        .map(|((_, id), s)| (s["created"].as_i64().unwrap_or_default(), id.clone()))
        .collect();
    ids.sort();
    for (_, id) in ids {
        cancel_locked(state, owner, &id, "cancellation_requested", now(), pending);
    }
}

// ---------------------------------------------------------------------------------------------
// Test-clock helpers

fn subscription(state: &SimState, id: &str) -> Result<(String, Value), String> {
    find(state, "subscription", id).ok_or_else(|| format!("no subscription {id}"))
}

/// A new period's invoice charged (the trial's end or a renewal): the invoice's event, then
/// `customer.subscription.updated`.
fn renew_locked(sim: &Sim, state: &mut SimState, owner: &str, mut sub: Value) -> Vec<Pending> {
    let old = sub.clone();
    let price = price_of(&sub);
    let start = sub["current_period_end"].as_i64().unwrap_or_else(now);
    if sub["status"] == "trialing" {
        sub["billing_cycle_anchor"] = json!(start);
    }
    let anchor = sub["billing_cycle_anchor"].as_i64().unwrap_or(start);
    let end = period_end_after(anchor, &price, start);
    set_period(&mut sub, start, end);
    let amount = price["unit_amount"].as_i64().unwrap_or_default();
    let mut inv = new_invoice(
        state,
        sim,
        owner,
        &sub,
        "subscription_cycle",
        amount,
        (start, end),
    );
    sub["latest_invoice"] = inv["id"].clone();
    let event = if sub["collection_method"] == "send_invoice" {
        if sub["status"] == "trialing" {
            sub["status"] = json!("active");
        }
        "invoice.finalized"
    } else {
        let card = behavior(state, &sub["customer"]);
        let outcome = attempt(state, owner, &mut inv, Some(card), sim.live());
        sub["status"] = json!(if outcome == Attempt::Paid {
            "active"
        } else {
            "past_due"
        });
        failure_event(outcome)
    };
    if sub["cancel_at_period_end"] == true {
        sub["cancel_at"] = json!(end);
    }
    store(state, owner, &sub);
    let mut pending = vec![Pending::new(owner, event, &inv)];
    updated(&mut pending, owner, &old, &sub);
    pending
}

/// `customer.subscription.updated` with `previous_attributes`, if anything changed.
fn updated(pending: &mut Vec<Pending>, owner: &str, old: &Value, sub: &Value) {
    let previous = previous_attributes(old, sub);
    if previous.as_object().is_some_and(|p| !p.is_empty()) {
        pending.push(Pending::new(owner, "customer.subscription.updated", sub).previous(previous));
    }
}

pub(crate) async fn end_trial(sim: &Sim, id: &str) -> Result<Vec<String>, String> {
    let pending = {
        let mut state = sim.lock();
        let (owner, sub) = subscription(&state, id)?;
        if sub["status"] != "trialing" {
            return Err(format!("{id} is {}, not trialing", sub["status"]));
        }
        if sub["cancel_at_period_end"] == true {
            let mut pending = Vec::new();
            let end = sub["current_period_end"].as_i64().unwrap_or_else(now);
            cancel_locked(
                &mut state,
                &owner,
                id,
                "cancellation_requested",
                end,
                &mut pending,
            );
            pending
        } else {
            renew_locked(sim, &mut state, &owner, sub)
        }
    };
    Ok(emit_all(sim, pending).await)
}

/// The current period ends: canceled if `cancel_at_period_end`, else renewed.
pub(crate) async fn period_end(sim: &Sim, id: &str) -> Result<Vec<String>, String> {
    let pending = {
        let mut state = sim.lock();
        let (owner, sub) = subscription(&state, id)?;
        match sub["status"].as_str() {
            Some("trialing" | "active" | "past_due" | "unpaid") => {}
            other => {
                return Err(format!(
                    "{id} is {}: no period to end",
                    other.unwrap_or("?")
                ))
            }
        }
        if sub["cancel_at_period_end"] == true {
            let mut pending = Vec::new();
            let end = sub["current_period_end"].as_i64().unwrap_or_else(now);
            cancel_locked(
                &mut state,
                &owner,
                id,
                "cancellation_requested",
                end,
                &mut pending,
            );
            pending
        } else {
            renew_locked(sim, &mut state, &owner, sub)
        }
    };
    Ok(emit_all(sim, pending).await)
}

/// A Smart Retries attempt on the subscription's latest invoice.
pub(crate) async fn retry_invoice(sim: &Sim, id: &str) -> Result<Vec<String>, String> {
    let pending = {
        let mut state = sim.lock();
        let (owner, mut sub) = subscription(&state, id)?;
        let inv_id = sub["latest_invoice"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut inv = find(&state, "invoice", &inv_id)
            .map(|(_, i)| i)
            .ok_or_else(|| format!("{id} has no invoice"))?;
        if inv["status"] != "open" || sub["collection_method"] != "charge_automatically" {
            return Err(format!(
                "{inv_id} is not an open invoice charged automatically"
            ));
        }
        if matches!(
            sub["status"].as_str(),
            Some("canceled" | "incomplete_expired")
        ) {
            return Err(format!("{id} is canceled"));
        }
        let old = sub.clone();
        let card = behavior(&state, &sub["customer"]);
        let outcome = attempt(&mut state, &owner, &mut inv, Some(card), sim.live());
        let mut pending = Vec::new();
        let retries = inv["attempt_count"].as_i64().unwrap_or(1) - 1;
        let max = i64::from(state.billing.max_retries.unwrap_or(DEFAULT_MAX_RETRIES));
        if outcome == Attempt::Paid {
            pending.push(Pending::new(&owner, "invoice.paid", &inv));
            sub["status"] = json!("active");
            store(&mut state, &owner, &sub);
            updated(&mut pending, &owner, &old, &sub);
        } else if retries >= max {
            inv["next_payment_attempt"] = Value::Null;
            store(&mut state, &owner, &inv);
            pending.push(Pending::new(&owner, "invoice.payment_failed", &inv));
            cancel_locked(
                &mut state,
                &owner,
                id,
                "payment_failed",
                now(),
                &mut pending,
            );
        } else {
            pending.push(Pending::new(&owner, failure_event(outcome), &inv));
        }
        pending
    };
    Ok(emit_all(sim, pending).await)
}

/// The customer paying open invoice `id` on its hosted page: `invoice.paid`, and its
/// subscription back to `active` (`customer.subscription.updated`) if it was not.
pub(crate) async fn pay_invoice(sim: &Sim, id: &str) -> Result<Vec<String>, String> {
    let pending = {
        let mut state = sim.lock();
        let (owner, mut inv) =
            find(&state, "invoice", id).ok_or_else(|| format!("no invoice {id}"))?;
        if inv["status"] != "open" {
            return Err(format!(
                "Invoice is already {}",
                inv["status"].as_str().unwrap_or("?")
            ));
        }
        attempt(&mut state, &owner, &mut inv, None, sim.live());
        let mut pending = vec![Pending::new(&owner, "invoice.paid", &inv)];
        let sub = inv["subscription"]
            .as_str()
            .and_then(|s| state.objects.get(&(owner.clone(), s.to_owned())))
            .cloned();
        if let Some(mut sub) = sub {
            if matches!(
                sub["status"].as_str(),
                Some("past_due" | "incomplete" | "unpaid")
            ) {
                let old = sub.clone();
                sub["status"] = json!("active");
                store(&mut state, &owner, &sub);
                updated(&mut pending, &owner, &old, &sub);
            }
        }
        pending
    };
    Ok(emit_all(sim, pending).await)
}

// ---------------------------------------------------------------------------------------------
// The hosted invoice page

fn invoice_html(inv: &Value, note: Option<&str>) -> Response {
    let id = inv["id"].as_str().unwrap_or_default();
    let currency = inv["currency"].as_str().unwrap_or_default();
    let amount = params::money(
        inv["amount_remaining"].as_i64().unwrap_or_default(),
        currency,
    );
    let status = inv["status"].as_str().unwrap_or_default();
    let note = note.map_or(String::new(), |n| {
        format!("<p id=\"paid\">{}</p>\n", escape(n))
    });
    let action = if status == "open" {
        format!(
            "<form method=\"post\" action=\"/invoice/{id}/pay\">\
             <button id=\"pay\" type=\"submit\">Pay {amount}</button></form>\n",
            id = escape(id),
            amount = escape(&amount),
        )
    } else {
        String::new()
    };
    page(
        StatusCode::OK,
        TITLE,
        &format!(
            "{note}<p>Invoice <span id=\"number\">{number}</span>: \
             <strong id=\"amount\">{amount}</strong>, <span id=\"status\">{status}</span>.</p>\n{action}",
            number = escape(inv["number"].as_str().unwrap_or_default()),
            amount = escape(&amount),
            status = escape(status),
        ),
    )
}

async fn invoice_page(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    match find(&sim.lock(), "invoice", &id) {
        Some((_, inv)) => invoice_html(&inv, None),
        None => page(
            StatusCode::NOT_FOUND,
            TITLE,
            "<p id=\"invalid\">This invoice does not exist.</p>",
        ),
    }
}

async fn invoice_pay_page(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    let paid = pay_invoice(&sim, &id).await;
    let Some((_, inv)) = find(&sim.lock(), "invoice", &id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match paid {
        Ok(_) => invoice_html(&inv, Some("Thanks for your payment.")),
        Err(_) => invoice_html(&inv, None),
    }
}

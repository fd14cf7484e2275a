//! Checkout Sessions in `mode=payment` with `price_data` line items, and the hosted page their
//! `url` opens (`/pay/{id}`): plain HTML with one button per test card. As in Stripe (API
//! versions since 2022-08-01), the PaymentIntent is made when the customer pays, carrying
//! `payment_intent_data`; a declined card leaves the session open.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use crate::cards::Card;
use crate::events::{emit_all, Pending};
use crate::fixtures;
use crate::http::{escape, found, ok, page, ApiError, ApiResult, Form};
use crate::objects::{acting, expanded, owned};
use crate::onboarding::valid_url;
use crate::params::{self, reject_unknown};
use crate::payments::{confirm_locked, create_intent, live_customer, NewIntent};
use crate::random;
use crate::state::{now, Sim, State as SimState};

const PARAMS: &[&str] = &[
    "mode",
    "line_items",
    "success_url",
    "cancel_url",
    "return_url",
    "ui_mode",
    "client_reference_id",
    "customer",
    "customer_email",
    "customer_creation",
    "metadata",
    "payment_intent_data",
    "payment_method_types",
    "expires_at",
    "locale",
    "submit_type",
    "billing_address_collection",
    "shipping_address_collection",
    "shipping_options",
    "allow_promotion_codes",
    "discounts",
    "automatic_tax",
    "phone_number_collection",
    "custom_fields",
    "custom_text",
    "consent_collection",
    "invoice_creation",
    "tax_id_collection",
    "payment_method_options",
    "payment_method_collection",
    "payment_method_configuration",
    "currency",
    "after_expiration",
    "adaptive_pricing",
    "saved_payment_method_options",
    "redirect_on_completion",
    "origin_context",
    "optional_items",
    "permissions",
    "wallet_options",
];

/// How long a session stays open by default (Stripe: 24 hours).
const TTL_SECS: i64 = 24 * 3600;

const TITLE: &str = "Checkout (local simulator)";

pub(crate) fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/v1/checkout/sessions", post(create))
        .route("/v1/checkout/sessions/{id}", owned("checkout.session"))
        .route("/v1/checkout/sessions/{id}/line_items", get(line_items))
        .route("/v1/checkout/sessions/{id}/expire", post(expire_route))
        .route("/pay/{id}", get(open_page))
        .route("/pay/{id}/{card}", post(pay_page))
}

/// The line items of `form` (`line_items[i][price_data][…]`, `line_items[i][quantity]`): the
/// items, their currency and the total.
fn parse_line_items(form: &Form) -> Result<(Vec<Value>, String, i64), ApiError> {
    let mut indices: Vec<usize> = form
        .pairs()
        .filter_map(|(k, _)| {
            k.strip_prefix("line_items[")?
                .split(']')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    indices.sort_unstable();
    indices.dedup();
    if indices.is_empty() {
        return Err(ApiError::missing("line_items"));
    }
    let mut items = Vec::new();
    let mut currency: Option<String> = None;
    let mut total = 0_i64;
    for i in indices {
        let p = |name: &str| format!("line_items[{i}][{name}]");
        if let Some(price) = form.get(&p("price")) {
            return Err(ApiError::invalid(format!("No such price: '{price}'"))
                .code("resource_missing")
                .param(&p("price")));
        }
        let pd = |name: &str| format!("line_items[{i}][price_data][{name}]");
        let c = params::currency(form, &pd("currency"))?;
        let unit = params::non_negative(form, &pd("unit_amount"))?
            .ok_or_else(|| ApiError::missing(&pd("unit_amount")))?;
        if let Some(product) = form.get(&pd("product")) {
            return Err(ApiError::invalid(format!("No such product: '{product}'"))
                .code("resource_missing")
                .param(&pd("product")));
        }
        let name = form
            .get(&format!("line_items[{i}][price_data][product_data][name]"))
            .ok_or_else(|| ApiError::missing(&pd("product_data][name")))?;
        let quantity = params::positive(form, &p("quantity"))?
            .ok_or_else(|| ApiError::missing(&p("quantity")))?;
        match &currency {
            Some(first) if *first != c => {
                return Err(
                    ApiError::invalid("All line items must use the same currency.")
                        .param(&pd("currency")),
                )
            }
            _ => currency = Some(c.clone()),
        }
        let amount = unit * quantity;
        total += amount;
        items.push(json!({
            "id": format!("li_1{}", random(23)),
            "object": "item",
            "amount_discount": 0,
            "amount_subtotal": amount,
            "amount_tax": 0,
            "amount_total": amount,
            "currency": c,
            "description": name,
            "price": {
                "id": format!("price_1{}", random(23)),
                "object": "price",
                "active": false,
                "billing_scheme": "per_unit",
                "created": now(),
                "currency": c,
                "livemode": false,
                "lookup_key": null,
                "metadata": {},
                "nickname": null,
                "product": format!("prod_{}", random(14)),
                "recurring": null,
                "tax_behavior": "unspecified",
                "type": "one_time",
                "unit_amount": unit,
                "unit_amount_decimal": unit.to_string(),
            },
            "quantity": quantity,
        }));
    }
    Ok((items, currency.unwrap_or_default(), total))
}

/// `POST /v1/checkout/sessions`.
async fn create(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let form = Form::parse(&body);
    reject_unknown(&form, PARAMS)?;
    match form.get("mode") {
        None => return Err(ApiError::missing("mode")),
        Some("payment") => {}
        Some("subscription" | "setup") => {
            return Err(ApiError::invalid(
                "The local simulator supports Checkout Sessions in mode=payment only.",
            )
            .param("mode"))
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "Invalid mode: must be one of payment, setup, or subscription",
            )
            .param("mode"))
        }
    }
    for name in ["success_url", "cancel_url"] {
        if let Some(url) = form.get(name) {
            if !valid_url(url) {
                return Err(ApiError::invalid(format!("Not a valid URL: {name}")).param(name));
            }
        }
    }
    let (items, currency, total) = parse_line_items(&form)?;
    params::check_charge_amount(total, &currency, "line_items").map_err(|_| {
        ApiError::invalid(format!(
            "The Checkout Session's total amount due must add up to at least {} {currency}",
            params::money(minimum_hint(&currency), &currency)
        ))
        .param("line_items")
    })?;
    let fee = params::non_negative(&form, "payment_intent_data[application_fee_amount]")?;
    if fee.is_some() && !acting.as_platform {
        return Err(ApiError::invalid(
            "Can only apply an application_fee_amount when the PaymentIntent is attempting a \
             direct payment (using an OAuth key or Stripe-Account header) or destination \
             payment (using `transfer_data[destination]`).",
        )
        .param("payment_intent_data[application_fee_amount]"));
    }
    if fee.is_some_and(|f| f > total) {
        return Err(ApiError::invalid(
            "The application fee amount must be less than or equal to the session's total.",
        )
        .param("payment_intent_data[application_fee_amount]"));
    }
    let pi_metadata = params::metadata(&form, "payment_intent_data[metadata]")?;
    let metadata = params::metadata(&form, "metadata")?;
    let capture_method = params::one_of(
        &form,
        "payment_intent_data[capture_method]",
        &["automatic", "automatic_async", "manual"],
    )?
    .unwrap_or("automatic_async");
    let expires_at = params::integer(&form, "expires_at")?.unwrap_or(now() + TTL_SECS);
    let mode = if acting.live { "live" } else { "test" };
    let id = format!("cs_{mode}_a1{}", random(58));
    let mut s = fixtures::required("checkout.session");
    let customer = form.get("customer");
    {
        let state = sim.lock();
        if let Some(c) = customer {
            live_customer(&state, &acting.owner, c).map_err(|e| e.param("customer"))?;
        }
    }
    s["id"] = json!(id);
    s["adaptive_pricing"] = json!({ "enabled": false });
    s["after_expiration"] = Value::Null;
    s["amount_subtotal"] = json!(total);
    s["amount_total"] = json!(total);
    s["automatic_tax"] =
        json!({ "enabled": false, "liability": null, "provider": null, "status": null });
    s["cancel_url"] = json!(form.get("cancel_url"));
    s["client_reference_id"] = json!(form.get("client_reference_id"));
    s["client_secret"] = Value::Null;
    s["collected_information"] = Value::Null;
    s["consent"] = Value::Null;
    s["consent_collection"] = Value::Null;
    s["created"] = json!(now());
    s["currency"] = json!(currency);
    s["currency_conversion"] = Value::Null;
    s["custom_fields"] = json!([]);
    s["custom_text"] = json!({
        "after_submit": null, "shipping_address": null, "submit": null,
        "terms_of_service_acceptance": null,
    });
    s["customer"] = json!(customer);
    s["customer_creation"] = if customer.is_some() {
        Value::Null
    } else {
        json!(form.get("customer_creation").unwrap_or("if_required"))
    };
    s["customer_details"] = Value::Null;
    s["customer_email"] = json!(form.get("customer_email"));
    s["discounts"] = json!([]);
    s["expires_at"] = json!(expires_at);
    s["invoice"] = Value::Null;
    s["invoice_creation"]["enabled"] = json!(false);
    s["livemode"] = json!(acting.live);
    s["locale"] = json!(form.get("locale"));
    s["metadata"] = Value::Object(metadata);
    s["mode"] = json!("payment");
    s["payment_intent"] = Value::Null;
    s["payment_link"] = Value::Null;
    s["payment_method_collection"] = json!("if_required");
    s["payment_method_configuration_details"] = Value::Null;
    s["payment_method_options"] = json!({ "card": { "request_three_d_secure": "automatic" } });
    s["payment_method_types"] = json!(["card"]);
    s["payment_status"] = json!("unpaid");
    s["permissions"] = Value::Null;
    s["recovered_from"] = Value::Null;
    s["saved_payment_method_options"] = Value::Null;
    s["shipping_address_collection"] = Value::Null;
    s["shipping_cost"] = Value::Null;
    s["shipping_options"] = json!([]);
    s["status"] = json!("open");
    s["success_url"] = json!(form.get("success_url"));
    s["total_details"] = json!({ "amount_discount": 0, "amount_shipping": 0, "amount_tax": 0 });
    s["ui_mode"] = json!("hosted");
    s["url"] = json!(format!("{}/pay/{id}", sim.url));
    s["wallet_options"] = Value::Null;
    if let Some(o) = s.as_object_mut() {
        o.remove("managed_payments");
    }
    let hidden = json!({
        "payment_intent_data": {
            "application_fee_amount": fee,
            "application": acting.as_platform.then(|| sim.client_id.clone()),
            "capture_method": capture_method,
            "description": form.get("payment_intent_data[description]"),
            "metadata": pi_metadata,
            "receipt_email": form.get("payment_intent_data[receipt_email]"),
        },
        "line_items": {
            "object": "list",
            "data": items,
            "has_more": false,
            "url": format!("/v1/checkout/sessions/{id}/line_items"),
        },
    });
    let s = {
        let mut state = sim.lock();
        state.hidden.insert(id.clone(), hidden);
        state.objects.insert((acting.owner.clone(), id), s.clone());
        expanded(&state, &acting.owner, s, &params::expand(&form))?
    };
    ok(s)
}

/// A charge minimum to quote; Stripe's own for the main currencies, else a unit.
fn minimum_hint(currency: &str) -> i64 {
    match currency {
        "gbp" => 30,
        "usd" | "eur" | "aud" | "cad" | "chf" | "nzd" | "sgd" | "brl" | "inr" | "jpy" => 50,
        _ => 100,
    }
}

/// `GET /v1/checkout/sessions/{id}/line_items`.
async fn line_items(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let state = sim.lock();
    match state.objects.get(&(acting.owner.clone(), id.clone())) {
        Some(s) if s["object"] == "checkout.session" => ok(state
            .hidden
            .get(&id)
            .map_or(Value::Null, |h| h["line_items"].clone())),
        _ => Err(ApiError::no_such("checkout.session", &id)),
    }
}

/// `POST /v1/checkout/sessions/{id}/expire`.
async fn expire_route(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    match expire(&sim, &acting.owner, &id).await {
        Ok((_, s)) => ok(s),
        Err(e) => Err(e),
    }
}

/// Expires open session `id` of `owner`: `checkout.session.expired`; the event id and the
/// session.
pub(crate) async fn expire(sim: &Sim, owner: &str, id: &str) -> Result<(String, Value), ApiError> {
    let s = {
        let mut state = sim.lock();
        let s = match state.objects.get_mut(&(owner.to_owned(), id.to_owned())) {
            Some(s) if s["object"] == "checkout.session" => s,
            _ => return Err(ApiError::no_such("checkout.session", id)),
        };
        if s["status"] != "open" {
            return Err(ApiError::invalid(
                "Only Checkout Sessions with a status in [\"open\"] can be expired.",
            ));
        }
        s["status"] = json!("expired");
        s["url"] = Value::Null;
        s.clone()
    };
    let ids = emit_all(
        sim,
        vec![Pending::new(owner, "checkout.session.expired", &s)],
    )
    .await;
    Ok((ids.into_iter().next().unwrap_or_default(), s))
}

/// The account holding session `id`.
fn owner_of(state: &SimState, id: &str) -> Option<String> {
    state
        .objects
        .iter()
        .find(|((_, oid), o)| oid == id && o["object"] == "checkout.session")
        .map(|((owner, _), _)| owner.clone())
}

/// The customer paying session `id` of `owner` with `card`. On success the session is
/// `complete` (`payment_status: paid` once captured) and the id of
/// `checkout.session.completed` is returned; on a decline the session stays open and the id
/// of `payment_intent.payment_failed` is returned, with the decline message.
pub(crate) async fn complete(
    sim: &Sim,
    owner: &str,
    id: &str,
    card: Card,
) -> Result<(String, Option<String>), String> {
    let mut events = Vec::new();
    let declined = {
        let mut guard = sim.lock();
        let state = &mut *guard;
        let key = (owner.to_owned(), id.to_owned());
        let s = match state.objects.get(&key) {
            Some(s) if s["object"] == "checkout.session" => s.clone(),
            _ => return Err(format!("No such checkout.session: '{id}' in {owner}")),
        };
        if s["status"] != "open" {
            return Err(format!(
                "Checkout Session {id} is {}, not open",
                s["status"].as_str().unwrap_or_default()
            ));
        }
        let pid = state
            .hidden
            .get(id)
            .map_or(Value::Null, |h| h["payment_intent_data"].clone());
        let pi_id = match s["payment_intent"].as_str() {
            Some(pi) => pi.to_owned(),
            None => {
                let n = NewIntent {
                    amount: s["amount_total"].as_i64().unwrap_or_default(),
                    currency: s["currency"].as_str().unwrap_or("usd").to_owned(),
                    description: pid["description"].as_str().map(str::to_owned),
                    customer: s["customer"].as_str().map(str::to_owned),
                    metadata: pid["metadata"]
                        .as_object()
                        .cloned()
                        .unwrap_or_else(Map::new),
                    application_fee_amount: pid["application_fee_amount"].as_i64(),
                    application: pid["application"].as_str().map(str::to_owned),
                    payment_method_types: Some(vec!["card".into()]),
                    capture_method: pid["capture_method"]
                        .as_str()
                        .unwrap_or("automatic_async")
                        .to_owned(),
                    receipt_email: pid["receipt_email"].as_str().map(str::to_owned),
                    transfer_data: Value::Null,
                    transfer_group: None,
                    livemode: s["livemode"].as_bool().unwrap_or(false),
                };
                let pi = create_intent(state, owner, n, &mut events);
                let pi_id = pi["id"].as_str().unwrap_or_default().to_owned();
                if let Some(stored) = state.objects.get_mut(&key) {
                    stored["payment_intent"] = json!(pi_id);
                }
                pi_id
            }
        };
        match confirm_locked(state, owner, &pi_id, card.test_card(), &mut events) {
            Ok(pi) => {
                let stored = state.objects.get_mut(&key).expect("the session is there");
                stored["status"] = json!("complete");
                stored["url"] = Value::Null;
                stored["payment_status"] = json!(if pi["status"] == "succeeded" {
                    "paid"
                } else {
                    "unpaid"
                });
                let email = stored["customer_email"].clone();
                stored["customer_details"] = json!({
                    "address": { "city": null, "country": "US", "line1": null, "line2": null,
                                 "postal_code": "94103", "state": null },
                    "business_name": null,
                    "email": if email.is_null() { json!("customer@example.com") } else { email },
                    "individual_name": null,
                    "name": "Jenny Rosen",
                    "phone": null,
                    "tax_exempt": "none",
                    "tax_ids": [],
                });
                let session = stored.clone();
                events.push(Pending::new(owner, "checkout.session.completed", &session));
                None
            }
            Err(e) if e.status == StatusCode::PAYMENT_REQUIRED => Some(e.message),
            Err(e) => return Err(e.message),
        }
    };
    let kinds: Vec<&str> = events.iter().map(|e| e.event_type).collect();
    let ids = emit_all(sim, events).await;
    let wanted = if declined.is_some() {
        "payment_intent.payment_failed"
    } else {
        "checkout.session.completed"
    };
    let event = kinds
        .iter()
        .zip(ids)
        .find(|(k, _)| **k == wanted)
        .map(|(_, id)| id)
        .unwrap_or_default();
    Ok((event, declined))
}

/// Expires session `id` of `owner`, for the `StripeSim` helper.
pub(crate) async fn expire_helper(sim: &Sim, owner: &str, id: &str) -> Result<String, String> {
    expire(sim, owner, id)
        .await
        .map(|(event, _)| event)
        .map_err(|e| e.message)
}

/// The hosted payment page.
async fn open_page(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    let state = sim.lock();
    let Some(owner) = owner_of(&state, &id) else {
        return page(
            StatusCode::NOT_FOUND,
            TITLE,
            "<p id=\"invalid\">Something went wrong: this Checkout Session does not exist.</p>",
        );
    };
    let s = state.objects[&(owner, id.clone())].clone();
    drop(state);
    session_page(&s, None)
}

fn session_page(s: &Value, error: Option<&str>) -> Response {
    let id = s["id"].as_str().unwrap_or_default();
    if s["status"] != "open" {
        return page(
            StatusCode::OK,
            TITLE,
            &format!(
                "<p id=\"status\">This Checkout Session is {}.</p>",
                escape(s["status"].as_str().unwrap_or_default())
            ),
        );
    }
    let currency = s["currency"].as_str().unwrap_or_default();
    let total = params::money(s["amount_total"].as_i64().unwrap_or_default(), currency);
    let error = error.map_or(String::new(), |e| {
        format!("<p id=\"error\" role=\"alert\">{}</p>\n", escape(e))
    });
    let cancel = s["cancel_url"].as_str().map_or(String::new(), |u| {
        format!("<p><a id=\"cancel\" href=\"{}\">Back</a></p>", escape(u))
    });
    let button = |card: &str, label: &str| {
        format!(
            "<form method=\"post\" action=\"/pay/{id}/{card}\">\
             <button id=\"pay-{card}\" type=\"submit\">{label}</button></form>\n",
            id = escape(id),
        )
    };
    page(
        StatusCode::OK,
        TITLE,
        &format!(
            "{error}<p>Pay <strong id=\"amount\">{total}</strong> ({currency}).</p>\n{}{}{}{cancel}",
            button("visa", "Pay with 4242 4242 4242 4242"),
            button("declined", "Pay with 4000 0000 0000 0002 (declined)"),
            button(
                "insufficient_funds",
                "Pay with 4000 0000 0000 9995 (insufficient funds)"
            ),
            total = escape(&total),
            currency = escape(&currency.to_uppercase()),
        ),
    )
}

/// The page's forms: pays, then goes to `success_url` (its `{CHECKOUT_SESSION_ID}` filled in),
/// or shows the decline.
async fn pay_page(
    State(sim): State<Arc<Sim>>,
    Path((id, card)): Path<(String, String)>,
) -> Response {
    let card = match card.as_str() {
        "visa" => Card::Visa,
        "declined" => Card::Declined,
        "insufficient_funds" => Card::InsufficientFunds,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let Some(owner) = owner_of(&sim.lock(), &id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let result = complete(&sim, &owner, &id, card).await;
    let s = sim.lock().objects[&(owner, id.clone())].clone();
    match result {
        Ok((_, Some(declined))) => session_page(&s, Some(&declined)),
        Ok((_, None)) => match s["success_url"].as_str() {
            Some(url) => found(&url.replace("{CHECKOUT_SESSION_ID}", &id)),
            None => page(
                StatusCode::OK,
                TITLE,
                "<p id=\"paid\">Thanks for your payment.</p>",
            ),
        },
        Err(_) => session_page(&s, None),
    }
}

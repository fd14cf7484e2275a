//! The product catalog: products, prices and Plans (the older form of a recurring price, which
//! Stripe still serves: a plan and its price share one id). Enough to make the prices vendor
//! billing subscribes to.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::fixtures;
use crate::http::{ok, ApiError, ApiResult, Form};
use crate::objects::{acting, owned, Acting};
use crate::params::{self, reject_unknown};
use crate::payments::id;
use crate::state::{now, Sim};
use crate::webhook_endpoints::{limit, page};

const INTERVALS: &[&str] = &["day", "week", "month", "year"];

pub(crate) fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/v1/products", post(create_product).get(list_products))
        .route("/v1/products/{id}", owned("product"))
        .route("/v1/prices", post(create_price).get(list_prices))
        .route("/v1/plans", post(create_plan).get(list_plans))
        .route("/v1/plans/{id}", get(get_plan))
}

async fn create_product(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let form = Form::parse(&body);
    reject_unknown(&form, &["name", "description", "active", "metadata", "id"])?;
    let name = form.get("name").ok_or_else(|| ApiError::missing("name"))?;
    let product = new_product(&sim, &acting, name, &form, "")?;
    ok(product)
}

/// Makes and stores a product; `prefix` names where its fields are (`product_data[…]` or
/// `product[…]` when made with a price or a plan).
fn new_product(
    sim: &Sim,
    acting: &Acting,
    name: &str,
    form: &Form,
    prefix: &str,
) -> Result<Value, ApiError> {
    let field = |f: &str| {
        if prefix.is_empty() {
            f.to_owned()
        } else {
            format!("{prefix}[{f}]")
        }
    };
    let mut p = fixtures::required("product");
    let id = form
        .get(&field("id"))
        .map(str::to_owned)
        .unwrap_or_else(|| id("prod_"));
    p["id"] = json!(id);
    p["name"] = json!(name);
    p["description"] = json!(form.get(&field("description")));
    p["active"] = json!(params::boolean(form, &field("active"))?.unwrap_or(true));
    p["created"] = json!(now());
    p["updated"] = json!(now());
    p["livemode"] = json!(acting.live);
    p["default_price"] = Value::Null;
    p["metadata"] = Value::Object(params::metadata(form, &field("metadata"))?);
    let mut state = sim.lock();
    let key = (acting.owner.clone(), id.clone());
    if state.objects.contains_key(&key) {
        return Err(ApiError::invalid(format!("Object already exists: {id}")).param("id"));
    }
    state.objects.insert(key, p.clone());
    Ok(p)
}

/// The product a new price or plan belongs to: an existing one by id, or a new one.
fn product_for(sim: &Sim, acting: &Acting, form: &Form, inline: &str) -> Result<String, ApiError> {
    if let Some(id) = form.get("product") {
        let known = sim
            .lock()
            .objects
            .get(&(acting.owner.clone(), id.to_owned()))
            .is_some_and(|o| o["object"] == "product");
        return if known {
            Ok(id.to_owned())
        } else {
            Err(ApiError::invalid(format!("No such product: '{id}'")).param("product"))
        };
    }
    let name = form
        .get(&format!("{inline}[name]"))
        .ok_or_else(|| ApiError::missing("product"))?;
    let product = new_product(sim, acting, name, form, inline)?;
    Ok(product["id"].as_str().unwrap_or_default().to_owned())
}

async fn create_price(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let form = Form::parse(&body);
    reject_unknown(
        &form,
        &[
            "currency",
            "unit_amount",
            "product",
            "product_data",
            "recurring",
            "active",
            "nickname",
            "metadata",
            "lookup_key",
        ],
    )?;
    let currency = params::currency(&form, "currency")?;
    let amount = params::non_negative(&form, "unit_amount")?
        .ok_or_else(|| ApiError::missing("unit_amount"))?;
    let interval = params::one_of(&form, "recurring[interval]", INTERVALS)?;
    let count = params::positive(&form, "recurring[interval_count]")?.unwrap_or(1);
    let product = product_for(&sim, &acting, &form, "product_data")?;
    let mut p = price(
        &acting,
        &id("price_1"),
        &product,
        amount,
        &currency,
        interval,
        count,
    );
    p["active"] = json!(params::boolean(&form, "active")?.unwrap_or(true));
    p["nickname"] = json!(form.get("nickname"));
    p["lookup_key"] = json!(form.get("lookup_key"));
    p["metadata"] = Value::Object(params::metadata(&form, "metadata")?);
    store(&sim, &acting, &p);
    ok(p)
}

fn price(
    acting: &Acting,
    id: &str,
    product: &str,
    amount: i64,
    currency: &str,
    interval: Option<&str>,
    count: i64,
) -> Value {
    let mut p = fixtures::required("price");
    p["id"] = json!(id);
    p["active"] = json!(true);
    p["created"] = json!(now());
    p["currency"] = json!(currency);
    p["custom_unit_amount"] = Value::Null;
    p["livemode"] = json!(acting.live);
    p["lookup_key"] = Value::Null;
    p["nickname"] = Value::Null;
    p["product"] = json!(product);
    p["transform_quantity"] = Value::Null;
    p["unit_amount"] = json!(amount);
    p["unit_amount_decimal"] = json!(amount.to_string());
    match interval {
        Some(i) => {
            p["type"] = json!("recurring");
            p["recurring"] = json!({
                "interval": i,
                "interval_count": count,
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
    p
}

fn store(sim: &Sim, acting: &Acting, p: &Value) {
    let id = p["id"].as_str().unwrap_or_default().to_owned();
    sim.lock()
        .objects
        .insert((acting.owner.clone(), id), p.clone());
}

async fn list_prices(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let form = Form::parse(query.unwrap_or_default().as_bytes());
    let all = prices(&sim, &acting, &form)?;
    ok(page(all, &form, limit(&form)?, "/v1/prices"))
}

/// The acting account's prices, newest first, filtered as `GET /v1/prices` filters them.
fn prices(sim: &Sim, acting: &Acting, form: &Form) -> Result<Vec<Value>, ApiError> {
    reject_unknown(
        form,
        &[
            "active",
            "product",
            "type",
            "currency",
            "limit",
            "starting_after",
            "ending_before",
        ],
    )?;
    let active = params::boolean(form, "active")?;
    let kind = params::one_of(form, "type", &["one_time", "recurring"])?;
    Ok(
        crate::objects::newest_first(&sim.lock(), &acting.owner, "price")
            .into_iter()
            .filter(|p| active.is_none_or(|a| p["active"] == a))
            .filter(|p| form.get("product").is_none_or(|id| p["product"] == id))
            .filter(|p| kind.is_none_or(|t| p["type"] == t))
            .filter(|p| form.get("currency").is_none_or(|c| p["currency"] == c))
            .collect(),
    )
}

async fn list_products(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let form = Form::parse(query.unwrap_or_default().as_bytes());
    reject_unknown(
        &form,
        &["active", "limit", "starting_after", "ending_before"],
    )?;
    let active = params::boolean(&form, "active")?;
    let all = crate::objects::newest_first(&sim.lock(), &acting.owner, "product")
        .into_iter()
        .filter(|p| active.is_none_or(|a| p["active"] == a))
        .collect();
    ok(page(all, &form, limit(&form)?, "/v1/products"))
}

/// `POST /v1/plans`: a recurring price in the Plans API's words (`amount`, `interval`); the
/// plan and its price share the id.
async fn create_plan(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let form = Form::parse(&body);
    reject_unknown(
        &form,
        &[
            "amount",
            "currency",
            "interval",
            "interval_count",
            "product",
            "id",
            "active",
            "nickname",
            "metadata",
        ],
    )?;
    let currency = params::currency(&form, "currency")?;
    let amount =
        params::non_negative(&form, "amount")?.ok_or_else(|| ApiError::missing("amount"))?;
    let interval = params::one_of(&form, "interval", INTERVALS)?
        .ok_or_else(|| ApiError::missing("interval"))?;
    let count = params::positive(&form, "interval_count")?.unwrap_or(1);
    let product = product_for(&sim, &acting, &form, "product")?;
    let id = form
        .get("id")
        .map(str::to_owned)
        .unwrap_or_else(|| id("price_1"));
    let mut p = price(
        &acting,
        &id,
        &product,
        amount,
        &currency,
        Some(interval),
        count,
    );
    p["active"] = json!(params::boolean(&form, "active")?.unwrap_or(true));
    p["nickname"] = json!(form.get("nickname"));
    p["metadata"] = Value::Object(params::metadata(&form, "metadata")?);
    store(&sim, &acting, &p);
    ok(plan(&p))
}

/// A recurring price as the Plans API shows it.
fn plan(p: &Value) -> Value {
    json!({
        "id": p["id"],
        "object": "plan",
        "active": p["active"],
        "amount": p["unit_amount"],
        "amount_decimal": p["unit_amount_decimal"],
        "billing_scheme": "per_unit",
        "created": p["created"],
        "currency": p["currency"],
        "interval": p["recurring"]["interval"],
        "interval_count": p["recurring"]["interval_count"],
        "livemode": p["livemode"],
        "metadata": p["metadata"],
        "meter": null,
        "nickname": p["nickname"],
        "product": p["product"],
        "tiers_mode": null,
        "transform_usage": null,
        "trial_period_days": null,
        "usage_type": "licensed",
    })
}

async fn get_plan(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let state = sim.lock();
    match state.objects.get(&(acting.owner.clone(), id.clone())) {
        Some(p) if p["object"] == "price" && p["type"] == "recurring" => ok(plan(p)),
        _ => Err(ApiError::no_such("plan", &id)),
    }
}

async fn list_plans(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let form = Form::parse(query.unwrap_or_default().as_bytes());
    let all = prices(&sim, &acting, &form)?
        .iter()
        .filter(|p| p["type"] == "recurring")
        .map(plan)
        .collect();
    ok(page(all, &form, limit(&form)?, "/v1/plans"))
}

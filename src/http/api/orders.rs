//! Orders, their re-check at Stripe, and refunds.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;

use super::{limit, store_id, Page, PageQuery};
use crate::domain::order::{parse_amount, parse_description, Currency};
use crate::domain::split::{parse_splits, ChargeType, SplitFields, SplitsRefused};
use crate::domain::store::Metadata;
use crate::domain::{Invalid, OrderId, RequestKey};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{JsonBody, QueryParams};
use crate::http::AppState;
use crate::service::marketplace::{self, MultiVendorInput};
use crate::service::order_view::OrderView;
use crate::service::orders::{self, OrderInput};
use crate::service::refunds::{self, RefundView};

fn order_id(raw: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(raw).map_err(|_| ApiError::not_found("order"))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderIn {
    /// In the currency's smallest unit, as Stripe counts it.
    amount: i64,
    /// Three-letter ISO code, lowercase.
    currency: String,
    description: Option<String>,
    /// One of the store's customers (`cus_…` as Bursar names them).
    customer_id: Option<String>,
    /// The platform's fee, for stores connected through Connect.
    application_fee_amount: Option<i64>,
    metadata: Option<BTreeMap<String, String>>,
    /// Where the hosted payment page's result offers the buyer a way back (a URL under
    /// `BURSAR_RETURN_URL_ALLOWLIST`).
    return_url: Option<String>,
    /// `direct` (on the store's account) or `destination` (on the platform, the store's share
    /// transferred by Stripe; connected stores only). By default destination for Express and v2
    /// accounts, direct otherwise.
    charge_type: Option<String>,
    /// For a destination charge: made on the connected account's behalf.
    on_behalf_of: Option<bool>,
    /// For a destination charge: the store's part (`transfer_data[amount]`), instead of
    /// `application_fee_amount`; the platform keeps the rest.
    transfer_amount: Option<i64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitIn {
    /// A store connected through Connect (`st_…`).
    store_id: String,
    /// The store's part, in the currency's smallest unit.
    amount: i64,
    description: Option<String>,
    /// If given, the order's currency (a transfer is made in the charge's currency).
    currency: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MultiVendorOrderIn {
    /// The whole cart, in the currency's smallest unit; the platform keeps `amount − Σ splits`.
    amount: i64,
    currency: String,
    /// One per store, each store once.
    splits: Vec<SplitIn>,
    description: Option<String>,
    /// A customer of the platform's own account (`cus_…`).
    customer_id: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
    /// Where the hosted payment page's result offers the buyer a way back.
    return_url: Option<String>,
}

/// A customer id's shape: `prefixes`, then letters, digits and underscores (at most 255).
fn customer_id(
    id: Option<String>,
    prefixes: &[&str],
    message: &str,
) -> Result<Option<String>, Invalid> {
    match id {
        Some(c)
            if !prefixes.iter().any(|p| c.starts_with(p))
                || c.len() > 255
                || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            Err(Invalid::new("customer_id", message))
        }
        id => Ok(id),
    }
}

impl TryFrom<OrderIn> for OrderInput {
    type Error = ApiError;

    fn try_from(o: OrderIn) -> Result<Self, ApiError> {
        let currency = Currency::parse(&o.currency)?;
        let amount = parse_amount("amount", o.amount, &currency)?;
        let fee = match o.application_fee_amount {
            Some(f) if f < 0 || f >= amount => {
                return Err(Invalid::new(
                    "application_fee_amount",
                    "must be at least 0 and less than the amount",
                )
                .into())
            }
            fee => fee,
        };
        Ok(OrderInput {
            amount,
            currency,
            application_fee_amount: fee,
            description: parse_description(o.description)?,
            customer_id: customer_id(
                o.customer_id,
                &["cu_", "cus_"],
                "must be a customer id (cu_… or cus_…)",
            )?,
            metadata: Metadata::parse(o.metadata.unwrap_or_default())?,
            return_url: o.return_url,
            charge_type: o
                .charge_type
                .as_deref()
                .map(ChargeType::parse_for_store)
                .transpose()?,
            on_behalf_of: o.on_behalf_of.unwrap_or(false),
            transfer_amount: o.transfer_amount,
        })
    }
}

impl TryFrom<MultiVendorOrderIn> for MultiVendorInput {
    type Error = ApiError;

    fn try_from(o: MultiVendorOrderIn) -> Result<Self, ApiError> {
        let currency = Currency::parse(&o.currency)?;
        let amount = parse_amount("amount", o.amount, &currency)?;
        let fields = o
            .splits
            .into_iter()
            .map(|s| SplitFields {
                store_id: s.store_id,
                amount: s.amount,
                description: s.description,
                currency: s.currency,
            })
            .collect();
        let splits = parse_splits(fields, amount, &currency).map_err(|e| match e {
            SplitsRefused::Invalid(i) => ApiError::from(i),
            SplitsRefused::CurrencyMismatch(m) => ApiError::bad_request("currency_mismatch", m),
            SplitsRefused::ExceedAmount(m) => ApiError::bad_request("splits_exceed_amount", m),
        })?;
        Ok(MultiVendorInput {
            amount,
            currency,
            splits,
            description: parse_description(o.description)?,
            customer_id: customer_id(
                o.customer_id,
                &["cus_"],
                "must be a customer of the platform's own account (cus_…)",
            )?,
            metadata: Metadata::parse(o.metadata.unwrap_or_default())?,
            return_url: o.return_url,
        })
    }
}

/// Create an order: a PaymentIntent on the store's account, ready for Stripe.js or the hosted
/// checkout page. Retried with the same `Idempotency-Key`, it never charges twice.
#[utoipa::path(post, path = "/stores/{id}/orders", tag = "orders", operation_id = "create_order",
    params(("id" = String, Path, description = "The store's id (`st_…`)")),
    request_body = OrderIn,
    responses(
        (status = 201, description = "The order, pending payment", body = OrderView),
        (status = 400, description = "A field is invalid, or a fee on a store without Connect", body = ErrorBody),
        (status = 404, description = "No such store", body = ErrorBody),
        (status = 409, description = "The store cannot take payments now (not connected, deauthorized, charges disabled, suspended)", body = ErrorBody),
        (status = 422, description = "Stripe refused the payment", body = ErrorBody),
        (status = 502, description = "Stripe could not be reached; retry with the same Idempotency-Key", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request_key: Option<Extension<RequestKey>>,
    JsonBody(input): JsonBody<OrderIn>,
) -> ApiResult<(StatusCode, Json<OrderView>)> {
    let store = store_id(&id)?;
    let input = OrderInput::try_from(input)?;
    let key = request_key.map(|Extension(k)| k);
    let order = orders::create(&state.services, &store, input, key.as_ref()).await?;
    Ok((StatusCode::CREATED, Json(order)))
}

/// Create a multi-vendor order: one PaymentIntent on the platform for the whole cart; once
/// Stripe says it is paid, one transfer per split to its store's account (exactly once, whatever
/// is retried). Retried with the same `Idempotency-Key`, it never charges twice.
#[utoipa::path(post, path = "/orders", tag = "orders", operation_id = "create_multi_vendor_order",
    request_body = MultiVendorOrderIn,
    responses(
        (status = 201, description = "The order, pending payment, with a pending transfer per split", body = OrderView),
        (status = 400, description = "A field is invalid; a split names an unknown or keys store, a non-positive amount, another currency, or the splits exceed the amount", body = ErrorBody),
        (status = 409, description = "A split's store cannot receive transfers now (not connected, deauthorized, onboarding unfinished, another mode, suspended)", body = ErrorBody),
        (status = 422, description = "Stripe refused the payment", body = ErrorBody),
        (status = 502, description = "Stripe could not be reached; retry with the same Idempotency-Key", body = ErrorBody),
    ))]
pub async fn create_multi_vendor(
    State(state): State<AppState>,
    request_key: Option<Extension<RequestKey>>,
    JsonBody(input): JsonBody<MultiVendorOrderIn>,
) -> ApiResult<(StatusCode, Json<OrderView>)> {
    let input = MultiVendorInput::try_from(input)?;
    let key = request_key.map(|Extension(k)| k);
    let order = marketplace::create(&state.services, input, key.as_ref()).await?;
    Ok((StatusCode::CREATED, Json(order)))
}

#[utoipa::path(get, path = "/orders/{id}", tag = "orders", operation_id = "get_order",
    params(("id" = String, Path, description = "The order's id (`ord_…`)")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 404, description = "No such order", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<OrderView>> {
    Ok(Json(orders::get(&state.services, &order_id(&id)?).await?))
}

/// A store's orders, newest first.
#[utoipa::path(get, path = "/stores/{id}/orders", tag = "orders", operation_id = "list_orders",
    params(("id" = String, Path, description = "The store's id (`st_…`)"), PageQuery),
    responses(
        (status = 200, description = "A page of orders", body = Page<OrderView>),
        (status = 400, description = "A bad cursor or limit", body = ErrorBody),
        (status = 404, description = "No such store", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<PageQuery>,
) -> ApiResult<Json<Page<OrderView>>> {
    super::cursor(q.cursor.as_deref(), OrderId::parse)?;
    let page = orders::list(
        &state.services,
        &store_id(&id)?,
        q.cursor.as_deref(),
        limit(q.limit)?,
    )
    .await?;
    Ok(super::page(page.data, page.next_cursor))
}

/// Re-check the order at Stripe now, for when a webhook is late or lost.
#[utoipa::path(post, path = "/orders/{id}/sync", tag = "orders", operation_id = "sync_order",
    params(("id" = String, Path, description = "The order's id (`ord_…`)")),
    responses(
        (status = 200, description = "The order as Stripe has it", body = OrderView),
        (status = 400, description = "The store has no usable credentials", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 422, description = "Stripe refused", body = ErrorBody),
        (status = 502, description = "Stripe could not be reached", body = ErrorBody),
    ))]
pub async fn sync(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<OrderView>> {
    Ok(Json(orders::sync(&state.services, &order_id(&id)?).await?))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundIn {
    /// Default: all that is not yet refunded.
    amount: Option<i64>,
    /// `duplicate`, `fraudulent` or `requested_by_customer`.
    reason: Option<String>,
}

/// Refund a paid order, wholly or in part. The body may be empty.
#[utoipa::path(post, path = "/orders/{id}/refunds", tag = "orders", operation_id = "refund_order",
    params(("id" = String, Path, description = "The order's id (`ord_…`)")),
    request_body(content = Option<RefundIn>, description = "Optional; an empty body refunds what is left"),
    responses(
        (status = 201, description = "The refund", body = RefundView),
        (status = 400, description = "Malformed JSON or an invalid amount or reason", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "The order is not paid, or nothing is left to refund", body = ErrorBody),
        (status = 422, description = "Stripe refused the refund", body = ErrorBody),
        (status = 502, description = "Stripe could not be reached; retry with the same Idempotency-Key", body = ErrorBody),
    ))]
pub async fn refund(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request_key: Option<Extension<RequestKey>>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<RefundView>)> {
    // Every field is optional: an empty body refunds what is left.
    let input: RefundIn = if body.iter().all(u8::is_ascii_whitespace) {
        RefundIn::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("invalid_json", format!("malformed JSON: {e}")))?
    };
    let refund = refunds::refund(
        &state.services,
        &order_id(&id)?,
        input.amount,
        input.reason,
        request_key.map(|Extension(k)| k).as_ref(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(refund)))
}

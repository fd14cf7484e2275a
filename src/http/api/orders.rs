//! Orders, their re-check at Stripe, and refunds.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;

use super::{limit, store_id};
use crate::domain::OrderId;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{JsonBody, QueryParams};
use crate::http::idempotency::RequestKey;
use crate::http::AppState;
use crate::service::orders::{self, OrderInput, OrderView, RefundView};

fn order_id(raw: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(raw).map_err(|_| ApiError::not_found("order"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderIn {
    amount: i64,
    currency: String,
    description: Option<String>,
    customer_id: Option<String>,
    application_fee_amount: Option<i64>,
    metadata: Option<BTreeMap<String, String>>,
}

pub async fn create(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request_key: Option<Extension<RequestKey>>,
    JsonBody(input): JsonBody<OrderIn>,
) -> ApiResult<(StatusCode, Json<OrderView>)> {
    let input = OrderInput {
        amount: input.amount,
        currency: input.currency,
        description: input.description,
        customer_id: input.customer_id,
        application_fee_amount: input.application_fee_amount,
        metadata: input.metadata,
    };
    let key = request_key.map(|Extension(k)| k.0);
    let order = orders::create(&state.services, &store_id(&id)?, input, key.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(order)))
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<OrderView>> {
    Ok(Json(orders::get(&state.services, &order_id(&id)?).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    cursor: Option<String>,
    limit: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    if q.cursor
        .as_deref()
        .is_some_and(|c| OrderId::parse(c).is_err())
    {
        return Err(ApiError::bad_request(
            "invalid_cursor",
            "cursor is not valid",
        ));
    }
    let page = orders::list(
        &state.services,
        &store_id(&id)?,
        q.cursor.as_deref(),
        limit(q.limit)?,
    )
    .await?;
    Ok(super::page(page.data, page.next_cursor))
}

pub async fn sync(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<OrderView>> {
    Ok(Json(orders::sync(&state.services, &order_id(&id)?).await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RefundIn {
    amount: Option<i64>,
    reason: Option<String>,
}

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
    let refund = orders::refund(
        &state.services,
        &order_id(&id)?,
        input.amount,
        input.reason,
        request_key.map(|Extension(k)| k.0).as_deref(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(refund)))
}

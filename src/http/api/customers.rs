//! A store's customers.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::{limit, store_id, Page, PageQuery};
use crate::domain::CustomerId;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{JsonBody, QueryParams};
use crate::http::AppState;
use crate::service::customers::{self, CustomerInput, CustomerView};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerIn {
    email: String,
    name: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
}

/// Create a customer of the store, at Stripe on the store's account.
#[utoipa::path(post, path = "/stores/{id}/customers", tag = "customers",
    operation_id = "create_customer",
    params(("id" = String, Path, description = "The store's id (`st_…`)")),
    request_body = CustomerIn,
    responses(
        (status = 201, description = "The customer", body = CustomerView),
        (status = 400, description = "A field is invalid", body = ErrorBody),
        (status = 404, description = "No such store", body = ErrorBody),
        (status = 409, description = "The store is not connected", body = ErrorBody),
        (status = 422, description = "Stripe refused", body = ErrorBody),
        (status = 502, description = "Stripe could not be reached", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<CustomerIn>,
) -> ApiResult<(StatusCode, Json<CustomerView>)> {
    let input = CustomerInput {
        email: input.email,
        name: input.name,
        metadata: input.metadata,
    };
    let customer = customers::create(&state.services, &store_id(&id)?, input).await?;
    Ok((StatusCode::CREATED, Json(customer)))
}

/// A store's customers, newest first (deleted ones too, marked so).
#[utoipa::path(get, path = "/stores/{id}/customers", tag = "customers",
    operation_id = "list_customers",
    params(("id" = String, Path, description = "The store's id (`st_…`)"), PageQuery),
    responses(
        (status = 200, description = "A page of customers", body = Page<CustomerView>),
        (status = 400, description = "A bad cursor or limit", body = ErrorBody),
        (status = 404, description = "No such store", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<PageQuery>,
) -> ApiResult<Json<Page<CustomerView>>> {
    let after = super::cursor(q.cursor.as_deref(), CustomerId::parse)?;
    let (data, next) = customers::list(
        &state.services,
        &store_id(&id)?,
        after.as_ref(),
        limit(q.limit)?,
    )
    .await?;
    Ok(super::page(data, next))
}

#[utoipa::path(get, path = "/customers/{id}", tag = "customers", operation_id = "get_customer",
    params(("id" = String, Path, description = "The customer's id (`cus_…` as Bursar names it)")),
    responses(
        (status = 200, description = "The customer", body = CustomerView),
        (status = 404, description = "No such customer", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<CustomerView>> {
    let id = CustomerId::parse(&id).map_err(|_| ApiError::not_found("customer"))?;
    Ok(Json(customers::get(&state.services, &id).await?))
}

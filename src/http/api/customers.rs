//! A store's customers.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::store_id;
use crate::domain::CustomerId;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::JsonBody;
use crate::http::AppState;
use crate::service::customers::{self, CustomerInput, CustomerView};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerIn {
    email: String,
    name: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
}

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

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<CustomerView>> {
    let id = CustomerId::parse(&id).map_err(|_| ApiError::not_found("customer"))?;
    Ok(Json(customers::get(&state.services, &id).await?))
}

//! The platform's subscription for a store (vendor billing).

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;

use super::store_id;
use crate::http::error::ApiResult;
use crate::http::extract::{JsonBody, QueryParams};
use crate::http::AppState;
use crate::service::billing::{self, SubscriptionView};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionIn {
    price_id: String,
    trial_days: Option<i64>,
}

pub async fn put(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<SubscriptionIn>,
) -> ApiResult<Json<SubscriptionView>> {
    Ok(Json(
        billing::put(
            &state.services,
            &store_id(&id)?,
            &input.price_id,
            input.trial_days,
        )
        .await?,
    ))
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<SubscriptionView>> {
    Ok(Json(billing::get(&state.services, &store_id(&id)?).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelQuery {
    /// Cancel at once instead of at the end of the period.
    now: Option<bool>,
}

pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<CancelQuery>,
) -> ApiResult<Json<SubscriptionView>> {
    Ok(Json(
        billing::cancel(&state.services, &store_id(&id)?, q.now.unwrap_or(false)).await?,
    ))
}

//! The platform's subscription for a store (vendor billing).

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;

use super::store_id;
use crate::http::error::{ApiResult, ErrorBody};
use crate::http::extract::{JsonBody, QueryParams};
use crate::http::AppState;
use crate::service::billing::{self, SubscriptionView};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionIn {
    /// A recurring Price (or legacy Plan) of the platform account.
    price_id: String,
    /// Days of trial before the first charge (new subscriptions only).
    trial_days: Option<i64>,
}

/// Subscribe the store's vendor to a platform price, or move it to another price.
#[utoipa::path(put, path = "/stores/{id}/subscription", tag = "billing",
    operation_id = "put_subscription",
    params(("id" = String, Path, description = "The store's id (`st_…`)")),
    request_body = SubscriptionIn,
    responses(
        (status = 200, description = "The store's subscription", body = SubscriptionView),
        (status = 400, description = "A field is invalid, or the price is inactive or not recurring", body = ErrorBody),
        (status = 404, description = "No such store", body = ErrorBody),
        (status = 409, description = "An earlier create is not yet confirmed (`subscription_pending`)", body = ErrorBody),
        (status = 422, description = "Stripe refused", body = ErrorBody),
        (status = 502, description = "Stripe could not be reached", body = ErrorBody),
    ))]
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

#[utoipa::path(get, path = "/stores/{id}/subscription", tag = "billing",
    operation_id = "get_subscription",
    params(("id" = String, Path, description = "The store's id (`st_…`)")),
    responses(
        (status = 200, description = "The store's subscription", body = SubscriptionView),
        (status = 404, description = "No such store, or it has no subscription", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<SubscriptionView>> {
    Ok(Json(billing::get(&state.services, &store_id(&id)?).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CancelQuery {
    /// Cancel at once instead of at the end of the period.
    now: Option<bool>,
}

/// Cancel the store's subscription at the end of the period, or now with `?now=true`.
#[utoipa::path(delete, path = "/stores/{id}/subscription", tag = "billing",
    operation_id = "cancel_subscription",
    params(("id" = String, Path, description = "The store's id (`st_…`)"), CancelQuery),
    responses(
        (status = 200, description = "The store's subscription", body = SubscriptionView),
        (status = 400, description = "A bad query", body = ErrorBody),
        (status = 404, description = "No such store, or it has no subscription", body = ErrorBody),
        (status = 409, description = "The subscription has already ended", body = ErrorBody),
        (status = 422, description = "Stripe refused", body = ErrorBody),
        (status = 502, description = "Stripe could not be reached", body = ErrorBody),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<CancelQuery>,
) -> ApiResult<Json<SubscriptionView>> {
    Ok(Json(
        billing::cancel(&state.services, &store_id(&id)?, q.now.unwrap_or(false)).await?,
    ))
}

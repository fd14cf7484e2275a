//! Stripe Checkout sessions (payment links) for a store's order.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::store_id;
use crate::http::error::{ApiResult, ErrorBody};
use crate::http::extract::JsonBody;
use crate::http::AppState;
use crate::service::checkout_sessions::{self, LineItem, SessionInput, SessionView};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionIn {
    line_items: Vec<LineItem>,
    success_url: String,
    cancel_url: String,
    /// Only `payment` (the default).
    mode: Option<String>,
    application_fee_amount: Option<i64>,
    metadata: Option<BTreeMap<String, String>>,
    /// A customer of the store (Bursar's `cu_…` id or Stripe's `cus_…`): the session is
    /// theirs at Stripe.
    customer_id: Option<String>,
}

/// A Stripe Checkout Session (a hosted payment link) on the store's account, with its order.
#[utoipa::path(post, path = "/stores/{id}/checkout-sessions", tag = "checkout",
    operation_id = "create_checkout_session",
    params(("id" = String, Path, description = "The store's id (`st_…`)")),
    request_body = SessionIn,
    responses(
        (status = 201, description = "The session; send the buyer to `url`", body = SessionView),
        (status = 400, description = "A field is invalid, or a fee on a store without Connect", body = ErrorBody),
        (status = 404, description = "No such store", body = ErrorBody),
        (status = 409, description = "The store cannot take payments now", body = ErrorBody),
        (status = 422, description = "Stripe refused", body = ErrorBody),
        (status = 502, description = "Stripe could not be reached", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<SessionIn>,
) -> ApiResult<(StatusCode, Json<SessionView>)> {
    let input = SessionInput {
        line_items: input.line_items,
        success_url: input.success_url,
        cancel_url: input.cancel_url,
        mode: input.mode,
        application_fee_amount: input.application_fee_amount,
        metadata: input.metadata,
        customer_id: input.customer_id,
    };
    let session = checkout_sessions::create(&state.services, &store_id(&id)?, input).await?;
    Ok((StatusCode::CREATED, Json(session)))
}

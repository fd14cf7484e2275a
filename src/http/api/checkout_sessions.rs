//! Stripe Checkout sessions (payment links) for a store's order.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::store_id;
use crate::http::error::ApiResult;
use crate::http::extract::JsonBody;
use crate::http::AppState;
use crate::service::checkout_sessions::{self, LineItem, SessionInput, SessionView};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionIn {
    line_items: Vec<LineItem>,
    success_url: String,
    cancel_url: String,
    mode: Option<String>,
    application_fee_amount: Option<i64>,
    metadata: Option<BTreeMap<String, String>>,
}

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
    };
    let session = checkout_sessions::create(&state.services, &store_id(&id)?, input).await?;
    Ok((StatusCode::CREATED, Json(session)))
}

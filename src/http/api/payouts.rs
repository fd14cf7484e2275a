//! A store's money at Stripe: its balance (live) and its payouts (from Stripe's events).

use axum::extract::{Path, State};
use axum::Json;

use super::{limit, store_id, Page, PageQuery};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::QueryParams;
use crate::http::AppState;
use crate::service::payouts::{self, BalanceView, PayoutView};

/// A payout id as Stripe names them (`po_…`).
fn payout_id(raw: &str) -> Result<String, ApiError> {
    let ok = raw.starts_with("po_")
        && raw.len() <= 255
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then(|| raw.to_owned()).ok_or(ApiError::bad_request(
        "invalid_cursor",
        "cursor is not valid",
    ))
}

/// The store's balance, read live from Stripe in the store's account.
#[utoipa::path(get, path = "/stores/{id}/balance", tag = "payouts", operation_id = "get_balance",
    params(("id" = String, Path, description = "The store's id (`st_…`)")),
    responses(
        (status = 200, description = "Available and pending funds per currency", body = BalanceView),
        (status = 404, description = "No such store", body = ErrorBody),
        (status = 409, description = "The store has no Stripe connection", body = ErrorBody),
        (status = 502, description = "Stripe could not be reached", body = ErrorBody),
    ))]
pub async fn balance(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<BalanceView>> {
    Ok(Json(
        payouts::balance(&state.services, &store_id(&id)?).await?,
    ))
}

/// The store's payouts, newest first, as Stripe's `payout.*` events described them.
#[utoipa::path(get, path = "/stores/{id}/payouts", tag = "payouts", operation_id = "list_payouts",
    params(("id" = String, Path, description = "The store's id (`st_…`)"), PageQuery),
    responses(
        (status = 200, description = "A page of payouts", body = Page<PayoutView>),
        (status = 400, description = "A bad cursor or limit", body = ErrorBody),
        (status = 404, description = "No such store", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<PageQuery>,
) -> ApiResult<Json<Page<PayoutView>>> {
    let after = q.cursor.as_deref().map(payout_id).transpose()?;
    let page = payouts::list(
        &state.services,
        &store_id(&id)?,
        after.as_deref(),
        limit(q.limit)?,
    )
    .await?;
    Ok(super::page(page.data, page.next_cursor))
}

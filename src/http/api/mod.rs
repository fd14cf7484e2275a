//! `/api/v1`: one module per resource.

pub mod api_keys;
pub mod checkout_sessions;
pub mod connection;
pub mod customers;
pub mod events;
pub mod notifications;
pub mod onboarding;
pub mod orders;
pub mod payouts;
pub mod stores;
pub mod subscription;

use super::error::ApiError;
use crate::domain::StoreId;

/// A path id that cannot be a store id names no store: 404, like any unknown id.
pub fn store_id(raw: &str) -> Result<StoreId, ApiError> {
    StoreId::parse(raw).map_err(|_| ApiError::not_found("store"))
}

/// Page size: 1..=100, default 20.
pub fn limit(raw: Option<i64>) -> Result<i64, ApiError> {
    match raw {
        None => Ok(20),
        Some(n) if (1..=100).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::bad_request(
            "invalid_request",
            "limit must be between 1 and 100",
        )),
    }
}

/// The query of a paged list.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<i64>,
}

/// A list's `cursor`, parsed as what it names (an id, a sequence number); a bad one is 400
/// `invalid_cursor`.
pub fn cursor<T, E>(
    raw: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, ApiError> {
    raw.map(|c| {
        parse(c).map_err(|_| ApiError::bad_request("invalid_cursor", "cursor is not valid"))
    })
    .transpose()
}

/// A page of a list, in Stripe's list shape plus the cursor for the next page.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<T>,
    pub has_more: bool,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

pub fn page<T>(data: Vec<T>, next_cursor: Option<String>) -> axum::Json<Page<T>> {
    axum::Json(Page {
        object: "list",
        data,
        has_more: next_cursor.is_some(),
        next_cursor,
    })
}

/// What deleting a store answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Deleted {
    pub id: String,
    /// Always `store`.
    pub object: &'static str,
    pub deleted: bool,
}

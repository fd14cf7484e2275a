//! Onboarding a store's connected account, the merchant key-entry link, and Express login links.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::store_id;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::JsonBody;
use crate::http::AppState;
use crate::service::links;
use crate::service::onboarding::{
    self, LoginLinkView, OnboardingInput, OnboardingType, OnboardingView,
};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OnboardingIn {
    #[serde(rename = "type")]
    kind: OnboardingType,
    /// Where the merchant lands afterwards; must match `BURSAR_RETURN_URL_ALLOWLIST`.
    return_url: String,
    /// Where an expired Account Link sends the merchant (default: a fresh link through Bursar).
    refresh_url: Option<String>,
}

/// Start onboarding a store's Stripe account: Connect OAuth (`standard`) or an Account Link
/// for a new Express or Accounts v2 account.
#[utoipa::path(post, path = "/stores/{id}/onboarding", tag = "onboarding",
    operation_id = "start_onboarding",
    params(("id" = String, Path, description = "The store's id (`st_…`)")),
    request_body = OnboardingIn,
    responses(
        (status = 200, description = "Where to send the merchant", body = OnboardingView),
        (status = 400, description = "A return URL off the allow-list, or Connect is not configured", body = ErrorBody),
        (status = 404, description = "No such store", body = ErrorBody),
        (status = 409, description = "The store is already connected", body = ErrorBody),
        (status = 422, description = "Stripe refused to create the account or link", body = ErrorBody),
        (status = 502, description = "Stripe could not be reached", body = ErrorBody),
    ))]
pub async fn start(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<OnboardingIn>,
) -> ApiResult<Json<OnboardingView>> {
    let input = OnboardingInput {
        kind: input.kind,
        return_url: input.return_url,
        refresh_url: input.refresh_url,
    };
    Ok(Json(
        onboarding::start(&state.services, &store_id(&id)?, input).await?,
    ))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectLinkIn {
    /// Where the page returns the merchant; must match `BURSAR_RETURN_URL_ALLOWLIST`.
    return_url: Option<String>,
    /// Seconds the link stays valid: 60 to 7 days, default an hour.
    expires_in: Option<i64>,
}

/// A signed link to Bursar's key-entry page, to give a merchant who pastes API keys.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectLinkView {
    /// Always `connect_link`.
    pub object: &'static str,
    pub store_id: String,
    pub url: String,
    /// Unix seconds after which `url` no longer works.
    pub expires_at: i64,
}

/// A signed link to the key-entry page for the store's merchant. The body may be empty.
#[utoipa::path(post, path = "/stores/{id}/connect-link", tag = "onboarding",
    operation_id = "create_connect_link",
    params(("id" = String, Path, description = "The store's id (`st_…`)")),
    request_body(content = Option<ConnectLinkIn>, description = "Optional; an empty body takes the defaults"),
    responses(
        (status = 200, description = "The link", body = ConnectLinkView),
        (status = 400, description = "Malformed JSON, a return URL off the allow-list or a bad lifetime", body = ErrorBody),
        (status = 404, description = "No such store", body = ErrorBody),
    ))]
pub async fn connect_link(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<ConnectLinkView>> {
    // Every field is optional, so an empty body is a valid request.
    let input: ConnectLinkIn = if body.iter().all(u8::is_ascii_whitespace) {
        ConnectLinkIn::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("invalid_json", format!("malformed JSON: {e}")))?
    };
    let store = store_id(&id)?;
    let (url, expires_at) = links::connect_link(
        &state.services,
        &store,
        input.return_url.as_deref(),
        input.expires_in,
    )
    .await?;
    Ok(Json(ConnectLinkView {
        object: "connect_link",
        store_id: store.to_string(),
        url,
        expires_at,
    }))
}

/// A single-use link into the Express Dashboard of the store's account.
#[utoipa::path(post, path = "/stores/{id}/account/login-link", tag = "onboarding",
    operation_id = "create_login_link",
    params(("id" = String, Path, description = "The store's id (`st_…`)")),
    responses(
        (status = 200, description = "The link", body = LoginLinkView),
        (status = 400, description = "The store's account is not an Express account", body = ErrorBody),
        (status = 404, description = "No such store", body = ErrorBody),
        (status = 422, description = "Stripe refused", body = ErrorBody),
        (status = 502, description = "Stripe could not be reached", body = ErrorBody),
    ))]
pub async fn login_link(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<LoginLinkView>> {
    Ok(Json(
        onboarding::login_link(&state.services, &store_id(&id)?).await?,
    ))
}

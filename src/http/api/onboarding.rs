//! Onboarding a store's connected account, the merchant key-entry link, and Express login links.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::store_id;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::JsonBody;
use crate::http::AppState;
use crate::service::links;
use crate::service::onboarding::{
    self, LoginLinkView, OnboardingInput, OnboardingType, OnboardingView,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnboardingIn {
    #[serde(rename = "type")]
    kind: OnboardingType,
    return_url: String,
    refresh_url: Option<String>,
}

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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConnectLinkIn {
    return_url: Option<String>,
    /// Seconds the link stays valid: 60 to 7 days, default an hour.
    expires_in: Option<i64>,
}

pub async fn connect_link(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
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
    Ok(Json(json!({
        "object": "connect_link",
        "store_id": store,
        "url": url,
        "expires_at": expires_at,
    })))
}

pub async fn login_link(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<LoginLinkView>> {
    Ok(Json(
        onboarding::login_link(&state.services, &store_id(&id)?).await?,
    ))
}

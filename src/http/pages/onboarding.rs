//! The ends of onboarding at Stripe: the Standard OAuth callback, and Bursar's refresh URL for
//! an Account Link that expired or was used.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{link_refused, message, unavailable};
use crate::http::AppState;
use crate::service::links::{self, LinkError};
use crate::service::onboarding::{self, Callback, CallbackParams};

/// `GET /stripe/oauth/callback`: the end of Standard OAuth.
#[utoipa::path(get, path = "/oauth/callback", tag = "pages", operation_id = "oauth_callback",
    params(
        ("code" = Option<String>, Query, description = "Stripe's authorization code"),
        ("state" = Option<String>, Query, description = "The state Bursar issued with the authorize URL"),
        ("error" = Option<String>, Query, description = "Set when the merchant declined"),
        ("error_description" = Option<String>, Query),
        ("scope" = Option<String>, Query),
    ),
    responses(
        (status = 303, description = "Connected: on to the onboarding's return URL"),
        (status = 200, description = "Connected (no return URL) or declined", content_type = "text/html", body = String),
        (status = 400, description = "The callback is not valid (state, code, mode)", content_type = "text/html", body = String),
        (status = 409, description = "The store was connected meanwhile", content_type = "text/html", body = String),
        (status = 503, description = "Stripe or the database could not answer", content_type = "text/html", body = String),
    ))]
pub async fn oauth_callback(
    State(state): State<AppState>,
    Query(params): Query<CallbackParams>,
) -> Response {
    match onboarding::oauth_callback(&state.services, params).await {
        // Checked when the state was issued, and again now in case the allow-list shrank.
        Ok(Callback::Connected { return_url })
            if !return_url.is_empty() && links::check_return_url(&state.services, &return_url).is_ok() =>
        {
            Redirect::to(&return_url).into_response()
        }
        Ok(Callback::Connected { .. }) => message(
            StatusCode::OK,
            "Stripe account connected",
            "Your Stripe account is connected. You can close this page.",
            None,
        ),
        Ok(Callback::Denied { return_url }) => message(
            StatusCode::OK,
            "Stripe account not connected",
            "You declined to connect your Stripe account, so nothing was changed. You can start again from the platform at any time.",
            return_url.as_deref().filter(|u| !u.is_empty()),
        ),
        Ok(Callback::Refused { status, message: text }) => message(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            "Stripe account not connected",
            &text,
            None,
        ),
        Err(e) => {
            tracing::error!(error = %e, "OAuth callback failed");
            unavailable()
        }
    }
}

#[derive(Deserialize)]
pub struct RefreshParams {
    grant: Option<String>,
}

/// `GET /stripe/onboarding/refresh`: a fresh Account Link for an expired or used one.
#[utoipa::path(get, path = "/onboarding/refresh", tag = "pages", operation_id = "onboarding_refresh",
    params(("grant" = Option<String>, Query, description = "The signed grant in the refresh URL")),
    responses(
        (status = 303, description = "On to a fresh Account Link"),
        (status = 400, description = "The link is not signed", content_type = "text/html", body = String),
        (status = 403, description = "The grant is expired or altered", content_type = "text/html", body = String),
        (status = 503, description = "Stripe could not make a link now", content_type = "text/html", body = String),
    ))]
pub async fn onboarding_refresh(
    State(state): State<AppState>,
    Query(params): Query<RefreshParams>,
) -> Response {
    let Some(grant) = params.grant else {
        return link_refused(LinkError::Unsigned);
    };
    match onboarding::refresh(&state.services, &grant).await {
        Ok(Ok(url)) => Redirect::to(&url).into_response(),
        Ok(Err(e)) => link_refused(e),
        Err(e) => {
            tracing::error!(error = %e, "could not mint a new onboarding link");
            unavailable()
        }
    }
}

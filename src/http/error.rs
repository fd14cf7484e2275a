//! `ApiError`: the one error type of the HTTP layer, written as the SPEC's
//! `{"error":{"code","message"}}`. 5xx bodies say nothing internal; the log says everything.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::service::ServiceError;
use crate::stripe::StripeError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "a valid API key is required: Authorization: Bearer bsr_…",
        )
    }

    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error; see the server log",
        )
    }
}

/// Every error's body, as the OpenAPI document describes it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable, e.g. `not_found`, `invalid_request`, `idempotency_key_reused`.
    pub code: &'static str,
    /// For people; never contains a secret.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<crate::domain::Invalid> for ApiError {
    fn from(i: crate::domain::Invalid) -> Self {
        ApiError::from(ServiceError::Invalid(i))
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(what) => ApiError::not_found(what),
            ServiceError::Invalid(i) => ApiError::bad_request("invalid_request", i.to_string()),
            ServiceError::Conflict { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            ServiceError::Refused { code, message } => ApiError::bad_request(code, message),
            ServiceError::StripeRefused(StripeError::Api {
                status,
                message,
                code,
                ..
            }) => {
                let api_code = if matches!(status, 401 | 403) {
                    "stripe_key_rejected"
                } else {
                    "stripe_request_refused"
                };
                let detail = code.map(|c| format!(" ({c})")).unwrap_or_default();
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    api_code,
                    format!("Stripe refused: {message}{detail}"),
                )
            }
            ServiceError::StripeRefused(StripeError::PlatformKeyMissing)
            | ServiceError::StripeUnavailable(StripeError::PlatformKeyMissing) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "platform_not_configured",
                "this needs the platform's own Stripe account, and STRIPE_SECRET_KEY is not set: set it (and restart), or use `serve --dev --local-stripe` to try Bursar",
            ),
            ServiceError::StripeRefused(other) | ServiceError::StripeUnavailable(other) => {
                tracing::error!(error = %other, "Stripe call failed");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "stripe_unavailable",
                    "Stripe could not be reached; try again",
                )
            }
            ServiceError::Db(e) => {
                tracing::error!(error = ?e, "database failure");
                ApiError::internal()
            }
            ServiceError::Vault(e) => {
                tracing::error!(error = %e, "vault failure");
                ApiError::internal()
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

//! The webhook door: verify the signature over the raw bytes, read the envelope, and store the
//! event durably before answering 2xx. Nothing is applied here; workers do that.
//!
//! Which secrets are tried is decided by the route alone (platform, Connect, or the store named
//! in the path); nothing in an unverified payload chooses a secret.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::FromRequestParts;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::SecretString;
use serde::Serialize;

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::db::inbox::{Inserted, NewEvent};
use crate::domain::StoreId;
use crate::service::connections;
use crate::stripe::event::Envelope;
use crate::stripe::signature;

/// Which endpoint a delivery came through.
enum Door {
    Platform,
    Connect,
    /// A store's own endpoint, with the account its secret belonged to when the event came in.
    Store {
        store: StoreId,
        account: Option<String>,
    },
}

impl Door {
    /// The inbox's uniqueness domain for this door's events.
    fn source(&self) -> String {
        match self {
            Door::Platform => "platform".into(),
            Door::Connect => "connect".into(),
            Door::Store { store, .. } => format!("store:{store}"),
        }
    }

    fn scope(&self) -> &'static str {
        match self {
            Door::Platform => "platform",
            Door::Connect => "connect",
            Door::Store { .. } => "store",
        }
    }
}

/// The `Stripe-Signature` header, taken without copying the request's whole header map.
pub struct SignatureHeader(Option<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for SignatureHeader {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.headers.get("Stripe-Signature").cloned()))
    }
}

/// What a delivery is answered with once the event is stored.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookAck {
    pub received: bool,
    /// Present (and true) when this event id had already come through this endpoint.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// The platform account's endpoint (billing and platform events).
#[utoipa::path(post, path = "/stripe", tag = "webhooks", operation_id = "webhook_platform",
    params(("Stripe-Signature" = String, Header, description = "Stripe's signature over the raw body")),
    request_body(content = serde_json::Value, content_type = "application/json",
        description = "A Stripe event, byte for byte as Stripe signed it"),
    responses(
        (status = 200, description = "Stored durably (or already stored); it is applied in the background", body = WebhookAck),
        (status = 400, description = "A bad signature, a stale timestamp or a body that is not a Stripe event", body = ErrorBody),
        (status = 413, description = "Over 1 MiB: not a Stripe event", body = ErrorBody),
        (status = 503, description = "No signing secret configured, or the inbox cannot store now; Stripe retries", body = ErrorBody),
    ))]
pub async fn platform(
    State(state): State<AppState>,
    signature: SignatureHeader,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let secrets = state.doors.secrets(&state.services, false).await;
    receive(&state, Door::Platform, &secrets, signature, body).await
}

/// The Connect endpoint: events of every connected account (`account` names which).
#[utoipa::path(post, path = "/stripe/connect", tag = "webhooks", operation_id = "webhook_connect",
    params(("Stripe-Signature" = String, Header, description = "Stripe's signature over the raw body")),
    request_body(content = serde_json::Value, content_type = "application/json",
        description = "A Stripe event, byte for byte as Stripe signed it"),
    responses(
        (status = 200, description = "Stored durably (or already stored); it is applied in the background", body = WebhookAck),
        (status = 400, description = "A bad signature, a stale timestamp or a body that is not a Stripe event", body = ErrorBody),
        (status = 413, description = "Over 1 MiB: not a Stripe event", body = ErrorBody),
        (status = 503, description = "No signing secret configured, or the inbox cannot store now; Stripe retries", body = ErrorBody),
    ))]
pub async fn connect(
    State(state): State<AppState>,
    signature: SignatureHeader,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let secrets = state.doors.secrets(&state.services, true).await;
    receive(&state, Door::Connect, &secrets, signature, body).await
}

/// A keys store's own endpoint, verified with that store's signing secret.
#[utoipa::path(post, path = "/stripe/stores/{store_id}", tag = "webhooks", operation_id = "webhook_store",
    params(
        ("store_id" = String, Path, description = "The store's id (`st_…`)"),
        ("Stripe-Signature" = String, Header, description = "Stripe's signature over the raw body"),
    ),
    request_body(content = serde_json::Value, content_type = "application/json",
        description = "A Stripe event, byte for byte as Stripe signed it"),
    responses(
        (status = 200, description = "Stored durably (or already stored); it is applied in the background", body = WebhookAck),
        (status = 400, description = "A bad signature, a stale timestamp or a body that is not a Stripe event", body = ErrorBody),
        (status = 404, description = "No such store", body = ErrorBody),
        (status = 413, description = "Over 1 MiB: not a Stripe event", body = ErrorBody),
        (status = 503, description = "The store has no signing secret, or the inbox cannot store now; Stripe retries", body = ErrorBody),
    ))]
pub async fn store(
    State(state): State<AppState>,
    Path(store_id): Path<String>,
    signature: SignatureHeader,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(store) = StoreId::parse(&store_id) else {
        return ApiError::not_found("store").into_response();
    };
    let (secrets, account) = match connections::store_endpoint(&state.services, &store).await {
        Ok(Some(endpoint)) => (vec![endpoint.secret], endpoint.account_id),
        Ok(None) => match crate::service::stores::require(&state.services, &store).await {
            Ok(_) => (Vec::new(), None),
            Err(e) => return ApiError::from(e).into_response(),
        },
        Err(e) => return ApiError::from(e).into_response(),
    };
    receive(
        &state,
        Door::Store { store, account },
        &secrets,
        signature,
        body,
    )
    .await
}

async fn receive(
    state: &AppState,
    door: Door,
    secrets: &[SecretString],
    signature: SignatureHeader,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let metrics = &state.services.metrics;
    let body = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            metrics.webhook_rejected(door.scope(), "too_large");
            return ApiError::too_large().into_response();
        }
        Err(r) => {
            metrics.webhook_rejected(door.scope(), "body");
            return ApiError::bad_request("invalid_body", r.body_text()).into_response();
        }
    };
    if secrets.is_empty() {
        metrics.webhook_rejected(door.scope(), "not_configured");
        // Fail closed, with a 5xx so Stripe keeps retrying until the secret is configured.
        tracing::warn!(
            scope = door.scope(),
            "webhook refused: no signing secret is configured for this endpoint"
        );
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "webhook_not_configured",
            "no signing secret is configured for this endpoint",
        )
        .into_response();
    }
    let header = signature.0.as_ref().and_then(|v| v.to_str().ok());
    let now = crate::clock::now_ms() / 1000;
    let tolerance = state.services.config.webhook_tolerance;
    let mut verified = signature::verify(header, &body, secrets, tolerance, now);
    let source = door.source();
    if verified.is_err() && !matches!(door, Door::Store { .. }) {
        // A secret stored by `bursar webhooks setup` since the last look: reload, try again.
        if state.doors.reload_if_stale(&state.services).await {
            let secrets = state
                .doors
                .secrets(&state.services, matches!(door, Door::Connect))
                .await;
            verified = signature::verify(header, &body, &secrets, tolerance, now);
        }
    }
    if let Err(e) = verified {
        tracing::info!(scope = door.scope(), reason = %e, "webhook signature rejected");
        metrics.webhook_rejected(door.scope(), "signature");
        state
            .doors
            .failed(&state.services, &source, &e.to_string())
            .await;
        return ApiError::bad_request("invalid_signature", e.to_string()).into_response();
    }
    state.doors.succeeded(&state.services, &source).await;
    let envelope = match Envelope::parse(&body) {
        Ok(e) => e,
        Err(e) => {
            metrics.webhook_rejected(door.scope(), "payload");
            return ApiError::bad_request("invalid_payload", e.to_string()).into_response();
        }
    };
    // The body is no longer shared, so this takes its buffer instead of copying it.
    let Ok(payload) = String::from_utf8(Vec::from(body)) else {
        metrics.webhook_rejected(door.scope(), "payload");
        return ApiError::bad_request("invalid_payload", "body is not UTF-8").into_response();
    };
    // A store's endpoint speaks for the account it was set up for: the event is recorded as
    // that account's, so it can never be applied after the store moves to another account.
    let scope = door.scope();
    let (source, store_id, account_id) = match door {
        Door::Platform => ("platform".to_owned(), None, envelope.account),
        Door::Connect => ("connect".to_owned(), None, envelope.account),
        // An event naming another account is about someone else: recorded so, and ignored.
        Door::Store { store, account } => (
            format!("store:{store}"),
            Some(store.to_string()),
            envelope.account.or(account),
        ),
    };
    let event = NewEvent {
        source,
        scope,
        store_id,
        account_id,
        livemode: envelope.livemode,
        // Bounded by the receive time: a forged far-future `created` could otherwise win every
        // later watermark comparison and block the object's real events forever.
        created: envelope.created.min(now),
        event_id: envelope.id,
        event_type: envelope.event_type,
        payload,
    };
    match state.deliveries.deliver(event).await {
        Ok(Inserted::New(_)) => {
            metrics.webhook_received(scope, false);
            Json(WebhookAck {
                received: true,
                duplicate: false,
            })
            .into_response()
        }
        Ok(Inserted::Duplicate) => {
            metrics.webhook_received(scope, true);
            Json(WebhookAck {
                received: true,
                duplicate: true,
            })
            .into_response()
        }
        Err(e) => {
            metrics.webhook_rejected(scope, "inbox");
            tracing::error!(error = ?e, "webhook could not be stored");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "inbox_unavailable",
                "the event could not be stored; retry",
            )
            .into_response()
        }
    }
}

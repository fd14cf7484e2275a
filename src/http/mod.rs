//! The HTTP surface: management API, merchant-facing status, internal API and webhooks.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use axum::routing::{get, post, put};
use axum::{middleware, Json, Router};
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::service::Services;
use crate::supervise::Liveness;
use crate::webhooks::ingest::Ingest;

pub mod api;
pub mod auth;
pub mod checkout;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod limits;
pub mod pages;
pub mod server;
pub mod status;
pub mod webhooks;

/// Management API bodies are small JSON documents.
pub const API_BODY_LIMIT: usize = 64 * 1024;
/// The key-entry form: a few keys and hidden fields.
pub const PAGE_BODY_LIMIT: usize = 16 * 1024;
/// Stripe's events are rarely over 100 KB; anything past 1 MiB is not a Stripe event.
pub const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    pub ingest: Ingest,
    /// Wakes the worker after something is queued outside the ingest path (a replay).
    pub stored: Arc<tokio::sync::Notify>,
    /// The supervised worker's liveness, for `/healthz`.
    pub worker: Arc<Liveness>,
    /// Stored webhook secrets and signature failures, per door.
    pub doors: Arc<crate::webhooks::doors::Doors>,
}

impl AppState {
    pub fn stored_notify(&self) {
        self.stored.notify_one();
    }
}

pub fn router(state: AppState) -> Router {
    let management = Router::new()
        .route("/stores", post(api::stores::create).get(api::stores::list))
        .route(
            "/stores/{id}",
            get(api::stores::get).delete(api::stores::delete),
        )
        .route(
            "/stores/{id}/connection",
            axum::routing::delete(api::connection::disconnect),
        )
        .route(
            "/stores/{id}/connection/keys",
            put(api::connection::put_keys),
        )
        .route(
            "/stores/{id}/connection/webhook-secret",
            put(api::connection::put_webhook_secret),
        )
        .route("/stores/{id}/account", get(api::connection::account))
        .route("/stores/{id}/onboarding", post(api::onboarding::start))
        .route(
            "/stores/{id}/connect-link",
            post(api::onboarding::connect_link),
        )
        .route(
            "/stores/{id}/account/login-link",
            post(api::onboarding::login_link),
        )
        .route(
            "/stores/{id}/orders",
            post(api::orders::create).get(api::orders::list),
        )
        .route("/orders/{id}", get(api::orders::get))
        .route(
            "/stores/{id}/subscription",
            put(api::subscription::put)
                .get(api::subscription::get)
                .delete(api::subscription::cancel),
        )
        .route("/stores/{id}/customers", post(api::customers::create))
        .route(
            "/stores/{id}/checkout-sessions",
            post(api::checkout_sessions::create),
        )
        .route("/customers/{id}", get(api::customers::get))
        .route("/orders/{id}/sync", post(api::orders::sync))
        .route("/orders/{id}/refunds", post(api::orders::refund))
        .route("/events", get(api::events::list))
        .route("/events/{id}", get(api::events::get))
        .route("/events/{id}/replay", post(api::events::replay))
        .route("/api-keys", get(api::api_keys::list))
        .route(
            "/api-keys/{id}",
            axum::routing::delete(api::api_keys::revoke),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::idempotent,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_key,
        ))
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT));
    let internal = Router::new()
        .route("/stores/{id}/stripe-status", get(status::internal))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_internal_secret,
        ));
    let hooks = Router::new()
        .route("/stripe", post(webhooks::platform))
        .route("/stripe/connect", post(webhooks::connect))
        .route("/stripe/stores/{store_id}", post(webhooks::store))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT));
    let budget = Arc::new(limits::BodyBudget::new(
        state.services.config.http.body_budget,
        state.services.config.http.body_timeout,
    ));
    let pages = Router::new()
        .route(
            "/connect",
            get(pages::connect_form).post(pages::connect_submit),
        )
        .route("/success/{store_id}", get(pages::success))
        .route("/oauth/callback", get(pages::oauth_callback))
        .route("/onboarding/refresh", get(pages::onboarding_refresh))
        .route("/assets/pages.css", get(pages::stylesheet))
        .route("/status/{store_id}", get(status::public))
        .layer(DefaultBodyLimit::max(PAGE_BODY_LIMIT));
    let checkout = Router::new()
        .route("/assets/checkout.js", get(checkout::script))
        .route("/{token}", get(checkout::page))
        .route("/{token}/result", get(checkout::result));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .nest("/checkout", checkout)
        .nest("/stripe", pages)
        .nest("/api/v1", management)
        .nest("/api/internal", internal)
        .nest("/webhooks", hooks)
        .fallback(|| async { error::ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(axum::http::StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
        })
        .with_state(state)
        .layer(middleware::from_fn_with_state(budget, limits::guard_body))
        .layer(CatchPanicLayer::custom(|_| axum::response::IntoResponse::into_response(error::ApiError::internal())))
        // The span names the path only: query strings can carry OAuth codes and link signatures.
        // Its request id is on every line logged while the request is served.
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("http", request_id = %id, method = %req.method(), path = %loggable_path(req.uri().path()))
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        // The caller's `X-Request-Id` when it sends a sane one, else a new UUID.
        .layer(middleware::from_fn(sanitize_request_id))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

const REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

/// A caller's request id goes into every log line: one that is long or has characters beyond
/// `[A-Za-z0-9._:-]` is replaced by a fresh UUID rather than logged.
async fn sanitize_request_id(
    mut req: Request<axum::body::Body>,
    next: middleware::Next,
) -> axum::response::Response {
    let sane = req.headers().get(REQUEST_ID).is_some_and(|v| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= 128
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(c))
    });
    if !sane {
        let id = MakeRequestUuid
            .make_request_id(&req)
            .expect("a UUID is always made");
        req.headers_mut()
            .insert(REQUEST_ID, id.header_value().clone());
    }
    next.run(req).await
}

/// Prometheus text: counters kept in process, the inbox read from the database now.
async fn metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let db = &state.services.db;
    match (
        crate::db::inbox::status_counts(db).await,
        crate::db::inbox::oldest_unfinished(db).await,
    ) {
        (Ok(counts), Ok(oldest)) => {
            let lag = oldest.map_or(0, |t| (crate::db::now_ms() - t) / 1000);
            state.services.metrics.set_inbox(&counts, lag);
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "the inbox could not be read for metrics")
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.services.metrics.render(),
    )
        .into_response()
}

/// The path as logged: a checkout token is a bearer capability, so it is replaced.
fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    match path.strip_prefix("/checkout/") {
        Some(rest) if !rest.starts_with("assets/") => {
            let tail = rest.split_once('/').map_or("", |(_, t)| t);
            format!("/checkout/{{token}}/{tail}")
                .trim_end_matches('/')
                .to_owned()
                .into()
        }
        _ => path.into(),
    }
}

/// 200 only while the database answers, the inbox writer runs and the worker is looping:
/// without any of them no webhook is acknowledged or applied.
async fn healthz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let unavailable = |status: &str, detail: String| {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": status, "detail": detail })),
        )
            .into_response()
    };
    if let Err(why) = state.worker.check(worker_stale_after(&state.services)) {
        return unavailable("worker_down", format!("the event worker is {why}"));
    }
    if state.ingest.is_closed() {
        return unavailable("inbox_down", "the inbox writer has stopped".into());
    }
    let ping = sqlx::query("SELECT 1").execute(state.services.db.pool());
    match tokio::time::timeout(std::time::Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => Json(json!({
            "status": "ok",
            "worker": { "last_loop_ms_ago": state.worker.last_beat_age_ms() },
        }))
        .into_response(),
        _ => unavailable(
            "database_unavailable",
            "the database did not answer within 2 s".into(),
        ),
    }
}

/// A turn of the worker's loop is one batch's database work (it never waits on Stripe) plus at
/// most a poll interval; one that has not come round in a few of those and 30 s for a slow
/// database is stuck.
fn worker_stale_after(s: &Services) -> std::time::Duration {
    s.config.worker.poll_interval * 4 + std::time::Duration::from_secs(30)
}

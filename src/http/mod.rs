//! The HTTP surface: management API, merchant-facing status, internal API and webhooks.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Bytes, HttpBody};
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, Response};
use axum::{middleware, BoxError, Router};
use hyper::body::Incoming;
use tower::{Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestId, MakeRequestUuid, PropagateRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::inbox::Deliveries;
use crate::service::Services;
use crate::supervise::Liveness;

pub mod amounts;
pub mod api;
pub mod api_docs;
pub mod auth;
pub mod checkout;
pub mod client_addr;
pub mod console;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod limits;
pub mod openapi;
pub mod operations;
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

/// What every handler is given. One `Arc`: axum clones the state for each request (and at each
/// routing level), and cloning a struct of many `Arc`s was as many contended atomic increments.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

pub struct AppParts {
    pub services: Services,
    pub deliveries: Deliveries,
    /// Wakes the worker after something is queued outside the ingest path (a replay).
    pub stored: Arc<tokio::sync::Notify>,
    /// The supervised worker's liveness, for `/healthz`.
    pub worker: Arc<Liveness>,
    /// The notification deliverer's liveness, for `/healthz`.
    pub notifier: Arc<Liveness>,
    /// Stored webhook secrets and signature failures, per door.
    pub doors: Arc<crate::webhooks::doors::Doors>,
    /// The OpenAPI document, serialized once the router that it describes is built.
    pub openapi: Arc<std::sync::OnceLock<Bytes>>,
    /// Failed console sign-ins per client address.
    pub logins: console::LoginLimiter,
}

impl AppState {
    pub fn new(parts: AppParts) -> Self {
        Self(Arc::new(parts))
    }

    pub fn stored_notify(&self) {
        self.stored.notify_one();
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The whole application as one service: the router inside the layers every request passes.
///
/// The layers wrap the router as a whole rather than through `Router::layer`, which wraps every
/// route in each layer separately: a request then went through one boxed clone of the route and
/// one boxed future per layer.
pub fn app(
    state: AppState,
) -> impl Service<
    Request<Incoming>,
    Response = Response<impl HttpBody<Data = Bytes, Error = impl Into<BoxError>> + Send + 'static>,
    Error = Infallible,
    Future = impl Send + 'static,
> + Clone
       + Send
       + 'static {
    let budget = limits::BodyBudget::new(
        state.services.config.http.body_budget,
        state.services.config.http.body_timeout,
    );
    ServiceBuilder::new()
        // The caller's `X-Request-Id` when it sends a sane one, else a new UUID.
        .map_request(sanitize_request_id)
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        // The span names the path only: query strings can carry OAuth codes and link signatures.
        // Its request id is on every line logged while the request is served.
        .layer(TraceLayer::new_for_http().make_span_with(http_span::<Incoming>))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(error::ApiError::internal())
        }))
        .layer(limits::GuardBodyLayer::new(budget))
        .service(router(state))
}

fn router(state: AppState) -> Router {
    let (routes, mut doc) = documented_routes(&state).split_for_parts();
    openapi::complete(&mut doc, "/api/v1");
    let json = doc.to_json().expect("the OpenAPI document serializes");
    // Each app builds its router once; should it build another, the documents are the same.
    let _ = state.openapi.set(json.into());
    routes
        .fallback(|| async { error::ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .with_state(state)
}

/// Every route, each with its OpenAPI operation: one `routes!` per path, and never a bare
/// `route` (a unit test below keeps it so), so the document and the router cannot diverge.
fn documented_routes(state: &AppState) -> OpenApiRouter<AppState> {
    use api::*;
    let management = OpenApiRouter::new()
        .routes(routes!(stores::create, stores::list))
        .routes(routes!(stores::get, stores::delete))
        .routes(routes!(connection::disconnect))
        .routes(routes!(connection::put_keys))
        .routes(routes!(connection::put_webhook_secret))
        .routes(routes!(connection::account))
        .routes(routes!(onboarding::start))
        .routes(routes!(onboarding::connect_link))
        .routes(routes!(onboarding::login_link))
        .routes(routes!(orders::create, orders::list))
        .routes(routes!(orders::create_multi_vendor))
        .routes(routes!(orders::get))
        .routes(routes!(orders::sync))
        .routes(routes!(orders::refund))
        .routes(routes!(payouts::balance))
        .routes(routes!(payouts::list))
        .routes(routes!(
            subscription::put,
            subscription::get,
            subscription::cancel
        ))
        .routes(routes!(customers::create, customers::list))
        .routes(routes!(customers::get))
        .routes(routes!(checkout_sessions::create))
        .routes(routes!(events::list))
        .routes(routes!(events::get))
        .routes(routes!(events::replay))
        .routes(routes!(events::discard))
        .routes(routes!(notifications::create, notifications::list))
        .routes(routes!(
            notifications::get,
            notifications::update,
            notifications::delete
        ))
        .routes(routes!(notifications::rotate_secret))
        .routes(routes!(notifications::recover))
        .routes(routes!(notifications::log))
        .routes(routes!(notifications::redeliver))
        .routes(routes!(api_keys::list))
        .routes(routes!(api_keys::revoke))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::idempotent,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_key,
        ))
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT));
    let internal = OpenApiRouter::new()
        .routes(routes!(status::internal))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_internal_secret,
        ));
    let hooks = OpenApiRouter::new()
        .routes(routes!(webhooks::platform))
        .routes(routes!(webhooks::connect))
        .routes(routes!(webhooks::store))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT));
    let pages = OpenApiRouter::new()
        .routes(routes!(
            pages::connect::connect_form,
            pages::connect::connect_submit
        ))
        .routes(routes!(pages::connect::success))
        .routes(routes!(pages::onboarding::oauth_callback))
        .routes(routes!(pages::onboarding::onboarding_refresh))
        .routes(routes!(pages::stylesheet))
        .routes(routes!(status::public))
        .layer(DefaultBodyLimit::max(PAGE_BODY_LIMIT));
    let console = OpenApiRouter::new()
        .routes(routes!(console::overview::overview))
        .routes(routes!(console::login::form, console::login::submit))
        .routes(routes!(console::login::logout))
        .routes(routes!(
            console::overview::doctor_page,
            console::overview::doctor_run
        ))
        .routes(routes!(console::stores::list))
        .routes(routes!(console::stores::show))
        .routes(routes!(console::orders::list))
        .routes(routes!(console::orders::show))
        .routes(routes!(console::orders::sync))
        .routes(routes!(console::refund::refund))
        .routes(routes!(console::events::list))
        .routes(routes!(console::events::show))
        .routes(routes!(console::replay::replay))
        .routes(routes!(console::replay::replay_all))
        .routes(routes!(console::notifications::list))
        .routes(routes!(console::notifications::redeliver))
        .routes(routes!(console::notifications::enable))
        .routes(routes!(console::api_keys::list))
        .routes(routes!(console::api_keys::revoke))
        .routes(routes!(console::stylesheet))
        .routes(routes!(console::script))
        .fallback(console::not_found)
        .layer(DefaultBodyLimit::max(PAGE_BODY_LIMIT));
    let checkout = OpenApiRouter::new()
        .routes(routes!(checkout::script))
        .routes(routes!(checkout::page))
        .routes(routes!(checkout::result));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(operations::healthz))
        .routes(routes!(operations::metrics))
        .routes(routes!(openapi::document))
        .routes(routes!(api_docs::index))
        .routes(routes!(api_docs::asset))
        .nest("/checkout", checkout)
        .nest("/console", console)
        .nest("/stripe", pages)
        .nest("/api/v1", management)
        .nest("/api/internal", internal)
        .nest("/webhooks", hooks)
}

const REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

/// A caller's request id goes into every log line: one that is missing, long, or has characters
/// beyond `[A-Za-z0-9._:-]` is replaced by a fresh UUID rather than logged.
fn sanitize_request_id<B>(mut req: Request<B>) -> Request<B> {
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
    req
}

/// The span every request is served in: its (sanitized) request id, method and path.
fn http_span<B>(req: &Request<B>) -> tracing::Span {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let path = loggable_path(req.uri().path());
    tracing::info_span!("http", request_id = %id, method = %req.method(), path = %path)
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

#[cfg(test)]
mod tests {
    /// `routes!` takes only handlers that carry their OpenAPI operation; a bare `route` (or a
    /// nested service) would serve something the document does not describe.
    #[test]
    fn routes_are_added_only_with_their_documentation() {
        let source = include_str!("mod.rs");
        let router = source.split("#[cfg(test)]").next().unwrap();
        for bare in [".route(", ".route_service(", ".nest_service(", ".merge("] {
            assert!(
                !router.contains(bare),
                "`{bare}` adds a route the OpenAPI document would miss; use `routes!`"
            );
        }
        assert!(router.contains(".routes(routes!("));
    }
}

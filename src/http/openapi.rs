//! `GET /api/openapi.json`. utoipa-axum builds the document while the router is assembled: a
//! route exists only through `routes!`, which takes only handlers with a `#[utoipa::path]`, so
//! no route can be served undocumented. What applies to a whole group of routes (the API key,
//! `Idempotency-Key`, body and server errors) is added here once instead of on every handler.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{OneOfBuilder, Schema};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, OpenApi, Ref, RefOr, Required, ResponseBuilder, Type,
};

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::service::billing::SubscriptionView;
use crate::service::connections::AccountView;
use crate::service::customers::CustomerView;
use crate::service::notification_types::{example_body, KINDS};
use crate::service::order_view::OrderView;
use crate::service::payouts::PayoutView;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Bursar",
        description = "Self-hosted Stripe Connect gateway: stores and their Stripe connections, \
            onboarding, payments, vendor billing and Stripe's webhooks. Errors are always \
            `{\"error\":{\"code\",\"message\"}}`.",
        license(name = "MIT")
    ),
    components(schemas(ErrorBody, PayoutView, CustomerView, AccountView, SubscriptionView, OrderView)),
    tags(
        (name = "stores", description = "Merchants, one store each"),
        (name = "connections", description = "A store's Stripe credentials: pasted keys or Connect"),
        (name = "onboarding", description = "Connect OAuth, Account Links and the key-entry link"),
        (name = "orders", description = "Payments (direct, destination and multi-vendor), refunds and transfers"),
        (name = "payouts", description = "A store's balance at Stripe and its payouts"),
        (name = "customers", description = "A store's customers at Stripe"),
        (name = "checkout", description = "Stripe Checkout Sessions and Bursar's hosted payment page"),
        (name = "billing", description = "The platform's subscription for each store's vendor"),
        (name = "events", description = "The webhook inbox"),
        (name = "notifications", description = "What Bursar sends the platform's app: endpoints and the delivery log. Each delivery's body is a `Notification`"),
        (name = "api-keys", description = "The platform's management API keys"),
        (name = "internal", description = "For the platform's own services (`X-Internal-Secret`)"),
        (name = "webhooks", description = "Where Stripe delivers events"),
        (name = "pages", description = "Merchant-facing pages and status"),
        (name = "console", description = "The operator console's HTML pages (signed in with an API key; a session cookie, CSRF tokens on every form)"),
        (name = "operations", description = "Health, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations", operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI document of every route", body = Object)))]
pub async fn document(State(state): State<AppState>) -> Response {
    match state.openapi.get() {
        Some(doc) => ([(header::CONTENT_TYPE, "application/json")], doc.clone()).into_response(),
        None => ApiError::internal().into_response(),
    }
}

/// Adds what whole groups of routes share. `management` names the prefix whose routes take a
/// platform API key and `Idempotency-Key`.
pub fn complete(doc: &mut OpenApi, management: &str) {
    let components = doc.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert("Notification".into(), notification_schema());
    components.add_security_scheme(
        "api_key",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    components.add_security_scheme(
        "internal_secret",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Internal-Secret"))),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        let managed = path.starts_with(management);
        let methods = [
            ("GET", &mut item.get),
            ("PUT", &mut item.put),
            ("POST", &mut item.post),
            ("DELETE", &mut item.delete),
        ];
        for (method, op) in methods {
            let Some(op) = op.as_mut() else { continue };
            let creates = matches!(method, "POST" | "PUT");
            if managed {
                op.security = Some(vec![SecurityRequirement::new(
                    "api_key",
                    Vec::<String>::new(),
                )]);
                error(op, 401, "A missing, unknown or revoked API key");
                if creates {
                    idempotency(op);
                }
            }
            if let Some(body) = &op.request_body {
                // A required JSON body goes through the JSON extractor, which also checks the
                // media type; an optional one is read as bytes.
                let required =
                    matches!(body, RefOr::T(b) if matches!(b.required, Some(Required::True)));
                error(op, 413, "The body is over the route's limit");
                if managed {
                    error(op, 400, "Malformed JSON or an invalid field");
                    if required {
                        error(op, 415, "The body is not `application/json`");
                    }
                }
            }
            error(op, 500, "An internal error; the server log says what");
            // What calls Stripe may need the platform's key, which may not be set.
            if op.responses.responses.contains_key("502") {
                error(
                    op,
                    503,
                    "`platform_not_configured`: this needs the platform's Stripe account and STRIPE_SECRET_KEY is not set",
                );
            }
        }
    }
}

/// The body of every notification delivery: its `type` says which view `data.object` is (see
/// `service::notification_types`).
fn notification_schema() -> RefOr<Schema> {
    let text = || ObjectBuilder::new().schema_type(Type::String);
    let integer = || ObjectBuilder::new().schema_type(Type::Integer);
    let mut objects = OneOfBuilder::new();
    let mut seen = Vec::new();
    for k in KINDS {
        if !seen.contains(&k.object) {
            seen.push(k.object);
            objects = objects.item(Ref::from_schema_name(k.object.schema()));
        }
    }
    let types = KINDS.iter().map(|k| k.event_type);
    let data = ObjectBuilder::new()
        .property("object", objects)
        .required("object");
    let body = ObjectBuilder::new()
        .description(Some(
            "A notification as the platform's endpoint receives it, signed with Standard \
             Webhooks headers (`webhook-id` = `id`, `webhook-timestamp`, `webhook-signature`).",
        ))
        .property(
            "id",
            text().description(Some("Also `webhook-id`: the same on every attempt")),
        )
        .property("type", text().enum_values(Some(types)))
        .property("created", integer().description(Some("unix seconds")))
        .property(
            "store_id",
            text().description(Some("The store it is about")),
        )
        .property(
            "seq",
            integer().description(Some("The endpoint's sequence number, in creation order")),
        )
        .property("data", data)
        .required("id")
        .required("type")
        .required("created")
        .required("seq")
        .required("data")
        .examples([example_body(&KINDS[0])]);
    RefOr::T(Schema::Object(body.build()))
}

/// `Idempotency-Key` as Stripe's own API takes it: the same key and body replay the first
/// answer, another body with the same key is a conflict.
fn idempotency(op: &mut Operation) {
    let schema = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(255));
    let parameter = ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Makes a retry safe: within 24 h the same key and body return the first response \
             (with `Idempotent-Replayed: true`) and create nothing new",
        ))
        .schema(Some(schema))
        .build();
    op.parameters
        .get_or_insert_with(Vec::new)
        .push(parameter.into());
    error(op, 400, "An invalid Idempotency-Key");
    error(
        op,
        409,
        "The Idempotency-Key was used with another request, or its first request is still running",
    );
}

/// Adds an error response unless the handler documents that status itself.
fn error(op: &mut Operation, status: u16, description: &str) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
                .into()
        });
}

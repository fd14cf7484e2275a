//! The hosted payment page, `GET /checkout/{token}`: Stripe.js (from `STRIPE_JS_URL`) with the
//! merchant's publishable key, and `stripeAccount` for a connected account's direct charge; a
//! card Element confirmed with `confirmCardPayment`; then a result page showing the order's real
//! state (re-checked at Stripe while it is still open). The token is the order id, an expiry and
//! an HMAC over both (`service::links`): unguessable, expiring, and nothing to store.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::amounts::format_amount;
use super::pages::{message, render};
use super::AppState;
use crate::domain::{OrderId, StoreId};
use crate::service::order_view::OrderView;
use crate::service::orders;
use crate::service::{links, stores, Services};

pub const SCRIPT: &str = include_str!("../../assets/checkout.js");

#[derive(Template)]
#[template(path = "checkout.html")]
struct CheckoutPage<'a> {
    store_name: &'a str,
    amount: String,
    description: Option<&'a str>,
    publishable_key: &'a str,
    client_secret: &'a str,
    stripe_account: &'a str,
    result_url: String,
    stripe_js: &'a str,
}

#[derive(Template)]
#[template(path = "checkout_result.html")]
struct ResultPage<'a> {
    title: &'a str,
    message: &'a str,
    status: &'a str,
    order_id: &'a str,
    amount: String,
    refresh: bool,
    /// The shop's page to go back to, when the order names one.
    back: Option<&'a str>,
}

fn origin(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}

/// Only Stripe.js's origin may run script, frame and be called (plus the Stripe API and the
/// 3-D Secure frames Stripe.js opens); nothing inline.
fn csp(s: &Services) -> String {
    let js = origin(&s.config.stripe.js_url);
    let api = origin(&s.config.stripe.api_base);
    format!(
        "default-src 'none'; script-src 'self' {js}; frame-src {js} https://hooks.stripe.com; \
         connect-src {js} {api}; style-src 'self'; img-src 'self' data: {js}; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
}

fn not_found() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Payment link not valid",
        "This payment link is not valid or has expired. Ask the shop for a new one.",
        None,
    )
}

async fn order_for(state: &AppState, token: &str) -> Result<OrderView, Response> {
    let s = &state.services;
    let id = links::verify_checkout_token(s, token).ok_or_else(not_found)?;
    orders::get(s, &id).await.map_err(|_| not_found())
}

/// Bursar's hosted payment page for an order (Stripe.js Payment Element).
#[utoipa::path(get, path = "/{token}", tag = "checkout", operation_id = "checkout_page",
    params(("token" = String, Path, description = "The order's signed checkout token, from its `checkout_url`")),
    responses(
        (status = 200, description = "The payment page", content_type = "text/html", body = String),
        (status = 303, description = "Already paid or being processed: on to the result page"),
        (status = 404, description = "Not a valid or current link", content_type = "text/html", body = String),
        (status = 503, description = "The payment is not ready yet", content_type = "text/html", body = String),
    ))]
pub async fn page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let order = match order_for(&state, &token).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    if !matches!(order.status.as_str(), "pending" | "failed") {
        return Redirect::to(&format!("/checkout/{token}/result")).into_response();
    }
    let (Some(client_secret), Some(publishable_key)) =
        (&order.client_secret, &order.publishable_key)
    else {
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Payment not ready",
            "This payment is not ready yet; try again in a moment.",
            None,
        );
    };
    let s = &state.services;
    // A multi-vendor order is the platform's: the page names what is bought instead.
    let store_name = match order.store_id.as_deref().map(StoreId::parse) {
        Some(Ok(id)) => stores::require(s, &id)
            .await
            .map(|st| st.name)
            .unwrap_or_default(),
        _ => order
            .description
            .clone()
            .unwrap_or_else(|| "your order".into()),
    };
    let html = CheckoutPage {
        store_name: &store_name,
        amount: format_amount(order.amount, &order.currency),
        description: order.description.as_deref(),
        publishable_key,
        client_secret,
        stripe_account: order.stripe_account.as_deref().unwrap_or_default(),
        result_url: format!("/checkout/{token}/result"),
        stripe_js: &s.config.stripe.js_url,
    }
    .render();
    render(StatusCode::OK, html, &csp(s))
}

/// The order as Stripe has it: an open order is re-checked first, so the customer sees the
/// outcome even before the webhook arrives.
/// Where Stripe.js returns the buyer: the order's outcome, re-checked at Stripe when pending.
#[utoipa::path(get, path = "/{token}/result", tag = "checkout", operation_id = "checkout_result",
    params(("token" = String, Path, description = "The order's signed checkout token")),
    responses(
        (status = 200, description = "The outcome page", content_type = "text/html", body = String),
        (status = 404, description = "Not a valid or current link", content_type = "text/html", body = String),
    ))]
pub async fn result(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let mut order = match order_for(&state, &token).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    // Re-checked at most every few seconds, however often the page (or anyone holding the
    // link) reloads it: the store's Stripe rate budget is not the public's.
    let recently = order
        .synced_at
        .is_some_and(|t| crate::clock::now_ms() / 1000 - t < 5);
    if matches!(order.status.as_str(), "pending" | "failed") && !recently {
        if let Ok(id) = OrderId::parse(&order.id) {
            match orders::sync(&state.services, &id).await {
                Ok(fresh) => order = fresh,
                Err(e) => {
                    tracing::warn!(order = %order.id, error = %e, "could not re-check the order")
                }
            }
        }
    }
    let failure = order
        .failure
        .as_ref()
        .and_then(|f| f["message"].as_str())
        .unwrap_or("The card was declined.")
        .to_owned();
    let (title, text, refresh) = match order.status.as_str() {
        "paid" | "partially_refunded" | "refunded" | "disputed" => {
            ("Payment received", "Thank you: your payment has been received.".to_owned(), false)
        }
        "failed" => ("Payment not completed", format!("The payment did not go through: {failure}"), false),
        "canceled" => ("Payment canceled", "This payment was canceled.".to_owned(), false),
        _ => (
            "Payment processing",
            "We are waiting for the payment to be confirmed by Stripe; this page updates by itself.".to_owned(),
            true,
        ),
    };
    let html = ResultPage {
        title,
        message: &text,
        status: &order.status,
        order_id: &order.id,
        amount: format_amount(order.amount, &order.currency),
        refresh,
        back: order.return_url.as_deref(),
    }
    .render();
    render(StatusCode::OK, html, &csp(&state.services))
}

#[utoipa::path(get, path = "/assets/checkout.js", tag = "checkout", operation_id = "checkout_script",
    responses((status = 200, description = "The payment page's script", content_type = "text/javascript", body = String)))]
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        SCRIPT,
    )
        .into_response()
}

//! A refund from the console: the amount on the order's page, a confirmation page (with an
//! idempotency key of its own), then the refund, through the same service as the API's
//! `POST /api/v1/orders/{id}/refunds`.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::orders::order_id;
use super::session::{ConsoleSession, CsrfField, SignedForm};
use super::{failed, message, page, refused, Chrome};
use crate::domain::{OrderId, RequestKey};
use crate::http::amounts::{format_amount, major_units, parse_amount};
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::service::links::random_token;
use crate::service::order_view::OrderView;
use crate::service::{orders, refunds};

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ConsoleRefundForm {
    /// The session's CSRF token.
    csrf_token: Option<String>,
    /// In the currency's major unit (`12.50`); empty: everything not yet refunded.
    amount: Option<String>,
    /// `duplicate`, `fraudulent` or `requested_by_customer`; empty: none.
    reason: Option<String>,
    /// `yes` on the confirmation page's form; otherwise the confirmation page is shown.
    confirm: Option<String>,
    /// Made for each confirmation page: sending its form twice refunds once.
    idempotency_key: Option<String>,
}

impl CsrfField for ConsoleRefundForm {
    fn csrf_token(&self) -> Option<&str> {
        self.csrf_token.as_deref()
    }
}

#[derive(Template)]
#[template(path = "console/refund_confirm.html")]
struct RefundConfirmPage<'a> {
    chrome: Chrome,
    order_id: &'a str,
    order_amount: String,
    what: String,
    amount: &'a str,
    reason: &'a str,
    idempotency_key: String,
    warning: Option<String>,
}

/// `POST /console/orders/{id}/refund`: first the confirmation page, then (with `confirm=yes`)
/// the refund, through the same service as `POST /api/v1/orders/{id}/refunds`.
#[utoipa::path(post, path = "/orders/{id}/refund", tag = "console", operation_id = "console_order_refund",
    params(("id" = String, Path, description = "The order's id (`ord_…`)")),
    request_body(content = ConsoleRefundForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The confirmation page", content_type = "text/html", body = String),
        (status = 303, description = "Refund asked: back to the order (or, without a session, on to the login page)"),
        (status = 400, description = "An invalid amount or reason", content_type = "text/html", body = String),
        (status = 403, description = "The form's CSRF token is missing or wrong", content_type = "text/html", body = String),
        (status = 404, description = "No such order", content_type = "text/html", body = String),
        (status = 409, description = "The order is not paid, or nothing is left to refund", content_type = "text/html", body = String),
        (status = 422, description = "Stripe refused the refund", content_type = "text/html", body = String),
        (status = 502, description = "Stripe could not be reached; send the confirmation again", content_type = "text/html", body = String),
    ))]
pub async fn refund(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm { session, form }: SignedForm<ConsoleRefundForm>,
) -> Response {
    let id = match order_id(&id, session.chrome("orders")) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let s = &state.services;
    let back = format!("/console/orders/{id}");
    let order = match orders::get(s, &id).await {
        Ok(o) => o,
        Err(e) => return failed(session.chrome("orders"), e, Some(&back)),
    };
    let amount_text = form.amount.as_deref().unwrap_or_default().trim();
    let amount = if amount_text.is_empty() {
        None
    } else {
        match parse_amount(amount_text, &order.currency) {
            Some(a) if a > 0 => Some(a),
            _ => {
                let text = format!(
                    "The amount must be a positive number of {} with at most its decimals, such as {}.",
                    order.currency.to_ascii_uppercase(),
                    major_units(order.amount, &order.currency)
                );
                return refused(session.chrome("orders"), &text, Some(&back));
            }
        }
    };
    let reason = form.reason.as_deref().filter(|r| !r.is_empty());
    if form.confirm.as_deref() != Some("yes") {
        if !matches!(order.status.as_str(), "paid" | "partially_refunded") {
            let text = format!(
                "Only a paid order can be refunded; this one is {}.",
                order.status
            );
            return message(
                session.chrome("orders"),
                StatusCode::CONFLICT,
                "Not possible now",
                &text,
                Some(&back),
            );
        }
        let earlier = match refunds::of_order(s, &id).await {
            Ok(r) => r,
            Err(e) => return failed(session.chrome("orders"), e, Some(&back)),
        };
        let unanswered: Vec<String> = earlier
            .iter()
            .filter(|r| r.status == "pending" && r.stripe_refund_id.is_none())
            .map(|r| format_amount(r.amount, &order.currency))
            .collect();
        let warning = (!unanswered.is_empty()).then(|| {
            format!(
                "Stripe has not yet answered an earlier refund of this order ({}). It is counted and will be settled; confirming here asks for another refund on top of it.",
                unanswered.join(", ")
            )
        });
        return confirm_page(
            &session,
            &order,
            StatusCode::OK,
            (amount_text, amount, reason.unwrap_or_default()),
            random_token(),
            warning,
        );
    }
    let key = match form.idempotency_key.as_deref() {
        Some(k) if !k.is_empty() && k.len() <= 255 => {
            refund_key(session.api_key_id(), k, &id, amount, reason)
        }
        _ => {
            return refused(
                session.chrome("orders"),
                "The confirmation is incomplete. Start the refund again from the order.",
                Some(&back),
            )
        }
    };
    let result = refunds::refund(s, &id, amount, reason.map(str::to_owned), Some(&key)).await;
    match result {
        // The same confirmation sent again after the refund failed gets that refund back, as the
        // API's replay does: it failed, and is said to have.
        Ok(r) if r.status == "failed" => message(
            session.chrome("orders"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Refused",
            "This refund failed: Stripe did not make it. Start a new refund from the order if one is still due.",
            Some(&back),
        ),
        Ok(r) => {
            tracing::info!(order = %id, refund = %r.id, operator = %session.operator(), "refund asked from the console");
            Redirect::to(&format!("{back}?done=refunded")).into_response()
        }
        Err(e) => {
            let e = ApiError::from(e);
            if !e.status.is_server_error() {
                return super::api_error(session.chrome("orders"), e, Some(&back));
            }
            // No answer: the refund may exist at Stripe. The same confirmation, sent again,
            // resumes it under the same key; a new one would ask for a second refund.
            let key = form.idempotency_key.clone().unwrap_or_default();
            confirm_page(
                &session,
                &order,
                e.status,
                (amount_text, amount, reason.unwrap_or_default()),
                key,
                Some(format!(
                    "{} The refund may or may not have been made. Send this same confirmation again (now or later): it asks Stripe about the same refund and cannot refund twice.",
                    e.message
                )),
            )
        }
    }
}

/// The confirmation page of a refund of `amount` (typed as `text`; `None`: all that is left).
fn confirm_page(
    session: &ConsoleSession,
    order: &OrderView,
    status: StatusCode,
    (text, amount, reason): (&str, Option<i64>, &str),
    idempotency_key: String,
    warning: Option<String>,
) -> Response {
    let what = match amount {
        Some(a) => format_amount(a, &order.currency),
        None => format!(
            "everything not yet refunded: {}",
            format_amount(order.amount - order.amount_refunded, &order.currency)
        ),
    };
    let html = RefundConfirmPage {
        chrome: session.chrome("orders"),
        order_id: &order.id,
        order_amount: format_amount(order.amount, &order.currency),
        what,
        amount: text,
        reason,
        idempotency_key,
        warning,
    }
    .render();
    page(status, html)
}

/// The refund's request key: the confirmation form's key, bound to the session's API key and
/// to what is refunded, so sending the same confirmation again resumes the same refund and a
/// changed one is refused (as the API's `Idempotency-Key` does).
fn refund_key(
    api_key_id: &str,
    idempotency_key: &str,
    order: &OrderId,
    amount: Option<i64>,
    reason: Option<&str>,
) -> RequestKey {
    let mut key = Sha256::new();
    key.update(api_key_id.as_bytes());
    key.update(b"\nconsole\n");
    key.update(idempotency_key.as_bytes());
    let mut request = Sha256::new();
    request.update(b"console refund\n");
    request.update(order.as_str().as_bytes());
    request.update(b"\n");
    request.update(amount.map(|a| a.to_string()).unwrap_or_default().as_bytes());
    request.update(b"\n");
    request.update(reason.unwrap_or_default().as_bytes());
    RequestKey {
        key: hex::encode(key.finalize()),
        request_hash: hex::encode(request.finalize()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confirmation_sent_twice_is_one_request() {
        let order = OrderId::parse("ord_abc").unwrap();
        let a = refund_key("key_1", "k", &order, Some(500), None);
        assert_eq!(a, refund_key("key_1", "k", &order, Some(500), None));
        let other_amount = refund_key("key_1", "k", &order, Some(600), None);
        assert_eq!(a.key, other_amount.key);
        assert!(!other_amount.same_request(Some(&a.request_hash)));
        assert_ne!(a.key, refund_key("key_2", "k", &order, Some(500), None).key);
        assert_ne!(
            a.key,
            refund_key("key_1", "k2", &order, Some(500), None).key
        );
    }
}

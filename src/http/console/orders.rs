//! Orders: the list (by status and store), one order with its refunds and transfers, and a
//! re-check at Stripe. Refunds are asked for in `refund`.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::format::{href, Time};
use super::session::{ConsoleActionForm, ConsoleSession, SignedForm};
use super::{
    choices, failed, fields, message, page, Choice, Chrome, ConsoleQuery, Field, PAGE_SIZE,
};
use crate::domain::{OrderId, StoreId};
use crate::http::amounts::{format_amount, major_units};
use crate::http::AppState;
use crate::service::order_view::OrderView;
use crate::service::{events, notifications, orders, refunds};

/// Every status an order can be in.
pub const ORDER_STATUSES: &[&str] = &[
    "pending",
    "paid",
    "partially_refunded",
    "refunded",
    "disputed",
    "failed",
    "canceled",
];

/// An order as a row of a list.
pub struct OrderLine {
    pub id: String,
    pub href: String,
    pub store_id: Option<String>,
    pub status: String,
    pub amount: String,
    pub description: Option<String>,
    pub created: Time,
    pub livemode: bool,
}

impl From<&OrderView> for OrderLine {
    fn from(o: &OrderView) -> Self {
        Self {
            id: o.id.clone(),
            href: format!("/console/orders/{}", o.id),
            store_id: o.store_id.clone(),
            status: o.status.clone(),
            amount: format_amount(o.amount, &o.currency),
            description: o.description.clone(),
            created: Time::secs(o.created),
            livemode: o.livemode,
        }
    }
}

#[derive(Template)]
#[template(path = "console/orders.html")]
struct OrdersPage {
    chrome: Chrome,
    statuses: Vec<Choice>,
    store_id: String,
    orders: Vec<OrderLine>,
    next: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrdersQuery {
    /// One of the order statuses.
    status: Option<String>,
    /// Only this store's orders (its split orders included).
    store_id: Option<String>,
    /// The previous page's last order, as the API's `next_cursor`.
    cursor: Option<String>,
}

/// `GET /console/orders`: every store's orders, newest first.
#[utoipa::path(get, path = "/orders", tag = "console", operation_id = "console_orders",
    params(OrdersQuery),
    responses(
        (status = 200, description = "A page of orders", content_type = "text/html", body = String),
        (status = 303, description = "No session: on to the login page"),
        (status = 400, description = "An unknown status or a bad cursor", content_type = "text/html", body = String),
        (status = 404, description = "No such store", content_type = "text/html", body = String),
    ))]
pub async fn list(
    State(state): State<AppState>,
    session: ConsoleSession,
    ConsoleQuery(q): ConsoleQuery<OrdersQuery>,
) -> Response {
    let chrome = session.chrome("orders");
    let back = Some("/console/orders");
    let status = q.status.filter(|s| !s.is_empty());
    if let Some(s) = &status {
        if !ORDER_STATUSES.contains(&s.as_str()) {
            let text = format!("The status must be one of {}.", ORDER_STATUSES.join(", "));
            return message(
                chrome,
                StatusCode::BAD_REQUEST,
                "Unknown status",
                &text,
                back,
            );
        }
    }
    let store_id = q.store_id.unwrap_or_default().trim().to_owned();
    let store = if store_id.is_empty() {
        None
    } else {
        match StoreId::parse(&store_id) {
            Ok(id) => Some(id),
            Err(_) => return no_such_store(chrome),
        }
    };
    let cursor = q.cursor.filter(|c| !c.is_empty());
    let result = orders::list_filtered(
        &state.services,
        store.as_ref(),
        status.as_deref(),
        cursor.as_deref(),
        PAGE_SIZE,
    )
    .await;
    let found = match result {
        Ok(found) => found,
        Err(e) => return failed(chrome, e, back),
    };
    let next = found.next_cursor.map(|c| {
        href(
            "/console/orders",
            &[
                ("status", status.as_deref().unwrap_or_default()),
                ("store_id", store_id.as_str()),
                ("cursor", c.as_str()),
            ],
        )
    });
    let html = OrdersPage {
        chrome,
        statuses: choices(ORDER_STATUSES, status.as_deref()),
        store_id,
        orders: found.data.iter().map(OrderLine::from).collect(),
        next,
    }
    .render();
    page(StatusCode::OK, html)
}

fn no_such_store(chrome: Chrome) -> Response {
    message(
        chrome,
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no store with this id.",
        Some("/console/orders"),
    )
}

/// A path's order id; one that cannot be an order's is the 404 page.
pub(super) fn order_id(raw: &str, chrome: Chrome) -> Result<OrderId, Box<Response>> {
    OrderId::parse(raw).map_err(|_| {
        Box::new(message(
            chrome,
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no order with this id.",
            Some("/console/orders"),
        ))
    })
}

#[derive(Template)]
#[template(path = "console/order.html")]
struct OrderPage {
    chrome: Chrome,
    notice: Option<&'static str>,
    order: OrderDetail,
    metadata: Vec<Field>,
    refunds: Vec<RefundLine>,
    transfers: Vec<TransferLine>,
    refundable: bool,
    /// What is left to refund, as it would be typed.
    refund_left: String,
    /// The webhook events about its PaymentIntent, among its store's latest `event_window`.
    events: Vec<super::events::EventLine>,
    event_window: i64,
    notifications: Vec<super::notifications::DeliveryLine>,
}

/// How many of an order's notifications its page lists.
const ORDER_NOTIFICATIONS: i64 = 50;

/// What the console shows of an order: the API's view without its client secret.
struct OrderDetail {
    id: String,
    store_id: Option<String>,
    store_href: Option<String>,
    events_href: Option<String>,
    status: String,
    status_source: Option<String>,
    charge_type: String,
    amount: String,
    refunded: String,
    application_fee: Option<String>,
    currency: String,
    description: Option<String>,
    customer_id: Option<String>,
    payment_intent: Option<String>,
    stripe_account: Option<String>,
    failure: Option<String>,
    dispute_status: Option<String>,
    livemode: bool,
    created: Time,
    synced: Option<Time>,
}

impl From<&OrderView> for OrderDetail {
    fn from(o: &OrderView) -> Self {
        let failure = o.failure.as_ref().map(|f| {
            format!(
                "{}: {}",
                super::format::plain(&f["code"]),
                super::format::plain(&f["message"])
            )
        });
        Self {
            id: o.id.clone(),
            store_href: o.store_id.as_ref().map(|s| format!("/console/stores/{s}")),
            events_href: o
                .store_id
                .as_ref()
                .map(|s| href("/console/events", &[("store_id", s.as_str())])),
            store_id: o.store_id.clone(),
            status: o.status.clone(),
            status_source: o.status_source.clone(),
            charge_type: o.charge_type.clone(),
            amount: format_amount(o.amount, &o.currency),
            refunded: format_amount(o.amount_refunded, &o.currency),
            application_fee: o
                .application_fee_amount
                .map(|f| format_amount(f, &o.currency)),
            currency: o.currency.to_ascii_uppercase(),
            description: o.description.clone(),
            customer_id: o.customer_id.clone(),
            payment_intent: o.payment_intent.clone(),
            stripe_account: o.stripe_account.clone(),
            failure,
            dispute_status: o.dispute_status.clone(),
            livemode: o.livemode,
            created: Time::secs(o.created),
            synced: o.synced_at.map(Time::secs),
        }
    }
}

struct RefundLine {
    id: String,
    amount: String,
    reason: Option<String>,
    status: String,
    stripe_refund_id: Option<String>,
    created: Time,
}

struct TransferLine {
    store_id: String,
    store_href: String,
    amount: String,
    status: String,
    transfer: Option<String>,
    reversed: String,
    failure_message: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DoneQuery {
    /// What the previous action did, to say so (`synced`, `refunded`).
    done: Option<String>,
}

/// `GET /console/orders/{id}`: the order's facts, refunds and transfers, and its actions.
#[utoipa::path(get, path = "/orders/{id}", tag = "console", operation_id = "console_order",
    params(("id" = String, Path, description = "The order's id (`ord_…`)"), DoneQuery),
    responses(
        (status = 200, description = "The order", content_type = "text/html", body = String),
        (status = 303, description = "No session: on to the login page"),
        (status = 404, description = "No such order", content_type = "text/html", body = String),
    ))]
pub async fn show(
    State(state): State<AppState>,
    session: ConsoleSession,
    Path(id): Path<String>,
    ConsoleQuery(q): ConsoleQuery<DoneQuery>,
) -> Response {
    let id = match order_id(&id, session.chrome("orders")) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let chrome = session.chrome("orders");
    let s = &state.services;
    let back = Some("/console/orders");
    let order = match orders::get(s, &id).await {
        Ok(o) => o,
        Err(e) => return failed(chrome, e, back),
    };
    let refund_rows = match refunds::of_order(s, &id).await {
        Ok(r) => r,
        Err(e) => return failed(chrome, e, back),
    };
    let moved_by = match (&order.store_id, &order.payment_intent) {
        (Some(store), Some(pi)) => match events::mentioning(s, store, pi).await {
            Ok(e) => e,
            Err(e) => return failed(chrome, e, back),
        },
        _ => Vec::new(),
    };
    let told = match notifications::about(s, id.as_str(), ORDER_NOTIFICATIONS).await {
        Ok(n) => n,
        Err(e) => return failed(chrome, e, back),
    };
    let notice = match q.done.as_deref() {
        Some("synced") => Some("Re-checked at Stripe: the order is as Stripe has it."),
        Some("refunded") => Some("The refund was asked of Stripe; its status follows below."),
        _ => None,
    };
    let currency = order.currency.clone();
    let html = OrderPage {
        chrome,
        notice,
        order: OrderDetail::from(&order),
        metadata: fields(&order.metadata),
        refunds: refund_rows
            .into_iter()
            .map(|r| RefundLine {
                amount: format_amount(r.amount, &currency),
                created: Time::secs(r.created),
                id: r.id,
                reason: r.reason,
                status: r.status,
                stripe_refund_id: r.stripe_refund_id,
            })
            .collect(),
        transfers: order
            .transfers
            .iter()
            .flatten()
            .map(|t| TransferLine {
                store_href: format!("/console/stores/{}", t.store_id),
                store_id: t.store_id.clone(),
                amount: format_amount(t.amount, &currency),
                status: t.status.clone(),
                transfer: t.transfer.clone(),
                reversed: format_amount(t.reversed_amount, &currency),
                failure_message: t.failure_message.clone(),
            })
            .collect(),
        refundable: matches!(order.status.as_str(), "paid" | "partially_refunded"),
        refund_left: major_units(order.amount - order.amount_refunded, &currency),
        events: moved_by.into_iter().map(Into::into).collect(),
        event_window: events::ORDER_EVENT_WINDOW,
        notifications: told.into_iter().map(Into::into).collect(),
    }
    .render();
    page(StatusCode::OK, html)
}

/// `POST /console/orders/{id}/sync`: asks Stripe for the order's payment now (the API's
/// `POST /api/v1/orders/{id}/sync`).
#[utoipa::path(post, path = "/orders/{id}/sync", tag = "console", operation_id = "console_order_sync",
    params(("id" = String, Path, description = "The order's id (`ord_…`)")),
    request_body(content = ConsoleActionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Re-checked: back to the order (or, without a session, on to the login page)"),
        (status = 400, description = "The store has no usable credentials", content_type = "text/html", body = String),
        (status = 403, description = "The form's CSRF token is missing or wrong", content_type = "text/html", body = String),
        (status = 404, description = "No such order", content_type = "text/html", body = String),
        (status = 422, description = "Stripe refused", content_type = "text/html", body = String),
        (status = 502, description = "Stripe could not be reached", content_type = "text/html", body = String),
    ))]
pub async fn sync(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm { session, .. }: SignedForm<ConsoleActionForm>,
) -> Response {
    let id = match order_id(&id, session.chrome("orders")) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let back = format!("/console/orders/{id}");
    match orders::sync(&state.services, &id).await {
        Ok(_) => Redirect::to(&format!("{back}?done=synced")).into_response(),
        Err(e) => failed(session.chrome("orders"), e, Some(&back)),
    }
}

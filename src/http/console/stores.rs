//! Stores: the list (searched by name, external id or id) and one store with its connection,
//! account, vendor subscription, webhook endpoint, orders, customers and payouts.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::format::{href, plain, Time};
use super::orders::OrderLine;
use super::session::ConsoleSession;
use super::{
    failed, fields, message, optional, page, page_cursor, refused, Chrome, ConsoleQuery, Field,
    PAGE_SIZE,
};
use crate::domain::{CustomerId, StoreId};
use crate::http::amounts::format_amount;
use crate::http::AppState;
use crate::service::billing::{self, SubscriptionView};
use crate::service::connections::{self, AccountView, ConnectionView};
use crate::service::{customers, health, orders, payouts, stores, Result, Services};

/// Orders shown on a store's page; the rest are on the orders list, filtered to it.
const STORE_ORDERS: i64 = 10;

#[derive(Template)]
#[template(path = "console/stores.html")]
struct StoresPage {
    chrome: Chrome,
    q: String,
    stores: Vec<StoreLine>,
    next: Option<String>,
}

struct StoreLine {
    id: String,
    href: String,
    name: String,
    external_id: Option<String>,
    created: Time,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StoresQuery {
    /// Part of a store's name, or its external id or id.
    q: Option<String>,
    /// The previous page's last store, as the API's `next_cursor`.
    cursor: Option<String>,
}

/// `GET /console/stores`: stores in the order they were created, or those matching `q`.
#[utoipa::path(get, path = "/stores", tag = "console", operation_id = "console_stores",
    params(StoresQuery),
    responses(
        (status = 200, description = "A page of stores", content_type = "text/html", body = String),
        (status = 303, description = "No session: on to the login page"),
        (status = 400, description = "A bad cursor", content_type = "text/html", body = String),
    ))]
pub async fn list(
    State(state): State<AppState>,
    session: ConsoleSession,
    ConsoleQuery(q): ConsoleQuery<StoresQuery>,
) -> Response {
    let chrome = session.chrome("stores");
    let text = q.q.unwrap_or_default().trim().to_owned();
    let cursor = match page_cursor(q.cursor, StoreId::parse) {
        Ok(c) => c,
        Err(text) => return refused(chrome, text, Some("/console/stores")),
    };
    let s = &state.services;
    let found = if text.is_empty() {
        stores::list(s, cursor.as_ref(), PAGE_SIZE).await
    } else {
        stores::search(s, &text, cursor.as_ref(), PAGE_SIZE).await
    };
    let found = match found {
        Ok(found) => found,
        Err(e) => return failed(chrome, e, Some("/console/stores")),
    };
    let next = found.next_cursor.map(|c| {
        href(
            "/console/stores",
            &[("q", text.as_str()), ("cursor", c.as_str())],
        )
    });
    let html = StoresPage {
        chrome,
        stores: found
            .data
            .into_iter()
            .map(|st| StoreLine {
                href: format!("/console/stores/{}", st.id),
                created: Time::secs(st.created),
                id: st.id,
                name: st.name,
                external_id: st.external_id,
            })
            .collect(),
        q: text,
        next,
    }
    .render();
    page(StatusCode::OK, html)
}

#[derive(Template)]
#[template(path = "console/store.html")]
struct StorePage {
    chrome: Chrome,
    store: StoreLine,
    metadata: Vec<Field>,
    connection: Option<ConnectionView>,
    account: AccountView,
    account_synced: Option<Time>,
    requirements: Vec<Field>,
    payout_failure: Vec<Field>,
    subscription: Option<SubscriptionView>,
    period_end: Option<Time>,
    /// Signature failures at the store's own webhook endpoint since its last good delivery.
    signature_failures: Vec<SignatureLine>,
    orders: Vec<OrderLine>,
    orders_href: String,
    events_href: String,
    customers: Vec<CustomerLine>,
    customers_next: Option<String>,
    payouts: Vec<PayoutLine>,
    payouts_next: Option<String>,
}

struct SignatureLine {
    count: i64,
    since: Time,
    reason: String,
}

struct CustomerLine {
    id: String,
    stripe_customer_id: Option<String>,
    email: String,
    name: Option<String>,
    deleted: bool,
    created: Time,
}

struct PayoutLine {
    id: String,
    amount: String,
    status: String,
    arrival: Option<Time>,
    failure: Option<String>,
    created: Option<Time>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StoreQuery {
    /// The next page of the store's customers (the API's `next_cursor`).
    customers_cursor: Option<String>,
    /// The next page of the store's payouts (the API's `next_cursor`).
    payouts_cursor: Option<String>,
}

/// `GET /console/stores/{id}`: everything Bursar knows of one store. Read from the database
/// only: nothing here calls Stripe.
#[utoipa::path(get, path = "/stores/{id}", tag = "console", operation_id = "console_store",
    params(("id" = String, Path, description = "The store's id (`st_…`)"), StoreQuery),
    responses(
        (status = 200, description = "The store", content_type = "text/html", body = String),
        (status = 303, description = "No session: on to the login page"),
        (status = 400, description = "A bad cursor", content_type = "text/html", body = String),
        (status = 404, description = "No such store", content_type = "text/html", body = String),
    ))]
pub async fn show(
    State(state): State<AppState>,
    session: ConsoleSession,
    Path(id): Path<String>,
    ConsoleQuery(q): ConsoleQuery<StoreQuery>,
) -> Response {
    let Ok(id) = StoreId::parse(&id) else {
        return message(
            session.chrome("stores"),
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no store with this id.",
            Some("/console/stores"),
        );
    };
    match store_page(&state.services, &session, &id, q).await {
        Ok(html) => page(StatusCode::OK, html.render()),
        Err(e) => failed(session.chrome("stores"), e, Some("/console/stores")),
    }
}

async fn store_page(
    s: &Services,
    session: &ConsoleSession,
    id: &StoreId,
    q: StoreQuery,
) -> Result<StorePage> {
    let store = stores::get(s, id).await?;
    let customers_cursor = q
        .customers_cursor
        .filter(|c| !c.is_empty())
        .map(|c| CustomerId::parse(&c))
        .transpose()?;
    let payouts_cursor = q.payouts_cursor.filter(|c| !c.is_empty());
    let connection = optional(connections::connection(s, id).await)?;
    let account = connections::account(s, id).await?;
    let subscription = optional(billing::get(s, id).await)?;
    let recent = orders::list(s, id, None, STORE_ORDERS).await?;
    let (customer_views, customers_next) =
        customers::list(s, id, customers_cursor.as_ref(), PAGE_SIZE).await?;
    let payout_page = payouts::list(s, id, payouts_cursor.as_deref(), PAGE_SIZE).await?;
    let door = format!("store:{id}");
    let signature_failures = health::signature_failures(s)
        .await?
        .into_iter()
        .filter(|f| f.source == door)
        .map(|f| SignatureLine {
            count: f.count,
            since: Time::ms(f.since),
            reason: f.reason,
        })
        .collect();
    let path = format!("/console/stores/{id}");
    let customers_next = customers_next.map(|c| {
        href(
            &path,
            &[
                ("customers_cursor", c.as_str()),
                (
                    "payouts_cursor",
                    payouts_cursor.as_deref().unwrap_or_default(),
                ),
            ],
        )
    });
    let payouts_next = payout_page.next_cursor.map(|c| {
        href(
            &path,
            &[
                (
                    "customers_cursor",
                    customers_cursor.as_ref().map_or("", CustomerId::as_str),
                ),
                ("payouts_cursor", c.as_str()),
            ],
        )
    });
    Ok(StorePage {
        chrome: session.chrome("stores"),
        metadata: fields(&store.metadata),
        store: StoreLine {
            href: path.clone(),
            created: Time::secs(store.created),
            id: store.id,
            name: store.name,
            external_id: store.external_id,
        },
        connection,
        account_synced: account.synced.map(Time::secs),
        requirements: requirements(account.requirements.as_ref()),
        payout_failure: account
            .last_payout_failure
            .as_ref()
            .map(fields)
            .unwrap_or_default(),
        account,
        period_end: subscription
            .as_ref()
            .and_then(|sub| sub.current_period_end)
            .map(Time::secs),
        subscription,
        signature_failures,
        orders: recent.data.iter().map(OrderLine::from).collect(),
        orders_href: href("/console/orders", &[("store_id", id.as_str())]),
        events_href: href("/console/events", &[("store_id", id.as_str())]),
        customers: customer_views
            .into_iter()
            .map(|c| CustomerLine {
                created: Time::secs(c.created),
                id: c.id,
                stripe_customer_id: c.stripe_customer_id,
                email: c.email,
                name: c.name,
                deleted: c.deleted,
            })
            .collect(),
        customers_next,
        payouts: payout_page
            .data
            .into_iter()
            .map(|p| PayoutLine {
                amount: format_amount(p.amount, &p.currency),
                arrival: p.arrival_date.map(Time::secs),
                failure: p.failure_code.map(|code| match &p.failure_message {
                    Some(m) => format!("{code}: {m}"),
                    None => code,
                }),
                created: p.created.map(Time::secs),
                id: p.id,
                status: p.status,
            })
            .collect(),
        payouts_next,
    })
}

/// What Stripe still asks of the account: each list of fields, why it is disabled, and by when.
fn requirements(value: Option<&serde_json::Value>) -> Vec<Field> {
    let Some(value) = value else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, name) in [
        ("past_due", "Past due"),
        ("currently_due", "Currently due"),
        ("eventually_due", "Eventually due"),
    ] {
        let items: Vec<String> = value[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(plain)
            .collect();
        if !items.is_empty() {
            out.push(Field {
                name: name.to_owned(),
                value: items.join(", "),
            });
        }
    }
    if let Some(reason) = value["disabled_reason"].as_str() {
        out.push(Field {
            name: "Disabled because".to_owned(),
            value: reason.to_owned(),
        });
    }
    if let Some(deadline) = value["current_deadline"].as_i64() {
        out.push(Field {
            name: "Deadline".to_owned(),
            value: Time::secs(deadline).text,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_name_what_is_due() {
        let value = serde_json::json!({
            "currently_due": ["external_account", "tos_acceptance.date"],
            "past_due": [],
            "eventually_due": null,
            "disabled_reason": "requirements.past_due",
            "current_deadline": 1_700_000_000,
        });
        let found = requirements(Some(&value));
        let names: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["Currently due", "Disabled because", "Deadline"]);
        assert_eq!(found[0].value, "external_account, tos_acceptance.date");
        assert!(requirements(None).is_empty());
    }
}

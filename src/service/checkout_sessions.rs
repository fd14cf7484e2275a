//! Stripe Checkout (payment links): an order paid on Stripe's hosted page. The order is saved
//! first, the session is created with `bursar:checkout_session:<order id>` as its idempotency
//! key, and `checkout.session.*` events (or a re-check) settle the order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::connections::store_scope;
use super::orders::chargeable;
use super::{stores, Result, ServiceError, Services};
use crate::db::orders::NewOrder;
use crate::db::{self};
use crate::domain::order::{parse_amount, Currency};
use crate::domain::store::Metadata;
use crate::domain::{Invalid, OrderId, StoreId};
use crate::stripe::IdempotencyKey;

/// One line, in Stripe's own shape (`price_data` with an inline product).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineItem {
    pub price_data: PriceData,
    pub quantity: i64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceData {
    pub currency: String,
    pub unit_amount: i64,
    pub product_data: ProductData,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductData {
    pub name: String,
}

pub struct SessionInput {
    pub line_items: Vec<LineItem>,
    pub success_url: String,
    pub cancel_url: String,
    pub mode: Option<String>,
    pub application_fee_amount: Option<i64>,
    pub metadata: Option<BTreeMap<String, String>>,
    /// A customer of the store (Bursar's `cu_…` id or Stripe's `cus_…`).
    pub customer_id: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub id: String,
    pub object: &'static str,
    pub url: String,
    pub order_id: String,
    pub store_id: String,
    pub amount_total: i64,
    pub currency: String,
}

fn absolute_url(field: &'static str, raw: &str) -> Result<String, Invalid> {
    match url::Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && raw.len() <= 2048 => Ok(raw.to_owned()),
        _ => Err(Invalid::new(field, "must be an absolute http(s) URL")),
    }
}

pub async fn create(s: &Services, store: &StoreId, input: SessionInput) -> Result<SessionView> {
    stores::require(s, store).await?;
    if input.mode.as_deref().is_some_and(|m| m != "payment") {
        return Err(Invalid::new("mode", "only `payment` is supported (subscriptions are billed through PUT /api/v1/stores/{id}/subscription)").into());
    }
    if input.line_items.is_empty() || input.line_items.len() > 100 {
        return Err(Invalid::new("line_items", "must have 1 to 100 items").into());
    }
    let currency = Currency::parse(&input.line_items[0].price_data.currency)?;
    let mut total: i64 = 0;
    for item in &input.line_items {
        if Currency::parse(&item.price_data.currency)? != currency {
            return Err(Invalid::new("line_items", "all items must be in one currency").into());
        }
        let name = item.price_data.product_data.name.trim();
        if name.is_empty() || name.chars().count() > 250 {
            return Err(Invalid::new(
                "line_items",
                "each product name must be 1 to 250 characters",
            )
            .into());
        }
        parse_amount("unit_amount", item.price_data.unit_amount, &currency)?;
        if !(1..=999).contains(&item.quantity) {
            return Err(Invalid::new("quantity", "must be between 1 and 999").into());
        }
        total = total.saturating_add(item.price_data.unit_amount.saturating_mul(item.quantity));
    }
    let amount = parse_amount("amount", total, &currency)?;
    let success_url = absolute_url("success_url", &input.success_url)?;
    let cancel_url = absolute_url("cancel_url", &input.cancel_url)?;
    let metadata = Metadata::parse(input.metadata.unwrap_or_default())?;
    let connection = chargeable(s, store).await?;
    super::billing::may_sell(s, store).await?;
    let connect = connection.is_connect();
    if let Some(fee) = input.application_fee_amount {
        if !connect {
            return Err(ServiceError::Refused {
                code: "application_fee_not_allowed",
                message: "application_fee_amount applies only to connected (connect) stores".into(),
            });
        }
        if fee < 0 || fee >= amount {
            return Err(Invalid::new(
                "application_fee_amount",
                "must be at least 0 and less than the total",
            )
            .into());
        }
    }
    let id = OrderId::generate();
    let account = connection.account_id.clone().unwrap_or_default();
    let customer = match input.customer_id.as_deref() {
        Some(c) => Some(super::customers::stripe_id_for_order(s, store, &account, c).await?),
        None => None,
    };
    db::orders::insert(
        &s.db,
        &NewOrder {
            id: &id,
            store: Some(store),
            connection_kind: connection.kind.into(),
            account_id: &account,
            mode: connection.mode,
            amount,
            currency: currency.as_str(),
            description: Some("Stripe Checkout"),
            customer_id: customer.as_deref(),
            application_fee_amount: input.application_fee_amount,
            metadata: &metadata.to_json(),
            request_key: None,
            return_url: None,
            checkout: true,
            // Checkout Sessions are made in the store's account (Stripe hosts its page).
            charge_type: crate::domain::split::ChargeType::Direct,
            on_behalf_of: false,
            transfer_amount: None,
            splits: &[],
        },
    )
    .await?
    .ok_or(ServiceError::NotFound("store"))?;
    let mut form: Vec<(String, String)> = vec![
        ("mode".into(), "payment".into()),
        ("success_url".into(), success_url),
        ("cancel_url".into(), cancel_url),
        ("client_reference_id".into(), id.to_string()),
        ("metadata[bursar_order_id]".into(), id.to_string()),
        (
            "payment_intent_data[metadata][bursar_order_id]".into(),
            id.to_string(),
        ),
        (
            "payment_intent_data[metadata][bursar_store_id]".into(),
            store.to_string(),
        ),
    ];
    for (n, item) in input.line_items.iter().enumerate() {
        let p = format!("line_items[{n}]");
        form.push((
            format!("{p}[price_data][currency]"),
            currency.as_str().to_owned(),
        ));
        form.push((
            format!("{p}[price_data][unit_amount]"),
            item.price_data.unit_amount.to_string(),
        ));
        form.push((
            format!("{p}[price_data][product_data][name]"),
            item.price_data.product_data.name.trim().to_owned(),
        ));
        form.push((format!("{p}[quantity]"), item.quantity.to_string()));
    }
    if let Some(c) = &customer {
        form.push(("customer".into(), c.clone()));
    }
    if let Some(fee) = input.application_fee_amount {
        form.push((
            "payment_intent_data[application_fee_amount]".into(),
            fee.to_string(),
        ));
    }
    #[derive(Deserialize)]
    struct Created {
        id: String,
        url: String,
    }
    let scope = store_scope(s, store, &connection)?;
    let created: Created = match s
        .stripe
        .post(
            scope.scope(),
            "/v1/checkout/sessions",
            &form,
            &IdempotencyKey::new("checkout_session", id.as_str()),
        )
        .await
    {
        Ok(c) => c,
        Err(e) => {
            let e = ServiceError::from(e);
            if matches!(&e, ServiceError::StripeRefused(se) if !se.is_key_in_use()) {
                db::orders::delete_unstarted(&s.db, &id).await?;
            }
            return Err(e);
        }
    };
    db::orders::set_checkout_session(&s.db, &id, &created.id).await?;
    tracing::info!(order = %id, store = %store, session = %created.id, "checkout session created");
    Ok(SessionView {
        id: created.id,
        object: "checkout_session",
        url: created.url,
        order_id: id.to_string(),
        store_id: store.to_string(),
        amount_total: amount,
        currency: currency.as_str().to_owned(),
    })
}

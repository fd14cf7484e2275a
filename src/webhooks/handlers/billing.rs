//! Vendor billing events on the platform account: `customer.subscription.*`, `invoice.*` and the
//! platform's own `customer.*`. They name no store; the store is the one whose vendor
//! subscription (or platform customer) the event is about.

use serde_json::Value;
use sqlx::AnyConnection;

use crate::db::{self, vendor_subscriptions};
use crate::domain::subscription::SubscriptionFacts;
use crate::service::billing::{invoice_error, subscription_facts, vendor_status_moved};
use crate::webhooks::event::{HandlerError, Incoming};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillingEvent {
    /// `customer.subscription.created|updated`.
    SubscriptionChanged,
    /// `customer.subscription.deleted`: the subscription ended, for good.
    SubscriptionDeleted,
    InvoicePaid,
    InvoicePaymentFailed,
    InvoiceActionRequired,
    /// The platform customer of a store was deleted.
    CustomerDeleted,
}

/// A running subscription Bursar made for a store (`metadata.bursar_store_id`) whose creation's
/// answer never came: the store's record, waiting for that very creation
/// (`metadata.bursar_create_key`), takes it as its own.
async fn adopt(
    conn: &mut AnyConnection,
    id: &str,
    sub: &Value,
) -> Result<Option<vendor_subscriptions::VendorRow>, HandlerError> {
    let (Some(store), Some(create_key), Some(customer)) = (
        sub["metadata"]["bursar_store_id"].as_str(),
        sub["metadata"]["bursar_create_key"].as_str(),
        sub["customer"].as_str(),
    ) else {
        return Ok(None);
    };
    if matches!(
        sub["status"].as_str(),
        Some("canceled" | "incomplete_expired")
    ) || !vendor_subscriptions::adopt(&mut *conn, store, create_key, id, customer).await?
    {
        return Ok(None);
    }
    tracing::info!(
        store,
        subscription = id,
        "vendor subscription adopted from Stripe's event"
    );
    Ok(vendor_subscriptions::by_subscription(&mut *conn, id).await?)
}

pub async fn apply(
    conn: &mut AnyConnection,
    ev: &Incoming,
    object: &Value,
    kind: BillingEvent,
) -> Result<(), HandlerError> {
    let at = (ev.created, ev.seq, 0);
    match kind {
        BillingEvent::SubscriptionChanged | BillingEvent::SubscriptionDeleted => {
            let Some(id) = object["id"].as_str() else {
                return Ok(());
            };
            let row = match vendor_subscriptions::by_subscription(&mut *conn, id).await? {
                Some(row) => row,
                None if kind == BillingEvent::SubscriptionChanged => {
                    match adopt(conn, id, object).await? {
                        Some(row) => row,
                        None => return Ok(()),
                    }
                }
                None => return Ok(()),
            };
            let mut facts = subscription_facts(object, at);
            if kind == BillingEvent::SubscriptionDeleted {
                let reason = object["cancellation_details"]["reason"]
                    .as_str()
                    .unwrap_or("cancellation_requested");
                facts = facts.merge(&SubscriptionFacts {
                    ended: Some(reason.to_owned()),
                    ..Default::default()
                });
            }
            let item = object["items"]["data"][0]["id"].as_str();
            if let Some((before, after)) =
                vendor_subscriptions::merge(&mut *conn, &row.store_id, id, &facts, item).await?
            {
                vendor_status_moved(conn, before, after).await?;
            }
        }
        BillingEvent::InvoicePaid
        | BillingEvent::InvoicePaymentFailed
        | BillingEvent::InvoiceActionRequired => {
            let (Some(invoice), Some(sub)) = (
                object["id"].as_str(),
                object["subscription"]
                    .as_str()
                    .or(object["parent"]["subscription_details"]["subscription"].as_str()),
            ) else {
                return Ok(());
            };
            let Some(row) = vendor_subscriptions::by_subscription(&mut *conn, sub).await? else {
                return Ok(());
            };
            // Only the newest invoice speaks for what the vendor must do now.
            if !db::watermarks::advance(
                &mut *conn,
                &format!("vendor/{}", row.store_id),
                "latest_invoice",
                ev.created,
                ev.seq,
            )
            .await?
            {
                return Ok(());
            }
            let (url, error) = match kind {
                BillingEvent::InvoicePaid => (None, None),
                BillingEvent::InvoiceActionRequired => (
                    object["hosted_invoice_url"].as_str().map(str::to_owned),
                    Some("the payment needs the vendor's action (authentication)".to_owned()),
                ),
                _ => (
                    object["hosted_invoice_url"].as_str().map(str::to_owned),
                    Some(invoice_error(object)),
                ),
            };
            vendor_subscriptions::set_invoice(
                &mut *conn,
                &row.store_id,
                sub,
                invoice,
                url.as_deref(),
                error.as_deref(),
            )
            .await?;
        }
        BillingEvent::CustomerDeleted => {
            let Some(id) = object["id"].as_str() else {
                return Ok(());
            };
            if let Some(row) = vendor_subscriptions::by_customer(&mut *conn, id).await? {
                vendor_subscriptions::set_customer_deleted(&mut *conn, &row.store_id).await?;
            }
        }
    }
    Ok(())
}

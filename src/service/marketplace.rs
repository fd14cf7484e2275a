//! Multi-vendor orders (separate charges and transfers): one PaymentIntent on the platform for
//! the whole cart, grouped under the order's id; each vendor's split is transferred from the
//! charge once Stripe says it is paid (`transfers`). The platform keeps `amount − Σ splits`.
//!
//! Everything that can be refused is refused before Stripe is called; the order and its splits
//! are saved together before the PaymentIntent is asked for, under the order's own key.

use super::order_view::OrderView;
use super::orders::{self, create_payment_intent, key_reused, OrderScope};
use super::{Result, ServiceError};
use crate::db::orders::NewOrder;
use crate::db::transfers::NewSplit;
use crate::db::{self, connections::ConnectionRow};
use crate::domain::order::{ChargedThrough, Currency};
use crate::domain::split::{ChargeType, RequestedSplit};
use crate::domain::store::Metadata;
use crate::domain::{Mode, OrderId, RequestKey, StoreId};
use crate::service::Services;

/// A multi-vendor order as the API asked for it, its fields parsed (`TryFrom` at the edge);
/// what depends on the stores and the configuration is checked here.
pub struct MultiVendorInput {
    /// Positive, and within what Stripe takes in `currency`.
    pub amount: i64,
    pub currency: Currency,
    /// Each store once, each part positive, no more than `amount` in all.
    pub splits: Vec<RequestedSplit>,
    pub description: Option<String>,
    /// The shape of a customer of the platform's own account (`cus_…`).
    pub customer_id: Option<String>,
    pub metadata: Metadata,
    /// Checked against the allow-list here.
    pub return_url: Option<String>,
}

fn conflict(code: &'static str, message: String) -> ServiceError {
    ServiceError::Conflict { code, message }
}

pub async fn create(
    s: &Services,
    input: MultiVendorInput,
    request_key: Option<&RequestKey>,
) -> Result<OrderView> {
    let existing = match request_key {
        Some(k) => match db::orders::by_request_key(&s.db, None, &k.key).await? {
            Some(o) if !k.same_request(o.request_hash.as_deref()) => return Err(key_reused()),
            found => found,
        },
        None => None,
    };
    let (currency, amount) = (&input.currency, input.amount);
    let (description, metadata) = (&input.description, &input.metadata);
    let stores: Vec<&StoreId> = input.splits.iter().map(|s| &s.store).collect();
    let return_url = input
        .return_url
        .as_deref()
        .map(|u| super::links::check_return_url(s, u).map(String::from))
        .transpose()?;
    let mode = s
        .config
        .stripe
        .platform_mode()
        .ok_or_else(|| ServiceError::Refused {
            code: "platform_key_missing",
            message: "STRIPE_SECRET_KEY is not configured: a multi-vendor order is charged on the platform's account".into(),
        })?;
    let mut connections = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        connections.push(receiving(s, i, store, mode).await?);
    }
    let order = match existing {
        Some(o) if o.payment_intent_id.is_some() => {
            return orders::get(s, &OrderId::parse(&o.id)?).await
        }
        Some(o) => o,
        None => {
            let id = OrderId::generate();
            let splits: Vec<NewSplit> = input
                .splits
                .iter()
                .zip(&connections)
                .map(|(split, c)| NewSplit {
                    store: &split.store,
                    account_id: c.account_id.as_deref().unwrap_or_default(),
                    amount: split.amount,
                    description: split.description.as_deref(),
                })
                .collect();
            db::orders::insert(
                &s.db,
                &NewOrder {
                    id: &id,
                    store: None,
                    connection_kind: ChargedThrough::Platform,
                    account_id: "",
                    mode,
                    amount,
                    currency: currency.as_str(),
                    description: description.as_deref(),
                    customer_id: input.customer_id.as_deref(),
                    application_fee_amount: None,
                    metadata: &metadata.to_json(),
                    request_key,
                    return_url: return_url.as_deref(),
                    checkout: false,
                    charge_type: ChargeType::Separate,
                    on_behalf_of: false,
                    transfer_amount: None,
                    splits: &splits,
                },
            )
            .await?
            .ok_or_else(|| {
                conflict(
                    "store_deleted",
                    "a store named in the splits was deleted meanwhile".into(),
                )
            })?
        }
    };
    let id = OrderId::parse(&order.id)?;
    match create_payment_intent(s, &order, &OrderScope::Platform).await {
        Ok(_) => orders::get(s, &id).await,
        // Stripe made nothing (a key still in use is another request making it, not a no).
        Err(ServiceError::StripeRefused(e)) if !e.is_key_in_use() => {
            db::orders::delete_unstarted(&s.db, &id).await?;
            Err(ServiceError::StripeRefused(e))
        }
        Err(e) => Err(e),
    }
}

/// A split's store, if its account can receive the platform's transfers now: connected through
/// Connect, not deauthorized, able to take charges (Stripe's transfers capability comes with
/// it), in the platform key's mode, and not suspended for an unpaid vendor subscription.
async fn receiving(s: &Services, i: usize, store: &StoreId, mode: Mode) -> Result<ConnectionRow> {
    if db::stores::get(&s.db, store).await?.is_none() {
        return Err(ServiceError::Refused {
            code: "unknown_store",
            message: format!("splits[{i}].store_id: there is no store {store}"),
        });
    }
    let Some(c) = db::connections::get(s.db.pool(), store).await? else {
        return Err(conflict(
            "store_not_connected",
            format!("splits[{i}]: the store {store} has no Stripe connection"),
        ));
    };
    if !c.is_connect() || c.account_id.is_none() {
        return Err(ServiceError::Refused {
            code: "split_store_not_connect",
            message: format!(
                "splits[{i}]: the store {store} is connected with its own keys; only a connected (Connect) account can receive the platform's transfers"
            ),
        });
    }
    if c.is_deauthorized() {
        return Err(conflict(
            "store_deauthorized",
            format!("splits[{i}]: the store {store}'s account has deauthorized the platform"),
        ));
    }
    if c.charges_enabled == 0 {
        return Err(conflict(
            "transfers_disabled",
            format!(
                "splits[{i}]: the store {store}'s account cannot receive transfers yet (onboarding unfinished); see GET /api/v1/stores/{{id}}/account"
            ),
        ));
    }
    if c.mode != mode {
        return Err(conflict(
            "mode_mismatch",
            format!(
                "splits[{i}]: the store {store} is connected in {} mode, the platform key is in {mode} mode",
                c.mode
            ),
        ));
    }
    super::billing::may_sell(s, store).await?;
    Ok(c)
}

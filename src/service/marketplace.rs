//! Multi-vendor orders (separate charges and transfers): one PaymentIntent on the platform for
//! the whole cart, grouped under the order's id; each vendor's split is transferred from the
//! charge once Stripe says it is paid (`transfers`). The platform keeps `amount − Σ splits`.
//!
//! Everything that can be refused is refused before Stripe is called; the order and its splits
//! are saved together before the PaymentIntent is asked for, under the order's own key.

use std::collections::{BTreeMap, HashSet};

use super::order_view::OrderView;
use super::orders::{self, create_payment_intent, key_reused, OrderScope};
use super::{Result, ServiceError};
use crate::db::orders::NewOrder;
use crate::db::transfers::NewSplit;
use crate::db::{self, connections::ConnectionRow};
use crate::domain::order::{parse_amount, parse_description, Currency};
use crate::domain::split::ChargeType;
use crate::domain::store::Metadata;
use crate::domain::{Invalid, OrderId, RequestKey, StoreId};
use crate::service::Services;

/// The most splits one order may have (each is a transfer to make and keep).
pub const MAX_SPLITS: usize = 50;

pub struct SplitInput {
    pub store_id: String,
    pub amount: i64,
    pub description: Option<String>,
    /// If given, must be the order's: a transfer from a charge is in the charge's currency.
    pub currency: Option<String>,
}

pub struct MultiVendorInput {
    pub amount: i64,
    pub currency: String,
    pub splits: Vec<SplitInput>,
    pub description: Option<String>,
    /// A customer of the platform's own account (`cus_…`).
    pub customer_id: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub return_url: Option<String>,
}

fn invalid(message: String) -> ServiceError {
    Invalid::new("splits", message).into()
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
    let currency = Currency::parse(&input.currency)?;
    let amount = parse_amount("amount", input.amount, &currency)?;
    if input.splits.is_empty() || input.splits.len() > MAX_SPLITS {
        return Err(invalid(format!(
            "must name between 1 and {MAX_SPLITS} stores"
        )));
    }
    let mut seen = HashSet::new();
    let mut total: i64 = 0;
    let mut stores = Vec::new();
    for (i, split) in input.splits.iter().enumerate() {
        let store = StoreId::parse(&split.store_id)
            .map_err(|_| invalid(format!("splits[{i}].store_id is not a store id (st_…)")))?;
        if !seen.insert(store.clone()) {
            return Err(invalid(format!(
                "splits[{i}].store_id names a store already split; give each store one split"
            )));
        }
        if split.amount <= 0 {
            return Err(invalid(format!(
                "splits[{i}].amount must be a positive integer in the currency's smallest unit"
            )));
        }
        if let Some(c) = &split.currency {
            if Currency::parse(c).ok().as_ref() != Some(&currency) {
                return Err(ServiceError::Refused {
                    code: "currency_mismatch",
                    message: format!(
                        "splits[{i}].currency is {c}, the order is in {}: a transfer from a charge is made in the charge's currency",
                        currency.as_str()
                    ),
                });
            }
        }
        if split
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 1000)
        {
            return Err(invalid(format!(
                "splits[{i}].description must be at most 1000 characters"
            )));
        }
        total = total.saturating_add(split.amount);
        stores.push(store);
    }
    if total > amount {
        return Err(ServiceError::Refused {
            code: "splits_exceed_amount",
            message: format!(
                "the splits add up to {total}, more than the order's amount {amount}; the platform keeps amount − Σ splits, which cannot be negative"
            ),
        });
    }
    let description = parse_description(input.description)?;
    if input.customer_id.as_deref().is_some_and(|c| {
        !c.starts_with("cus_")
            || c.len() > 255
            || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    }) {
        return Err(Invalid::new(
            "customer_id",
            "must be a customer of the platform's own account (cus_…)",
        )
        .into());
    }
    let metadata = Metadata::parse(input.metadata.unwrap_or_default())?;
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
        connections.push(receiving(s, i, store, mode.as_str()).await?);
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
                .zip(&stores)
                .zip(&connections)
                .map(|((split, store), c)| NewSplit {
                    store,
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
                    connection_kind: "platform",
                    account_id: "",
                    mode: mode.as_str(),
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
async fn receiving(s: &Services, i: usize, store: &StoreId, mode: &str) -> Result<ConnectionRow> {
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

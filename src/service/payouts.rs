//! A store's money at Stripe: its balance (read live in its account) and its payouts (kept
//! from Stripe's `payout.*` events; also what `store.payout_*` notifications carry).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::connections::store_scope;
use super::{stores, Result, ServiceError, Services};
use crate::db::payouts::PayoutRow;
use crate::db::{self, now_ms};
use crate::domain::StoreId;

/// A payout of a store's account to its bank, as Stripe reported it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PayoutView {
    /// Stripe's payout id (`po_…`).
    pub id: String,
    pub object: &'static str,
    pub store_id: String,
    /// In the currency's smallest unit.
    pub amount: i64,
    pub currency: String,
    /// `pending`, `in_transit`, `paid`, `failed` or `canceled`.
    pub status: String,
    /// When the payout is expected in the bank (unix seconds).
    pub arrival_date: Option<i64>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    /// When Stripe made it (unix seconds).
    pub created: Option<i64>,
}

impl PayoutView {
    pub fn from_stripe(store: &StoreId, p: &Value) -> Self {
        let text = |k: &str| p[k].as_str().map(str::to_owned);
        PayoutView {
            id: text("id").unwrap_or_default(),
            object: "payout",
            store_id: store.to_string(),
            amount: p["amount"].as_i64().unwrap_or(0),
            currency: text("currency").unwrap_or_default(),
            status: text("status").unwrap_or_default(),
            arrival_date: p["arrival_date"].as_i64(),
            failure_code: text("failure_code"),
            failure_message: text("failure_message"),
            created: p["created"].as_i64(),
        }
    }

    /// The row this view is kept as.
    pub fn row(&self, created: Option<i64>) -> PayoutRow {
        PayoutRow {
            store_id: self.store_id.clone(),
            payout_id: self.id.clone(),
            amount: self.amount,
            currency: self.currency.clone(),
            status: self.status.clone(),
            arrival_date: self.arrival_date,
            failure_code: self.failure_code.clone(),
            failure_message: self.failure_message.clone(),
            created: created.unwrap_or_else(|| now_ms() / 1000),
            updated_at: now_ms(),
        }
    }
}

impl From<PayoutRow> for PayoutView {
    fn from(r: PayoutRow) -> Self {
        PayoutView {
            id: r.payout_id,
            object: "payout",
            store_id: r.store_id,
            amount: r.amount,
            currency: r.currency,
            status: r.status,
            arrival_date: r.arrival_date,
            failure_code: r.failure_code,
            failure_message: r.failure_message,
            created: Some(r.created),
        }
    }
}

pub struct Page {
    pub data: Vec<PayoutView>,
    pub next_cursor: Option<String>,
}

/// A store's payouts as Stripe's events described them, newest first.
pub async fn list(s: &Services, store: &StoreId, cursor: Option<&str>, limit: i64) -> Result<Page> {
    stores::require(s, store).await?;
    let rows = db::payouts::list(&s.db, store, cursor, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    let data: Vec<PayoutView> = rows
        .into_iter()
        .take(limit as usize)
        .map(PayoutView::from)
        .collect();
    let next_cursor = more.then(|| data.last().map(|p| p.id.clone())).flatten();
    Ok(Page { data, next_cursor })
}

/// An amount of one currency in a balance.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Funds {
    pub amount: i64,
    pub currency: String,
}

/// A store's balance at Stripe, read live in the store's account.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BalanceView {
    pub object: &'static str,
    pub store_id: String,
    /// What can be paid out now, per currency.
    pub available: Vec<Funds>,
    /// What is on its way (not settled yet), per currency.
    pub pending: Vec<Funds>,
    pub livemode: bool,
}

pub async fn balance(s: &Services, store: &StoreId) -> Result<BalanceView> {
    stores::require(s, store).await?;
    let connection = db::connections::get(s.db.pool(), store)
        .await?
        .ok_or_else(|| ServiceError::Conflict {
            code: "store_not_connected",
            message: "the store has no Stripe connection".into(),
        })?;
    let scope = store_scope(s, store, &connection)?;
    #[derive(Deserialize)]
    struct Balance {
        #[serde(default)]
        available: Vec<Funds>,
        #[serde(default)]
        pending: Vec<Funds>,
        #[serde(default)]
        livemode: bool,
    }
    let b: Balance = s.stripe.get(scope.scope(), "/v1/balance").await?;
    Ok(BalanceView {
        object: "balance",
        store_id: store.to_string(),
        available: b.available,
        pending: b.pending,
        livemode: b.livemode,
    })
}

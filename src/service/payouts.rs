//! A connected store's payouts, as Bursar tells the platform's app about them.

use serde::Serialize;
use serde_json::Value;

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
    /// `paid` or `failed`.
    pub status: String,
    /// When the payout is expected in the bank (unix seconds).
    pub arrival_date: Option<i64>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
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
        }
    }
}

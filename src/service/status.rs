//! Connection status: the public view the seeds' storefronts poll, and the internal view
//! for the platform's own services.

use serde::Serialize;

use super::{stores, Result, Services};
use crate::db;
use crate::domain::StoreId;

/// `GET /stripe/status/{store_id}`: only whether the store can take payments, and in which mode.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublicStatus {
    pub store_id: String,
    pub has_stripe: bool,
    pub is_live_mode: bool,
}

/// The public status plus what the platform's services need to act on it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InternalStatus {
    #[serde(flatten)]
    pub public: PublicStatus,
    pub kind: Option<String>,
    pub account_id: Option<String>,
    pub key_kind: Option<String>,
    pub publishable_key: Option<String>,
    pub has_webhook_secret: bool,
    pub charges_enabled: bool,
    pub payouts_enabled: bool,
    pub deauthorized: bool,
    pub connected_at: Option<i64>,
}

pub async fn internal(s: &Services, store: &StoreId) -> Result<InternalStatus> {
    stores::require(s, store).await?;
    let row = db::connections::get(s.db.pool(), store).await?;
    let connected = row.as_ref().is_some_and(|r| !r.is_deauthorized());
    Ok(InternalStatus {
        public: PublicStatus {
            store_id: store.to_string(),
            has_stripe: connected,
            is_live_mode: connected && row.as_ref().is_some_and(|r| r.mode.is_live()),
        },
        kind: row.as_ref().map(|r| r.kind.to_string()),
        account_id: row.as_ref().and_then(|r| r.account_id.clone()),
        key_kind: row.as_ref().and_then(|r| r.key_kind.clone()),
        publishable_key: row.as_ref().and_then(|r| r.publishable_key.clone()),
        has_webhook_secret: row.as_ref().is_some_and(|r| r.webhook_secret_enc.is_some()),
        charges_enabled: row.as_ref().is_some_and(|r| r.charges_enabled != 0),
        payouts_enabled: row.as_ref().is_some_and(|r| r.payouts_enabled != 0),
        deauthorized: row.as_ref().is_some_and(|r| r.is_deauthorized()),
        connected_at: row.as_ref().map(|r| r.created_at / 1000),
    })
}

pub async fn public(s: &Services, store: &StoreId) -> Result<PublicStatus> {
    Ok(internal(s, store).await?.public)
}

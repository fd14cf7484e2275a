//! What the ways of onboarding share: the request and its answer, the platform's settings
//! they need, and saving the connection they make.

use serde::{Deserialize, Serialize};

use crate::db::{self, connections::AccountState, connections::NewConnect, DbError};
use crate::domain::{AccountId, Mode, StoreId};
use crate::service::{Result, ServiceError, Services};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnboardingType {
    Standard,
    Express,
    V2,
}

impl OnboardingType {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            OnboardingType::Standard => "standard",
            OnboardingType::Express => "express",
            OnboardingType::V2 => "v2",
        }
    }
}

pub struct OnboardingInput {
    pub kind: OnboardingType,
    pub return_url: String,
    pub refresh_url: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OnboardingView {
    pub object: &'static str,
    pub store_id: String,
    #[serde(rename = "type")]
    pub kind: OnboardingType,
    /// Where to send the merchant: Stripe's authorize page or a (single-use) Account Link.
    pub url: String,
    pub account_id: Option<String>,
    /// Unix seconds after which `url` no longer works.
    pub expires_at: i64,
}

/// A v1 form body from string pairs.
pub(super) fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The platform key's mode: accounts created or connected through it live in that mode.
pub(super) fn platform_mode(s: &Services) -> Result<Mode> {
    s.config
        .stripe
        .platform_mode()
        .ok_or_else(|| not_configured("STRIPE_SECRET_KEY"))
}

pub(super) fn not_configured(var: &str) -> ServiceError {
    ServiceError::Refused {
        code: "connect_not_configured",
        message: format!("{var} is not configured, so Connect onboarding is unavailable"),
    }
}

/// Saves a Connect connection for the store (and tells the platform it is connected), unless
/// the account is another store's.
pub(super) async fn save_connect(
    s: &Services,
    store: &StoreId,
    account: &AccountId,
    connect_type: &str,
    publishable_key: Option<&str>,
    state: &AccountState,
) -> Result<()> {
    let mode = platform_mode(s)?;
    let mut tx = s.db.begin_write().await?;
    if !db::stores::lock(&mut tx, store).await? {
        return Err(ServiceError::NotFound("store"));
    }
    let before = db::connections::get(&mut *tx, store).await?;
    let saved = db::connections::upsert_connect(
        &mut tx,
        store,
        &NewConnect {
            mode,
            account_id: account,
            connect_type,
            publishable_key,
            account: state,
        },
    )
    .await;
    match saved {
        Ok(row) => {
            crate::service::connections::tell_connected(&mut tx, store, before.as_ref(), &row)
                .await?;
            Ok(tx.commit().await?)
        }
        Err(DbError::Conflict(_)) => Err(ServiceError::Conflict {
            code: "account_in_use",
            message: format!("Stripe account {account} is already connected to another store"),
        }),
        Err(e) => Err(e.into()),
    }
}

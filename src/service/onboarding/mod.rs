//! Connect onboarding: Standard (Connect OAuth), Express (an account plus Account Links) and
//! Accounts v2 (`/v2/core/accounts` plus its account links), the OAuth callback, Bursar's own
//! refresh URL for expired links, and Express dashboard login links.
//!
//! Reaching a return URL never marks a store onboarded: the account's state comes from Stripe
//! (`account.updated`, `v2.core.account*` events, or a fetch), never from the browser.

mod accounts;
mod common;
mod oauth;

use serde::{Deserialize, Serialize};

use super::links;
use super::{stores, Result, ServiceError, Services};
use crate::db;
use crate::domain::{AccountId, StoreId};
use crate::stripe::{AccountScope, IdempotencyKey};
use accounts::{account_link, create_account, own_refresh_url};
pub use accounts::{refresh, v2_account_state};
use common::platform_mode;
pub use common::{OnboardingInput, OnboardingType, OnboardingView};
pub use oauth::{callback_url, oauth_callback, Callback, CallbackParams};

pub async fn start(
    s: &Services,
    store: &StoreId,
    input: OnboardingInput,
) -> Result<OnboardingView> {
    stores::require(s, store).await?;
    platform_mode(s)?;
    let return_url = links::check_return_url(s, &input.return_url)?;
    let refresh_url = input
        .refresh_url
        .as_deref()
        .map(|u| links::check_return_url(s, u))
        .transpose()?;
    let existing = db::connections::get(s.db.pool(), store).await?;
    // An active connection is replaced only by finishing the same onboarding again (an Express
    // or v2 account whose link expired); anything else must be disconnected first.
    let resumable = existing.as_ref().and_then(|c| {
        (c.is_connect()
            && !c.is_deauthorized()
            && c.connect_type.as_deref() == Some(input.kind.as_str())
            && input.kind != OnboardingType::Standard)
            .then(|| c.account_id.clone())
            .flatten()
    });
    if existing.as_ref().is_some_and(|c| !c.is_deauthorized()) && resumable.is_none() {
        return Err(ServiceError::Conflict {
            code: "already_connected",
            message: "the store already has a Stripe connection; disconnect it first".into(),
        });
    }
    match input.kind {
        OnboardingType::Standard => oauth::standard(s, store, return_url.as_str()).await,
        OnboardingType::Express | OnboardingType::V2 => {
            let account = match resumable {
                Some(a) => AccountId::parse(&a)?,
                None => create_account(s, store, input.kind).await?,
            };
            let refresh = match refresh_url {
                Some(u) => u.to_string(),
                None => own_refresh_url(s, store, return_url.as_str()).await?,
            };
            let (url, expires_at) =
                account_link(s, input.kind, &account, return_url.as_str(), &refresh).await?;
            Ok(OnboardingView {
                object: "onboarding",
                store_id: store.to_string(),
                kind: input.kind,
                url,
                account_id: Some(account.to_string()),
                expires_at,
            })
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginLinkView {
    pub object: &'static str,
    pub store_id: String,
    pub url: String,
}

/// A one-time link into an Express account's dashboard.
pub async fn login_link(s: &Services, store: &StoreId) -> Result<LoginLinkView> {
    stores::require(s, store).await?;
    let row = db::connections::get(s.db.pool(), store).await?;
    let account = match row {
        Some(r)
            if r.is_connect()
                && !r.is_deauthorized()
                && r.connect_type.as_deref() == Some("express") =>
        {
            AccountId::parse(r.account_id.as_deref().unwrap_or_default())?
        }
        _ => {
            return Err(ServiceError::Refused {
                code: "not_express",
                message: "login links exist only for Express accounts onboarded through Bursar"
                    .into(),
            })
        }
    };
    #[derive(Deserialize)]
    struct Link {
        url: String,
    }
    let key = IdempotencyKey::new(
        "login_link",
        &format!("{account}:{}", crate::domain::ApiKeyId::generate()),
    );
    let link: Link = s
        .stripe
        .post(
            AccountScope::Platform,
            &format!("/v1/accounts/{account}/login_links"),
            &[],
            &key,
        )
        .await?;
    Ok(LoginLinkView {
        object: "login_link",
        store_id: store.to_string(),
        url: link.url,
    })
}

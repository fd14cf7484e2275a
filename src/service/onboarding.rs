//! Connect onboarding: Standard (Connect OAuth), Express (an account plus Account Links) and
//! Accounts v2 (`/v2/core/accounts` plus its account links), the OAuth callback, Bursar's own
//! refresh URL for expired links, and Express dashboard login links.
//!
//! Reaching a return URL never marks a store onboarded: the account's state comes from Stripe
//! (`account.updated`, `v2.core.account*` events, or a fetch), never from the browser.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::connections::StripeAccount;
use super::links::{self, LinkError, Purpose};
use super::{stores, Result, ServiceError, Services};
use crate::db::{self, connections::AccountState, connections::NewConnect, DbError};
use crate::domain::{AccountId, Mode, StoreId};
use crate::stripe::{AccountScope, IdempotencyKey, StripeError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnboardingType {
    Standard,
    Express,
    V2,
}

impl OnboardingType {
    fn as_str(self) -> &'static str {
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
fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The platform key's mode: accounts created or connected through it live in that mode.
fn platform_mode(s: &Services) -> Result<Mode> {
    s.config
        .stripe
        .platform_mode()
        .ok_or_else(|| not_configured("STRIPE_SECRET_KEY"))
}

fn not_configured(var: &str) -> ServiceError {
    ServiceError::Refused {
        code: "connect_not_configured",
        message: format!("{var} is not configured, so Connect onboarding is unavailable"),
    }
}

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
        OnboardingType::Standard => standard(s, store, return_url.as_str()).await,
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

async fn standard(s: &Services, store: &StoreId, return_url: &str) -> Result<OnboardingView> {
    let client_id = s
        .config
        .stripe
        .client_id
        .as_deref()
        .ok_or_else(|| not_configured("STRIPE_CLIENT_ID"))?;
    let state = links::issue_grant(s, store, Purpose::OAuthState, Some(return_url)).await?;
    let base = s.config.stripe.connect_base.trim_end_matches('/');
    let mut url = url::Url::parse(&format!("{base}/oauth/authorize"))
        .expect("STRIPE_CONNECT_BASE was checked at start");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("scope", "read_write")
        .append_pair("state", &state)
        .append_pair("redirect_uri", &callback_url(s));
    Ok(OnboardingView {
        object: "onboarding",
        store_id: store.to_string(),
        kind: OnboardingType::Standard,
        url: url.into(),
        account_id: None,
        expires_at: (db::now_ms() + Purpose::OAuthState.ttl_ms()) / 1000,
    })
}

/// The redirect URI to register in the Stripe Dashboard (Connect → Onboarding options → OAuth).
pub fn callback_url(s: &Services) -> String {
    format!(
        "{}/stripe/oauth/callback",
        s.config.public_url.trim_end_matches('/')
    )
}

async fn own_refresh_url(s: &Services, store: &StoreId, return_url: &str) -> Result<String> {
    let token = links::issue_grant(s, store, Purpose::LinkRefresh, Some(return_url)).await?;
    let base = s.config.public_url.trim_end_matches('/');
    let mut url = url::Url::parse(&format!("{base}/stripe/onboarding/refresh"))
        .expect("BURSAR_PUBLIC_URL was checked at start");
    url.query_pairs_mut().append_pair("grant", &token);
    Ok(url.into())
}

/// Creates the connected account and saves the connection at once, so a crash after Stripe
/// answered leaves no account Bursar does not know. The idempotency key is the store's: a retry
/// (or a new attempt within Stripe's 24 h window) gets the same account back, never a second.
async fn create_account(s: &Services, store: &StoreId, kind: OnboardingType) -> Result<AccountId> {
    let name = stores::require(s, store).await?.name;
    let (id, state) = match kind {
        OnboardingType::V2 => {
            let body = json!({
                "display_name": name,
                "dashboard": "express",
                "configuration": {
                    "merchant": { "capabilities": { "card_payments": { "requested": true } } }
                },
                "defaults": {
                    "responsibilities": { "fees_collector": "application", "losses_collector": "application" }
                },
                "metadata": { "bursar_store_id": store.as_str() },
                "include": ["configuration.merchant", "requirements"],
            });
            let account: Value = s
                .stripe
                .post_json(
                    AccountScope::Platform,
                    "/v2/core/accounts",
                    &body,
                    &IdempotencyKey::new("v2_account", store.as_str()),
                )
                .await?;
            let id = account["id"].as_str().unwrap_or_default().to_owned();
            (id, v2_account_state(&account))
        }
        _ => {
            let form = form(&[
                ("controller[stripe_dashboard][type]", "express"),
                ("controller[fees][payer]", "application"),
                ("controller[losses][payments]", "application"),
                ("capabilities[card_payments][requested]", "true"),
                ("capabilities[transfers][requested]", "true"),
                ("metadata[bursar_store_id]", store.as_str()),
            ]);
            let account: StripeAccount = s
                .stripe
                .post(
                    AccountScope::Platform,
                    "/v1/accounts",
                    &form,
                    &IdempotencyKey::new("express_account", store.as_str()),
                )
                .await?;
            let state = account.state();
            (account.id, state)
        }
    };
    let account = AccountId::parse(&id).map_err(|_| {
        ServiceError::StripeUnavailable(StripeError::Decode("the new account has no id".into()))
    })?;
    save_connect(s, store, &account, kind.as_str(), None, &state).await?;
    tracing::info!(store = %store, account = %account, kind = kind.as_str(), "connected account created");
    Ok(account)
}

async fn save_connect(
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
            super::connections::tell_connected(&mut tx, store, before.as_ref(), &row).await?;
            Ok(tx.commit().await?)
        }
        Err(DbError::Conflict(_)) => Err(ServiceError::Conflict {
            code: "account_in_use",
            message: format!("Stripe account {account} is already connected to another store"),
        }),
        Err(e) => Err(e.into()),
    }
}

/// A fresh onboarding link. Links are single-use and short-lived, so each gets its own
/// idempotency key (drawn once, before the first attempt, reused by the retries).
async fn account_link(
    s: &Services,
    kind: OnboardingType,
    account: &AccountId,
    return_url: &str,
    refresh_url: &str,
) -> Result<(String, i64)> {
    let key = IdempotencyKey::new(
        "account_link",
        &format!("{account}:{}", crate::domain::ApiKeyId::generate()),
    );
    #[derive(Deserialize)]
    struct Link {
        url: String,
        expires_at: Value,
    }
    let link: Link = if kind == OnboardingType::V2 {
        let body = json!({
            "account": account.as_str(),
            "use_case": {
                "type": "account_onboarding",
                "account_onboarding": {
                    "configurations": ["merchant"],
                    "refresh_url": refresh_url,
                    "return_url": return_url,
                }
            }
        });
        s.stripe
            .post_json(
                AccountScope::Platform,
                "/v2/core/account_links",
                &body,
                &key,
            )
            .await?
    } else {
        let form = form(&[
            ("account", account.as_str()),
            ("refresh_url", refresh_url),
            ("return_url", return_url),
            ("type", "account_onboarding"),
        ]);
        s.stripe
            .post(AccountScope::Platform, "/v1/account_links", &form, &key)
            .await?
    };
    let expires_at = match &link.expires_at {
        Value::Number(n) => n.as_i64().unwrap_or_default(),
        Value::String(t) => humantime::parse_rfc3339_weak(t)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64),
        _ => 0,
    };
    Ok((link.url, expires_at))
}

/// Bursar's refresh URL: Stripe sends the merchant here when a link expired or was used; a new
/// link is minted for the store's current account and the merchant sent on to it.
pub async fn refresh(s: &Services, token: &str) -> Result<std::result::Result<String, LinkError>> {
    let grant = match links::redeem_grant(s, token, Purpose::LinkRefresh).await? {
        Ok(g) => g,
        Err(e) => return Ok(Err(e)),
    };
    let store = StoreId::parse(&grant.store_id)?;
    let Some(row) = db::connections::get(s.db.pool(), &store).await? else {
        return Ok(Err(LinkError::Used));
    };
    let kind = match row.connect_type.as_deref() {
        Some("express") => OnboardingType::Express,
        Some("v2") => OnboardingType::V2,
        _ => return Ok(Err(LinkError::Used)),
    };
    let (Some(account), 0) = (row.account_id.as_deref(), row.deauthorized) else {
        return Ok(Err(LinkError::Used));
    };
    let account = AccountId::parse(account)?;
    let return_url = grant.return_url.unwrap_or_default();
    let refresh = own_refresh_url(s, &store, &return_url).await?;
    let (url, _) = account_link(s, kind, &account, &return_url, &refresh).await?;
    Ok(Ok(url))
}

/// What the OAuth callback did, for the page or redirect that answers it.
pub enum Callback {
    /// Connected; send the merchant to the return URL.
    Connected { return_url: String },
    /// The merchant declined; the store is unchanged.
    Denied { return_url: Option<String> },
    /// Refused: a 4xx page with this message.
    Refused { status: u16, message: String },
}

#[derive(Debug, Default, Deserialize)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    pub scope: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    stripe_user_id: String,
    livemode: bool,
    stripe_publishable_key: Option<String>,
    /// Never used: calls act through the platform key and `Stripe-Account`, as Stripe advises.
    /// Held as a secret only so it is wiped and cannot be printed.
    #[allow(dead_code)]
    access_token: Option<SecretString>,
}

/// Completes Standard OAuth: the state must be a live grant (it is spent here, so a replay
/// changes nothing), then the code is exchanged and the account saved.
pub async fn oauth_callback(s: &Services, p: CallbackParams) -> Result<Callback> {
    let refused = |status, message: &str| {
        Ok(Callback::Refused {
            status,
            message: message.to_owned(),
        })
    };
    let Some(state) = p.state.as_deref() else {
        return refused(
            400,
            "The request has no state; start connecting again from the platform.",
        );
    };
    let grant = match links::redeem_grant(s, state, Purpose::OAuthState).await? {
        Ok(g) => g,
        Err(LinkError::Expired) => {
            return refused(
                400,
                "This connection request has expired; start again from the platform.",
            )
        }
        Err(LinkError::Used) => {
            return refused(
                400,
                "This connection request was already used; start again from the platform.",
            )
        }
        Err(_) => return refused(400, "This connection request is not valid."),
    };
    let store = StoreId::parse(&grant.store_id)?;
    if let Some(error) = p.error.as_deref() {
        tracing::info!(store = %store, error, "Connect OAuth declined or failed at Stripe");
        if error == "access_denied" {
            return Ok(Callback::Denied {
                return_url: grant.return_url,
            });
        }
        return refused(
            400,
            &format!(
                "Stripe could not connect the account: {}",
                p.error_description.as_deref().unwrap_or(error)
            ),
        );
    }
    let Some(code) = p.code.filter(|c| !c.is_empty() && c.len() <= 255) else {
        return refused(400, "Stripe sent no authorization code.");
    };
    let code = SecretString::from(code);
    let form = form(&[
        ("grant_type", "authorization_code"),
        ("code", secrecy::ExposeSecret::expose_secret(&code)),
    ]);
    let token: TokenResponse = match s.stripe.post_oauth("/oauth/token", &form, false).await {
        Ok(t) => t,
        Err(StripeError::Api {
            status,
            code,
            message,
            ..
        }) if status < 500 && status != 429 => {
            tracing::warn!(store = %store, code = ?code, "Connect OAuth code exchange refused");
            let plain = match code.as_deref() {
                Some("invalid_grant") => {
                    "The authorization code is invalid, expired or already used"
                }
                Some("invalid_client") => "Stripe did not accept the platform's credentials",
                _ => "Stripe refused the connection",
            };
            return refused(400, &format!("{plain}: {message}"));
        }
        Err(e) => {
            // Stripe may have connected the account and lost its answer: the code is spent
            // either way, and authorizing again from a fresh link finishes the connection.
            tracing::warn!(store = %store, error = %e, "Connect OAuth code exchange unanswered");
            return refused(
                502,
                "Stripe did not answer while connecting your account, so it may or may not be connected. Start again from the platform: connecting again is safe and finishes it.",
            );
        }
    };
    let account = AccountId::parse(&token.stripe_user_id)?;
    if Mode::from_livemode(token.livemode) != platform_mode(s)? {
        return refused(
            400,
            "The connected account's mode does not match the platform key's.",
        );
    }
    // Best effort: the account's current state now; `account.updated` keeps it true later.
    let state = match s
        .stripe
        .get::<StripeAccount>(AccountScope::Connected(&account), "/v1/account")
        .await
    {
        Ok(a) => a.state(),
        Err(e) => {
            tracing::warn!(store = %store, account = %account, error = %e, "could not fetch the newly connected account");
            AccountState::default()
        }
    };
    match save_connect(
        s,
        &store,
        &account,
        "standard",
        token.stripe_publishable_key.as_deref(),
        &state,
    )
    .await
    {
        Ok(()) => {}
        Err(ServiceError::Conflict { message, .. }) => return refused(409, &message),
        Err(e) => return Err(e),
    }
    tracing::info!(store = %store, account = %account, "store connected with Connect OAuth");
    Ok(Callback::Connected {
        return_url: grant.return_url.unwrap_or_default(),
    })
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

/// What Bursar keeps of an Accounts v2 account: card payments and payouts by capability
/// status, requirements grouped by their deadline status.
pub fn v2_account_state(account: &Value) -> AccountState {
    let merchant = &account["configuration"]["merchant"]["capabilities"];
    let active = |v: &Value| v["status"].as_str() == Some("active");
    let entries = account["requirements"]["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let due = |status: &str| {
        entries
            .iter()
            .filter(|e| e["minimum_deadline"]["status"].as_str() == Some(status))
            .filter_map(|e| e["description"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let currently_due = due("currently_due");
    let past_due = due("past_due");
    let disabled_reason = merchant["card_payments"]["status_details"]
        .as_array()
        .and_then(|d| d.first())
        .and_then(|d| d["code"].as_str())
        .map(str::to_owned);
    AccountState {
        charges_enabled: active(&merchant["card_payments"]),
        payouts_enabled: active(&merchant["stripe_balance"]["payouts"])
            || active(&merchant["card_payments"]) && merchant["stripe_balance"].is_null(),
        details_submitted: entries.is_empty(),
        requirements: Some(
            json!({
                "currently_due": currently_due,
                "past_due": past_due,
                "eventually_due": due("eventually_due"),
                "disabled_reason": disabled_reason,
                "current_deadline": account["requirements"]["summary"]["minimum_deadline"]["time"],
            })
            .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_state_reads_capabilities_and_requirement_deadlines() {
        let restricted = json!({
            "configuration": {"merchant": {"capabilities": {"card_payments": {
                "status": "restricted",
                "status_details": [{"code": "requirements_past_due", "resolution": "provide_info"}]
            }}}},
            "requirements": {"entries": [
                {"description": "representative.first_name", "minimum_deadline": {"status": "currently_due"}},
                {"description": "tos_acceptance", "minimum_deadline": {"status": "past_due"}}
            ], "summary": {"minimum_deadline": {"status": "past_due", "time": null}}}
        });
        let state = v2_account_state(&restricted);
        assert!(!state.charges_enabled && !state.details_submitted);
        let req: Value = serde_json::from_str(state.requirements.as_deref().unwrap()).unwrap();
        assert_eq!(req["currently_due"], json!(["representative.first_name"]));
        assert_eq!(req["past_due"], json!(["tos_acceptance"]));
        assert_eq!(req["disabled_reason"], "requirements_past_due");

        let active = json!({
            "configuration": {"merchant": {"capabilities": {"card_payments": {"status": "active"}}}},
            "requirements": {"entries": []}
        });
        let state = v2_account_state(&active);
        assert!(state.charges_enabled && state.payouts_enabled && state.details_submitted);
    }
}

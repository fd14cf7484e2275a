//! Standard accounts: Connect OAuth, from the authorize link to the callback that saves the
//! connection.

use secrecy::SecretString;
use serde::Deserialize;

use super::common::{
    form, not_configured, platform_mode, save_connect, OnboardingType, OnboardingView,
};
use crate::db::{self, connections::AccountState};
use crate::domain::{AccountId, Mode, StoreId};
use crate::service::connections::StripeAccount;
use crate::service::links::{self, LinkError, Purpose};
use crate::service::{Result, ServiceError, Services};
use crate::stripe::{AccountScope, StripeError};

pub(super) async fn standard(
    s: &Services,
    store: &StoreId,
    return_url: &str,
) -> Result<OnboardingView> {
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

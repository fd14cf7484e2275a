//! Express and Accounts v2: the account Bursar creates for the store, its onboarding links
//! (and Bursar's own refresh URL for expired ones), and what a v2 account's state says.

use serde::Deserialize;
use serde_json::{json, Value};

use super::common::{form, save_connect, OnboardingType};
use crate::db::{self, connections::AccountState};
use crate::domain::{AccountId, StoreId};
use crate::service::connections::StripeAccount;
use crate::service::links::{self, LinkError, Purpose};
use crate::service::{stores, Result, ServiceError, Services};
use crate::stripe::{AccountScope, IdempotencyKey, StripeError};

pub(super) async fn own_refresh_url(
    s: &Services,
    store: &StoreId,
    return_url: &str,
) -> Result<String> {
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
pub(super) async fn create_account(
    s: &Services,
    store: &StoreId,
    kind: OnboardingType,
) -> Result<AccountId> {
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

/// A fresh onboarding link. Links are single-use and short-lived, so each gets its own
/// idempotency key (drawn once, before the first attempt, reused by the retries).
pub(super) async fn account_link(
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

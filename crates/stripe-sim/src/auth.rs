//! API keys and the account a request acts on, with Stripe's answers when they do not fit.

use axum::http::{HeaderMap, StatusCode};
use base64::Engine;

use crate::http::ApiError;
use crate::state::Sim;

/// v1 names the connected account to act as with this header…
pub(crate) const STRIPE_ACCOUNT: &str = "Stripe-Account";
/// …and v2 with this one.
pub(crate) const STRIPE_CONTEXT: &str = "Stripe-Context";

/// Who called, and on whose account.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    /// The key as sent, for error messages (always masked there).
    pub key: String,
    /// Called with the platform key.
    pub platform: bool,
    /// The account acted on; `None` is the platform's own account.
    pub account: Option<String>,
}

/// The header naming the connected account for a request to `path`.
pub(crate) fn account_header(path: &str) -> &'static str {
    if path.starts_with("/v2/") {
        STRIPE_CONTEXT
    } else {
        STRIPE_ACCOUNT
    }
}

/// The API key of `Authorization: Bearer <key>`, or of Basic auth with the key as user name
/// (what `curl -u sk_test_…:` sends, as in Stripe's documentation).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("Authorization")?.to_str().ok()?;
    let key = if let Some(key) = value.strip_prefix("Bearer ") {
        key.trim().to_owned()
    } else {
        let encoded = value.strip_prefix("Basic ")?.trim();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        decoded.split(':').next()?.to_owned()
    };
    (!key.is_empty()).then_some(key)
}

pub(crate) fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// Resolves the key and the account header (`Stripe-Account` or `Stripe-Context`, per
/// `on_behalf_header`) to the caller. The platform key reaches only accounts connected to the
/// platform and not deauthorized; an account's own key reaches only that account.
pub(crate) fn authenticate(
    sim: &Sim,
    headers: &HeaderMap,
    on_behalf_header: &str,
) -> Result<Caller, ApiError> {
    let Some(key) = bearer(headers) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "You did not provide an API key. You need to provide your API key in the \
             Authorization header, using Bearer auth (e.g. 'Authorization: Bearer \
             YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or \
             we can help at https://support.stripe.com/.",
        ));
    };
    let key = key.as_str();
    if is_publishable(key) {
        return Err(if known_publishable(sim, key) {
            publishable_refused()
        } else {
            invalid_key(key)
        });
    }
    let on_behalf = header(headers, on_behalf_header);
    let mut state = sim.lock();
    let mut own = state.keys.get(key).cloned();
    if own.is_none() && key != sim.platform_key {
        own = open_account(sim, &mut state, key);
    }
    resolve(&state, key, key == sim.platform_key, own, on_behalf)
}

/// With `open_keys`, the account an invented test key opens (made on first use, with the
/// same suffix for its secret, restricted and publishable keys); None otherwise.
pub(crate) fn open_account(
    sim: &Sim,
    state: &mut crate::state::State,
    key: &str,
) -> Option<String> {
    let suffix = ["sk_test_", "rk_test_", "pk_test_"]
        .iter()
        .find_map(|p| key.strip_prefix(p))?;
    let wellformed = (8..=200).contains(&suffix.len())
        && suffix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !sim.open_keys || !wellformed {
        return None;
    }
    // Only keys no account has: a known key of the set (or a revoked OAuth token that once
    // was one) is never moved to a new account.
    let set = [
        format!("sk_test_{suffix}"),
        format!("rk_test_{suffix}"),
        format!("pk_test_{suffix}"),
    ];
    let taken = state.keys.contains_key(&set[0])
        || state.keys.contains_key(&set[1])
        || state.publishable_keys.contains_key(&set[2])
        || state
            .accounts
            .values()
            .any(|a| a.oauth_tokens.iter().any(|t| set.contains(t)));
    if taken {
        return None;
    }
    let mut v1 = crate::accounts::example(&crate::accounts::new_id());
    v1["charges_enabled"] = serde_json::json!(true);
    v1["payouts_enabled"] = serde_json::json!(true);
    v1["details_submitted"] = serde_json::json!(true);
    v1["requirements"] = serde_json::json!({
        "alternatives": [], "currently_due": [], "errors": [], "eventually_due": [],
        "past_due": [], "pending_verification": [], "disabled_reason": null,
        "current_deadline": null,
    });
    let id = v1["id"].as_str().unwrap_or_default().to_owned();
    for prefix in ["sk_test_", "rk_test_"] {
        state.keys.insert(format!("{prefix}{suffix}"), id.clone());
    }
    state
        .publishable_keys
        .insert(format!("pk_test_{suffix}"), id.clone());
    state
        .accounts
        .insert(id.clone(), crate::state::Account::new(v1, false, false));
    Some(id)
}

/// Who a key is: the platform (acting for itself, or for a reachable connected account named
/// by `on_behalf`), or an account acting on itself only.
fn resolve(
    state: &crate::state::State,
    key: &str,
    platform: bool,
    own: Option<String>,
    on_behalf: Option<&str>,
) -> Result<Caller, ApiError> {
    let caller = |platform, account: Option<String>| Caller {
        key: key.to_owned(),
        platform,
        account,
    };
    if platform {
        return match on_behalf {
            None => Ok(caller(true, None)),
            Some(a) if state.reachable(a).is_some() => Ok(caller(true, Some(a.to_owned()))),
            Some(a) => Err(no_access(key, a)),
        };
    }
    match own {
        Some(own) => match on_behalf {
            Some(a) if a != own => Err(no_access(key, a)),
            _ => Ok(caller(false, Some(own))),
        },
        None => Err(invalid_key(key)),
    }
}

fn invalid_key(key: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_request_error",
        format!("Invalid API Key provided: {}", mask(key)),
    )
}

/// A publishable key (`pk_test_…`, `pk_live_…`): what Stripe.js sends, good only for the few
/// routes a browser may call with an object's client secret.
pub(crate) fn is_publishable(key: &str) -> bool {
    key.starts_with("pk_test_") || key.starts_with("pk_live_")
}

fn known_publishable(sim: &Sim, key: &str) -> bool {
    key == sim.platform_publishable_key
        || sim.lock().publishable_keys.contains_key(key)
        || (sim.open_keys && key.starts_with("pk_test_"))
}

/// Stripe's answer to a publishable key on a route that needs a secret one.
pub(crate) fn publishable_refused() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "invalid_request_error",
        "This API call cannot be made with a publishable API key. Please use a secret API key. \
         You can find a list of your API keys at https://dashboard.stripe.com/account/apikeys.",
    )
}

/// Resolves a publishable key and the account Stripe.js names (`_stripe_account`, lifted to
/// `Stripe-Account`) to the caller, as `authenticate` does for secret keys: the platform's
/// publishable key reaches its own account and, with an account named, the accounts connected
/// to it; an account's publishable key reaches only that account.
pub(crate) fn publishable(
    sim: &Sim,
    key: &str,
    on_behalf: Option<&str>,
) -> Result<Caller, ApiError> {
    let mut state = sim.lock();
    let mut own = state.publishable_keys.get(key).cloned();
    if own.is_none() && key != sim.platform_publishable_key {
        own = open_account(sim, &mut state, key);
    }
    resolve(
        &state,
        key,
        key == sim.platform_publishable_key,
        own,
        on_behalf,
    )
}

/// Stripe's answer when a key may not act on an account (never connected, deauthorized, or
/// another account's key).
pub(crate) fn no_access(key: &str, account: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "invalid_request_error",
        format!(
            "The provided key '{}' does not have access to account '{account}' (or that account \
             does not exist). Application access may have been revoked.",
            mask(key)
        ),
    )
    .code("account_invalid")
}

/// `sk_test_****************abcd`: Stripe's own masking, so error messages never carry a key.
pub(crate) fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() > 12 {
        let head: String = chars[..8].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{head}{}{tail}", "*".repeat(chars.len() - 12))
    } else {
        "****".into()
    }
}

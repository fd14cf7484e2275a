//! The one client every Stripe call goes through.
//!
//! The account scope is a required argument (there is no default), `Stripe-Version` is pinned,
//! every POST/DELETE carries the caller's `Idempotency-Key`, and 429/5xx/network failures are
//! retried with jittered exponential backoff, honouring `Stripe-Should-Retry`.
//!
//! Bursar speaks Stripe's form-encoded HTTP API through reqwest rather than async-stripe: see
//! docs/decisions/0001-hand-written-stripe-client.md for the reasons.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::rate::RateBudget;
use crate::config::StripeConfig;
use crate::domain::{AccountId, Mode};
use crate::metrics::Metrics;

/// The API version Bursar is written against; sent on every request.
pub const STRIPE_VERSION: &str = "2025-10-29.clover";

/// Whose account a call acts on.
#[derive(Clone, Copy)]
pub enum AccountScope<'a> {
    /// The platform's own account, with the platform key.
    Platform,
    /// A connected account: the platform key plus `Stripe-Account`.
    Connected(&'a AccountId),
    /// A store's independent account, with the store's own key.
    OwnKey(&'a SecretString),
}

impl std::fmt::Debug for AccountScope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccountScope::Platform => f.write_str("Platform"),
            AccountScope::Connected(a) => write!(f, "Connected({a})"),
            AccountScope::OwnKey(_) => f.write_str("OwnKey([REDACTED])"),
        }
    }
}

/// An idempotency key made from the operation and its business id, e.g.
/// `bursar:payment_intent:ord_123`, so a retried operation can never act twice.
#[derive(Clone, Debug)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn new(operation: &str, business_id: &str) -> Self {
        Self(format!("bursar:{operation}:{business_id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// Stripe answered with an error; `message` is Stripe's own, with any key redacted.
    #[error("Stripe answered {status}: {message}")]
    Api {
        status: u16,
        kind: Option<String>,
        code: Option<String>,
        message: String,
    },
    #[error("could not reach Stripe: {0}")]
    Network(String),
    #[error("unexpected response from Stripe: {0}")]
    Decode(String),
    #[error("STRIPE_SECRET_KEY is not configured, so platform-scope calls are impossible")]
    PlatformKeyMissing,
}

impl StripeError {
    /// Stripe's 409 for an idempotency key whose first request is still running.
    pub fn is_key_in_use(&self) -> bool {
        matches!(self, StripeError::Api { status: 409, .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StripeError::Api { status: 404, .. })
    }

    /// True when Stripe refused the credentials themselves.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            StripeError::Api {
                status: 401 | 403,
                ..
            }
        )
    }
}

/// A request body: v1 speaks forms, v2 (and nothing else) JSON.
#[derive(Clone, Copy)]
enum Body<'a> {
    None,
    Form(&'a [(String, String)]),
    Json(&'a serde_json::Value),
}

/// Whether a call may be sent again after a failure that may have reached Stripe.
enum Replay<'a> {
    /// Stripe replays its first answer for this key.
    Key(&'a IdempotencyKey),
    /// Running it twice does no harm (reads, deauthorizing).
    Harmless,
    /// It must not run twice: retried only when Stripe surely did not act.
    Once,
}

pub struct StripeClient {
    http: reqwest::Client,
    base: String,
    connect_base: String,
    platform_key: Option<SecretString>,
    max_retries: u32,
    retry_base: Duration,
    budget: RateBudget,
    metrics: Arc<Metrics>,
}

impl StripeClient {
    pub fn new(config: &StripeConfig, metrics: Arc<Metrics>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("Bursar/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds with static settings");
        Self {
            http,
            base: config.api_base.trim_end_matches('/').to_owned(),
            connect_base: config.connect_base.trim_end_matches('/').to_owned(),
            platform_key: config.secret_key.clone(),
            max_retries: config.max_retries,
            retry_base: config.retry_base,
            budget: RateBudget::new(),
            metrics,
        }
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        scope: AccountScope<'_>,
        path: &str,
    ) -> Result<T, StripeError> {
        self.send(
            Method::GET,
            scope,
            &self.url(path),
            Body::None,
            Replay::Harmless,
        )
        .await
    }

    /// A v2 POST (`/v2/…`): a JSON body; a connected account is named by `Stripe-Context`.
    pub async fn post_json<T: DeserializeOwned>(
        &self,
        scope: AccountScope<'_>,
        path: &str,
        body: &serde_json::Value,
        key: &IdempotencyKey,
    ) -> Result<T, StripeError> {
        self.send(
            Method::POST,
            scope,
            &self.url(path),
            Body::Json(body),
            Replay::Key(key),
        )
        .await
    }

    /// A POST to Connect's OAuth endpoints (`STRIPE_CONNECT_BASE`), with the platform key.
    /// They take no idempotency key. `repeatable` says whether sending it twice is harmless
    /// (deauthorizing) or not (a code exchange spends its code): one that is not is retried
    /// only when Stripe surely did not act, and a lost answer is the caller's to report, never a
    /// retry that answers `invalid_grant`.
    pub async fn post_oauth<T: DeserializeOwned>(
        &self,
        path: &str,
        form: &[(String, String)],
        repeatable: bool,
    ) -> Result<T, StripeError> {
        let url = format!("{}{path}", self.connect_base);
        let replay = if repeatable {
            Replay::Harmless
        } else {
            Replay::Once
        };
        self.send(
            Method::POST,
            AccountScope::Platform,
            &url,
            Body::Form(form),
            replay,
        )
        .await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        scope: AccountScope<'_>,
        path: &str,
        form: &[(String, String)],
        key: &IdempotencyKey,
    ) -> Result<T, StripeError> {
        self.send(
            Method::POST,
            scope,
            &self.url(path),
            Body::Form(form),
            Replay::Key(key),
        )
        .await
    }

    pub async fn delete<T: DeserializeOwned>(
        &self,
        scope: AccountScope<'_>,
        path: &str,
        key: &IdempotencyKey,
    ) -> Result<T, StripeError> {
        self.send(
            Method::DELETE,
            scope,
            &self.url(path),
            Body::None,
            Replay::Key(key),
        )
        .await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        scope: AccountScope<'_>,
        url: &str,
        body: Body<'_>,
        replay: Replay<'_>,
    ) -> Result<T, StripeError> {
        let (idempotency, replayable) = match replay {
            Replay::Key(k) => (Some(k), true),
            Replay::Harmless => (None, true),
            Replay::Once => (None, false),
        };
        // Logged by path only: query strings and link URLs are not for logs.
        let path = url::Url::parse(url)
            .map(|u| u.path().to_owned())
            .unwrap_or_default();
        let path = path.as_str();
        // v2 names the connected account with `Stripe-Context`, v1 with `Stripe-Account`.
        let account_header = if path.starts_with("/v2/") {
            "Stripe-Context"
        } else {
            "Stripe-Account"
        };
        let (key, account) = match scope {
            AccountScope::Platform => (
                self.platform_key
                    .as_ref()
                    .ok_or(StripeError::PlatformKeyMissing)?,
                None,
            ),
            AccountScope::Connected(a) => (
                self.platform_key
                    .as_ref()
                    .ok_or(StripeError::PlatformKeyMissing)?,
                Some(a),
            ),
            AccountScope::OwnKey(k) => (k, None),
        };
        let mode = if key.expose_secret().contains("_live_") {
            Mode::Live
        } else {
            Mode::Test
        };
        let budget_key = match account {
            Some(a) => a.to_string(),
            None => hex::encode(&Sha256::digest(key.expose_secret().as_bytes())[..8]),
        };
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", key.expose_secret())).map_err(|_| {
                StripeError::Decode("API key has characters not allowed in a header".into())
            })?;
        auth.set_sensitive(true);
        let mut attempt = 0;
        loop {
            self.budget.acquire(&budget_key, mode).await;
            let mut request = self
                .http
                .request(method.clone(), url)
                .header(AUTHORIZATION, auth.clone())
                .header("Stripe-Version", STRIPE_VERSION);
            if let Some(a) = account {
                request = request.header(account_header, a.as_str());
            }
            if let Some(k) = idempotency {
                request = request.header("Idempotency-Key", k.as_str());
            }
            request = match body {
                Body::None => request,
                Body::Form(form) => request.form(form),
                Body::Json(json) => request.json(json),
            };
            let started = std::time::Instant::now();
            let sent = request.send().await;
            self.metrics.stripe_call(
                method.as_str(),
                path,
                sent.as_ref().map_or(0, |r| r.status().as_u16()),
                started.elapsed().as_secs_f64(),
            );
            let failure = match sent {
                Ok(response) if response.status().is_success() => {
                    return response
                        .json::<T>()
                        .await
                        .map_err(|e| StripeError::Decode(e.without_url().to_string()));
                }
                Ok(response) => {
                    let status = response.status();
                    let should_retry = response
                        .headers()
                        .get("Stripe-Should-Retry")
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v == "true");
                    // Which limit a 429 met (`global-rate`, `endpoint-concurrency`, …): for
                    // the operator reading the log; the retry is the same.
                    if let Some(reason) = response
                        .headers()
                        .get("Stripe-Rate-Limited-Reason")
                        .and_then(|v| v.to_str().ok())
                    {
                        tracing::warn!(%method, path, reason, "Stripe rate-limited the call");
                    }
                    let error = api_error(status, response.text().await.unwrap_or_default());
                    // A call that must not run twice (an OAuth code exchange) is retried
                    // only when Stripe surely did not act on it.
                    let retryable = should_retry.unwrap_or(
                        status == StatusCode::TOO_MANY_REQUESTS
                            || (replayable && status.is_server_error()),
                    );
                    (error, retryable)
                }
                Err(e) => {
                    let retryable = replayable || e.is_connect();
                    (StripeError::Network(e.without_url().to_string()), retryable)
                }
            };
            let (error, retryable) = failure;
            if !retryable || attempt >= self.max_retries {
                return Err(error);
            }
            tracing::warn!(%method, path, attempt, error = %error, "Stripe call failed; retrying");
            tokio::time::sleep(self.backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// Exponential backoff with jitter: somewhere in [d/2, d] for d = base · 2^attempt, at most 30 s.
    fn backoff(&self, attempt: u32) -> Duration {
        let d = self
            .retry_base
            .saturating_mul(1 << attempt.min(10))
            .min(Duration::from_secs(30));
        let half = d / 2;
        half + rand::thread_rng().gen_range(Duration::ZERO..=half)
    }
}

fn api_error(status: StatusCode, body: String) -> StripeError {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Envelope {
        Api {
            error: ApiBody,
        },
        /// Connect OAuth: `{"error":"invalid_grant","error_description":"…"}`.
        OAuth {
            error: String,
            error_description: Option<String>,
        },
    }
    #[derive(serde::Deserialize)]
    struct ApiBody {
        message: Option<String>,
        #[serde(rename = "type")]
        kind: Option<String>,
        code: Option<String>,
    }
    match serde_json::from_str::<Envelope>(&body) {
        Ok(Envelope::Api { error }) => StripeError::Api {
            status: status.as_u16(),
            message: redact_keys(error.message.as_deref().unwrap_or("no message")),
            kind: error.kind,
            code: error.code,
        },
        Ok(Envelope::OAuth {
            error,
            error_description,
        }) => StripeError::Api {
            status: status.as_u16(),
            message: redact_keys(error_description.as_deref().unwrap_or(&error)),
            kind: Some("oauth_error".into()),
            code: Some(error),
        },
        Err(_) => StripeError::Api {
            status: status.as_u16(),
            kind: None,
            code: None,
            message: format!("HTTP {status} without a Stripe error body"),
        },
    }
}

/// Secret-bearing prefixes: secret and restricted keys, webhook signing secrets.
const SECRET_PREFIXES: [&str; 5] = ["sk_test_", "sk_live_", "rk_test_", "rk_live_", "whsec_"];

/// Masks anything shaped like a Stripe secret, wherever it stands (`'sk_live_…'`,
/// `key=sk_live_…`), keeping its prefix and last four characters. Works on characters, not
/// bytes: Stripe's messages may hold any Unicode.
pub fn redact_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((at, prefix)) = SECRET_PREFIXES
        .iter()
        .filter_map(|p| rest.find(p).map(|i| (i, *p)))
        .min_by_key(|(i, _)| *i)
    {
        out.push_str(&rest[..at]);
        out.push_str(prefix);
        let after = &rest[at + prefix.len()..];
        let end = after.find(ends_secret).unwrap_or(after.len());
        let body = &after[..end];
        out.push_str("****");
        // Four characters are kept only from a body long enough that they reveal little.
        if body.chars().count() > 8 {
            let tail = body.char_indices().rev().nth(3).map_or(0, |(i, _)| i);
            out.push_str(&body[tail..]);
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Where a secret ends in running text: white space, quotes, brackets, separators.
fn ends_secret(c: char) -> bool {
    c.is_whitespace() || "'\"`,;:.()[]{}<>&=\\|".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_messages_are_masked() {
        assert_eq!(
            redact_keys("Invalid API Key provided: sk_test_abcdefghijkl1234"),
            "Invalid API Key provided: sk_test_****1234"
        );
        assert_eq!(redact_keys("nothing here"), "nothing here");
    }

    #[test]
    fn masking_handles_any_unicode_and_any_position() {
        // Byte slicing panicked here: the last four bytes split the euro sign.
        assert_eq!(
            redact_keys("Bad key sk_test_a€xy given"),
            "Bad key sk_test_**** given"
        );
        assert_eq!(
            redact_keys("key 'sk_live_0123456789abcdef' and key=rk_test_zyxwvutsrqpo9876."),
            "key 'sk_live_****cdef' and key=rk_test_****9876."
        );
        assert_eq!(
            redact_keys("é€sk_test_ünïcødé€€€€ whsec_abc"),
            "é€sk_test_****€€€€ whsec_****"
        );
        assert_eq!(redact_keys("sk_test_"), "sk_test_****");
        assert_eq!(redact_keys(""), "");
    }

    #[test]
    fn oauth_errors_keep_their_code_and_description() {
        let e = api_error(
            StatusCode::BAD_REQUEST,
            r#"{"error":"invalid_grant","error_description":"Authorization code does not exist: ac_1"}"#.into(),
        );
        match e {
            StripeError::Api { code, message, .. } => {
                assert_eq!(code.as_deref(), Some("invalid_grant"));
                assert_eq!(message, "Authorization code does not exist: ac_1");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scope_debug_hides_the_key() {
        let key = SecretString::from("sk_test_verysecret".to_owned());
        assert!(!format!("{:?}", AccountScope::OwnKey(&key)).contains("verysecret"));
    }
}

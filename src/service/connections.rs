//! A store's Stripe connection: pasted keys (checked against Stripe before saving), the
//! webhook secret, disconnecting, and the account view.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{notifications, stores, Result, ServiceError, Services};
use crate::config::KeyPolicy;
use crate::db::{
    self, connections::AccountState, connections::ConnectionRow, connections::NewKeys,
};
use crate::domain::connection::ConnectionKind;
use crate::domain::keys::parse_webhook_secret;
use crate::domain::{AccountId, KeyKind, PublishableKey, SecretKey, StoreId};
use crate::stripe::{AccountScope, StripeError};
use crate::vault::Binding;

pub const SECRET_KEY_FIELD: &str = "secret_key";
pub const WEBHOOK_SECRET_FIELD: &str = "webhook_secret";

/// Where a store's secrets are bound: its own connection row.
pub fn binding<'a>(store: &'a StoreId, field: &'static str) -> Binding<'a> {
    Binding {
        table: "connections",
        row: store.as_str(),
        field,
    }
}

/// The account fields of Stripe's `GET /v1/account` that Bursar keeps.
#[derive(Debug, Deserialize)]
pub struct StripeAccount {
    pub id: String,
    #[serde(default)]
    pub charges_enabled: bool,
    #[serde(default)]
    pub payouts_enabled: bool,
    #[serde(default)]
    pub details_submitted: bool,
    #[serde(default)]
    pub requirements: Option<serde_json::Value>,
}

impl StripeAccount {
    pub fn state(&self) -> AccountState {
        AccountState {
            charges_enabled: self.charges_enabled,
            payouts_enabled: self.payouts_enabled,
            details_submitted: self.details_submitted,
            requirements: self.requirements.as_ref().map(|r| {
                serde_json::json!({
                    "currently_due": r.get("currently_due"),
                    "past_due": r.get("past_due"),
                    "eventually_due": r.get("eventually_due"),
                    "disabled_reason": r.get("disabled_reason"),
                    "current_deadline": r.get("current_deadline"),
                })
                .to_string()
            }),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectionView {
    pub store_id: String,
    pub object: &'static str,
    pub kind: String,
    pub mode: String,
    pub account_id: Option<String>,
    pub key_kind: Option<String>,
    pub publishable_key: Option<String>,
    pub has_webhook_secret: bool,
    pub webhook_url: String,
    /// Whether Stripe's events can reach the store: a `keys` store needs an endpoint of its
    /// own; a Connect store's come to the platform's Connect endpoint.
    pub webhook: WebhookState,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookState {
    /// `ready` (events can be verified), `missing` (no endpoint secret yet) or `failing`
    /// (making the endpoint at Stripe failed just now; `reason` says why).
    pub status: &'static str,
    pub reason: Option<String>,
}

impl WebhookState {
    pub fn failing(reason: String) -> Self {
        WebhookState {
            status: "failing",
            reason: Some(reason),
        }
    }
}

impl ConnectionView {
    fn new(s: &Services, row: ConnectionRow, warnings: Vec<String>) -> Self {
        let webhook = if row.is_connect() || row.webhook_secret_enc.is_some() {
            WebhookState {
                status: "ready",
                reason: None,
            }
        } else {
            WebhookState {
                status: "missing",
                reason: Some(format!(
                    "no webhook signing secret: set one (PUT /api/v1/stores/{}/connection/webhook-secret) or let Bursar make the endpoint (`bursar webhooks setup --store {}`)",
                    row.store_id, row.store_id
                )),
            }
        };
        Self {
            webhook_url: format!(
                "{}/webhooks/stripe/stores/{}",
                s.config.public_url.trim_end_matches('/'),
                row.store_id
            ),
            store_id: row.store_id,
            object: "connection",
            kind: row.kind.to_string(),
            mode: row.mode.to_string(),
            account_id: row.account_id,
            key_kind: row.key_kind,
            publishable_key: row.publishable_key,
            has_webhook_secret: row.webhook_secret_enc.is_some(),
            webhook,
            warnings,
        }
    }
}

pub struct KeysInput {
    pub secret_key: SecretString,
    pub publishable_key: String,
    pub webhook_secret: Option<SecretString>,
}

/// Checks the keys with Stripe (`GET /v1/account` under the store's own key), then saves them
/// sealed. Nothing is saved unless Stripe accepted the key.
pub async fn connect_keys(
    s: &Services,
    store: &StoreId,
    input: KeysInput,
) -> Result<ConnectionView> {
    stores::require(s, store).await?;
    let secret = SecretKey::parse(input.secret_key)?;
    let publishable = PublishableKey::parse(&input.publishable_key)?;
    let webhook_secret = input.webhook_secret.map(parse_webhook_secret).transpose()?;
    if secret.mode() != publishable.mode() {
        return Err(ServiceError::Refused {
            code: "mode_mismatch",
            message: format!(
                "the secret key is a {} key but the publishable key is a {} key",
                secret.mode(),
                publishable.mode()
            ),
        });
    }
    let mut warnings = Vec::new();
    if crate::domain::keys::visibly_unpaired(&secret, &publishable) {
        warnings.push("the publishable key seems to belong to another Stripe account than the secret key (the part after `51` differs): shoppers would see \"Invalid API Key\"; paste both keys from one account's Dashboard".into());
    }
    if secret.kind() == KeyKind::Secret {
        match s.config.key_policy {
            KeyPolicy::RestrictedOnly => {
                return Err(ServiceError::Refused {
                    code: "restricted_key_required",
                    message: "this platform accepts only restricted keys (rk_…); create one in the Stripe Dashboard".into(),
                })
            }
            KeyPolicy::Warn => {
                tracing::warn!(store = %store, "store connected with a full secret key; a restricted key (rk_) is recommended");
                warnings.push("a full secret key (sk_) was used; Stripe recommends a restricted key (rk_) for plugins".into());
            }
            KeyPolicy::Allow => {}
        }
    }
    let account: StripeAccount = s
        .stripe
        .get(AccountScope::OwnKey(secret.secret()), "/v1/account")
        .await?;
    let account_id = AccountId::parse(&account.id).map_err(|_| {
        ServiceError::StripeUnavailable(crate::stripe::StripeError::Decode("account id".into()))
    })?;
    let secret_key_enc = s
        .vault
        .seal(secret.secret(), binding(store, SECRET_KEY_FIELD));
    let webhook_secret_enc =
        webhook_secret.map(|w| s.vault.seal(&w, binding(store, WEBHOOK_SECRET_FIELD)));
    let mut tx = s.db.begin_write().await?;
    if !db::stores::lock(&mut tx, store).await? {
        return Err(ServiceError::NotFound("store"));
    }
    let before = db::connections::get(&mut *tx, store).await?;
    let row = db::connections::upsert_keys(
        &mut tx,
        store,
        &NewKeys {
            mode: secret.mode(),
            account_id: &account_id,
            key_kind: secret.kind(),
            publishable_key: publishable.as_str(),
            secret_key_enc: &secret_key_enc,
            webhook_secret_enc: webhook_secret_enc.as_deref(),
            account: &account.state(),
        },
    )
    .await?;
    tell_connected(&mut tx, store, before.as_ref(), &row).await?;
    tx.commit().await?;
    tracing::info!(store = %store, account = %account_id, mode = %secret.mode(), "store connected with keys");
    Ok(ConnectionView::new(s, row, warnings))
}

/// Sets the secret of an endpoint made with the key sealed as `key_enc`, only while the
/// connection still holds that key and the webhook secret `previous` (sealed; None: none);
/// false otherwise.
pub async fn set_webhook_secret_for_key(
    s: &Services,
    store: &StoreId,
    secret: SecretString,
    key_enc: &str,
    previous: Option<&str>,
) -> Result<bool> {
    let secret = parse_webhook_secret(secret)?;
    let sealed = s.vault.seal(&secret, binding(store, WEBHOOK_SECRET_FIELD));
    Ok(
        db::connections::set_webhook_secret_for_key(&s.db, store, &sealed, key_enc, previous)
            .await?,
    )
}

pub async fn set_webhook_secret(
    s: &Services,
    store: &StoreId,
    secret: SecretString,
) -> Result<ConnectionView> {
    stores::require(s, store).await?;
    let secret = parse_webhook_secret(secret)?;
    let sealed = s.vault.seal(&secret, binding(store, WEBHOOK_SECRET_FIELD));
    if !db::connections::set_webhook_secret(&s.db, store, &sealed).await? {
        return Err(ServiceError::Refused {
            code: "not_connected",
            message: "the store has no Stripe connection; connect it first".into(),
        });
    }
    let row = db::connections::get(s.db.pool(), store)
        .await?
        .ok_or(ServiceError::NotFound("connection"))?;
    Ok(ConnectionView::new(s, row, Vec::new()))
}

/// Whether the store holds a working connection; None when there is no such store.
pub async fn is_connected(s: &Services, store: &StoreId) -> Result<Option<bool>> {
    if db::stores::get(&s.db, store).await?.is_none() {
        return Ok(None);
    }
    let row = db::connections::get(s.db.pool(), store).await?;
    Ok(Some(row.is_some_and(|r| !r.is_deauthorized())))
}

/// The store's connection as the API shows it.
pub async fn connection(s: &Services, store: &StoreId) -> Result<ConnectionView> {
    let row = db::connections::get(s.db.pool(), store)
        .await?
        .ok_or(ServiceError::NotFound("connection"))?;
    Ok(ConnectionView::new(s, row, Vec::new()))
}

/// Forgets the connection and its secrets. A Standard (OAuth) connection is deauthorized at
/// Stripe first, and kept if Stripe cannot be reached, so the operator can retry; Express and
/// v2 accounts belong to the platform and are only forgotten here (Stripe keeps them).
pub async fn disconnect(s: &Services, store: &StoreId) -> Result<()> {
    stores::require(s, store).await?;
    if let Some(row) = db::connections::get(s.db.pool(), store).await? {
        if let (ConnectionKind::Connect, Some("standard"), Some(account), false) = (
            row.kind,
            row.connect_type.as_deref(),
            row.account_id.as_deref(),
            row.is_deauthorized(),
        ) {
            deauthorize(s, account).await?;
            tracing::info!(store = %store, account, "connected account deauthorized at Stripe");
        }
    }
    let mut tx = s.db.begin_write().await?;
    db::stores::lock(&mut tx, store).await?;
    if !db::connections::delete(&mut tx, store).await? {
        return Err(ServiceError::NotFound("connection"));
    }
    let view = account_view(store, None);
    notifications::emit(&mut tx, "store.disconnected", Some(store.as_str()), &view).await?;
    tx.commit().await?;
    tracing::info!(store = %store, "store disconnected");
    Ok(())
}

/// After a connection is saved in `conn`'s transaction: a store that now holds an account it
/// did not (a first connection, another account or mode, or one after a deauthorization) is
/// told to the platform's app in that transaction. Saving the same account again says nothing.
pub async fn tell_connected(
    conn: &mut sqlx::AnyConnection,
    store: &StoreId,
    before: Option<&ConnectionRow>,
    after: &ConnectionRow,
) -> Result<()> {
    let same = before.is_some_and(|b| {
        !b.is_deauthorized()
            && b.kind == after.kind
            && b.mode == after.mode
            && b.account_id == after.account_id
    });
    if same {
        return Ok(());
    }
    let view = account_view(store, Some(after.clone()));
    notifications::emit(conn, "store.connected", Some(store.as_str()), &view).await
}

/// The store's webhook signing secret, opened; `None` when it has none.
pub async fn webhook_secret(s: &Services, store: &StoreId) -> Result<Option<SecretString>> {
    Ok(store_endpoint(s, store).await?.map(|e| e.secret))
}

/// A store's own webhook endpoint: its signing secret and the account it belongs to. Every
/// event verified with this secret is about that account, whatever the store holds later.
pub struct StoreEndpoint {
    pub secret: SecretString,
    pub account_id: Option<String>,
}

pub async fn store_endpoint(s: &Services, store: &StoreId) -> Result<Option<StoreEndpoint>> {
    let Some(row) = db::connections::get(s.db.pool(), store).await? else {
        return Ok(None);
    };
    let Some(enc) = row.webhook_secret_enc else {
        return Ok(None);
    };
    Ok(Some(StoreEndpoint {
        secret: s.vault.open(&enc, binding(store, WEBHOOK_SECRET_FIELD))?,
        account_id: row.account_id,
    }))
}

/// The credentials a call in this store's account needs.
pub enum StoreScope {
    Connected(AccountId),
    OwnKey(SecretString),
}

impl StoreScope {
    pub fn scope(&self) -> AccountScope<'_> {
        match self {
            StoreScope::Connected(a) => AccountScope::Connected(a),
            StoreScope::OwnKey(k) => AccountScope::OwnKey(k),
        }
    }
}

/// A deauthorized connection has no credentials: nothing is ever fetched for it again.
pub fn store_scope(s: &Services, store: &StoreId, row: &ConnectionRow) -> Result<StoreScope> {
    if row.is_deauthorized() {
        return Err(ServiceError::Refused {
            code: "deauthorized",
            message: "the connected account has deauthorized the platform".into(),
        });
    }
    match (row.kind, &row.account_id, &row.secret_key_enc) {
        (ConnectionKind::Connect, Some(account), _) => {
            Ok(StoreScope::Connected(AccountId::parse(account)?))
        }
        (ConnectionKind::Keys, _, Some(enc)) => Ok(StoreScope::OwnKey(
            s.vault.open(enc, binding(store, SECRET_KEY_FIELD))?,
        )),
        _ => Err(ServiceError::Refused {
            code: "not_connected",
            message: "the store has no usable Stripe credentials".into(),
        }),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountView {
    pub store_id: String,
    pub object: &'static str,
    pub connected: bool,
    pub kind: Option<String>,
    /// `standard`, `express` or `v2` for connected accounts.
    pub connect_type: Option<String>,
    pub mode: Option<String>,
    pub account_id: Option<String>,
    pub charges_enabled: bool,
    pub payouts_enabled: bool,
    pub details_submitted: bool,
    pub requirements: Option<serde_json::Value>,
    pub last_payout_failure: Option<serde_json::Value>,
    pub balance: Option<serde_json::Value>,
    pub external_account: Option<serde_json::Value>,
    pub deauthorized: bool,
    pub synced: Option<i64>,
}

pub async fn account(s: &Services, store: &StoreId) -> Result<AccountView> {
    stores::require(s, store).await?;
    let row = db::connections::get(s.db.pool(), store).await?;
    Ok(account_view(store, row))
}

/// The store's account as the API shows it, from its connection row (none: not connected).
pub fn account_view(store: &StoreId, row: Option<ConnectionRow>) -> AccountView {
    let json = |v: &Option<String>| v.as_deref().and_then(|t| serde_json::from_str(t).ok());
    match row {
        None => AccountView {
            store_id: store.to_string(),
            object: "account_status",
            connected: false,
            kind: None,
            connect_type: None,
            mode: None,
            account_id: None,
            charges_enabled: false,
            payouts_enabled: false,
            details_submitted: false,
            requirements: None,
            last_payout_failure: None,
            balance: None,
            external_account: None,
            deauthorized: false,
            synced: None,
        },
        Some(r) => AccountView {
            store_id: r.store_id.clone(),
            object: "account_status",
            connected: !r.is_deauthorized(),
            deauthorized: r.is_deauthorized(),
            requirements: json(&r.requirements),
            last_payout_failure: json(&r.last_payout_failure),
            balance: json(&r.balance),
            external_account: json(&r.external_account),
            kind: Some(r.kind.to_string()),
            connect_type: r.connect_type,
            mode: Some(r.mode.to_string()),
            account_id: r.account_id,
            charges_enabled: r.charges_enabled != 0,
            payouts_enabled: r.payouts_enabled != 0,
            details_submitted: r.details_submitted != 0,
            synced: r.account_synced_at.map(|t| t / 1000),
        },
    }
}

/// Deauthorizes a Standard connection at Stripe. An account Stripe no longer links to the
/// platform is already what we want.
async fn deauthorize(s: &Services, account: &str) -> Result<()> {
    let client_id = s
        .config
        .stripe
        .client_id
        .as_deref()
        .ok_or_else(|| ServiceError::Refused {
            code: "connect_not_configured",
            message:
                "STRIPE_CLIENT_ID is not configured, so a Standard account cannot be deauthorized"
                    .into(),
        })?;
    let form = vec![
        ("client_id".to_owned(), client_id.to_owned()),
        ("stripe_user_id".to_owned(), account.to_owned()),
    ];
    match s
        .stripe
        .post_oauth::<serde_json::Value>("/oauth/deauthorize", &form, true)
        .await
    {
        Ok(_) => Ok(()),
        Err(StripeError::Api { code, message, .. })
            if code.as_deref() == Some("invalid_client") && message.contains("No such user") =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_keep_only_what_operators_need() {
        let account: StripeAccount =
            serde_json::from_value(crate::stripe::fixtures::object("account").unwrap()).unwrap();
        let state = account.state();
        let req: serde_json::Value =
            serde_json::from_str(state.requirements.as_deref().unwrap()).unwrap();
        assert!(req["currently_due"].is_array());
        assert!(req.get("alternatives").is_none());
    }
}

//! The webhook endpoints Bursar needs at Stripe, made and checked by Bursar itself: the
//! platform's (vendor billing), its Connect endpoint (every connected store), and a `keys`
//! store's own (made with that store's key). Each enables exactly the events Bursar handles
//! there and pins Bursar's API version; the signing secret Stripe returns once is sealed.
//!
//! Bursar finds its own endpoints by `metadata[bursar_endpoint]` (then by URL), so running the
//! setup again changes nothing, and an endpoint moved or narrowed by hand is put right.

use std::collections::BTreeSet;

use secrecy::SecretString;
use serde::Serialize;
use serde_json::Value;

use super::connections::{self, StoreScope};
use super::{Result, ServiceError, Services};
use crate::db;
use crate::domain::StoreId;
use crate::stripe::events::{store_events, ACCOUNT_EVENTS, PLATFORM_EVENTS};
use crate::stripe::{AccountScope, IdempotencyKey, STRIPE_VERSION};
use crate::vault::Binding;

/// Stripe's limit of webhook endpoints per account.
pub const MAX_ENDPOINTS: usize = 16;

/// One endpoint Bursar needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Platform,
    Connect,
    Store(StoreId),
}

impl Target {
    /// Its name in `metadata[bursar_endpoint]` and in the `webhook_endpoints` table.
    pub fn name(&self) -> String {
        match self {
            Target::Platform => "platform".into(),
            Target::Connect => "connect".into(),
            Target::Store(id) => format!("store:{id}"),
        }
    }

    /// Where Stripe must deliver: Bursar's door for it under `BURSAR_PUBLIC_URL`.
    pub fn url(&self, public_url: &str) -> String {
        let base = public_url.trim_end_matches('/');
        match self {
            Target::Platform => format!("{base}/webhooks/stripe"),
            Target::Connect => format!("{base}/webhooks/stripe/connect"),
            Target::Store(id) => format!("{base}/webhooks/stripe/stores/{id}"),
        }
    }

    pub fn events(&self) -> Vec<&'static str> {
        match self {
            Target::Platform => PLATFORM_EVENTS.to_vec(),
            Target::Connect => ACCOUNT_EVENTS.to_vec(),
            Target::Store(_) => store_events(),
        }
    }

    /// Who the endpoint belongs to, in words.
    pub fn describe(&self) -> String {
        match self {
            Target::Platform => "platform endpoint".into(),
            Target::Connect => "Connect endpoint".into(),
            Target::Store(id) => format!("store {id}'s endpoint"),
        }
    }
}

/// What `setup` did to one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
    /// Made anew because its secret is not held here (Stripe shows it only at creation) or it
    /// renders another API version; the old one was deleted.
    Recreated,
}

#[derive(Debug, Clone, Serialize)]
pub struct SetupReport {
    pub endpoint: String,
    pub outcome: Outcome,
    pub endpoint_id: String,
    pub url: String,
}

/// The credentials an endpoint's calls use: the platform key, or a `keys` store's own (with
/// its sealed form, which names the connection the endpoint is made for).
enum Owner {
    Platform,
    /// `sealed` and `webhook_sealed` are the connection's key and webhook secret as they were
    /// when the setup began: it saves its secret only over exactly those.
    Store {
        key: SecretString,
        sealed: String,
        webhook_sealed: Option<String>,
    },
}

impl Owner {
    fn scope(&self) -> AccountScope<'_> {
        match self {
            Owner::Platform => AccountScope::Platform,
            Owner::Store { key, .. } => AccountScope::OwnKey(key),
        }
    }
}

async fn owner(s: &Services, target: &Target) -> Result<Owner> {
    let Target::Store(store) = target else {
        return Ok(Owner::Platform);
    };
    super::stores::require(s, store).await?;
    let row = db::connections::get(s.db.pool(), store)
        .await?
        .ok_or(ServiceError::NotFound("connection"))?;
    store_owner(s, store, &row)
}

/// Who makes a store's endpoint, from its connection as read.
fn store_owner(
    s: &Services,
    store: &StoreId,
    row: &db::connections::ConnectionRow,
) -> Result<Owner> {
    match connections::store_scope(s, store, row)? {
        StoreScope::OwnKey(key) => Ok(Owner::Store {
            key,
            sealed: row.secret_key_enc.clone().unwrap_or_default(),
            webhook_sealed: row.webhook_secret_enc.clone(),
        }),
        StoreScope::Connected(_) => Err(ServiceError::Refused {
            code: "connect_store",
            message: format!(
                "store {store} is connected through Connect: its events come to the Connect endpoint, not an endpoint of its own"
            ),
        }),
    }
}

/// Saves a `keys` store's keys (`connections::connect_keys`); when it has no webhook secret
/// and `BURSAR_AUTO_WEBHOOK_ENDPOINTS` is on, makes its endpoint at Stripe with its key, so no
/// order stays pending because a step was skipped. A key that may not manage endpoints leaves
/// the keys saved and says why in `webhook`.
pub async fn connect_keys(
    s: &Services,
    store: &StoreId,
    input: connections::KeysInput,
) -> Result<connections::ConnectionView> {
    let before = db::connections::get(s.db.pool(), store).await?;
    let new_account = |view: &connections::ConnectionView| {
        before.as_ref().is_some_and(|b| {
            !b.is_connect()
                && (b.account_id.as_deref() != view.account_id.as_deref()
                    || b.mode.as_str() != view.mode)
        })
    };
    // The endpoint in the previous account (or mode) is removed with the previous key, which
    // the connection no longer holds once the new keys are saved.
    let previous = match &before {
        Some(b) if !b.is_connect() => {
            let target = Target::Store(store.clone());
            match (
                db::operator::endpoint(&s.db, &target.name()).await?,
                store_owner(s, store, b),
            ) {
                (Some(saved), Ok(owner)) => Some((saved.endpoint_id, owner)),
                _ => None,
            }
        }
        _ => None,
    };
    let view = connections::connect_keys(s, store, input).await?;
    if let Some((id, owner)) = previous.filter(|_| new_account(&view)) {
        remove(s, &owner, &id).await;
        db::operator::forget_endpoint(&s.db, &Target::Store(store.clone()).name()).await?;
    }
    if view.webhook.status != "missing" || !s.config.auto_webhook_endpoints {
        return Ok(view);
    }
    match setup(s, &Target::Store(store.clone())).await {
        Ok(report) => {
            tracing::info!(store = %store, endpoint = %report.endpoint_id, "the store's webhook endpoint was made at Stripe");
            let mut fresh = connections::connection(s, store).await?;
            fresh.warnings = view.warnings;
            Ok(fresh)
        }
        Err(e) => {
            tracing::warn!(store = %store, error = %e, "the store's webhook endpoint could not be made at Stripe");
            Ok(connections::ConnectionView {
                webhook: connections::WebhookState::failing(format!(
                    "Bursar could not make the store's webhook endpoint at Stripe ({e}); give the key write access to Webhook Endpoints and run `bursar webhooks setup --store {store}`, or set a secret with PUT /api/v1/stores/{store}/connection/webhook-secret"
                )),
                ..view
            })
        }
    }
}

/// The targets of a whole setup: the platform's own endpoint, its Connect endpoint when it is
/// a Connect platform (a client id configured, or a store connected through Connect; Stripe
/// refuses `connect=true` otherwise), and every `keys` store's own.
pub async fn all_targets(s: &Services) -> Result<Vec<Target>> {
    let rows = db::connections::all(&s.db).await?;
    let mut targets = vec![Target::Platform];
    if uses_connect(s, &rows) {
        targets.push(Target::Connect);
    }
    for row in rows {
        if !row.is_connect() {
            targets.push(Target::Store(StoreId::parse(&row.store_id)?));
        }
    }
    Ok(targets)
}

/// Whether the platform needs a Connect endpoint.
pub fn uses_connect(s: &Services, rows: &[db::connections::ConnectionRow]) -> bool {
    s.config.stripe.client_id.is_some() || rows.iter().any(|r| r.is_connect())
}

/// Every endpoint of the account `owner` opens, newest first.
async fn list(s: &Services, owner: &Owner) -> Result<Vec<Value>> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = "/v1/webhook_endpoints?limit=100".to_owned();
        if let Some(a) = &after {
            path.push_str(&format!("&starting_after={a}"));
        }
        let page: Value = s.stripe.get(owner.scope(), &path).await?;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        after = data
            .last()
            .and_then(|e| e["id"].as_str())
            .map(str::to_owned);
        all.extend(data);
        if page["has_more"] != true || after.is_none() {
            return Ok(all);
        }
    }
}

/// Bursar's endpoint for `target` among `endpoints`: by its metadata, else by its URL.
fn find<'a>(endpoints: &'a [Value], target: &Target, url: &str) -> Option<&'a Value> {
    let name = target.name();
    endpoints
        .iter()
        .find(|e| e["metadata"]["bursar_endpoint"] == name.as_str())
        .or_else(|| endpoints.iter().find(|e| e["url"] == url))
}

fn enabled_events(endpoint: &Value) -> BTreeSet<String> {
    endpoint["enabled_events"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn binding<'a>(name: &'a str) -> Binding<'a> {
    Binding {
        table: "webhook_endpoints",
        row: name,
        field: "webhook_secret",
    }
}

/// Whether Bursar holds the signing secret of `target`'s endpoint `endpoint_id`.
async fn secret_held(s: &Services, target: &Target, endpoint_id: &str) -> Result<bool> {
    let row = db::operator::endpoint(&s.db, &target.name()).await?;
    let recorded = row.as_ref().is_some_and(|r| r.endpoint_id == endpoint_id);
    Ok(match target {
        Target::Store(store) => {
            recorded
                && db::connections::get(s.db.pool(), store)
                    .await?
                    .is_some_and(|c| c.webhook_secret_enc.is_some())
        }
        _ => recorded && row.is_some_and(|r| r.secret_enc.is_some()),
    })
}

/// Creates or corrects `target`'s endpoint at Stripe and keeps its secret.
pub async fn setup(s: &Services, target: &Target) -> Result<SetupReport> {
    let public_url = &s.config.public_url;
    let url = target.url(public_url);
    let owner = owner(s, target).await?;
    let endpoints = list(s, &owner).await?;
    let name = target.name();
    let wanted: BTreeSet<String> = target.events().iter().map(|e| e.to_string()).collect();
    let report = |outcome, endpoint_id: &str| SetupReport {
        endpoint: name.clone(),
        outcome,
        endpoint_id: endpoint_id.to_owned(),
        url: url.clone(),
    };
    let existing = find(&endpoints, target, &url).cloned();
    if let Some(e) = &existing {
        let id = e["id"].as_str().unwrap_or_default().to_owned();
        let same_version = e["api_version"].as_str() == Some(STRIPE_VERSION);
        if same_version && secret_held(s, target, &id).await? {
            let right = e["url"] == url.as_str()
                && enabled_events(e) == wanted
                && e["status"] == "enabled"
                && e["metadata"]["bursar_endpoint"] == name.as_str();
            if right {
                return Ok(report(Outcome::Unchanged, &id));
            }
            let mut form = vec![
                ("url".to_owned(), url.clone()),
                ("disabled".to_owned(), "false".to_owned()),
                ("metadata[bursar_endpoint]".to_owned(), name.clone()),
            ];
            form.extend(events_form(&wanted));
            let _: Value = s
                .stripe
                .post(
                    owner.scope(),
                    &format!("/v1/webhook_endpoints/{id}"),
                    &form,
                    &IdempotencyKey::new("webhook_endpoint_update", &nonce(&id)),
                )
                .await?;
            db::operator::save_endpoint(&s.db, &name, &id, &url, None).await?;
            tracing::info!(endpoint = %name, id, "webhook endpoint corrected");
            return Ok(report(Outcome::Updated, &id));
        }
    }
    // A new endpoint: Stripe's limit is checked first, counting the one this replaces as freed.
    let in_use = endpoints.len() - usize::from(existing.is_some());
    if in_use >= MAX_ENDPOINTS {
        return Err(ServiceError::Refused {
            code: "endpoint_limit",
            message: format!(
                "the account already has {} webhook endpoints, Stripe's limit is {MAX_ENDPOINTS}: delete unused ones (Dashboard → Developers → Webhooks) and run again",
                endpoints.len()
            ),
        });
    }
    let mut form = vec![
        ("url".to_owned(), url.clone()),
        ("api_version".to_owned(), STRIPE_VERSION.to_owned()),
        (
            "description".to_owned(),
            format!("Bursar: {}", target.describe()),
        ),
        ("metadata[bursar_endpoint]".to_owned(), name.clone()),
    ];
    if *target == Target::Connect {
        form.push(("connect".to_owned(), "true".to_owned()));
    }
    form.extend(events_form(&wanted));
    let created: Value = s
        .stripe
        .post(
            owner.scope(),
            "/v1/webhook_endpoints",
            &form,
            &IdempotencyKey::new("webhook_endpoint", &nonce(&name)),
        )
        .await?;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let secret = SecretString::from(created["secret"].as_str().unwrap_or_default().to_owned());
    match (target, &owner) {
        (
            Target::Store(store),
            Owner::Store {
                sealed,
                webhook_sealed,
                ..
            },
        ) => {
            // Kept only while the connection is as this setup found it (the same key, the same
            // webhook secret or none): keys that changed meanwhile, a disconnection, or a
            // concurrent setup that saved first leave this endpoint to no one, so it goes.
            let kept = connections::set_webhook_secret_for_key(
                s,
                store,
                secret,
                sealed,
                webhook_sealed.as_deref(),
            )
            .await?;
            if !kept {
                remove(s, &owner, &id).await;
                return Err(ServiceError::Conflict {
                    code: "connection_changed",
                    message: format!("store {store}'s keys changed while its webhook endpoint was made; that endpoint was removed again: run the setup again"),
                });
            }
            db::operator::save_endpoint(&s.db, &name, &id, &url, None).await?;
        }
        _ => {
            let sealed = s.vault.seal(&secret, binding(&name));
            db::operator::save_endpoint(&s.db, &name, &id, &url, Some(&sealed)).await?;
        }
    }
    let outcome = match existing {
        Some(old) => {
            // The new one works already; an old one that will not go only fails its deliveries.
            remove(s, &owner, old["id"].as_str().unwrap_or_default()).await;
            Outcome::Recreated
        }
        None => Outcome::Created,
    };
    tracing::info!(endpoint = %name, id, "webhook endpoint created");
    Ok(report(outcome, &id))
}

/// Deletes an endpoint at Stripe, best effort: one left behind only fails its deliveries.
async fn remove(s: &Services, owner: &Owner, id: &str) {
    let deleted: std::result::Result<Value, _> = s
        .stripe
        .delete(
            owner.scope(),
            &format!("/v1/webhook_endpoints/{id}"),
            &IdempotencyKey::new("webhook_endpoint_delete", id),
        )
        .await;
    if let Err(e) = deleted {
        tracing::warn!(endpoint = id, error = %e, "a webhook endpoint Bursar no longer uses could not be deleted at Stripe");
    }
}

/// Disconnects the store (`connections::disconnect`); a `keys` store's endpoint that Bursar
/// made in its account is deleted there first, with its key, so it does not fail on for ever.
pub async fn disconnect(s: &Services, store: &StoreId) -> Result<()> {
    remove_store_endpoint(s, store).await?;
    connections::disconnect(s, store).await
}

/// The store's recorded endpoint, deleted at Stripe with the key it holds now (best effort).
async fn remove_store_endpoint(s: &Services, store: &StoreId) -> Result<()> {
    let target = Target::Store(store.clone());
    let Some(saved) = db::operator::endpoint(&s.db, &target.name()).await? else {
        return Ok(());
    };
    if let Ok(owner) = owner(s, &target).await {
        remove(s, &owner, &saved.endpoint_id).await;
    }
    db::operator::forget_endpoint(&s.db, &target.name()).await?;
    Ok(())
}

/// `enabled_events[i]` for each wanted event.
fn events_form(wanted: &BTreeSet<String>) -> impl Iterator<Item = (String, String)> + '_ {
    wanted
        .iter()
        .enumerate()
        .map(|(i, ev)| (format!("enabled_events[{i}]"), ev.clone()))
}

/// A fresh idempotency key per run: retries within a call share it, a later run (after the
/// endpoint was deleted, say) must not replay an old answer.
fn nonce(what: &str) -> String {
    format!("{what}:{}", super::links::random_token())
}

/// The secrets stored for the platform or Connect endpoint (tried after the configured ones).
pub async fn stored_secret(s: &Services, target: &Target) -> Result<Option<SecretString>> {
    let name = target.name();
    match db::operator::endpoint(&s.db, &name).await? {
        Some(db::operator::EndpointRow {
            secret_enc: Some(enc),
            ..
        }) => Ok(Some(s.vault.open(&enc, binding(&name))?)),
        _ => Ok(None),
    }
}

/// What doctor finds wrong with `target`'s endpoint at Stripe; empty when it is right.
pub async fn inspect(s: &Services, target: &Target) -> Result<Vec<String>> {
    let url = target.url(&s.config.public_url);
    let owner = owner(s, target).await?;
    let endpoints = list(s, &owner).await?;
    let Some(e) = find(&endpoints, target, &url) else {
        return Ok(vec![format!(
            "no webhook endpoint at Stripe delivers to {url}"
        )]);
    };
    let id = e["id"].as_str().unwrap_or_default();
    let mut problems = Vec::new();
    if e["status"] != "enabled" {
        problems.push(format!("endpoint {id} is disabled at Stripe"));
    }
    if e["url"] != url.as_str() {
        problems.push(format!(
            "endpoint {id} delivers to {}, not to {url} (BURSAR_PUBLIC_URL)",
            e["url"].as_str().unwrap_or("?")
        ));
    }
    let enabled = enabled_events(e);
    if !enabled.contains("*") {
        let missing: Vec<&str> = target
            .events()
            .into_iter()
            .filter(|ev| !enabled.contains(*ev))
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "endpoint {id} does not send {}",
                missing.join(", ")
            ));
        }
    }
    let has_secret = match target {
        Target::Platform => {
            !s.config.stripe.webhook_secrets.is_empty() || secret_held(s, target, id).await?
        }
        Target::Connect => {
            !s.config.stripe.connect_webhook_secrets.is_empty()
                || secret_held(s, target, id).await?
        }
        Target::Store(store) => db::connections::get(s.db.pool(), store)
            .await?
            .is_some_and(|c| c.webhook_secret_enc.is_some()),
    };
    if !has_secret {
        problems.push(format!("no signing secret is stored for endpoint {id}"));
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_target_has_its_door_and_name() {
        let store = StoreId::parse("st_abc123").unwrap();
        let base = "https://pay.example.com/";
        assert_eq!(
            Target::Platform.url(base),
            "https://pay.example.com/webhooks/stripe"
        );
        assert_eq!(
            Target::Connect.url(base),
            "https://pay.example.com/webhooks/stripe/connect"
        );
        assert_eq!(
            Target::Store(store.clone()).url(base),
            "https://pay.example.com/webhooks/stripe/stores/st_abc123"
        );
        assert_eq!(Target::Store(store).name(), "store:st_abc123");
        assert!(!Target::Store(StoreId::parse("st_x").unwrap())
            .events()
            .contains(&"account.application.deauthorized"));
    }
}

//! Catching up on events whose webhooks never arrived: Stripe's `GET /v1/events` in each
//! scope (the platform's own account, each connected account through `Stripe-Account`, each
//! `keys` store with its own key), oldest first, and every event the inbox lacks fed in under
//! the source its webhook would have had. The inbox's `(source, event_id)` uniqueness then
//! makes each one apply exactly once, whichever of the webhook and the catch-up comes first.

use serde::Serialize;
use serde_json::Value;

use super::connections::{self, StoreScope};
use super::{Result, ServiceError, Services};
use crate::db::inbox::{self, NewEvent};
use crate::db::{self, now_ms};
use crate::domain::{AccountId, StoreId};
use crate::stripe::event::Envelope;
use crate::stripe::events::{store_events, ACCOUNT_EVENTS, PLATFORM_EVENTS};
use crate::stripe::AccountScope;

/// Stripe keeps events for 30 days.
pub const RETENTION_SECS: i64 = 30 * 86_400;
/// How far back a scope without a cursor looks when no `--since` is given.
pub const DEFAULT_SINCE_SECS: i64 = 72 * 3600;
const PAGE: usize = 100;
/// The most `types[]` that `GET /v1/events` takes.
const MAX_TYPES: usize = 20;

/// One account's events, and where their webhooks would have come in.
pub struct Scope {
    /// For the cursor and reports: `platform`, `connect:<acct>` or `store:<id>:<acct>`.
    pub name: String,
    pub store: Option<StoreId>,
    credentials: Credentials,
    /// The inbox source and scope of the door the webhook would have used.
    source: String,
    door: &'static str,
    account: Option<String>,
    types: Vec<&'static str>,
}

enum Credentials {
    Platform,
    Connected(AccountId),
    OwnKey(secrecy::SecretString),
}

impl Scope {
    pub fn platform() -> Self {
        Scope {
            name: "platform".into(),
            store: None,
            credentials: Credentials::Platform,
            source: "platform".into(),
            door: "platform",
            account: None,
            types: PLATFORM_EVENTS.to_vec(),
        }
    }

    /// A store's scope: its connected account's, or its own key's.
    pub async fn store(s: &Services, store: &StoreId) -> Result<Self> {
        super::stores::require(s, store).await?;
        let row = db::connections::get(s.db.pool(), store)
            .await?
            .ok_or(ServiceError::NotFound("connection"))?;
        let account = row.account_id.clone();
        let acct = account.as_deref().unwrap_or("none");
        Ok(match connections::store_scope(s, store, &row)? {
            StoreScope::Connected(a) => Scope {
                name: format!("connect:{a}"),
                store: Some(store.clone()),
                credentials: Credentials::Connected(a),
                source: "connect".into(),
                door: "connect",
                account,
                types: ACCOUNT_EVENTS.to_vec(),
            },
            StoreScope::OwnKey(key) => Scope {
                name: format!("store:{store}:{acct}"),
                store: Some(store.clone()),
                credentials: Credentials::OwnKey(key),
                source: format!("store:{store}"),
                door: "store",
                account,
                types: store_events(),
            },
        })
    }

    fn stripe_scope(&self) -> AccountScope<'_> {
        match &self.credentials {
            Credentials::Platform => AccountScope::Platform,
            Credentials::Connected(a) => AccountScope::Connected(a),
            Credentials::OwnKey(k) => AccountScope::OwnKey(k),
        }
    }
}

/// Every scope: the platform's, then each connected store's (skipping ones that cannot be
/// reached: deauthorized, or without credentials).
pub async fn all_scopes(s: &Services) -> Result<Vec<Scope>> {
    let mut scopes = Vec::new();
    if s.config.stripe.secret_key.is_some() {
        scopes.push(Scope::platform());
    }
    for row in db::connections::all(&s.db).await? {
        let store = StoreId::parse(&row.store_id)?;
        match Scope::store(s, &store).await {
            Ok(scope) => scopes.push(scope),
            Err(ServiceError::Refused { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(scopes)
}

/// What one scope's catch-up found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScopeReport {
    pub scope: String,
    /// Events Stripe listed.
    pub checked: u64,
    /// Of those, events the inbox did not have.
    pub missing: u64,
    /// Of those, events fed into the inbox now (0 on a dry run).
    pub fed: u64,
}

/// How far back to look: `since` (seconds ago) or, without it, from the scope's cursor (or
/// the default window when it has none).
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub since_secs: Option<i64>,
    pub dry_run: bool,
}

pub fn check_since(since_secs: i64) -> Result<()> {
    if since_secs > RETENTION_SECS {
        return Err(ServiceError::Refused {
            code: "beyond_retention",
            message: "Stripe keeps events for 30 days: --since can be at most 30d (720h)".into(),
        });
    }
    Ok(())
}

/// Catches up one scope; `tick` is called once per event checked (a progress bar).
pub async fn run_scope(
    s: &Services,
    scope: &Scope,
    window: Window,
    tick: &mut (dyn FnMut() + Send),
) -> Result<ScopeReport> {
    if let Some(since) = window.since_secs {
        check_since(since)?;
    }
    let mut report = ScopeReport {
        scope: scope.name.clone(),
        ..Default::default()
    };
    let now = now_ms() / 1000;
    let mut since_secs = window.since_secs;
    let cursor = match window.since_secs {
        Some(_) => None,
        None => match db::operator::cursor(&s.db, &scope.name).await? {
            // Stripe no longer has the cursor's event to page from: the whole retention instead.
            Some((_, created)) if created < now - RETENTION_SECS + 3600 => {
                since_secs = Some(RETENTION_SECS - 3600);
                None
            }
            cursor => cursor,
        },
    };
    let mut newest: Option<(String, i64)> = None;
    match cursor {
        // From the cursor onwards, page by page, each page oldest first.
        Some((mut after, _)) => loop {
            let page = list(s, scope, &format!("ending_before={after}"), None).await?;
            let Some(page_newest) = page.newest.clone() else {
                break;
            };
            after = page_newest.0.clone();
            newest = Some(page_newest);
            let mut events = page.data;
            events.reverse();
            feed(s, scope, &events, window.dry_run, &mut report, tick).await?;
            if !page.has_more {
                break;
            }
        },
        // A window: Stripe lists newest first, so the window is gathered, then fed oldest first.
        None => {
            let since = now - since_secs.unwrap_or(DEFAULT_SINCE_SECS);
            let mut all = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let cursor = after
                    .as_ref()
                    .map(|a| format!("starting_after={a}"))
                    .unwrap_or_default();
                let page = list(s, scope, &cursor, Some(since)).await?;
                after = page.oldest_id;
                newest = newest.or(page.newest);
                all.extend(page.data);
                if !page.has_more || after.is_none() {
                    break;
                }
            }
            all.reverse();
            for chunk in all.chunks(PAGE) {
                feed(s, scope, chunk, window.dry_run, &mut report, tick).await?;
            }
        }
    }
    if let (Some((id, created)), false) = (newest, window.dry_run) {
        db::operator::set_cursor(&s.db, &scope.name, &id, created).await?;
    }
    Ok(report)
}

/// One page of events (newest first), with its ends as Stripe listed them, before any
/// filtering here: the cursors page on from those.
struct Page {
    data: Vec<Value>,
    has_more: bool,
    newest: Option<(String, i64)>,
    oldest_id: Option<String>,
}

async fn list(s: &Services, scope: &Scope, cursor: &str, since: Option<i64>) -> Result<Page> {
    let mut path = format!("/v1/events?limit={PAGE}");
    if !cursor.is_empty() {
        path.push('&');
        path.push_str(cursor);
    }
    if let Some(since) = since {
        path.push_str(&format!("&created[gte]={since}"));
    }
    // Stripe filters by at most 20 types; a longer list is filtered here instead.
    let filtered_at_stripe = scope.types.len() <= MAX_TYPES;
    if filtered_at_stripe {
        for t in &scope.types {
            path.push_str(&format!("&types[]={t}"));
        }
    }
    let page: Value = s.stripe.get(scope.stripe_scope(), &path).await?;
    let mut data = page["data"].as_array().cloned().unwrap_or_default();
    let id = |e: &Value| e["id"].as_str().map(str::to_owned);
    let newest = data
        .first()
        .and_then(|e| Some((id(e)?, e["created"].as_i64().unwrap_or(0))));
    let oldest_id = data.last().and_then(id);
    if !filtered_at_stripe {
        data.retain(|e| e["type"].as_str().is_some_and(|t| scope.types.contains(&t)));
    }
    Ok(Page {
        data,
        has_more: page["has_more"] == true,
        newest,
        oldest_id,
    })
}

/// Feeds the events the inbox lacks; counts what it saw. A real run lets the inbox's
/// `(source, event_id)` uniqueness sort new from known in one batch; only a dry run, which must
/// store nothing, looks each event up.
async fn feed(
    s: &Services,
    scope: &Scope,
    events: &[Value],
    dry_run: bool,
    report: &mut ScopeReport,
    tick: &mut (dyn FnMut() + Send),
) -> Result<()> {
    let mut batch = Vec::with_capacity(events.len());
    for event in events {
        tick();
        report.checked += 1;
        if !dry_run {
            batch.push(new_event(scope, event)?);
            continue;
        }
        let known: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM events WHERE source = $1 AND event_id = $2")
                .bind(&scope.source)
                .bind(event["id"].as_str().unwrap_or_default())
                .fetch_optional(s.db.pool())
                .await
                .map_err(db::DbError::from)?;
        if known.is_none() {
            report.missing += 1;
        }
    }
    if !batch.is_empty() {
        let fed =
            s.db.inbox()
                .insert(batch, None)
                .await?
                .results
                .iter()
                .filter(|i| matches!(i, inbox::Inserted::New(_)))
                .count() as u64;
        report.missing += fed;
        report.fed += fed;
    }
    Ok(())
}

/// The inbox row the event's webhook would have made: a Connect event carries its account.
fn new_event(scope: &Scope, event: &Value) -> Result<NewEvent> {
    let mut event = event.clone();
    // So an order it moves says so (`status_source: reconcile`).
    event["bursar_reconciled"] = Value::Bool(true);
    if scope.door == "connect" {
        if let Some(a) = &scope.account {
            event["account"] = Value::String(a.clone());
        }
    }
    let payload = serde_json::to_string(&event).expect("a JSON value serializes");
    let envelope = Envelope::parse(payload.as_bytes()).map_err(|e| ServiceError::Refused {
        code: "unreadable_event",
        message: format!("Stripe listed an event Bursar cannot read: {e}"),
    })?;
    Ok(NewEvent {
        source: scope.source.clone(),
        scope: scope.door,
        store_id: match scope.door {
            "store" => scope.store.as_ref().map(|s| s.to_string()),
            _ => None,
        },
        account_id: envelope.account.clone().or(scope.account.clone()),
        livemode: envelope.livemode,
        created: envelope.created.min(now_ms() / 1000),
        event_id: envelope.id,
        event_type: envelope.event_type,
        payload,
    })
}

/// `BURSAR_RECONCILE_EVERY` inside `serve`: every scope from its cursor, until `stop`.
pub async fn run_periodic(
    s: Services,
    every: std::time::Duration,
    stored: std::sync::Arc<tokio::sync::Notify>,
    stop: tokio_util::sync::CancellationToken,
) {
    let job = super::jobs::Job {
        name: "reconcile",
        period: every,
        first_after: every,
    };
    let round = || {
        let (s, stored) = (s.clone(), stored.clone());
        async move { reconcile_all(&s, &stored).await }
    };
    super::jobs::every(s.clone(), job, stop, round).await
}

/// One periodic round: every scope, each on its own (one failing does not stop the others).
async fn reconcile_all(s: &Services, stored: &tokio::sync::Notify) -> Result<(), String> {
    let scopes = all_scopes(s)
        .await
        .map_err(|e| format!("could not list the scopes: {e}"))?;
    let mut failed = 0;
    for scope in scopes {
        let window = Window {
            since_secs: None,
            dry_run: false,
        };
        match run_scope(s, &scope, window, &mut || {}).await {
            Ok(r) if r.fed > 0 => {
                tracing::warn!(scope = %r.scope, checked = r.checked, fed = r.fed, "reconcile fed events whose webhooks never arrived");
                stored.notify_one();
            }
            Ok(r) => tracing::debug!(scope = %r.scope, checked = r.checked, "reconciled"),
            Err(e) => {
                failed += 1;
                tracing::warn!(scope = %scope.name, error = %e, "reconcile failed");
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(format!("{n} scope(s) could not be reconciled")),
    }
}

//! `bursar doctor`: the seeds' troubleshooting table, checked by Bursar itself. Each check is
//! one line: ok, or the problem and how to fix it.

use serde::Serialize;
use serde_json::Value;

use super::connections::{self, StoreScope};
use super::webhook_endpoints::{self, Target};
use super::{secrets, Result, ServiceError, Services};
use crate::db::connections::ConnectionRow;
use crate::db::{self, now_ms};
use crate::domain::StoreId;
use crate::stripe::AccountScope;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: String,
    pub ok: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn ok(check: impl Into<String>, detail: impl Into<String>) -> Check {
    Check {
        check: check.into(),
        ok: true,
        detail: detail.into(),
        fix: None,
    }
}

fn problem(check: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        check: check.into(),
        ok: false,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

const SETUP: &str = "run `bursar webhooks setup`";

/// Every check, or those about one store (plus the configuration they stand on).
pub async fn run(s: &Services, only: Option<&StoreId>) -> Result<Vec<Check>> {
    let mut checks = vec![public_url(s), master_keys(s).await?];
    let platform = platform_key(s).await;
    let platform_usable = platform.ok;
    checks.push(platform);
    let all = db::connections::all(&s.db).await?;
    let connect_platform = webhook_endpoints::uses_connect(s, &all);
    let rows = in_view(s, only, all, &mut checks).await?;
    let mut targets = Vec::new();
    if platform_usable {
        if only.is_none() {
            targets.push(Target::Platform);
        }
        if (only.is_none() && connect_platform) || rows.iter().any(|r| r.is_connect()) {
            targets.push(Target::Connect);
        }
    }
    for row in rows.iter().filter(|r| !r.is_connect()) {
        if let Some(store) = store_key(s, row, &mut checks).await? {
            targets.push(Target::Store(store));
        }
    }
    for target in targets {
        checks.extend(endpoint(s, &target).await?);
    }
    checks.extend(signatures(s, only).await?);
    checks.push(dead_events(s).await?);
    checks.push(notification_endpoints(s).await?);
    checks.push(pending_orders(s, only).await?);
    Ok(checks)
}

fn platform_is_live(s: &Services) -> bool {
    s.config
        .stripe
        .secret_key
        .as_ref()
        .is_some_and(|k| secrecy::ExposeSecret::expose_secret(k).starts_with("sk_live_"))
}

fn public_url(s: &Services) -> Check {
    let public = &s.config.public_url;
    if platform_is_live(s) && !public.starts_with("https://") {
        problem(
            "public URL",
            format!("BURSAR_PUBLIC_URL is {public}; Stripe delivers live events only over HTTPS"),
            "set BURSAR_PUBLIC_URL to this server's public https:// URL",
        )
    } else {
        ok("public URL", format!("BURSAR_PUBLIC_URL is {public}"))
    }
}

async fn master_keys(s: &Services) -> Result<Check> {
    let keys = secrets::check_master_keys(s).await?;
    Ok(if keys.is_ok() {
        ok("master keys", "every stored secret opens")
    } else {
        problem(
            "master keys",
            keys.describe(),
            "put the missing key back in BURSAR_MASTER_KEYS",
        )
    })
}

/// The platform's key, asked of Stripe; `ok` when it can be used for the checks that need it.
async fn platform_key(s: &Services) -> Check {
    if s.config.stripe.secret_key.is_none() {
        return problem(
            "platform key",
            "STRIPE_SECRET_KEY is not set: Connect, vendor billing and webhook setup need it",
            "set STRIPE_SECRET_KEY to the platform's secret key",
        );
    }
    match s
        .stripe
        .get::<Value>(AccountScope::Platform, "/v1/account")
        .await
    {
        Ok(account) => ok(
            "platform key",
            format!(
                "valid, {} mode, account {}",
                if platform_is_live(s) { "live" } else { "test" },
                account["id"].as_str().unwrap_or("?")
            ),
        ),
        Err(e) => problem(
            "platform key",
            format!("Stripe refused STRIPE_SECRET_KEY: {e}"),
            "set STRIPE_SECRET_KEY to a valid secret key (Dashboard → Developers → API keys)",
        ),
    }
}

/// The connections to check: every store's, or `only`'s (which must exist, and is a problem
/// without one).
async fn in_view(
    s: &Services,
    only: Option<&StoreId>,
    all: Vec<ConnectionRow>,
    checks: &mut Vec<Check>,
) -> Result<Vec<ConnectionRow>> {
    let rows: Vec<_> = all
        .into_iter()
        .filter(|r| only.is_none_or(|o| o.as_str() == r.store_id))
        .collect();
    if let Some(store) = only {
        super::stores::require(s, store).await?;
        if rows.is_empty() {
            checks.push(problem(
                format!("store {store}"),
                "has no Stripe connection",
                "connect it: OAuth, Account Links or pasted keys",
            ));
        }
    }
    Ok(rows)
}

/// A `keys` store's own key, asked of Stripe; the store when its endpoint can be inspected.
async fn store_key(
    s: &Services,
    row: &ConnectionRow,
    checks: &mut Vec<Check>,
) -> Result<Option<StoreId>> {
    let store = StoreId::parse(&row.store_id)?;
    let label = format!("store {store} key");
    let check = match connections::store_scope(s, &store, row) {
        Ok(scope @ StoreScope::OwnKey(_)) => {
            match s.stripe.get::<Value>(scope.scope(), "/v1/account").await {
                Ok(_) => ok(label, format!("valid, {} mode", row.mode)),
                Err(e) => problem(
                    label,
                    format!("Stripe refused the store's key: {e}"),
                    "paste a valid key: PUT /api/v1/stores/{id}/connection/keys or `bursar connect-link`",
                ),
            }
        }
        Ok(StoreScope::Connected(_)) => return Ok(Some(store)),
        Err(e) => problem(label, e.to_string(), "reconnect the store"),
    };
    let usable = check.ok;
    checks.push(check);
    Ok(usable.then_some(store))
}

/// One endpoint's state at Stripe: ok, or each problem found.
async fn endpoint(s: &Services, target: &Target) -> Result<Vec<Check>> {
    let label = target.describe();
    Ok(match webhook_endpoints::inspect(s, target).await {
        Ok(found) if found.is_empty() => vec![ok(
            label,
            format!(
                "exists, enabled, delivers to {}, sends every needed event, secret stored",
                target.url(&s.config.public_url)
            ),
        )],
        Ok(found) => found
            .into_iter()
            .map(|p| problem(label.clone(), p, SETUP))
            .collect(),
        Err(ServiceError::StripeRefused(e)) | Err(ServiceError::StripeUnavailable(e)) => {
            vec![problem(
                label,
                format!("its endpoints could not be listed: {e}"),
                "check the key above",
            )]
        }
        Err(e) => return Err(e),
    })
}

/// A wrong secret is the seeds' most common fault: the door says which, and since when.
async fn signatures(s: &Services, only: Option<&StoreId>) -> Result<Vec<Check>> {
    let failures = db::operator::signature_failures(&s.db).await?;
    let checks: Vec<Check> = failures
        .iter()
        .filter(|f| only.is_none_or(|o| f.source == format!("store:{o}") || f.source == "connect"))
        .map(|f| {
            let door = match f.source.as_str() {
                "platform" => "platform endpoint (/webhooks/stripe)".to_owned(),
                "connect" => "Connect endpoint (/webhooks/stripe/connect)".to_owned(),
                other => format!("{} endpoint", other.replace(':', " ")),
            };
            problem(
                "webhook signatures",
                format!(
                    "{door}: {} failed signature verification since {} (last {}: {})",
                    count(f.count, "delivery", "deliveries"),
                    date(f.since),
                    date(f.last_at),
                    f.reason
                ),
                "the signing secret Bursar holds is not that endpoint's: run `bursar webhooks setup`, or set the endpoint's secret (STRIPE_WEBHOOK_SECRET, STRIPE_CONNECT_WEBHOOK_SECRET, or the store's webhook-secret)",
            )
        })
        .collect();
    if checks.is_empty() {
        return Ok(vec![ok(
            "webhook signatures",
            "no failed verification since the last good delivery",
        )]);
    }
    Ok(checks)
}

async fn dead_events(s: &Services) -> Result<Check> {
    let dead = db::inbox::count_with_status(&s.db, "dead").await?;
    Ok(if dead == 0 {
        ok("dead events", "none")
    } else {
        problem(
            "dead events",
            format!("{dead} event(s) exhausted their attempts"),
            "see `bursar events list --status dead`, fix the cause, then `bursar events replay ID`",
        )
    })
}

/// Orders pending past the sweep's age: their payments' events are not arriving.
async fn pending_orders(s: &Services, only: Option<&StoreId>) -> Result<Check> {
    let age = s.config.order_pending_age;
    let before = now_ms() - age.as_millis() as i64;
    let pending = db::orders::count_pending_before(&s.db, before, only).await?;
    let age = humantime::format_duration(age);
    Ok(if pending == 0 {
        ok("pending orders", format!("none pending for over {age}"))
    } else {
        problem(
            "pending orders",
            format!("{pending} order(s) pending for over {age}"),
            "check the webhook checks above, then `bursar reconcile --all`",
        )
    })
}

fn date(unix_ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Notification endpoints that are disabled or failing: the platform's app is not being told.
async fn notification_endpoints(s: &Services) -> Result<Check> {
    let rows = db::notifications::troubled_endpoints(&s.db).await?;
    if rows.is_empty() {
        return Ok(ok("notification endpoints", "none disabled or failing"));
    }
    let named: Vec<String> = rows
        .iter()
        .map(|(id, disabled, reason, since)| match (disabled, since) {
            (1, _) => format!(
                "{id} disabled ({})",
                reason.as_deref().unwrap_or("no reason")
            ),
            (_, Some(t)) => format!(
                "{id} failing for {}",
                humantime::format_duration(std::time::Duration::from_secs(
                    ((now_ms() - t) / 1000).max(0) as u64
                ))
            ),
            _ => id.clone(),
        })
        .collect();
    Ok(problem(
        "notification endpoints",
        named.join("; "),
        "see `bursar notifications list --endpoint ID`; fix the receiver, then PATCH {\"disabled\": false} and POST …/recover",
    ))
}

/// `1 delivery`, `3 deliveries`.
fn count(n: i64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

//! `bursar doctor`: the seeds' troubleshooting table, checked by Bursar itself. Each check is
//! one line: ok, or the problem and how to fix it.

use serde::Serialize;
use serde_json::Value;

use super::connections::{self, StoreScope};
use super::webhook_endpoints::{self, Target};
use super::{secrets, Result, ServiceError, Services};
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
    let mut checks = Vec::new();
    let platform_live = s
        .config
        .stripe
        .secret_key
        .as_ref()
        .is_some_and(|k| secrecy::ExposeSecret::expose_secret(k).starts_with("sk_live_"));
    let public = &s.config.public_url;
    checks.push(if platform_live && !public.starts_with("https://") {
        problem(
            "public URL",
            format!("BURSAR_PUBLIC_URL is {public}; Stripe delivers live events only over HTTPS"),
            "set BURSAR_PUBLIC_URL to this server's public https:// URL",
        )
    } else {
        ok("public URL", format!("BURSAR_PUBLIC_URL is {public}"))
    });
    let keys = secrets::check_master_keys(s).await?;
    checks.push(if keys.is_ok() {
        ok("master keys", "every stored secret opens")
    } else {
        problem(
            "master keys",
            keys.describe(),
            "put the missing key back in BURSAR_MASTER_KEYS",
        )
    });

    let platform_usable = match &s.config.stripe.secret_key {
        None => {
            checks.push(problem(
                "platform key",
                "STRIPE_SECRET_KEY is not set: Connect, vendor billing and webhook setup need it",
                "set STRIPE_SECRET_KEY to the platform's secret key",
            ));
            false
        }
        Some(_) => match s
            .stripe
            .get::<Value>(AccountScope::Platform, "/v1/account")
            .await
        {
            Ok(account) => {
                checks.push(ok(
                    "platform key",
                    format!(
                        "valid, {} mode, account {}",
                        if platform_live { "live" } else { "test" },
                        account["id"].as_str().unwrap_or("?")
                    ),
                ));
                true
            }
            Err(e) => {
                checks.push(problem(
                    "platform key",
                    format!("Stripe refused STRIPE_SECRET_KEY: {e}"),
                    "set STRIPE_SECRET_KEY to a valid secret key (Dashboard → Developers → API keys)",
                ));
                false
            }
        },
    };

    // The endpoints each store needs: the Connect endpoint for connected stores, its own for a
    // `keys` store; the platform's for vendor billing.
    let all_rows = db::connections::all(&s.db).await?;
    let connect_platform = webhook_endpoints::uses_connect(s, &all_rows);
    let rows: Vec<_> = all_rows
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
    let mut targets = Vec::new();
    if platform_usable {
        if only.is_none() {
            targets.push(Target::Platform);
        }
        if (only.is_none() && connect_platform) || rows.iter().any(|r| r.is_connect()) {
            targets.push(Target::Connect);
        }
    }
    for row in &rows {
        let store = StoreId::parse(&row.store_id)?;
        if row.is_connect() {
            continue;
        }
        let label = format!("store {store} key");
        let key_ok = match connections::store_scope(s, &store, row) {
            Ok(scope @ StoreScope::OwnKey(_)) => {
                match s.stripe.get::<Value>(scope.scope(), "/v1/account").await {
                    Ok(_) => {
                        checks.push(ok(label, format!("valid, {} mode", row.mode)));
                        true
                    }
                    Err(e) => {
                        checks.push(problem(
                            label,
                            format!("Stripe refused the store's key: {e}"),
                            "paste a valid key: PUT /api/v1/stores/{id}/connection/keys or `bursar connect-link`",
                        ));
                        false
                    }
                }
            }
            Ok(StoreScope::Connected(_)) => true,
            Err(e) => {
                checks.push(problem(label, e.to_string(), "reconnect the store"));
                false
            }
        };
        if key_ok {
            targets.push(Target::Store(store));
        }
    }
    for target in targets {
        let label = target.describe();
        match webhook_endpoints::inspect(s, &target).await {
            Ok(found) if found.is_empty() => checks.push(ok(
                label,
                format!(
                    "exists, enabled, delivers to {}, sends every needed event, secret stored",
                    target.url(public)
                ),
            )),
            Ok(found) => {
                for p in found {
                    checks.push(problem(label.clone(), p, SETUP));
                }
            }
            Err(ServiceError::StripeRefused(e)) | Err(ServiceError::StripeUnavailable(e)) => checks
                .push(problem(
                    label,
                    format!("its endpoints could not be listed: {e}"),
                    "check the key above",
                )),
            Err(e) => return Err(e),
        }
    }

    // A wrong secret is the seeds' most common fault: the door says which, and since when.
    let failures = db::operator::signature_failures(&s.db).await?;
    let mut any_failure = false;
    for f in failures
        .iter()
        .filter(|f| only.is_none_or(|o| f.source == format!("store:{o}") || f.source == "connect"))
    {
        any_failure = true;
        let door = match f.source.as_str() {
            "platform" => "platform endpoint (/webhooks/stripe)".to_owned(),
            "connect" => "Connect endpoint (/webhooks/stripe/connect)".to_owned(),
            other => format!("{} endpoint", other.replace(':', " ")),
        };
        checks.push(problem(
            "webhook signatures",
            format!(
                "{door}: {} failed signature verification since {} (last {}: {})",
                count(f.count, "delivery", "deliveries"),
                date(f.since),
                date(f.last_at),
                f.reason
            ),
            "the signing secret Bursar holds is not that endpoint's: run `bursar webhooks setup`, or set the endpoint's secret (STRIPE_WEBHOOK_SECRET, STRIPE_CONNECT_WEBHOOK_SECRET, or the store's webhook-secret)",
        ));
    }
    if !any_failure {
        checks.push(ok(
            "webhook signatures",
            "no failed verification since the last good delivery",
        ));
    }

    let dead: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE status = 'dead'")
        .fetch_one(s.db.pool())
        .await
        .map_err(db::DbError::from)?;
    checks.push(if dead == 0 {
        ok("dead events", "none")
    } else {
        problem(
            "dead events",
            format!("{dead} event(s) exhausted their attempts"),
            "see `bursar events list --status dead`, fix the cause, then `bursar events replay ID`",
        )
    });

    checks.push(notification_endpoints(s).await?);

    let age = s.config.order_pending_age;
    let before = now_ms() - age.as_millis() as i64;
    let pending: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM orders WHERE status = 'pending' AND created_at < $1 AND ($2 = '' OR store_id = $2)",
    )
    .bind(before)
    .bind(only.map(|o| o.to_string()).unwrap_or_default())
    .fetch_one(s.db.pool())
    .await
    .map_err(db::DbError::from)?;
    checks.push(if pending == 0 {
        ok(
            "pending orders",
            format!("none pending for over {}", humantime::format_duration(age)),
        )
    } else {
        problem(
            "pending orders",
            format!(
                "{pending} order(s) pending for over {}",
                humantime::format_duration(age)
            ),
            "check the webhook checks above, then `bursar reconcile --all`",
        )
    });
    Ok(checks)
}

fn date(unix_ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Notification endpoints that are disabled or failing: the platform's app is not being told.
async fn notification_endpoints(s: &Services) -> Result<Check> {
    let rows: Vec<(String, i64, Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT id, disabled, disabled_reason, failing_since FROM notification_endpoints \
         WHERE disabled = 1 OR failing_since IS NOT NULL ORDER BY id",
    )
    .fetch_all(s.db.pool())
    .await
    .map_err(db::DbError::from)?;
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

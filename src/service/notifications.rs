//! Notifications to the platform's app: its endpoints (each with a sealed Standard Webhooks
//! secret), the outbox written in the transaction of each state change, and the delivery log.

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sqlx::AnyConnection;

use super::{Result, ServiceError, Services};
use crate::db::notifications::{
    self as outbox, AttemptRow, EndpointChange, EndpointRow, LogFilter, NewEndpoint,
    NotificationRow,
};
use crate::db::now_ms;
use crate::domain::notification::EventFilter;
use crate::domain::{EndpointId, Invalid, NotificationId};
use crate::outbound::guard::{self, Policy};
use crate::outbound::sign;
use crate::vault::Binding;

/// How long a rotated-out secret keeps signing beside the new one.
const ROTATION_OVERLAP_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointView {
    pub id: String,
    pub object: &'static str,
    pub url: String,
    /// The types it receives (`*`: all).
    pub events: Vec<String>,
    pub description: Option<String>,
    pub disabled: bool,
    /// Why it is disabled: by the platform, a 410 answer, or failing too long.
    pub disabled_reason: Option<String>,
    /// Since when every delivery has failed (unix seconds).
    pub failing_since: Option<i64>,
    /// The signing secret (`whsec_…`): shown once, when made or rotated; null otherwise.
    pub secret: Option<String>,
    pub created: i64,
}

fn endpoint_view(row: EndpointRow, secret: Option<&SecretString>) -> EndpointView {
    EndpointView {
        events: row.filter().types().to_vec(),
        id: row.id,
        object: "notification_endpoint",
        url: row.url,
        description: row.description,
        disabled: row.disabled != 0,
        disabled_reason: row.disabled_reason,
        failing_since: row.failing_since.map(|t| t / 1000),
        secret: secret.map(|s| s.expose_secret().to_owned()),
        created: row.created_at / 1000,
    }
}

pub fn secret_binding<'a>(endpoint: &'a str, old: bool) -> Binding<'a> {
    Binding {
        table: "notification_endpoints",
        row: endpoint,
        field: if old { "old_secret" } else { "secret" },
    }
}

fn policy(s: &Services) -> Policy {
    Policy {
        allow_http: s.config.notifications.allow_http,
        allow_private: s.config.notifications.allow_private,
    }
}

async fn checked_url(s: &Services, url: &str) -> Result<String> {
    if url.len() > 2048 {
        return Err(Invalid::new("url", "must be at most 2048 characters").into());
    }
    guard::check(url, policy(s))
        .await
        .map(String::from)
        .map_err(|e| Invalid::new("url", e.to_string()).into())
}

fn checked_description(d: Option<&str>) -> Result<Option<&str>> {
    match d {
        Some(d) if d.chars().count() > 500 => {
            Err(Invalid::new("description", "must be at most 500 characters").into())
        }
        d => Ok(d),
    }
}

pub async fn create_endpoint(
    s: &Services,
    url: &str,
    events: &[String],
    description: Option<&str>,
) -> Result<EndpointView> {
    let events = EventFilter::parse(events)?;
    let description = checked_description(description)?;
    let url = checked_url(s, url).await?;
    let id = EndpointId::generate();
    let secret = sign::new_secret();
    let sealed = s.vault.seal(&secret, secret_binding(id.as_str(), false));
    let row = outbox::insert_endpoint(
        &s.db,
        &NewEndpoint {
            id: &id,
            url: &url,
            events: &events,
            description,
            secret_enc: &sealed,
        },
    )
    .await?;
    tracing::info!(endpoint = %id, "notification endpoint created");
    Ok(endpoint_view(row, Some(&secret)))
}

async fn require(s: &Services, id: &EndpointId) -> Result<EndpointRow> {
    outbox::endpoint(&s.db, id)
        .await?
        .ok_or(ServiceError::NotFound("notification endpoint"))
}

pub async fn get_endpoint(s: &Services, id: &EndpointId) -> Result<EndpointView> {
    Ok(endpoint_view(require(s, id).await?, None))
}

pub async fn list_endpoints(
    s: &Services,
    after: Option<&EndpointId>,
    limit: i64,
) -> Result<(Vec<EndpointView>, Option<String>)> {
    let mut rows = outbox::endpoints(&s.db, after, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = more.then(|| rows.last().map(|r| r.id.clone())).flatten();
    Ok((
        rows.into_iter().map(|r| endpoint_view(r, None)).collect(),
        next,
    ))
}

pub struct Patch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub disabled: Option<bool>,
}

pub async fn update_endpoint(s: &Services, id: &EndpointId, p: Patch) -> Result<EndpointView> {
    require(s, id).await?;
    let events = p.events.as_deref().map(EventFilter::parse).transpose()?;
    let description = checked_description(p.description.as_deref())?;
    let url = match &p.url {
        Some(u) => Some(checked_url(s, u).await?),
        None => None,
    };
    let row = outbox::update_endpoint(
        &s.db,
        id,
        &EndpointChange {
            url: url.as_deref(),
            events: events.as_ref(),
            description,
            disabled: p.disabled,
        },
    )
    .await?
    .ok_or(ServiceError::NotFound("notification endpoint"))?;
    Ok(endpoint_view(row, None))
}

pub async fn delete_endpoint(s: &Services, id: &EndpointId) -> Result<()> {
    if outbox::delete_endpoint(&s.db, id).await? {
        Ok(())
    } else {
        Err(ServiceError::NotFound("notification endpoint"))
    }
}

/// A new secret; the current one keeps signing beside it for a day, so receivers can move
/// over without missing a delivery.
pub async fn rotate_secret(s: &Services, id: &EndpointId) -> Result<EndpointView> {
    let row = require(s, id).await?;
    let current = s
        .vault
        .open(&row.secret_enc, secret_binding(&row.id, false))?;
    let old = s.vault.seal(&current, secret_binding(&row.id, true));
    let secret = sign::new_secret();
    let sealed = s.vault.seal(&secret, secret_binding(&row.id, false));
    let until = now_ms() + ROTATION_OVERLAP_MS;
    if !outbox::rotate_secret(&s.db, id, &row.secret_enc, &sealed, &old, until).await? {
        return Err(ServiceError::Conflict {
            code: "rotated_concurrently",
            message: "the secret was rotated by another request at the same moment; read the endpoint and rotate again if needed".into(),
        });
    }
    Ok(endpoint_view(require(s, id).await?, Some(&secret)))
}

/// The secrets a delivery is signed with now: the current one, and a rotated-out one still
/// within its overlap.
pub fn signing_secrets(s: &Services, row: &EndpointRow) -> Result<Vec<SecretString>> {
    let mut out = vec![s
        .vault
        .open(&row.secret_enc, secret_binding(&row.id, false))?];
    if let (Some(old), Some(until)) = (&row.old_secret_enc, row.old_secret_until) {
        if until > now_ms() {
            out.push(s.vault.open(old, secret_binding(&row.id, true))?);
        }
    }
    Ok(out)
}

/// Writes `event_type` about `object` for every subscribed endpoint, in `conn`'s transaction.
pub async fn emit(
    conn: &mut AnyConnection,
    event_type: &str,
    store: Option<&str>,
    object: &impl Serialize,
) -> Result<()> {
    let object = serde_json::to_value(object).expect("views serialize");
    outbox::enqueue(conn, event_type, store, &object).await?;
    Ok(())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    /// When it was made (unix seconds).
    pub at: i64,
    /// The receiver's status code; null when no answer came.
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NotificationView {
    /// Also the delivery's `webhook-id`, the same on every attempt.
    pub id: String,
    pub object: &'static str,
    pub endpoint_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub store_id: Option<String>,
    /// The endpoint's sequence number: notifications are made in this order.
    pub seq: i64,
    /// `pending`, `delivered`, `failed`, or `held` (made while the endpoint was disabled; sent
    /// by `recover`).
    pub status: String,
    /// When the next attempt is due, while pending (unix seconds).
    pub next_attempt_at: Option<i64>,
    pub created: i64,
    pub delivered_at: Option<i64>,
    /// The body every attempt sends.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub attempts: Vec<AttemptView>,
}

fn notification_view(row: NotificationRow, attempts: Vec<AttemptRow>) -> NotificationView {
    NotificationView {
        next_attempt_at: (row.status == "pending").then_some(row.next_attempt_at / 1000),
        payload: serde_json::from_str(&row.payload).unwrap_or_default(),
        id: row.id,
        object: "notification",
        endpoint_id: row.endpoint_id,
        event_type: row.event_type,
        store_id: row.store_id,
        seq: row.seq,
        status: row.status,
        created: row.created_at / 1000,
        delivered_at: row.delivered_at.map(|t| t / 1000),
        attempts: attempts
            .into_iter()
            .map(|a| AttemptView {
                at: a.at / 1000,
                status_code: a.status_code,
                latency_ms: a.latency_ms,
                error: a.error,
            })
            .collect(),
    }
}

pub struct LogQuery {
    pub endpoint_id: Option<String>,
    pub status: Option<String>,
    pub event_type: Option<String>,
    pub cursor: Option<String>,
    pub limit: i64,
}

/// The delivery log, newest first.
pub async fn log(s: &Services, q: LogQuery) -> Result<(Vec<NotificationView>, Option<String>)> {
    if let Some(st) = &q.status {
        if !["pending", "delivered", "failed", "held"].contains(&st.as_str()) {
            return Err(
                Invalid::new("status", "must be pending, delivered, failed or held").into(),
            );
        }
    }
    if let Some(e) = &q.endpoint_id {
        EndpointId::parse(e)?;
    }
    if let Some(c) = &q.cursor {
        NotificationId::parse(c)?;
    }
    let mut rows = outbox::log(
        &s.db,
        &LogFilter {
            endpoint_id: q.endpoint_id.as_deref(),
            status: q.status.as_deref(),
            event_type: q.event_type.as_deref(),
            before: q.cursor.as_deref(),
            limit: q.limit + 1,
        },
    )
    .await?;
    let more = rows.len() as i64 > q.limit;
    rows.truncate(q.limit as usize);
    let next = more
        .then(|| rows.last().map(|(r, _)| r.id.clone()))
        .flatten();
    Ok((
        rows.into_iter()
            .map(|(r, a)| notification_view(r, a))
            .collect(),
        next,
    ))
}

/// The latest notifications about one object (an order, by its id), newest first.
pub async fn about(s: &Services, subject: &str, limit: i64) -> Result<Vec<NotificationView>> {
    Ok(outbox::about(&s.db, subject, limit)
        .await?
        .into_iter()
        .map(|(r, a)| notification_view(r, a))
        .collect())
}

/// Sends a notification again now (same `webhook-id`).
pub async fn redeliver(s: &Services, id: &NotificationId) -> Result<NotificationView> {
    if !outbox::redeliver(&s.db, id).await? {
        return Err(ServiceError::NotFound("notification"));
    }
    let row = outbox::notification(&s.db, id)
        .await?
        .ok_or(ServiceError::NotFound("notification"))?;
    Ok(notification_view(row, Vec::new()))
}

/// Sends again what failed for the endpoint since `since` (unix seconds); how many.
pub async fn recover(s: &Services, id: &EndpointId, since: i64) -> Result<u64> {
    require(s, id).await?;
    if since < 0 || since > now_ms() / 1000 {
        return Err(Invalid::new("since", "must be a unix time in the past").into());
    }
    Ok(outbox::recover(&s.db, id, since * 1000).await?)
}

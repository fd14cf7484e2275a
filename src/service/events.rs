//! The operator's view of the webhook inbox: list, show, replay, discard.

use serde::Serialize;

use super::{Result, ServiceError, Services};
use crate::db::{self, inbox::EventRow, inbox::Filter};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub id: i64,
    pub object: &'static str,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub scope: String,
    pub store_id: Option<String>,
    pub account: Option<String>,
    pub livemode: bool,
    pub created: i64,
    pub status: String,
    pub attempts: i64,
    pub next_attempt: Option<i64>,
    pub last_error: Option<String>,
    pub received: i64,
    pub applied: Option<i64>,
    /// The raw payload as Stripe sent it (only in `show`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

impl EventView {
    /// The view of a row; `payload` is the raw event, for `show`.
    pub fn new(r: EventRow, payload: Option<&str>) -> Self {
        let waiting = matches!(r.status.as_str(), "retrying" | "pending");
        Self {
            id: r.seq,
            object: "webhook_event",
            payload: payload.map(|p| serde_json::from_str(p).unwrap_or_default()),
            event_id: r.event_id,
            event_type: r.event_type,
            scope: r.scope,
            store_id: r.store_id,
            account: r.account_id,
            livemode: r.livemode != 0,
            created: r.stripe_created,
            status: r.status,
            attempts: r.attempts,
            next_attempt: waiting.then_some(r.next_attempt_at / 1000),
            last_error: r.last_error,
            received: r.received_at / 1000,
            applied: r.applied_at.map(|t| t / 1000),
        }
    }
}

pub const STATUSES: &[&str] = &[
    "pending",
    "processing",
    "retrying",
    "applied",
    "ignored",
    "unrouted",
    "dead",
    "discarded",
];

pub struct Page {
    pub data: Vec<EventView>,
    pub next_cursor: Option<String>,
}

pub async fn list(s: &Services, filter: &Filter, before: Option<i64>, limit: i64) -> Result<Page> {
    let mut rows = db::inbox::list(&s.db, filter, before, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(|r| r.seq.to_string())
    } else {
        None
    };
    Ok(Page {
        data: rows.into_iter().map(|r| EventView::new(r, None)).collect(),
        next_cursor,
    })
}

/// How many of a store's latest events are searched for those about one of its orders.
pub const ORDER_EVENT_WINDOW: i64 = 1000;

/// The events among the store's latest `ORDER_EVENT_WINDOW` that name `object` (an order's
/// PaymentIntent), newest first.
pub async fn mentioning(s: &Services, store: &str, object: &str) -> Result<Vec<EventView>> {
    // Quoted, as JSON holds an id: `pi_1` must not find `pi_12`.
    let quoted = format!("\"{object}\"");
    Ok(
        db::inbox::mentioning(&s.db, store, &quoted, ORDER_EVENT_WINDOW)
            .await?
            .into_iter()
            .map(|r| EventView::new(r, None))
            .collect(),
    )
}

/// Finds an event by Bursar's numeric id or by Stripe's `evt_…` id. The same Stripe id can
/// arrive through several endpoints (sources); then `source` must say which.
pub async fn get(s: &Services, id: &str, source: Option<&str>) -> Result<EventView> {
    let row = find(s, id, source).await?;
    let payload = db::inbox::payloads(&s.db, &[row.seq])
        .await?
        .remove(&row.seq);
    Ok(EventView::new(row, payload.as_deref()))
}

pub async fn replay(s: &Services, id: &str, source: Option<&str>) -> Result<EventView> {
    let row = find(s, id, source).await?;
    if !db::inbox::replay(&s.db, row.seq).await? {
        if !db::inbox::has_payload(&s.db, row.seq).await? {
            return Err(ServiceError::Conflict {
                code: "payload_pruned",
                message: format!(
                    "event {}'s payload was pruned after the retention window (BURSAR_EVENT_RETENTION_DAYS): it was finished long ago, and Stripe's Dashboard shows its content for 30 days",
                    row.seq
                ),
            });
        }
        return Err(ServiceError::Conflict {
            code: "event_in_flight",
            message: format!(
                "event {} is {} and cannot be replayed now",
                row.seq, row.status
            ),
        });
    }
    tracing::info!(seq = row.seq, event = %row.event_id, "event queued for replay");
    reread(s, row.seq).await
}

/// Gives up on a dead event (it stays listed as `discarded`, and is pruned like the others).
pub async fn discard(s: &Services, id: &str, source: Option<&str>) -> Result<EventView> {
    let row = find(s, id, source).await?;
    if !db::inbox::discard(&s.db, row.seq).await? {
        return Err(ServiceError::Conflict {
            code: "event_not_dead",
            message: format!(
                "event {} is {}: only a dead event is discarded (replay one that should be applied)",
                row.seq, row.status
            ),
        });
    }
    tracing::info!(seq = row.seq, event = %row.event_id, "dead event discarded");
    reread(s, row.seq).await
}

/// The event as an operator action left it.
async fn reread(s: &Services, seq: i64) -> Result<EventView> {
    let row = db::inbox::get(&s.db, seq)
        .await?
        .ok_or(ServiceError::NotFound("event"))?;
    Ok(EventView::new(row, None))
}

async fn find(s: &Services, id: &str, source: Option<&str>) -> Result<EventRow> {
    if let Ok(seq) = id.parse::<i64>() {
        return db::inbox::get(&s.db, seq)
            .await?
            .filter(|r| source.is_none_or(|src| r.source == src))
            .ok_or(ServiceError::NotFound("event"));
    }
    if !id.starts_with("evt_") || id.len() > 255 {
        return Err(ServiceError::NotFound("event"));
    }
    let mut rows = db::inbox::find_by_event_id(&s.db, id, source).await?;
    match rows.len() {
        0 => Err(ServiceError::NotFound("event")),
        1 => Ok(rows.remove(0)),
        _ => Err(ServiceError::Conflict {
            code: "ambiguous_event",
            message: format!(
                "event {id} arrived through several endpoints; name one with its id or source: {}",
                rows.iter()
                    .map(|r| format!("{} (source {})", r.seq, r.source))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

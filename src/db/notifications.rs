//! The notification tables: endpoints, the outbox (one row per state change and subscribed
//! endpoint, written in the change's own transaction) and each delivery attempt.

use sqlx::{AnyConnection, FromRow};

use super::{flag, now_ms, Db, Result};
use crate::domain::notification::EventFilter;
use crate::domain::{EndpointId, NotificationId};

#[derive(Debug, Clone, FromRow)]
pub struct EndpointRow {
    pub id: String,
    pub url: String,
    /// A JSON array of types (`*` for all).
    pub events: String,
    pub description: Option<String>,
    pub secret_enc: String,
    pub old_secret_enc: Option<String>,
    pub old_secret_until: Option<i64>,
    pub disabled: i64,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<i64>,
    pub last_seq: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const ENDPOINT_COLUMNS: &str = "id, url, events, description, secret_enc, old_secret_enc, \
    old_secret_until, disabled, disabled_reason, failing_since, last_seq, created_at, updated_at";

impl EndpointRow {
    pub fn filter(&self) -> EventFilter {
        let types: Vec<String> = serde_json::from_str(&self.events).unwrap_or_default();
        EventFilter::parse(&types).unwrap_or_else(|_| EventFilter::parse(&["*".into()]).unwrap())
    }
}

pub struct NewEndpoint<'a> {
    pub id: &'a EndpointId,
    pub url: &'a str,
    pub events: &'a EventFilter,
    pub description: Option<&'a str>,
    pub secret_enc: &'a str,
}

pub async fn insert_endpoint(db: &Db, e: &NewEndpoint<'_>) -> Result<EndpointRow> {
    let _turn = db.write_turn().await;
    let sql = format!(
        "INSERT INTO notification_endpoints (id, url, events, description, secret_enc, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {ENDPOINT_COLUMNS}"
    );
    Ok(sqlx::query_as::<_, EndpointRow>(&sql)
        .bind(e.id.as_str())
        .bind(e.url)
        .bind(serde_json::to_string(e.events.types()).expect("strings serialize"))
        .bind(e.description)
        .bind(e.secret_enc)
        .bind(now_ms())
        .fetch_one(db.pool())
        .await?)
}

pub async fn endpoint(db: &Db, id: &EndpointId) -> Result<Option<EndpointRow>> {
    let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM notification_endpoints WHERE id = $1");
    Ok(sqlx::query_as::<_, EndpointRow>(&sql)
        .bind(id.as_str())
        .fetch_optional(db.pool())
        .await?)
}

/// Endpoints in creation order, after the cursor.
pub async fn endpoints(
    db: &Db,
    after: Option<&EndpointId>,
    limit: i64,
) -> Result<Vec<EndpointRow>> {
    let sql = format!(
        "SELECT {ENDPOINT_COLUMNS} FROM notification_endpoints WHERE id > $1 ORDER BY id LIMIT $2"
    );
    Ok(sqlx::query_as::<_, EndpointRow>(&sql)
        .bind(after.map(EndpointId::as_str).unwrap_or(""))
        .bind(limit)
        .fetch_all(db.pool())
        .await?)
}

/// What a `PATCH` changes; `None` leaves a field as it is.
#[derive(Default)]
pub struct EndpointChange<'a> {
    pub url: Option<&'a str>,
    pub events: Option<&'a EventFilter>,
    pub description: Option<&'a str>,
    pub disabled: Option<bool>,
}

pub async fn update_endpoint(
    db: &Db,
    id: &EndpointId,
    c: &EndpointChange<'_>,
) -> Result<Option<EndpointRow>> {
    let _turn = db.write_turn().await;
    // Re-enabling clears the failure record, so the endpoint gets a fresh 5-day window.
    let sql = format!(
        "UPDATE notification_endpoints SET url = COALESCE($2, url), events = COALESCE($3, events), \
           description = COALESCE($4, description), \
           disabled = COALESCE($5, disabled), \
           disabled_reason = CASE WHEN $5 IS NULL THEN disabled_reason WHEN $5 = 1 THEN 'disabled by the platform' ELSE NULL END, \
           failing_since = CASE WHEN $5 = 0 THEN NULL ELSE failing_since END, updated_at = $6 \
         WHERE id = $1 RETURNING {ENDPOINT_COLUMNS}"
    );
    Ok(sqlx::query_as::<_, EndpointRow>(&sql)
        .bind(id.as_str())
        .bind(c.url)
        .bind(
            c.events
                .map(|e| serde_json::to_string(e.types()).expect("strings serialize")),
        )
        .bind(c.description)
        .bind(c.disabled.map(flag))
        .bind(now_ms())
        .fetch_optional(db.pool())
        .await?)
}

/// A new secret, the current one kept signing beside it until `old_until` (unix ms).
/// Replaces the secret `current` (as read) with `secret_enc`; false when the endpoint is gone
/// or another rotation replaced `current` first (its new secret would be lost otherwise).
pub async fn rotate_secret(
    db: &Db,
    id: &EndpointId,
    current: &str,
    secret_enc: &str,
    old_secret_enc: &str,
    old_until: i64,
) -> Result<bool> {
    let _turn = db.write_turn().await;
    let done = sqlx::query(
        "UPDATE notification_endpoints SET secret_enc = $2, old_secret_enc = $3, old_secret_until = $4, updated_at = $5 \
         WHERE id = $1 AND secret_enc = $6",
    )
    .bind(id.as_str())
    .bind(secret_enc)
    .bind(old_secret_enc)
    .bind(old_until)
    .bind(now_ms())
    .bind(current)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn delete_endpoint(db: &Db, id: &EndpointId) -> Result<bool> {
    let _turn = db.write_turn().await;
    let done = sqlx::query("DELETE FROM notification_endpoints WHERE id = $1")
        .bind(id.as_str())
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Writes one notification for each enabled endpoint subscribed to `event_type`, inside the
/// caller's transaction (the one that makes the change it tells of), each with the endpoint's
/// next sequence number. Returns how many were written.
pub async fn enqueue(
    conn: &mut AnyConnection,
    event_type: &str,
    store_id: Option<&str>,
    object: &serde_json::Value,
) -> Result<usize> {
    // Every endpoint, locked in id order (each one's row is its sequence, and transactions
    // that emit for different endpoint sets must not lock them in different orders).
    let sql = format!(
        "SELECT {ENDPOINT_COLUMNS} FROM notification_endpoints ORDER BY id{}",
        super::for_update(conn)
    );
    let endpoints: Vec<EndpointRow> = sqlx::query_as(&sql).fetch_all(&mut *conn).await?;
    let now = now_ms();
    // What it is about (an order, a store, a subscription), so an object's page finds its own.
    let subject = object.get("id").and_then(|v| v.as_str());
    let mut written = 0;
    for e in endpoints.iter().filter(|e| e.filter().matches(event_type)) {
        // The endpoint's row is the sequence: concurrent writers queue on it.
        let seq: i64 = sqlx::query_scalar(
            "UPDATE notification_endpoints SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
        )
        .bind(&e.id)
        .fetch_one(&mut *conn)
        .await?;
        let id = NotificationId::generate();
        let body = serde_json::json!({
            "id": id.as_str(),
            "type": event_type,
            "created": now / 1000,
            "store_id": store_id,
            "seq": seq,
            "data": { "object": object },
        });
        // A disabled endpoint's notifications are kept, not sent: `recover` sends them once it
        // is enabled again.
        let status = if e.disabled != 0 { "held" } else { "pending" };
        sqlx::query(
            "INSERT INTO notifications (id, endpoint_id, seq, event_type, store_id, payload, status, next_attempt_at, created_at, subject_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)",
        )
        .bind(id.as_str())
        .bind(&e.id)
        .bind(seq)
        .bind(event_type)
        .bind(store_id)
        .bind(body.to_string())
        .bind(status)
        .bind(now)
        .bind(subject)
        .execute(&mut *conn)
        .await?;
        written += 1;
    }
    Ok(written)
}

#[derive(Debug, Clone, FromRow)]
pub struct NotificationRow {
    pub id: String,
    pub endpoint_id: String,
    pub seq: i64,
    pub event_type: String,
    pub store_id: Option<String>,
    pub payload: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

const NOTIFICATION_COLUMNS: &str = "id, endpoint_id, seq, event_type, store_id, payload, status, \
    attempts, next_attempt_at, created_at, delivered_at";

/// Claims up to `limit` due notifications of enabled endpoints for `lease_ms` under `token`:
/// several processes each get their own (`SKIP LOCKED` on PostgreSQL; SQLite has one writer),
/// and a claim whose process died is due again when its lease ends. A notification's first
/// attempt waits until it was made before `first_before` (unix ms: the schedule's first delay).
pub async fn claim_due(
    db: &Db,
    token: &str,
    limit: i64,
    lease_ms: i64,
    first_before: i64,
) -> Result<Vec<NotificationRow>> {
    let now = now_ms();
    // A read first, so an idle outbox costs no write transaction.
    let any: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM notifications WHERE status = 'pending' AND next_attempt_at <= $1 \
           AND (lease_until IS NULL OR lease_until < $1) AND (attempts > 0 OR created_at <= $2) LIMIT 1",
    )
    .bind(now)
    .bind(first_before)
    .fetch_optional(db.pool())
    .await?;
    if any.is_none() {
        return Ok(Vec::new());
    }
    // Claims and attempts are written without waiting for the disk: one lost to a crash only
    // sends a notification again (at least once, as promised).
    let mut tx = db.begin_unsynced().await?;
    let skip = super::skip_locked(&tx, "n");
    let due: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT n.id FROM notifications n JOIN notification_endpoints e ON e.id = n.endpoint_id \
         WHERE n.status = 'pending' AND n.next_attempt_at <= $1 AND (n.lease_until IS NULL OR n.lease_until < $1) \
           AND (n.attempts > 0 OR n.created_at <= $3) \
           AND e.disabled = 0 ORDER BY n.next_attempt_at, n.seq LIMIT $2{skip}"
    ))
    .bind(now)
    .bind(limit)
    .bind(first_before)
    .fetch_all(&mut *tx)
    .await?;
    let mut claimed = Vec::with_capacity(due.len());
    for id in due {
        let sql = format!(
            "UPDATE notifications SET lease_until = $1, lease_token = $2 WHERE id = $3 RETURNING {NOTIFICATION_COLUMNS}"
        );
        claimed.push(
            sqlx::query_as::<_, NotificationRow>(&sql)
                .bind(now + lease_ms)
                .bind(token)
                .bind(&id)
                .fetch_one(&mut *tx)
                .await?,
        );
    }
    tx.commit().await?;
    Ok(claimed)
}

/// Hands claimed notifications back unattempted, so the next round may take them.
pub async fn release(db: &Db, ids: &[String], token: &str) -> Result<()> {
    let _turn = db.write_turn().await;
    for id in ids {
        sqlx::query(
            "UPDATE notifications SET lease_until = NULL, lease_token = NULL WHERE id = $1 AND lease_token = $2",
        )
        .bind(id)
        .bind(token)
        .execute(db.pool())
        .await?;
    }
    Ok(())
}

/// One attempt's outcome, as the delivery log keeps it.
pub struct Attempt<'a> {
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<&'a str>,
}

/// What happens to a notification after an attempt.
pub enum Next {
    Delivered,
    /// Try again at this time (unix ms).
    RetryAt(i64),
    /// The schedule is spent, or the endpoint said it is gone.
    GiveUp,
}

/// Records an attempt, and what follows if the claim is still ours: false otherwise (it was
/// taken over or made due again; only the attempt itself is logged).
pub async fn record_attempt(
    db: &Db,
    n: &NotificationRow,
    token: &str,
    attempt: &Attempt<'_>,
    next: Next,
) -> Result<bool> {
    let now = now_ms();
    let mut tx = db.begin_unsynced().await?;
    let (status, next_at, delivered) = match next {
        Next::Delivered => ("delivered", n.next_attempt_at, Some(now)),
        Next::RetryAt(at) => ("pending", at, None),
        Next::GiveUp => ("failed", n.next_attempt_at, None),
    };
    let done = sqlx::query(
        "UPDATE notifications SET status = $1, attempts = attempts + 1, next_attempt_at = $2, delivered_at = $3, \
           lease_until = NULL, lease_token = NULL WHERE id = $4 AND lease_token = $5",
    )
    .bind(status)
    .bind(next_at)
    .bind(delivered)
    .bind(&n.id)
    .bind(token)
    .execute(&mut *tx)
    .await?;
    let held = done.rows_affected() == 1;
    if !held {
        // The lease was lost (a redelivery or a recovery made it due again meanwhile): the
        // attempt was still made, so it is logged, and the notification is left to its new
        // lease. Its row is locked first, as the holder's update locks it.
        let sql = format!(
            "SELECT id FROM notifications WHERE id = $1{}",
            super::for_update(&tx)
        );
        let exists: Option<String> = sqlx::query_scalar(&sql)
            .bind(&n.id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            tx.rollback().await?;
            return Ok(false);
        }
    }
    // Numbered across redeliveries (which restart the schedule's count, not the log).
    sqlx::query(
        "INSERT INTO notification_attempts (notification_id, attempt, at, status_code, latency_ms, error) \
         SELECT $1, COALESCE(MAX(attempt), 0) + 1, $2, $3, $4, $5 FROM notification_attempts WHERE notification_id = $1",
    )
    .bind(&n.id)
    .bind(now)
    .bind(attempt.status_code.map(i64::from))
    .bind(attempt.latency_ms)
    .bind(attempt.error)
    .execute(&mut *tx)
    .await?;
    if !held {
        tx.commit().await?;
        return Ok(false);
    }
    // The endpoint's health: failing since the first failure after a success.
    let health = if delivered.is_some() {
        "UPDATE notification_endpoints SET failing_since = NULL WHERE id = $1"
    } else {
        "UPDATE notification_endpoints SET failing_since = COALESCE(failing_since, $2) WHERE id = $1"
    };
    sqlx::query(health)
        .bind(&n.endpoint_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Disables an endpoint, saying why; its pending notifications stay, for `recover` or a
/// redelivery once it is enabled again.
pub async fn disable_endpoint(db: &Db, id: &str, reason: &str) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query(
        "UPDATE notification_endpoints SET disabled = 1, disabled_reason = $2, updated_at = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(reason)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct AttemptRow {
    pub notification_id: String,
    pub attempt: i64,
    pub at: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// A page of the delivery log, newest first, before the cursor.
pub struct LogFilter<'a> {
    pub endpoint_id: Option<&'a str>,
    pub status: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub before: Option<&'a str>,
    pub limit: i64,
}

pub async fn log(db: &Db, f: &LogFilter<'_>) -> Result<Vec<(NotificationRow, Vec<AttemptRow>)>> {
    let sql = format!(
        "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE ($1 = '' OR endpoint_id = $1) \
           AND ($2 = '' OR status = $2) AND ($3 = '' OR event_type = $3) AND ($4 = '' OR id < $4) \
         ORDER BY id DESC LIMIT $5"
    );
    let rows: Vec<NotificationRow> = sqlx::query_as(&sql)
        .bind(f.endpoint_id.unwrap_or(""))
        .bind(f.status.unwrap_or(""))
        .bind(f.event_type.unwrap_or(""))
        .bind(f.before.unwrap_or(""))
        .bind(f.limit)
        .fetch_all(db.pool())
        .await?;
    with_attempts(db, rows).await
}

async fn with_attempts(
    db: &Db,
    rows: Vec<NotificationRow>,
) -> Result<Vec<(NotificationRow, Vec<AttemptRow>)>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let attempts: Vec<AttemptRow> = sqlx::query_as(
            "SELECT notification_id, attempt, at, status_code, latency_ms, error FROM notification_attempts \
             WHERE notification_id = $1 ORDER BY attempt",
        )
        .bind(&row.id)
        .fetch_all(db.pool())
        .await?;
        out.push((row, attempts));
    }
    Ok(out)
}

/// The latest `limit` notifications about one object (its `id`), newest first, with attempts.
pub async fn about(
    db: &Db,
    subject: &str,
    limit: i64,
) -> Result<Vec<(NotificationRow, Vec<AttemptRow>)>> {
    let sql = format!(
        "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE subject_id = $1 \
         ORDER BY id DESC LIMIT $2"
    );
    let rows: Vec<NotificationRow> = sqlx::query_as(&sql)
        .bind(subject)
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    with_attempts(db, rows).await
}

pub async fn notification(db: &Db, id: &NotificationId) -> Result<Option<NotificationRow>> {
    let sql = format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = $1");
    Ok(sqlx::query_as::<_, NotificationRow>(&sql)
        .bind(id.as_str())
        .fetch_optional(db.pool())
        .await?)
}

/// Sends a notification again now, whatever became of it (same id, so receivers deduplicate).
pub async fn redeliver(db: &Db, id: &NotificationId) -> Result<bool> {
    let _turn = db.write_turn().await;
    let done = sqlx::query(
        "UPDATE notifications SET status = 'pending', next_attempt_at = $1, attempts = 0, lease_until = NULL, \
           lease_token = NULL WHERE id = $2",
    )
    .bind(now_ms())
    .bind(id.as_str())
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sends again every notification of the endpoint made since `since_ms` that failed or was
/// held while it was disabled; how many.
pub async fn recover(db: &Db, endpoint: &EndpointId, since_ms: i64) -> Result<u64> {
    let _turn = db.write_turn().await;
    let done = sqlx::query(
        "UPDATE notifications SET status = 'pending', next_attempt_at = $1, attempts = 0, lease_until = NULL, \
           lease_token = NULL WHERE endpoint_id = $2 AND status IN ('failed', 'held') AND created_at >= $3",
    )
    .bind(now_ms())
    .bind(endpoint.as_str())
    .bind(since_ms)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected())
}

/// The outbox backlog: how many wait and since when (unix ms) the oldest has.
pub async fn backlog(db: &Db) -> Result<(i64, Option<i64>)> {
    Ok(sqlx::query_as(
        "SELECT COUNT(*), MIN(created_at) FROM notifications WHERE status = 'pending'",
    )
    .fetch_one(db.pool())
    .await?)
}

/// Deletes delivered notifications made before `cutoff` (unix ms), their attempts with them
/// (`ON DELETE CASCADE`), `chunk` per statement; failed and held ones stay until they are sent
/// again. The status is checked again on the row itself, so one redelivered meanwhile stays.
pub async fn prune_delivered(db: &Db, cutoff: i64, chunk: i64) -> Result<u64> {
    let mut deleted = 0;
    loop {
        let _turn = db.write_turn().await;
        let done = sqlx::query(
            "DELETE FROM notifications WHERE status = 'delivered' AND created_at < $1 AND id IN \
             (SELECT id FROM notifications WHERE status = 'delivered' AND created_at < $1 ORDER BY created_at LIMIT $2)",
        )
        .bind(cutoff)
        .bind(chunk)
        .execute(db.pool())
        .await?;
        drop(_turn);
        deleted += done.rows_affected();
        if done.rows_affected() < chunk as u64 {
            return Ok(deleted);
        }
    }
}

/// Endpoints disabled or failing, by id: id, disabled, why disabled, failing since (unix ms).
pub async fn troubled_endpoints(
    db: &Db,
) -> Result<Vec<(String, i64, Option<String>, Option<i64>)>> {
    Ok(sqlx::query_as(
        "SELECT id, disabled, disabled_reason, failing_since FROM notification_endpoints \
         WHERE disabled = 1 OR failing_since IS NOT NULL ORDER BY id",
    )
    .fetch_all(db.pool())
    .await?)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::db::testing;

    /// Two processes claiming at once each get their own notifications: none is claimed twice.
    #[tokio::test]
    async fn concurrent_claims_from_two_processes_never_overlap() {
        let (db, url, _dir) = testing::fresh().await;
        let other = Db::open(&url).await.unwrap();
        let id = EndpointId::generate();
        let all = EventFilter::parse(&["*".into()]).unwrap();
        insert_endpoint(
            &db,
            &NewEndpoint {
                id: &id,
                url: "https://example.test/hook",
                events: &all,
                description: None,
                secret_enc: "sealed",
            },
        )
        .await
        .unwrap();
        let mut tx = db.begin_write().await.unwrap();
        for _ in 0..40 {
            enqueue(&mut tx, "order.paid", None, &serde_json::json!({}))
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        let far = now_ms() + 1;
        let (a, b) = tokio::join!(
            claim_due(&db, "a", 25, 60_000, far),
            claim_due(&other, "b", 25, 60_000, far)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let ids_a: HashSet<_> = a.iter().map(|n| n.id.clone()).collect();
        let ids_b: HashSet<_> = b.iter().map(|n| n.id.clone()).collect();
        assert!(
            ids_a.is_disjoint(&ids_b),
            "a notification was claimed twice"
        );
        assert_eq!(ids_a.len() + ids_b.len(), 40);
        // Sequence numbers are the endpoint's, one each.
        let seqs: HashSet<i64> = a.iter().chain(&b).map(|n| n.seq).collect();
        assert_eq!(seqs.len(), 40);
        assert!(claim_due(&db, "c", 10, 60_000, far)
            .await
            .unwrap()
            .is_empty());
    }
}

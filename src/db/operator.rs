//! What the operator tools keep: the webhook endpoints Bursar made at Stripe, signature failures
//! per webhook door, and reconciliation cursors.

use sqlx::FromRow;

use super::{now_ms, Db, Result};

/// A webhook endpoint made by `bursar webhooks setup`.
#[derive(Debug, Clone, FromRow)]
pub struct EndpointRow {
    /// `platform`, `connect` or `store:<id>`.
    pub name: String,
    pub endpoint_id: String,
    pub url: String,
    pub secret_enc: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub async fn endpoint(db: &Db, name: &str) -> Result<Option<EndpointRow>> {
    Ok(sqlx::query_as::<_, EndpointRow>(
        "SELECT name, endpoint_id, url, secret_enc, created_at, updated_at FROM webhook_endpoints WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(db.pool())
    .await?)
}

/// Records an endpoint; `secret_enc` replaces the stored secret only when given (an update
/// at Stripe returns none).
pub async fn save_endpoint(
    db: &Db,
    name: &str,
    endpoint_id: &str,
    url: &str,
    secret_enc: Option<&str>,
) -> Result<()> {
    let _turn = db.write_turn().await;
    let now = now_ms();
    sqlx::query(
        "INSERT INTO webhook_endpoints (name, endpoint_id, url, secret_enc, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) \
         ON CONFLICT (name) DO UPDATE SET endpoint_id = excluded.endpoint_id, url = excluded.url, \
           secret_enc = COALESCE(excluded.secret_enc, webhook_endpoints.secret_enc), updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(endpoint_id)
    .bind(url)
    .bind(secret_enc)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Forgets the record of an endpoint Bursar made (deleted at Stripe, or of an account the store
/// left).
pub async fn forget_endpoint(db: &Db, name: &str) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query("DELETE FROM webhook_endpoints WHERE name = $1")
        .bind(name)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Deliveries refused for their signature at one door since its last good one.
#[derive(Debug, Clone, FromRow)]
pub struct SignatureFailure {
    pub source: String,
    pub since: i64,
    pub last_at: i64,
    pub count: i64,
    pub reason: String,
}

pub async fn record_signature_failure(
    db: &Db,
    source: &str,
    reason: &str,
    count: i64,
) -> Result<()> {
    let _turn = db.write_turn().await;
    let now = now_ms();
    sqlx::query(
        "INSERT INTO signature_failures (source, since, last_at, count, reason) VALUES ($1, $2, $2, $3, $4) \
         ON CONFLICT (source) DO UPDATE SET last_at = excluded.last_at, \
           count = signature_failures.count + excluded.count, reason = excluded.reason",
    )
    .bind(source)
    .bind(now)
    .bind(count)
    .bind(reason)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// A good delivery at `source`: its failures are over.
pub async fn clear_signature_failures(db: &Db, source: &str) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query("DELETE FROM signature_failures WHERE source = $1")
        .bind(source)
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn signature_failures(db: &Db) -> Result<Vec<SignatureFailure>> {
    Ok(sqlx::query_as::<_, SignatureFailure>(
        "SELECT source, since, last_at, count, reason FROM signature_failures ORDER BY source",
    )
    .fetch_all(db.pool())
    .await?)
}

/// The newest event already reconciled in `scope`: (event id, its `created`).
pub async fn cursor(db: &Db, scope: &str) -> Result<Option<(String, i64)>> {
    Ok(sqlx::query_as::<_, (String, i64)>(
        "SELECT event_id, created FROM reconcile_cursors WHERE scope = $1",
    )
    .bind(scope)
    .fetch_optional(db.pool())
    .await?)
}

pub async fn set_cursor(db: &Db, scope: &str, event_id: &str, created: i64) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query(
        "INSERT INTO reconcile_cursors (scope, event_id, created, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (scope) DO UPDATE SET event_id = excluded.event_id, created = excluded.created, \
           updated_at = excluded.updated_at",
    )
    .bind(scope)
    .bind(event_id)
    .bind(created)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(())
}

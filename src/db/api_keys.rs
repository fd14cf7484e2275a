//! Platform API keys, stored as SHA-256 hashes (the keys are 190 random bits, so a fast hash
//! is enough: there is nothing to brute-force).

use sqlx::FromRow;

use super::{now_ms, Db, Result};
use crate::domain::ApiKeyId;

#[derive(Debug, Clone, FromRow)]
pub struct ApiKeyRow {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

pub async fn insert(
    db: &Db,
    id: &ApiKeyId,
    name: &str,
    key_hash: &str,
    prefix: &str,
) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query(
        "INSERT INTO api_keys (id, name, key_hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id.as_str())
    .bind(name)
    .bind(key_hash)
    .bind(prefix)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(())
}

pub async fn find_active_by_hash(db: &Db, key_hash: &str) -> Result<Option<ApiKeyRow>> {
    Ok(sqlx::query_as::<_, ApiKeyRow>(
        "SELECT id, name, prefix, created_at, revoked_at FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(key_hash)
    .fetch_optional(db.pool())
    .await?)
}

/// Every key, oldest first, revoked ones included (with when).
pub async fn list(db: &Db) -> Result<Vec<ApiKeyRow>> {
    Ok(sqlx::query_as::<_, ApiKeyRow>(
        "SELECT id, name, prefix, created_at, revoked_at FROM api_keys ORDER BY created_at, id",
    )
    .fetch_all(db.pool())
    .await?)
}

/// Revokes a key; `None` when there is no such key. Revoking twice keeps the first time.
pub async fn revoke(db: &Db, id: &ApiKeyId) -> Result<Option<ApiKeyRow>> {
    let _turn = db.write_turn().await;
    sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now_ms())
        .bind(id.as_str())
        .execute(db.pool())
        .await?;
    Ok(sqlx::query_as::<_, ApiKeyRow>(
        "SELECT id, name, prefix, created_at, revoked_at FROM api_keys WHERE id = $1",
    )
    .bind(id.as_str())
    .fetch_optional(db.pool())
    .await?)
}

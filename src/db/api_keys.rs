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
}

pub async fn insert(
    db: &Db,
    id: &ApiKeyId,
    name: &str,
    key_hash: &str,
    prefix: &str,
) -> Result<()> {
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
        "SELECT id, name, prefix, created_at FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(key_hash)
    .fetch_optional(db.pool())
    .await?)
}

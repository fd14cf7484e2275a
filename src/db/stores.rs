//! The `stores` table.

use sqlx::FromRow;

use super::{now_ms, Db, Result};
use crate::domain::store::{ExternalId, Metadata, StoreName};
use crate::domain::StoreId;

#[derive(Debug, Clone, FromRow)]
pub struct StoreRow {
    pub id: String,
    pub name: String,
    pub external_id: Option<String>,
    pub metadata: String,
    pub created_at: i64,
}

pub async fn insert(
    db: &Db,
    id: &StoreId,
    name: &StoreName,
    external_id: Option<&ExternalId>,
    metadata: &Metadata,
) -> Result<StoreRow> {
    let _turn = db.write_turn().await;
    Ok(sqlx::query_as::<_, StoreRow>(
        "INSERT INTO stores (id, name, external_id, metadata, created_at) VALUES ($1, $2, $3, $4, $5) \
         RETURNING id, name, external_id, metadata, created_at",
    )
    .bind(id.as_str())
    .bind(name.as_str())
    .bind(external_id.map(ExternalId::as_str))
    .bind(metadata.to_json())
    .bind(now_ms())
    .fetch_one(db.pool())
    .await?)
}

pub async fn get(db: &Db, id: &StoreId) -> Result<Option<StoreRow>> {
    Ok(sqlx::query_as::<_, StoreRow>(
        "SELECT id, name, external_id, metadata, created_at FROM stores WHERE id = $1",
    )
    .bind(id.as_str())
    .fetch_optional(db.pool())
    .await?)
}

/// Stores in id (= creation) order, after the cursor.
pub async fn list(db: &Db, after: Option<&StoreId>, limit: i64) -> Result<Vec<StoreRow>> {
    Ok(sqlx::query_as::<_, StoreRow>(
        "SELECT id, name, external_id, metadata, created_at FROM stores WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after.map(StoreId::as_str).unwrap_or(""))
    .bind(limit)
    .fetch_all(db.pool())
    .await?)
}

/// Deletes the store and, by cascade, its connection and secrets. Its events stay in the log.
pub async fn delete(db: &Db, id: &StoreId) -> Result<bool> {
    let _turn = db.write_turn().await;
    let done = sqlx::query("DELETE FROM stores WHERE id = $1")
        .bind(id.as_str())
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
}

//! The `onboarding_grants` table: nonces behind OAuth `state` values and Bursar's own
//! Account Link refresh URLs. The signature lives in the URL; the row says which store a nonce
//! belongs to, when it expires and whether it was spent.

use sqlx::FromRow;

use super::{now_ms, Db, Result};
use crate::domain::StoreId;

#[derive(Debug, Clone, FromRow)]
pub struct GrantRow {
    pub nonce: String,
    pub store_id: String,
    pub purpose: String,
    pub return_url: Option<String>,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

pub struct NewGrant<'a> {
    pub nonce: &'a str,
    pub store: &'a StoreId,
    pub purpose: &'a str,
    pub return_url: Option<&'a str>,
    pub expires_at: i64,
}

/// Saves a grant and drops grants that expired a day ago (they can only be refused anyway).
pub async fn insert(db: &Db, grant: &NewGrant<'_>) -> Result<()> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    sqlx::query("DELETE FROM onboarding_grants WHERE expires_at < $1")
        .bind(now - 86_400_000)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO onboarding_grants (nonce, store_id, purpose, return_url, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(grant.nonce)
    .bind(grant.store.as_str())
    .bind(grant.purpose)
    .bind(grant.return_url)
    .bind(grant.expires_at)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn get(db: &Db, nonce: &str) -> Result<Option<GrantRow>> {
    Ok(sqlx::query_as::<_, GrantRow>(
        "SELECT nonce, store_id, purpose, return_url, expires_at, used_at FROM onboarding_grants WHERE nonce = $1",
    )
    .bind(nonce)
    .fetch_optional(db.pool())
    .await?)
}

/// Marks a grant spent; false when it already was (a replay), so only one caller wins.
pub async fn spend(db: &Db, nonce: &str) -> Result<bool> {
    let mut tx = db.begin_write().await?;
    let done = sqlx::query(
        "UPDATE onboarding_grants SET used_at = $1 WHERE nonce = $2 AND used_at IS NULL",
    )
    .bind(now_ms())
    .bind(nonce)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// Spends a merchant key-entry link (by its nonce) before its keys are saved: false if it
/// was spent already. Links past their expiry are forgotten here too (they are refused anyway).
pub async fn spend_connect_link(
    db: &Db,
    nonce: &str,
    store: &StoreId,
    expires_at_ms: i64,
) -> Result<bool> {
    let _turn = db.write_turn().await;
    sqlx::query("DELETE FROM used_connect_links WHERE expires_at < $1")
        .bind(now_ms())
        .execute(db.pool())
        .await?;
    let done = sqlx::query(
        "INSERT INTO used_connect_links (nonce, store_id, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (nonce) DO NOTHING",
    )
    .bind(nonce)
    .bind(store.as_str())
    .bind(expires_at_ms)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives a spent link back, when the keys it brought were refused (the merchant corrects them).
pub async fn unspend_connect_link(db: &Db, nonce: &str) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query("DELETE FROM used_connect_links WHERE nonce = $1")
        .bind(nonce)
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn connect_link_spent(db: &Db, nonce: &str) -> Result<bool> {
    Ok(
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM used_connect_links WHERE nonce = $1")
            .bind(nonce)
            .fetch_one(db.pool())
            .await?
            > 0,
    )
}

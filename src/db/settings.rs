//! Named facts about how the database is used, checked at start.

use super::{Db, Result};

/// The value stored under `name`, storing `value` first when there is none.
pub async fn get_or_set(db: &Db, name: &str, value: &str) -> Result<String> {
    let _turn = db.write_turn().await;
    sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(value)
        .execute(db.pool())
        .await?;
    Ok(
        sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_one(db.pool())
            .await?,
    )
}

//! The `console_sessions` table: operator console sessions, kept as the SHA-256 of their
//! cookie's random id, each tied to the API key it was opened with.

use sqlx::FromRow;

use super::{Db, Result};

/// A live session: its key is active, and it has neither expired nor idled out.
#[derive(Debug, Clone, FromRow)]
pub struct SessionRow {
    pub api_key_id: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

pub async fn insert(
    db: &Db,
    id_hash: &str,
    api_key_id: &str,
    now: i64,
    expires_at: i64,
) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query(
        "INSERT INTO console_sessions (id_hash, api_key_id, created_at, last_seen_at, expires_at) \
         VALUES ($1, $2, $3, $3, $4)",
    )
    .bind(id_hash)
    .bind(api_key_id)
    .bind(now)
    .bind(expires_at)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The session, if it is live at `now`: not past `expires_at`, seen after `idle_since`, and
/// its API key not revoked (checked here on every request, so a revoked key ends its
/// sessions even before they are deleted).
pub async fn find_live(
    db: &Db,
    id_hash: &str,
    now: i64,
    idle_since: i64,
) -> Result<Option<SessionRow>> {
    Ok(sqlx::query_as::<_, SessionRow>(
        "SELECT s.api_key_id, s.created_at, s.last_seen_at, s.expires_at FROM console_sessions s \
         JOIN api_keys k ON k.id = s.api_key_id \
         WHERE s.id_hash = $1 AND k.revoked_at IS NULL AND s.expires_at > $2 AND s.last_seen_at > $3",
    )
    .bind(id_hash)
    .bind(now)
    .bind(idle_since)
    .fetch_optional(db.pool())
    .await?)
}

/// Records activity, which keeps the session from idling out.
pub async fn touch(db: &Db, id_hash: &str, now: i64) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query("UPDATE console_sessions SET last_seen_at = $1 WHERE id_hash = $2")
        .bind(now)
        .bind(id_hash)
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn delete(db: &Db, id_hash: &str) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
        .bind(id_hash)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Ends every session opened with this API key; how many there were.
pub async fn delete_for_key(db: &Db, api_key_id: &str) -> Result<u64> {
    let _turn = db.write_turn().await;
    let done = sqlx::query("DELETE FROM console_sessions WHERE api_key_id = $1")
        .bind(api_key_id)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected())
}

/// Deletes sessions that can no longer be used: expired, or idle since before `idle_since`.
pub async fn prune(db: &Db, now: i64, idle_since: i64) -> Result<u64> {
    let _turn = db.write_turn().await;
    let done =
        sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
            .bind(now)
            .bind(idle_since)
            .execute(db.pool())
            .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing;
    use crate::domain::ApiKeyId;

    #[tokio::test]
    async fn a_session_lives_while_its_key_is_active_and_it_is_used() {
        let (db, _url, _dir) = testing::fresh().await;
        let key = ApiKeyId::generate();
        crate::db::api_keys::insert(&db, &key, "ops", "hash-of-key", "bsr_abcd")
            .await
            .unwrap();
        let now = 1_000_000;
        insert(&db, "h1", key.as_str(), now, now + 100)
            .await
            .unwrap();
        insert(&db, "h2", key.as_str(), now, now + 100)
            .await
            .unwrap();
        assert!(find_live(&db, "h1", now + 1, now - 10)
            .await
            .unwrap()
            .is_some());
        assert!(
            find_live(&db, "h1", now + 100, now - 10)
                .await
                .unwrap()
                .is_none(),
            "expired"
        );
        assert!(
            find_live(&db, "h1", now + 1, now).await.unwrap().is_none(),
            "idle"
        );
        touch(&db, "h1", now + 5).await.unwrap();
        assert!(find_live(&db, "h1", now + 6, now).await.unwrap().is_some());
        assert!(find_live(&db, "nope", now + 1, now - 10)
            .await
            .unwrap()
            .is_none());

        assert_eq!(prune(&db, now + 6, now).await.unwrap(), 1, "h2 idled out");
        crate::db::api_keys::revoke(&db, &key).await.unwrap();
        assert!(
            find_live(&db, "h1", now + 6, now).await.unwrap().is_none(),
            "a revoked key opens nothing"
        );
        assert_eq!(delete_for_key(&db, key.as_str()).await.unwrap(), 1);
        delete(&db, "h1").await.unwrap();
    }
}

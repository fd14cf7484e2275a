//! Saved responses of management requests sent with an `Idempotency-Key`, per API key, for 24 h.

use super::{now_ms, Db, Result};

const TTL_MS: i64 = 24 * 3600 * 1000;
/// A first request that has not finished after this long died with its connection or process
/// (a dropped handler never releases its key): the key may be used again.
const IN_FLIGHT_MS: i64 = 60 * 1000;

#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// First use of the key: run the request, then `complete` or `release`.
    New,
    /// Same key, same request: the saved response.
    Replay { status: u16, body: String },
    /// Same key, different request.
    Mismatch,
    /// Same key, first request still running.
    InFlight,
}

pub async fn claim(db: &Db, api_key_id: &str, key: &str, request_hash: &str) -> Result<Claim> {
    let now = now_ms();
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE api_key_id = $1 AND idem_key = $2 \
         AND (created_at < $3 OR (status_code IS NULL AND created_at < $4))",
    )
    .bind(api_key_id)
    .bind(key)
    .bind(now - TTL_MS)
    .bind(now - IN_FLIGHT_MS)
    .execute(db.pool())
    .await?;
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (api_key_id, idem_key, request_hash, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (api_key_id, idem_key) DO NOTHING",
    )
    .bind(api_key_id)
    .bind(key)
    .bind(request_hash)
    .bind(now)
    .execute(db.pool())
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Claim::New);
    }
    let row = sqlx::query_as::<_, (String, Option<i64>, Option<String>)>(
        "SELECT request_hash, status_code, response_body FROM idempotency_keys WHERE api_key_id = $1 AND idem_key = $2",
    )
    .bind(api_key_id)
    .bind(key)
    .fetch_optional(db.pool())
    .await?;
    Ok(match row {
        None => Claim::InFlight,
        Some((hash, _, _)) if hash != request_hash => Claim::Mismatch,
        Some((_, Some(status), Some(body))) => Claim::Replay {
            status: status as u16,
            body,
        },
        Some(_) => Claim::InFlight,
    })
}

pub async fn complete(db: &Db, api_key_id: &str, key: &str, status: u16, body: &str) -> Result<()> {
    sqlx::query("UPDATE idempotency_keys SET status_code = $1, response_body = $2 WHERE api_key_id = $3 AND idem_key = $4")
        .bind(i64::from(status))
        .bind(body)
        .bind(api_key_id)
        .bind(key)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Forgets a key whose request did not succeed, so the client may retry with it.
pub async fn release(db: &Db, api_key_id: &str, key: &str) -> Result<()> {
    sqlx::query("DELETE FROM idempotency_keys WHERE api_key_id = $1 AND idem_key = $2 AND status_code IS NULL")
        .bind(api_key_id)
        .bind(key)
        .execute(db.pool())
        .await?;
    Ok(())
}

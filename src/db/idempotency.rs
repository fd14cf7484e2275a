//! Saved responses of management requests sent with an `Idempotency-Key`, per API key, for 24 h.
//!
//! A first request claims the key under an owner token and keeps the claim fresh while it runs
//! (`refresh`); only the owner can complete or release it. A claim left unrefreshed for the
//! lock period belongs to a request that died with its process, and may be taken over.

use std::time::Duration;

use rand::Rng;

use super::{now_ms, Db, Result};

const TTL_MS: i64 = crate::domain::request_key::WINDOW_MS;

#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// First use of the key: run the request, refresh while it runs, then `complete` or `release`.
    New(OwnerToken),
    /// Same key, same request: the saved response.
    Replay { status: u16, body: SavedBody },
    /// Same key, different request.
    Mismatch,
    /// Same key, first request still running.
    InFlight,
}

/// A saved response body: sealed (see `vault_row`), or plain for one saved before bodies were.
#[derive(Debug, PartialEq, Eq)]
pub enum SavedBody {
    Sealed(String),
    Plain(String),
}

/// The row a saved response is sealed to: its API key and `Idempotency-Key` (also the
/// expression `db::secrets` names the row by).
pub fn vault_row(k: KeyRef<'_>) -> String {
    format!("{}:{}", k.api_key_id, k.key)
}

/// Proof that this request owns a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerToken(String);

/// The key of one claim: the API key it belongs to and the client's `Idempotency-Key`.
#[derive(Debug, Clone, Copy)]
pub struct KeyRef<'a> {
    pub api_key_id: &'a str,
    pub key: &'a str,
}

pub async fn claim(db: &Db, k: KeyRef<'_>, request_hash: &str, lock: Duration) -> Result<Claim> {
    claim_at(db, k, request_hash, lock, now_ms()).await
}

async fn claim_at(
    db: &Db,
    k: KeyRef<'_>,
    request_hash: &str,
    lock: Duration,
    now: i64,
) -> Result<Claim> {
    let _turn = db.write_turn().await;
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE api_key_id = $1 AND idem_key = $2 \
         AND (created_at < $3 OR (status_code IS NULL AND COALESCE(locked_at, created_at) < $4))",
    )
    .bind(k.api_key_id)
    .bind(k.key)
    .bind(now - TTL_MS)
    .bind(now - lock.as_millis() as i64)
    .execute(db.pool())
    .await?;
    let token = OwnerToken(format!("{:032x}", rand::thread_rng().gen::<u128>()));
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (api_key_id, idem_key, request_hash, created_at, owner_token, locked_at) \
         VALUES ($1, $2, $3, $4, $5, $4) ON CONFLICT (api_key_id, idem_key) DO NOTHING",
    )
    .bind(k.api_key_id)
    .bind(k.key)
    .bind(request_hash)
    .bind(now)
    .bind(&token.0)
    .execute(db.pool())
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Claim::New(token));
    }
    let row = sqlx::query_as::<_, (String, Option<i64>, Option<String>, Option<String>)>(
        "SELECT request_hash, status_code, response_enc, response_body FROM idempotency_keys WHERE api_key_id = $1 AND idem_key = $2",
    )
    .bind(k.api_key_id)
    .bind(k.key)
    .fetch_optional(db.pool())
    .await?;
    Ok(match row {
        None => Claim::InFlight,
        Some((hash, ..)) if hash != request_hash => Claim::Mismatch,
        Some((_, Some(status), Some(sealed), _)) => Claim::Replay {
            status: status as u16,
            body: SavedBody::Sealed(sealed),
        },
        Some((_, Some(status), None, Some(body))) => Claim::Replay {
            status: status as u16,
            body: SavedBody::Plain(body),
        },
        Some(_) => Claim::InFlight,
    })
}

/// Keeps a running request's claim alive; false when the claim is no longer ours.
/// Runs beside the request it keeps alive, which may itself hold or await the process write
/// lock: so it never takes `write_turn` (it would wait on its own request), and relies on
/// SQLite's busy timeout instead.
pub async fn refresh(db: &Db, k: KeyRef<'_>, token: &OwnerToken) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE idempotency_keys SET locked_at = $1 WHERE api_key_id = $2 AND idem_key = $3 \
         AND owner_token = $4 AND status_code IS NULL",
    )
    .bind(now_ms())
    .bind(k.api_key_id)
    .bind(k.key)
    .bind(&token.0)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Saves the response, sealed, for replay; false when the claim was taken over (nothing is
/// saved).
pub async fn complete(
    db: &Db,
    k: KeyRef<'_>,
    token: &OwnerToken,
    status: u16,
    sealed_body: &str,
) -> Result<bool> {
    let _turn = db.write_turn().await;
    let done = sqlx::query(
        "UPDATE idempotency_keys SET status_code = $1, response_enc = $2 \
         WHERE api_key_id = $3 AND idem_key = $4 AND owner_token = $5 AND status_code IS NULL",
    )
    .bind(i64::from(status))
    .bind(sealed_body)
    .bind(k.api_key_id)
    .bind(k.key)
    .bind(&token.0)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Forgets saved responses past the key window (a key past it is free again anyway), so
/// neither the table nor the start-up key check grows without end.
pub async fn prune(db: &Db) -> Result<u64> {
    let _turn = db.write_turn().await;
    let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
        .bind(now_ms() - TTL_MS)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected())
}

/// Forgets our claim of a key whose request did not succeed, so the client may retry with it.
/// Another request's claim of the same key is left alone.
pub async fn release(db: &Db, k: KeyRef<'_>, token: &OwnerToken) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE api_key_id = $1 AND idem_key = $2 \
         AND owner_token = $3 AND status_code IS NULL",
    )
    .bind(k.api_key_id)
    .bind(k.key)
    .bind(&token.0)
    .execute(db.pool())
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn db() -> (Db, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = Db::connect(&url).await.unwrap();
        db.migrate().await.unwrap();
        (db, dir)
    }

    const K: KeyRef<'static> = KeyRef {
        api_key_id: "key_a",
        key: "order-1",
    };
    const LOCK: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn a_stale_claim_taken_over_cannot_be_released_or_completed_by_its_first_owner() {
        let (db, _dir) = db().await;
        let t0 = now_ms();
        let Claim::New(first) = claim_at(&db, K, "h", LOCK, t0).await.unwrap() else {
            panic!("first claim")
        };
        // While fresh, a second request is told the first is running.
        assert_eq!(
            claim_at(&db, K, "h", LOCK, t0 + 1_000).await.unwrap(),
            Claim::InFlight
        );
        // Unrefreshed past the lock period: the first request is taken as dead.
        let Claim::New(second) = claim_at(&db, K, "h", LOCK, t0 + 31_000).await.unwrap() else {
            panic!("takeover")
        };
        assert_ne!(first, second);
        // The first request, alive after all, finishes: it must not touch the second's claim.
        release(&db, K, &first).await.unwrap();
        assert!(!complete(&db, K, &first, 200, "{\"first\":1}")
            .await
            .unwrap());
        assert!(!refresh(&db, K, &first).await.unwrap());
        assert_eq!(claim(&db, K, "h", LOCK).await.unwrap(), Claim::InFlight);
        assert!(complete(&db, K, &second, 201, "{\"second\":1}")
            .await
            .unwrap());
        assert_eq!(
            claim(&db, K, "h", LOCK).await.unwrap(),
            Claim::Replay {
                status: 201,
                body: SavedBody::Sealed("{\"second\":1}".into())
            }
        );
        assert_eq!(claim(&db, K, "other", LOCK).await.unwrap(), Claim::Mismatch);
    }

    #[tokio::test]
    async fn saved_responses_past_the_window_are_pruned() {
        let (db, _dir) = db().await;
        let Claim::New(token) = claim(&db, K, "h", LOCK).await.unwrap() else {
            panic!("a new key");
        };
        assert!(complete(&db, K, &token, 201, "sealed").await.unwrap());
        assert_eq!(prune(&db).await.unwrap(), 0);
        sqlx::query("UPDATE idempotency_keys SET created_at = created_at - $1")
            .bind(TTL_MS + 1)
            .execute(db.pool())
            .await
            .unwrap();
        assert_eq!(prune(&db).await.unwrap(), 1);
        assert!(matches!(
            claim(&db, K, "other", LOCK).await.unwrap(),
            Claim::New(_)
        ));
    }

    #[tokio::test]
    async fn a_refreshed_claim_stays_in_flight() {
        let (db, _dir) = db().await;
        let Claim::New(token) = claim(&db, K, "h", Duration::from_millis(1000))
            .await
            .unwrap()
        else {
            panic!("first claim")
        };
        // Each wait is under the lock's time, the sum well over it; the margin (600 ms) absorbs
        // a slow round trip (a new TLS connection to PostgreSQL on a loaded machine).
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            assert!(refresh(&db, K, &token).await.unwrap());
            assert_eq!(
                claim(&db, K, "h", Duration::from_millis(1000))
                    .await
                    .unwrap(),
                Claim::InFlight
            );
        }
    }
}

//! What a worker writes about events it claimed, inside its own transaction beside their
//! effects: each statement checks the claim token, so a lease taken over writes nothing of ours.

use sqlx::{Any, Executor};

use super::placeholder;
use super::rows::Outcome;
use crate::db::{now_ms, Engine, Result};

/// Finishes a claimed event if the claim is still ours. Returns false when another worker
/// took it over (our lease ran out): the caller must then roll back its effects.
pub async fn finish<'e>(
    ex: impl Executor<'e, Database = Any>,
    seq: i64,
    token: &str,
    outcome: Outcome,
    store_id: Option<&str>,
    note: Option<&str>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE events SET status = $1, last_error = $2, applied_at = CASE WHEN $1 = 'applied' THEN $3 ELSE NULL END, claim_token = NULL, \
         store_id = COALESCE(store_id, $4) WHERE seq = $5 AND claim_token = $6",
    )
    .bind(outcome.as_str())
    .bind(note)
    .bind(now_ms())
    .bind(store_id)
    .bind(seq)
    .bind(token)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Finishes many claimed events with one outcome; returns the seqs that were still ours
/// (any other was taken over by another worker and must get no effects from us).
pub async fn finish_many<'e>(
    ex: impl Executor<'e, Database = Any>,
    engine: Engine,
    seqs: &[i64],
    token: &str,
    outcome: Outcome,
) -> Result<Vec<i64>> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let p = |n: usize| placeholder(engine, n);
    let list = (0..seqs.len())
        .map(|i| p(i + 4))
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!(
        "UPDATE events SET status = {}, applied_at = {}, last_error = NULL, claim_token = NULL \
         WHERE claim_token = {} AND seq IN ({list}) RETURNING seq",
        p(1),
        p(2),
        p(3)
    );
    let mut query = sqlx::query_scalar::<_, i64>(&sql)
        .bind(outcome.as_str())
        .bind(now_ms())
        .bind(token);
    for seq in seqs {
        query = query.bind(*seq);
    }
    Ok(query.persistent(false).fetch_all(ex).await?)
}

/// Records a failed attempt: retried at `retry_at`, or parked as `dead` when `dead`.
pub async fn fail<'e>(
    ex: impl Executor<'e, Database = Any>,
    seq: i64,
    token: &str,
    error: &str,
    retry_at: Option<i64>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE events SET status = $1, last_error = $2, next_attempt_at = $3, claim_token = NULL \
         WHERE seq = $4 AND claim_token = $5",
    )
    .bind(if retry_at.is_some() {
        "retrying"
    } else {
        "dead"
    })
    .bind(error)
    .bind(retry_at.unwrap_or_else(now_ms))
    .bind(seq)
    .bind(token)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Hands a claimed event back unapplied (shutdown, no room to load it now), due at `due_at`;
/// the claim's attempt is not counted.
pub async fn release<'e>(
    ex: impl Executor<'e, Database = Any>,
    token: &str,
    seq: i64,
    due_at: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE events SET status = CASE WHEN attempts > 1 THEN 'retrying' ELSE 'pending' END, \
         attempts = attempts - 1, next_attempt_at = $1, claim_token = NULL \
         WHERE claim_token = $2 AND seq = $3",
    )
    .bind(due_at)
    .bind(token)
    .bind(seq)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

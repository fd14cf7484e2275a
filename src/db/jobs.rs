//! The `jobs` table: one row per periodic job, so that every `bursar serve` on one database
//! runs each job once per period between them. A process takes a job's turn when it is due and
//! no live process holds it; the turn is a lease it renews while the round runs, so a process
//! that dies mid-round gives the job up within one lease.

use sqlx::FromRow;

use super::{now_ms, Db, Result};

/// A job's row, as the operator tools show it.
#[derive(Debug, Clone, FromRow)]
pub struct JobRow {
    pub name: String,
    pub owner: Option<String>,
    pub next_run_at: i64,
    pub lease_until: Option<i64>,
    pub runs: i64,
    pub last_started_at: Option<i64>,
    pub last_finished_at: Option<i64>,
    pub last_error: Option<String>,
}

/// Makes `job`'s row if it has none, its first turn due `first_after_ms` from now.
pub async fn register(db: &Db, job: &str, first_after_ms: i64) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query(
        "INSERT INTO jobs (name, next_run_at, runs) VALUES ($1, $2, 0) ON CONFLICT (name) DO NOTHING",
    )
    .bind(job)
    .bind(now_ms() + first_after_ms)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Takes `job`'s turn for `owner` if it is due and nobody's lease on it is live: the next turn
/// is due `period_ms` from now, and the lease lasts `lease_ms` unless renewed. True when this
/// process runs the round now.
pub async fn take_turn(
    db: &Db,
    job: &str,
    owner: &str,
    period_ms: i64,
    lease_ms: i64,
) -> Result<bool> {
    let _turn = db.write_turn().await;
    let now = now_ms();
    let taken = sqlx::query(
        "UPDATE jobs SET owner = $1, lease_until = $2, next_run_at = $3, runs = runs + 1, last_started_at = $4 \
         WHERE name = $5 AND next_run_at <= $4 AND (lease_until IS NULL OR lease_until < $4)",
    )
    .bind(owner)
    .bind(now + lease_ms)
    .bind(now + period_ms)
    .bind(now)
    .bind(job)
    .execute(db.pool())
    .await?;
    Ok(taken.rows_affected() == 1)
}

/// Extends `owner`'s lease on `job` while its round runs. False when the lease was lost (it ran
/// out and another process took the job).
pub async fn renew(db: &Db, job: &str, owner: &str, lease_ms: i64) -> Result<bool> {
    let _turn = db.write_turn().await;
    let done = sqlx::query(
        "UPDATE jobs SET lease_until = $1 WHERE name = $2 AND owner = $3 AND lease_until IS NOT NULL",
    )
    .bind(now_ms() + lease_ms)
    .bind(job)
    .bind(owner)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends `owner`'s round of `job`: the lease is let go, and how it ended is kept. A round cut
/// short (`again`) is due again at once, for whichever process looks next.
pub async fn finish(
    db: &Db,
    job: &str,
    owner: &str,
    error: Option<&str>,
    again: bool,
) -> Result<()> {
    let _turn = db.write_turn().await;
    let now = now_ms();
    sqlx::query(
        "UPDATE jobs SET lease_until = NULL, last_finished_at = $1, last_error = $2, \
         next_run_at = CASE WHEN $5 = 1 THEN $1 ELSE next_run_at END \
         WHERE name = $3 AND owner = $4",
    )
    .bind(now)
    .bind(error)
    .bind(job)
    .bind(owner)
    .bind(i64::from(again))
    .execute(db.pool())
    .await?;
    Ok(())
}

pub async fn list(db: &Db) -> Result<Vec<JobRow>> {
    Ok(sqlx::query_as(
        "SELECT name, owner, next_run_at, lease_until, runs, last_started_at, last_finished_at, last_error \
         FROM jobs ORDER BY name",
    )
    .fetch_all(db.pool())
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::fresh;

    #[tokio::test]
    async fn a_due_job_is_taken_by_one_owner_and_given_up_when_its_lease_runs_out() {
        let (db, _url, _dir) = fresh().await;
        register(&db, "sweep", 0).await.unwrap();
        register(&db, "prune", 0).await.unwrap();
        assert!(take_turn(&db, "sweep", "a", 60_000, 30_000).await.unwrap());
        // Not due again for a period, whoever asks.
        assert!(!take_turn(&db, "sweep", "b", 60_000, 30_000).await.unwrap());
        assert!(!take_turn(&db, "sweep", "a", 60_000, 30_000).await.unwrap());
        assert!(renew(&db, "sweep", "a", 30_000).await.unwrap());
        assert!(!renew(&db, "sweep", "b", 30_000).await.unwrap());
        // Due, but a's round still holds its lease.
        sqlx::query("UPDATE jobs SET next_run_at = 0")
            .execute(db.pool())
            .await
            .unwrap();
        assert!(!take_turn(&db, "sweep", "b", 60_000, 30_000).await.unwrap());
        // a died mid-round: once its lease runs out, b takes the job.
        sqlx::query("UPDATE jobs SET lease_until = 1")
            .execute(db.pool())
            .await
            .unwrap();
        assert!(take_turn(&db, "sweep", "b", 60_000, 30_000).await.unwrap());
        assert!(!renew(&db, "sweep", "a", 30_000).await.unwrap());
        finish(&db, "sweep", "b", Some("Stripe unavailable"), false)
            .await
            .unwrap();
        let rows = list(&db).await.unwrap();
        assert_eq!(rows.len(), 2);
        let sweep = rows.iter().find(|r| r.name == "sweep").unwrap();
        assert_eq!(sweep.runs, 2);
        assert_eq!(sweep.owner.as_deref(), Some("b"));
        assert_eq!(sweep.lease_until, None);
        assert_eq!(sweep.last_error.as_deref(), Some("Stripe unavailable"));
        // A round cut by shutdown leaves the job due at once, for another process.
        assert!(take_turn(&db, "prune", "a", 60_000, 30_000).await.unwrap());
        finish(&db, "prune", "a", Some("stopped"), true)
            .await
            .unwrap();
        assert!(take_turn(&db, "prune", "c", 60_000, 30_000).await.unwrap());
        // c holds it now.
        assert!(!take_turn(&db, "prune", "a", 60_000, 30_000).await.unwrap());
    }
}

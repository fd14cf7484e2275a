//! Periodic jobs, once across all processes: each `bursar serve` looks at a job a few times a
//! period and runs a round only when it takes the job's turn (`db::jobs`). A round's lease is
//! renewed while it runs; a process that dies mid-round gives the job up when its lease runs
//! out, and the next process to look takes it.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Services;
use crate::db;

/// How long a round holds its job without renewing; it renews every third of it. A process
/// killed mid-round holds the job this long (the next turn is due at the later of this and the
/// period).
const LEASE: Duration = Duration::from_secs(60);

/// A periodic job: its name (its row in `jobs`), its period, and how long after the job is
/// first seen its first round is due.
#[derive(Clone, Copy, Debug)]
pub struct Job {
    pub name: &'static str,
    pub period: Duration,
    pub first_after: Duration,
}

impl Job {
    /// How often a process asks for the job's turn: a quarter period, between 250 ms and 15 s,
    /// so a job runs at most that much later than due.
    fn poll(&self) -> Duration {
        (self.period / 4)
            .clamp(Duration::from_millis(250), Duration::from_secs(15))
            .min(self.period)
    }
}

/// This process's name in the `jobs` table.
fn owner() -> String {
    format!("{}-{:016x}", std::process::id(), rand::random::<u64>())
}

/// Runs `round` once per `job.period` across every process on the database, until `stop`.
/// A round's error is logged and kept in the job's row; the next period tries again.
pub async fn every<F, Fut>(s: Services, job: Job, stop: CancellationToken, mut round: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let owner = owner();
    let lease_ms = LEASE.as_millis() as i64;
    let mut registered = false;
    let mut tick = tokio::time::interval(job.poll());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !registered {
            let first_after = job.first_after.as_millis() as i64;
            match db::jobs::register(&s.db, job.name, first_after).await {
                Ok(()) => registered = true,
                Err(e) => {
                    tracing::warn!(job = job.name, error = %e, "could not register the job");
                    continue;
                }
            }
        }
        let period_ms = job.period.as_millis() as i64;
        match db::jobs::take_turn(&s.db, job.name, &owner, period_ms, lease_ms).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(job = job.name, error = %e, "could not ask for the job's turn");
                continue;
            }
        }
        let outcome = renewing(&s.db, (job.name, &owner, LEASE), &stop, round()).await;
        // A round cut by shutdown is due again at once, for another process.
        let cut = stop.is_cancelled();
        if let Err(e) = &outcome {
            tracing::warn!(job = job.name, error = %e, "round failed; the next period retries");
        }
        let error = outcome.err();
        let finished = db::jobs::finish(&s.db, job.name, &owner, error.as_deref(), cut);
        if let Err(e) = finished.await {
            tracing::warn!(job = job.name, error = %e, "could not record the round's end; its lease runs out");
        }
    }
}

/// Runs `round` while renewing the job's lease every third of it. Both are polled together:
/// the round may hold the SQLite write lock that a renewal waits for. At `stop` the round is
/// dropped (every round is safe to cut anywhere: its work is claimed row by row and re-done
/// by the next).
async fn renewing<Fut>(
    db: &db::Db,
    (job, owner, lease): (&str, &str, Duration),
    stop: &CancellationToken,
    round: Fut,
) -> Result<(), String>
where
    Fut: Future<Output = Result<(), String>>,
{
    let renew = async {
        let every = lease / 3;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tick.tick().await;
            match db::jobs::renew(db, job, owner, lease.as_millis() as i64).await {
                Ok(true) => {}
                // Another process took the job: this round finishes (two rounds at once do
                // nothing twice), the next is theirs.
                Ok(false) => tracing::warn!(job, "the job's lease ran out during a long round"),
                Err(e) => tracing::warn!(job, error = %e, "could not renew the job's lease"),
            }
        }
    };
    tokio::select! {
        outcome = round => outcome,
        _ = renew => unreachable!("renewing never ends"),
        _ = stop.cancelled() => Err("stopped by shutdown mid-round".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A round that holds the SQLite write lock while its lease is renewed still ends: the
    /// renewal waits its turn while the round goes on.
    #[tokio::test]
    async fn a_round_holding_the_write_lock_outlives_its_renewals() {
        let (db, _url, _dir) = crate::db::testing::fresh().await;
        db::jobs::register(&db, "long", 0).await.unwrap();
        assert!(db::jobs::take_turn(&db, "long", "me", 60_000, 300)
            .await
            .unwrap());
        let round = async {
            let turn = db.write_turn().await;
            tokio::time::sleep(Duration::from_millis(700)).await;
            drop(turn);
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(())
        };
        let stop = CancellationToken::new();
        let lease = ("long", "me", Duration::from_millis(300));
        let ended =
            tokio::time::timeout(Duration::from_secs(10), renewing(&db, lease, &stop, round)).await;
        assert_eq!(ended.expect("no deadlock"), Ok(()));
        // It was renewed meanwhile (taken with a 300 ms lease, renewed after the lock).
        let rows = db::jobs::list(&db).await.unwrap();
        let until = rows[0].lease_until.unwrap();
        assert!(until > rows[0].last_started_at.unwrap() + 300, "{rows:?}");
    }

    #[tokio::test]
    async fn a_round_is_cut_at_shutdown() {
        let (db, _url, _dir) = crate::db::testing::fresh().await;
        let stop = CancellationToken::new();
        stop.cancel();
        let forever = std::future::pending::<Result<(), String>>();
        let lease = ("t", "me", Duration::from_secs(60));
        assert!(renewing(&db, lease, &stop, forever).await.is_err());
    }

    #[test]
    fn a_job_is_looked_at_a_few_times_a_period() {
        let job = |secs: u64| Job {
            name: "t",
            period: Duration::from_secs(secs),
            first_after: Duration::ZERO,
        };
        assert_eq!(job(60).poll(), Duration::from_secs(15));
        assert_eq!(job(4).poll(), Duration::from_secs(1));
        assert_eq!(job(3600).poll(), Duration::from_secs(15));
        let fast = Job {
            period: Duration::from_millis(100),
            ..job(1)
        };
        assert_eq!(fast.poll(), Duration::from_millis(100));
    }
}

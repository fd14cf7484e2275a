//! Bounded storage: payloads of finished events past the retention window are deleted, and
//! later their rows (the event ids that answer Stripe's redeliveries as duplicates). Dead events
//! and events still in flight are kept whatever their age.
//!
//! Both walk the inbox in `seq` order, a chunk of sequence numbers per statement, jumping from
//! one chunk to the next kept payload (or row) by the primary key: a round costs the rows it
//! deletes, not the size of the table, and no statement holds the write lock for long.

use super::super::{Db, Engine, Result};

/// The statuses of an event that will not be worked on again unless replayed.
pub const FINISHED: &str = "('applied', 'ignored', 'unrouted', 'discarded')";

/// Deletes the payloads of finished events received before `cutoff` (unix ms), `chunk`
/// sequence numbers per statement. Returns how many were deleted.
pub async fn payloads(db: &Db, cutoff: i64, chunk: i64) -> Result<u64> {
    let finished = format!(
        "SELECT seq FROM events WHERE seq >= $1 AND seq < $2 AND received_at < $3 AND status IN {FINISHED}"
    );
    let delete = match db.engine() {
        Engine::Sqlite => format!(
            "DELETE FROM event_payloads WHERE seq >= $1 AND seq < $2 AND seq IN ({finished})"
        ),
        // The events are locked while their payloads go: a replay committed meanwhile takes
        // its event out of the chunk (the lock re-reads its status), and one that comes after
        // finds the payload gone (`replay`).
        Engine::Postgres => format!(
            "WITH finished AS ({finished} FOR UPDATE) \
             DELETE FROM event_payloads WHERE seq >= $1 AND seq < $2 AND seq IN (SELECT seq FROM finished)"
        ),
    };
    walk(db, "event_payloads", cutoff, chunk, &delete).await
}

/// Deletes the rows of finished events received before `cutoff`, and with them their ids: a
/// redelivery after this is taken as a new event. The newest row is always kept, so that a
/// SQLite rowid is never handed out twice.
pub async fn events(db: &Db, cutoff: i64, chunk: i64) -> Result<u64> {
    let delete = format!(
        "DELETE FROM events WHERE seq >= $1 AND seq < $2 AND received_at < $3 AND status IN {FINISHED} \
         AND seq < (SELECT MAX(seq) FROM events) \
         AND NOT EXISTS (SELECT 1 FROM event_payloads p WHERE p.seq = events.seq)"
    );
    walk(db, "events", cutoff, chunk, &delete).await
}

/// Runs `delete` ($1..$2 a chunk of seqs, $3 the cutoff) from the lowest `seq` of `table`
/// upward, until the first kept row of a chunk is not older than `cutoff`.
async fn walk(db: &Db, table: &str, cutoff: i64, chunk: i64, delete: &str) -> Result<u64> {
    let first = format!("SELECT MIN(seq) FROM {table} WHERE seq >= $1");
    let mut from = 0_i64;
    let mut deleted = 0;
    loop {
        let lowest: Option<i64> = sqlx::query_scalar(&first)
            .bind(from)
            .fetch_one(db.pool())
            .await?;
        let Some(lo) = lowest else { break };
        let received: Option<i64> =
            sqlx::query_scalar("SELECT received_at FROM events WHERE seq = $1")
                .bind(lo)
                .fetch_optional(db.pool())
                .await?;
        if received.is_some_and(|at| at >= cutoff) {
            break;
        }
        let _turn = db.write_turn().await;
        let done = sqlx::query(delete)
            .bind(lo)
            .bind(lo + chunk)
            .bind(cutoff)
            .execute(db.pool())
            .await?;
        drop(_turn);
        deleted += done.rows_affected();
        from = lo + chunk;
    }
    Ok(deleted)
}

/// When the oldest kept finished event and the oldest kept payload of a finished event were
/// received (unix ms): what retention bounds (dead events are kept on purpose, and counted
/// apart). Both read from the low end of the primary key.
pub async fn oldest_kept(db: &Db) -> Result<(Option<i64>, Option<i64>)> {
    let event = sqlx::query_scalar(&format!(
        "SELECT received_at FROM events WHERE status IN {FINISHED} ORDER BY seq LIMIT 1"
    ))
    .fetch_optional(db.pool())
    .await?;
    // Led by the payloads' key (a join could be planned from the events side, through the
    // rows whose payloads are already gone): each payload's event is looked up by its key.
    let payload = sqlx::query_scalar(&format!(
        "SELECT r FROM (SELECT (SELECT e.received_at FROM events e WHERE e.seq = p.seq AND e.status IN {FINISHED}) AS r \
         FROM event_payloads p ORDER BY p.seq) x WHERE r IS NOT NULL LIMIT 1"
    ))
    .fetch_optional(db.pool())
    .await?;
    Ok((event, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::fresh;

    /// Seeds events `1..=n` received at `at(seq)` with `status(seq)`, each with a payload.
    async fn seed(db: &Db, n: i64, at: impl Fn(i64) -> i64, status: impl Fn(i64) -> &'static str) {
        for seq in 1..=n {
            sqlx::query(
                "INSERT INTO events (seq, source, event_id, event_type, scope, livemode, stripe_created, \
                 status, attempts, next_attempt_at, received_at) \
                 VALUES ($1, 'platform', $2, 'payment_intent.succeeded', 'platform', 0, 1, $3, 0, 0, $4)",
            )
            .bind(seq)
            .bind(format!("evt_{seq}"))
            .bind(status(seq))
            .bind(at(seq))
            .execute(db.pool())
            .await
            .unwrap();
            sqlx::query("INSERT INTO event_payloads (seq, payload) VALUES ($1, '{}')")
                .bind(seq)
                .execute(db.pool())
                .await
                .unwrap();
        }
    }

    async fn seqs(db: &Db, table: &str) -> Vec<i64> {
        sqlx::query_scalar(&format!("SELECT seq FROM {table} ORDER BY seq"))
            .fetch_all(db.pool())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn only_finished_events_past_the_window_lose_payloads_then_rows() {
        let (db, _url, _dir) = fresh().await;
        // 1..=40 are old, 41..=50 recent; 7 is dead, 9 still retrying, 12 ignored.
        seed(
            &db,
            50,
            |seq| if seq <= 40 { 1_000 } else { 10_000 },
            |seq| match seq {
                7 => "dead",
                9 => "retrying",
                12 => "ignored",
                _ => "applied",
            },
        )
        .await;
        assert_eq!(payloads(&db, 5_000, 8).await.unwrap(), 38);
        let kept = seqs(&db, "event_payloads").await;
        assert_eq!(kept[..2], [7, 9]);
        assert_eq!(kept[2..], (41..=50).collect::<Vec<_>>()[..]);
        // A second round has nothing to do.
        assert_eq!(payloads(&db, 5_000, 8).await.unwrap(), 0);
        // Rows go only once their payload has; dead and retrying ones stay.
        assert_eq!(events(&db, 5_000, 8).await.unwrap(), 38);
        let rows = seqs(&db, "events").await;
        assert_eq!(rows[..2], [7, 9]);
        assert_eq!(rows.len(), 12);
        // The dead and retrying ones are not what retention bounds.
        assert_eq!(
            oldest_kept(&db).await.unwrap(),
            (Some(10_000), Some(10_000))
        );
    }

    #[tokio::test]
    async fn the_newest_row_is_kept_even_when_everything_is_old() {
        let (db, _url, _dir) = fresh().await;
        seed(&db, 5, |_| 1_000, |_| "applied").await;
        assert_eq!(payloads(&db, 5_000, 2).await.unwrap(), 5);
        assert_eq!(events(&db, 5_000, 2).await.unwrap(), 4);
        assert_eq!(seqs(&db, "events").await, [5]);
        assert_eq!(oldest_kept(&db).await.unwrap(), (Some(1_000), None));
    }
}

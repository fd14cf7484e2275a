//! What operators see and do in the inbox: listings, lookups, payloads, counts, and replay.

use std::collections::HashMap;

use super::rows::{EventRow, COLUMNS};
use super::{placeholder, unfinished};
use sqlx::AnyPool;

use crate::db::{now_ms, Db, Engine, Result};

/// Seqs per payload lookup: far below both engines' parameter limits.
const LOOKUP_CHUNK: usize = 500;

/// The raw payloads of these events, by seq.
pub async fn payloads(db: &Db, seqs: &[i64]) -> Result<HashMap<i64, String>> {
    payloads_on(db.pool(), db.engine(), seqs).await
}

pub(super) async fn payloads_on(
    pool: &AnyPool,
    engine: Engine,
    seqs: &[i64],
) -> Result<HashMap<i64, String>> {
    let mut out = HashMap::with_capacity(seqs.len());
    for chunk in seqs.chunks(LOOKUP_CHUNK) {
        let list = (1..=chunk.len())
            .map(|n| placeholder(engine, n))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!("SELECT seq, payload FROM event_payloads WHERE seq IN ({list})");
        let mut query = sqlx::query_as::<_, (i64, String)>(&sql);
        for seq in chunk {
            query = query.bind(*seq);
        }
        out.extend(query.persistent(false).fetch_all(pool).await?);
    }
    Ok(out)
}

/// How many events are due now (what a claim would find).
pub async fn due_now(db: &Db) -> Result<i64> {
    let sql = format!(
        "SELECT COUNT(*) FROM events WHERE {} AND next_attempt_at <= $1",
        unfinished(db.engine())
    );
    Ok(sqlx::query_scalar::<_, i64>(&sql)
        .bind(now_ms())
        .fetch_one(db.pool())
        .await?)
}

/// Filters for the operator's event list.
/// Filters for the operator's event list.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub store_id: Option<String>,
    pub status: Option<String>,
    pub event_type: Option<String>,
}

/// Newest first, before the `before` cursor (a `seq`).
pub async fn list(
    db: &Db,
    filter: &Filter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<EventRow>> {
    let sql = list_sql(filter.store_id.is_some());
    Ok(sqlx::query_as::<_, EventRow>(&sql)
        .bind(before.unwrap_or(i64::MAX))
        .bind(filter.store_id.as_deref())
        .bind(filter.status.as_deref())
        .bind(filter.event_type.as_deref())
        .bind(limit)
        .fetch_all(db.pool())
        .await?)
}

/// The listing: `$1` before, `$2` store, `$3` status, `$4` type, `$5` limit. A store's events
/// come from `events_store`: with `$2 IS NULL OR store_id = $2` the planner reads the whole
/// table backwards, however few events the store has.
pub(super) fn list_sql(by_store: bool) -> String {
    let store = if by_store {
        "store_id = $2"
    } else {
        "($2 IS NULL OR store_id = $2)"
    };
    format!(
        "SELECT {COLUMNS} FROM events WHERE {store} AND seq < $1 \
         AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR event_type = $4) ORDER BY seq DESC LIMIT $5"
    )
}

/// Among a store's latest `window` events, newest first, those whose payload contains `needle`
/// (a quoted Stripe object id), byte for byte. Payloads are not indexed by what they are about,
/// so the walk is bounded: the store's index gives the window, and only its payloads are read.
pub async fn mentioning(
    db: &Db,
    store_id: &str,
    needle: &str,
    window: i64,
) -> Result<Vec<EventRow>> {
    // An exact, case-sensitive search on both engines (SQLite's LIKE ignores case).
    let contains = match db.engine() {
        Engine::Sqlite => "instr(p.payload, $3) > 0",
        Engine::Postgres => "strpos(p.payload, $3) > 0",
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE seq IN (\
           SELECT w.seq FROM (SELECT seq FROM events WHERE store_id = $1 ORDER BY seq DESC LIMIT $2) w \
           JOIN event_payloads p ON p.seq = w.seq WHERE {contains}) \
         ORDER BY seq DESC"
    );
    Ok(sqlx::query_as::<_, EventRow>(&sql)
        .bind(store_id)
        .bind(window)
        .bind(needle)
        .fetch_all(db.pool())
        .await?)
}

pub async fn get(db: &Db, seq: i64) -> Result<Option<EventRow>> {
    let sql = format!("SELECT {COLUMNS} FROM events WHERE seq = $1");
    Ok(sqlx::query_as::<_, EventRow>(&sql)
        .bind(seq)
        .fetch_optional(db.pool())
        .await?)
}

/// The rows for a Stripe event id: one per source (endpoint) it arrived through, or the one
/// from `source`. Each source is one seek in the inbox's unique `(source, event_id)` index;
/// without a source, the distinct sources are walked through that same index (`by_event_id_sql`),
/// so a lookup costs a few seeks however many events the inbox holds, not a read of all of them.
pub async fn find_by_event_id(
    db: &Db,
    event_id: &str,
    source: Option<&str>,
) -> Result<Vec<EventRow>> {
    let sql = by_event_id_sql(source.is_some());
    let query = sqlx::query_as::<_, EventRow>(&sql).bind(event_id);
    let query = match source {
        Some(source) => query.bind(source),
        None => query,
    };
    Ok(query.fetch_all(db.pool()).await?)
}

/// `$1` the event id, and `$2` the source when `by_source`. Without one: neither
/// engine skips through an index's leading column by itself (PostgreSQL 15 has no skip scan,
/// SQLite only with `ANALYZE` statistics), so the recursive part does it: each step is the
/// smallest source past the last, one index seek.
pub(super) fn by_event_id_sql(by_source: bool) -> String {
    if by_source {
        return format!(
            "SELECT {COLUMNS} FROM events WHERE source = $2 AND event_id = $1 ORDER BY seq LIMIT 20"
        );
    }
    format!(
        "WITH RECURSIVE sources (name) AS ( \
           SELECT MIN(source) FROM events \
           UNION ALL \
           SELECT (SELECT MIN(e.source) FROM events e WHERE e.source > sources.name) \
           FROM sources WHERE sources.name IS NOT NULL) \
         SELECT {COLUMNS} FROM events \
         WHERE source IN (SELECT name FROM sources WHERE name IS NOT NULL) AND event_id = $1 \
         ORDER BY seq LIMIT 20"
    )
}

/// Puts a finished event back in the queue with a fresh retry budget. Events still in
/// flight (`pending`, `processing`), and those whose payload was pruned, are left alone and
/// reported as not replayed.
pub async fn replay(db: &Db, seq: i64) -> Result<bool> {
    let mut tx = db.begin_write().await?;
    if db.engine() == crate::db::Engine::Postgres {
        // The re-read below must see what committed meanwhile, whatever the server's default.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            .execute(&mut *tx)
            .await?;
    }
    let done = sqlx::query(
        "UPDATE events SET status = 'pending', attempts = 0, next_attempt_at = $1, last_error = NULL, claim_token = NULL \
         WHERE seq = $2 AND status IN ('applied', 'ignored', 'unrouted', 'retrying', 'dead', 'discarded') \
         AND EXISTS (SELECT 1 FROM event_payloads p WHERE p.seq = events.seq)",
    )
    .bind(now_ms())
    .bind(seq)
    .execute(&mut *tx)
    .await?;
    // On PostgreSQL pruning may have deleted the payload after this statement's snapshot and
    // before its row lock: read again, as of now, with the event locked.
    let kept: Option<i64> = sqlx::query_scalar("SELECT seq FROM event_payloads WHERE seq = $1")
        .bind(seq)
        .fetch_optional(&mut *tx)
        .await?;
    if done.rows_affected() == 1 && kept.is_some() {
        tx.commit().await?;
        Ok(true)
    } else {
        tx.rollback().await?;
        Ok(false)
    }
}

/// Gives up on a dead event: it is finished (and pruned with the others) without being
/// applied. False when the event is not dead.
pub async fn discard(db: &Db, seq: i64) -> Result<bool> {
    let _turn = db.write_turn().await;
    let done = sqlx::query(
        "UPDATE events SET status = 'discarded', claim_token = NULL WHERE seq = $1 AND status = 'dead'",
    )
    .bind(seq)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether the event's payload is still kept.
pub async fn has_payload(db: &Db, seq: i64) -> Result<bool> {
    let found: Option<i64> = sqlx::query_scalar("SELECT seq FROM event_payloads WHERE seq = $1")
        .bind(seq)
        .fetch_optional(db.pool())
        .await?;
    Ok(found.is_some())
}

/// When the oldest event not yet finished was received (unix ms), if any waits.
pub async fn oldest_unfinished(db: &Db) -> Result<Option<i64>> {
    let sql = format!(
        "SELECT MIN(received_at) FROM events WHERE {}",
        unfinished(db.engine())
    );
    Ok(sqlx::query_scalar::<_, Option<i64>>(&sql)
        .fetch_one(db.pool())
        .await?)
}

/// How many events are in each status.
pub async fn status_counts(db: &Db) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as::<_, (String, i64)>(
        "SELECT status, COUNT(*) FROM events GROUP BY status ORDER BY status",
    )
    .fetch_all(db.pool())
    .await?)
}

/// How many events are in `status`.
pub async fn count_with_status(db: &Db, status: &str) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE status = $1")
            .bind(status)
            .fetch_one(db.pool())
            .await?,
    )
}

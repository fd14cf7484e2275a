//! The inbox worker: claims due events under a lease, routes them, runs their handlers, and
//! commits each event's effects together with its new status.
//!
//! A batch is applied in one transaction (one fsync for all); if any effect fails to write,
//! the batch is rolled back and its events are applied one by one, so one bad event cannot
//! hold back the others.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use rand::Rng;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::db::connections::ConnectionRow;
use crate::db::inbox::{self, EventRow, Outcome};
use crate::db::{self, now_ms, DbError, Engine, WriteTx};
use crate::domain::{Mode, StoreId};
use crate::service::Services;
use crate::supervise::{panic_message, Liveness};
use crate::webhooks::registry::{handler_for, Handler, HandlerError, Incoming, Loaded};

/// How many events of a batch may wait on Stripe at once.
const LOAD_CONCURRENCY: usize = 16;

/// Runs until `shutdown`; wakes on `stored` (a commit of new events) or every poll interval.
pub async fn run(
    s: Services,
    stored: Arc<Notify>,
    live: Arc<Liveness>,
    shutdown: CancellationToken,
) {
    let poll = s.config.worker.poll_interval;
    loop {
        live.beat();
        if shutdown.is_cancelled() {
            break;
        }
        let busy = match process_batch(&s, &shutdown).await {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::error!(error = ?e, "worker batch failed; retrying after the poll interval");
                false
            }
        };
        if !busy {
            tokio::select! {
                _ = stored.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }
    tracing::info!("worker stopped");
}

/// Processes batches until no event is due; returns how many events it handled.
pub async fn drain(s: &Services) -> Result<usize, DbError> {
    let never = CancellationToken::new();
    let mut total = 0;
    loop {
        match process_batch(s, &never).await? {
            0 => return Ok(total),
            n => total += n,
        }
    }
}

/// What to do with one claimed event.
enum Step {
    Finish {
        outcome: Outcome,
        note: Option<String>,
        store: Option<StoreId>,
    },
    Fail(String),
    /// Routed to its handler, whose `load` has not run yet.
    Route {
        handler: Handler,
        incoming: Incoming,
    },
    Apply {
        handler: Handler,
        incoming: Incoming,
        loaded: Loaded,
    },
    /// Not reached before the batch's deadline: back in the queue, the attempt not counted.
    Release,
}

/// Claims one batch and processes it; returns the number of events claimed.
///
/// Stripe calls (`load`) run concurrently, each within the per-event timeout and all within
/// twice that, so one slow account delays only its own events and a batch always finishes well
/// inside its lease. On `shutdown` during the loads, the claims are handed back at once.
pub async fn process_batch(s: &Services, shutdown: &CancellationToken) -> Result<usize, DbError> {
    let token = format!("{:016x}", rand::thread_rng().gen::<u64>());
    let lease = s.config.worker.lease.as_millis() as i64;
    let started = std::time::Instant::now();
    let rows = inbox::claim(&s.db, &token, i64::from(s.config.worker.batch_size), lease).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut connections = HashMap::new();
    let mut routed = Vec::with_capacity(rows.len());
    for row in &rows {
        routed.push(route(s, row, &mut connections).await);
    }
    let mut steps = tokio::select! {
        steps = load_all(s, routed) => steps,
        _ = shutdown.cancelled() => {
            let released = inbox::release(s.db.pool(), &token, None).await?;
            tracing::info!(released, "shutdown: claimed events handed back unapplied");
            return Ok(rows.len());
        }
    };
    let n = rows.len();
    if let Err(e) = commit_all(s, &token, &rows, &mut steps).await {
        tracing::warn!(error = ?e, "batch apply failed; applying its events one by one");
        for (row, step) in rows.iter().zip(steps.iter_mut()) {
            commit_one(s, &token, row, step).await?;
        }
    }
    tracing::debug!(
        batch = n,
        micros = started.elapsed().as_micros() as u64,
        "worker batch"
    );
    Ok(n)
}

async fn load_all(s: &Services, steps: Vec<Step>) -> Vec<Step> {
    let per_event = s.config.worker.event_timeout;
    let batch_end = Instant::now() + per_event * 2;
    futures::stream::iter(steps)
        .map(|step| load(s, step, per_event, batch_end))
        .buffered(LOAD_CONCURRENCY)
        .collect()
        .await
}

/// Runs a routed event's `load`: a panic or a timeout is a failed attempt like any error.
async fn load(s: &Services, step: Step, per_event: Duration, batch_end: Instant) -> Step {
    let Step::Route { handler, incoming } = step else {
        return step;
    };
    let started = Instant::now();
    if started >= batch_end {
        return Step::Release;
    }
    let own_deadline = started + per_event;
    let loading = AssertUnwindSafe(handler.load(s, &incoming)).catch_unwind();
    match tokio::time::timeout_at(own_deadline.min(batch_end), loading).await {
        Ok(Ok(Ok(loaded))) => Step::Apply {
            handler,
            incoming,
            loaded,
        },
        Ok(Ok(Err(e))) => Step::Fail(e.to_string()),
        Ok(Err(panic)) => Step::Fail(format!("handler panicked: {}", panic_message(panic))),
        Err(_) if own_deadline <= batch_end => Step::Fail(format!(
            "not done within {} s (a slow Stripe call); will retry",
            per_event.as_secs_f32()
        )),
        Err(_) => Step::Release,
    }
}

async fn commit_all(
    s: &Services,
    token: &str,
    rows: &[EventRow],
    steps: &mut [Step],
) -> Result<(), HandlerError> {
    let mut tx = s.db.begin_write().await?;
    recheck_connections(&mut tx, s.db.engine(), steps).await?;
    // Applied events whose row needs nothing but its status are marked in one statement.
    let bulk: Vec<i64> = rows
        .iter()
        .zip(steps.iter())
        .filter(|(row, step)| bulk_applicable(row, step))
        .map(|(row, _)| row.seq)
        .collect();
    let owned: HashSet<i64> =
        inbox::finish_many(&mut *tx, s.db.engine(), &bulk, token, Outcome::Applied)
            .await?
            .into_iter()
            .collect();
    for (row, step) in rows.iter().zip(steps.iter_mut()) {
        if !bulk_applicable(row, step) {
            record(s, &mut tx, token, row, step).await?;
        } else if owned.contains(&row.seq) {
            if let Step::Apply {
                handler,
                incoming,
                loaded,
            } = step
            {
                apply(*handler, &mut tx, incoming, loaded).await?;
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

/// An `Apply` whose store is already on its row: only the status changes.
fn bulk_applicable(row: &EventRow, step: &Step) -> bool {
    matches!(step, Step::Apply { incoming, .. } if incoming.store.is_none() || row.store_id.is_some())
}

async fn commit_one(
    s: &Services,
    token: &str,
    row: &EventRow,
    step: &mut Step,
) -> Result<(), DbError> {
    let mut tx = s.db.begin_write().await?;
    let recorded =
        match recheck_connections(&mut tx, s.db.engine(), std::slice::from_mut(step)).await {
            Ok(()) => record(s, &mut tx, token, row, step).await,
            Err(e) => Err(e.into()),
        };
    match recorded {
        Ok(()) => Ok(tx.commit().await?),
        Err(e) => {
            tx.rollback().await?;
            let mut tx = s.db.begin_write().await?;
            fail(s, &mut tx, token, row, &e.to_string()).await?;
            Ok(tx.commit().await?)
        }
    }
}

/// Checks, inside the transaction that applies them, that each event's store still holds the
/// account and mode the event is about: the store may have switched accounts since the event
/// was routed (or, for a replay, since it arrived). An event that no longer fits is ignored.
/// The connections are read locked (in store order, so workers cannot deadlock), so they
/// cannot change before the effects commit.
async fn recheck_connections(
    tx: &mut WriteTx,
    engine: Engine,
    steps: &mut [Step],
) -> Result<(), DbError> {
    let mut stores: Vec<&str> = steps
        .iter()
        .filter_map(|step| match step {
            Step::Apply { incoming, .. } => incoming.store.as_ref().map(StoreId::as_str),
            _ => None,
        })
        .collect();
    if stores.is_empty() {
        return Ok(());
    }
    stores.sort_unstable();
    stores.dedup();
    let current: HashMap<String, (Option<String>, Mode)> =
        db::connections::lock_for_apply(tx, engine, &stores)
            .await?
            .into_iter()
            .map(|c| (c.store_id.clone(), (c.account_id.clone(), c.mode())))
            .collect();
    for step in steps.iter_mut() {
        let Step::Apply { incoming, .. } = step else {
            continue;
        };
        let Some(store) = &incoming.store else {
            continue;
        };
        let event_mode = Mode::from_livemode(incoming.livemode);
        let reason = match current.get(store.as_str()) {
            None => "the store has no Stripe connection".to_owned(),
            Some((account, _)) if incoming.account.is_some() && incoming.account != *account => {
                "the store is no longer connected to this event's account".to_owned()
            }
            Some((_, mode)) if *mode != event_mode => {
                format!("livemode mismatch: a {event_mode} event for a {mode} connection")
            }
            Some(_) => continue,
        };
        *step = Step::Finish {
            outcome: Outcome::Ignored,
            note: Some(reason),
            store: Some(store.clone()),
        };
    }
    Ok(())
}

/// A handler's `apply`, with a panic turned into a failed attempt.
async fn apply(
    handler: Handler,
    tx: &mut WriteTx,
    incoming: &Incoming,
    loaded: &Loaded,
) -> Result<(), HandlerError> {
    match AssertUnwindSafe(handler.apply(tx, incoming, loaded))
        .catch_unwind()
        .await
    {
        Ok(result) => result,
        Err(panic) => Err(HandlerError::Transient(format!(
            "handler panicked: {}",
            panic_message(panic)
        ))),
    }
}

/// Writes one event's outcome (and effects) into `tx`. The claim check comes first: if our
/// lease ran out and another worker owns the event, nothing of ours is written.
async fn record(
    s: &Services,
    tx: &mut WriteTx,
    token: &str,
    row: &EventRow,
    step: &mut Step,
) -> Result<(), HandlerError> {
    match step {
        Step::Finish {
            outcome,
            note,
            store,
        } => {
            inbox::finish(
                &mut **tx,
                row.seq,
                token,
                *outcome,
                store.as_ref().map(StoreId::as_str),
                note.as_deref(),
            )
            .await?;
        }
        Step::Fail(error) => fail(s, tx, token, row, error).await?,
        Step::Release => {
            inbox::release(&mut **tx, token, Some(row.seq)).await?;
        }
        Step::Route { .. } => {
            // Every routed step is loaded before commit; reaching here is a bug, kept harmless.
            inbox::release(&mut **tx, token, Some(row.seq)).await?;
        }
        Step::Apply {
            handler,
            incoming,
            loaded,
        } => {
            let store = incoming.store.as_ref().map(StoreId::as_str);
            if inbox::finish(&mut **tx, row.seq, token, Outcome::Applied, store, None).await? {
                if let Err(e) = apply(*handler, tx, incoming, loaded).await {
                    *step = Step::Fail(e.to_string());
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

async fn fail(
    s: &Services,
    tx: &mut WriteTx,
    token: &str,
    row: &EventRow,
    error: &str,
) -> Result<(), DbError> {
    let w = &s.config.worker;
    let retry_at = (row.attempts < i64::from(w.max_attempts))
        .then(|| now_ms() + backoff(w.retry_base, w.retry_max, row.attempts));
    match retry_at {
        Some(_) => {
            tracing::warn!(seq = row.seq, event = %row.event_id, attempts = row.attempts, error, "event failed; will retry")
        }
        None => {
            tracing::error!(seq = row.seq, event = %row.event_id, attempts = row.attempts, error, "event failed for the last time; parked as dead")
        }
    }
    inbox::fail(&mut **tx, row.seq, token, error, retry_at).await?;
    Ok(())
}

/// base · 2^(attempts-1), capped, with jitter in [d/2, d] so retries of a burst spread out.
fn backoff(base: Duration, max: Duration, attempts: i64) -> i64 {
    let exp = (attempts - 1).clamp(0, 20) as u32;
    let d = base
        .saturating_mul(1u32 << exp.min(20))
        .min(max)
        .as_millis() as i64;
    d / 2 + rand::thread_rng().gen_range(0..=d / 2)
}

/// Routes a claimed event to its store and handler; database reads only, no Stripe call.
async fn route(
    s: &Services,
    row: &EventRow,
    connections: &mut HashMap<String, Option<ConnectionRow>>,
) -> Step {
    let max = i64::from(s.config.worker.max_attempts);
    if row.attempts > max {
        // Claimed again and again without ever finishing: the process died or hung on it.
        return Step::Fail(format!(
            "claimed {} times without finishing (the process stopped while applying it)",
            row.attempts - 1
        ));
    }
    let finish = |outcome, note: String, store| Step::Finish {
        outcome,
        note: Some(note),
        store,
    };
    let payload: Value = match serde_json::from_str(&row.payload) {
        Ok(v) => v,
        Err(e) => return Step::Fail(format!("stored payload is not JSON: {e}")),
    };
    let mut store = row.store_id.clone();
    if store.is_none() && row.scope == "connect" {
        if let Some(account) = &row.account_id {
            match db::connections::store_for_connect_account(s.db.pool(), account).await {
                Ok(found) => store = found,
                Err(e) => return Step::Fail(e.to_string()),
            }
        }
    }
    let store = match store.map(|id| StoreId::parse(&id)) {
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => return Step::Fail("stored store id is malformed".into()),
        None => None,
    };
    let livemode = row.livemode != 0;
    if row.scope == "connect" && store.is_none() {
        let account = row.account_id.as_deref().unwrap_or("(none)");
        return finish(
            Outcome::Unrouted,
            format!("no store is connected to account {account}"),
            None,
        );
    }
    let expected_mode = match &store {
        Some(id) => {
            let conn = match connections.get(id.as_str()) {
                Some(c) => c.clone(),
                None => match db::connections::get(s.db.pool(), id).await {
                    Ok(c) => {
                        connections.insert(id.to_string(), c.clone());
                        c
                    }
                    Err(e) => return Step::Fail(e.to_string()),
                },
            };
            match conn {
                // An event about an account the store no longer holds (it reconnected while the
                // event waited, or is being replayed) must not touch the new connection.
                Some(c) if row.account_id.is_some() && row.account_id != c.account_id => {
                    let note =
                        "the store is no longer connected to this event's account".to_owned();
                    return finish(Outcome::Ignored, note, store);
                }
                Some(c) => Some(c.mode()),
                None => {
                    return finish(
                        Outcome::Ignored,
                        "the store has no Stripe connection".into(),
                        store,
                    )
                }
            }
        }
        None => s.config.stripe.secret_key.as_ref().map(|k| {
            Mode::from_livemode(secrecy::ExposeSecret::expose_secret(k).contains("_live_"))
        }),
    };
    if let Some(mode) = expected_mode {
        if mode != Mode::from_livemode(livemode) {
            let note = format!(
                "livemode mismatch: a {} event for a {mode} connection",
                Mode::from_livemode(livemode)
            );
            return finish(Outcome::Ignored, note, store);
        }
    }
    let Some(handler) = handler_for(&row.event_type) else {
        return finish(
            Outcome::Ignored,
            format!("no handler for {}", row.event_type),
            store,
        );
    };
    let incoming = Incoming {
        seq: row.seq,
        event_id: row.event_id.clone(),
        event_type: row.event_type.clone(),
        created: row.stripe_created,
        livemode,
        account: row.account_id.clone(),
        store,
        object: payload
            .get("data")
            .and_then(|d| d.get("object"))
            .cloned()
            .unwrap_or(Value::Null),
    };
    Step::Route { handler, incoming }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(1000);
        let max = Duration::from_millis(10_000);
        for attempts in 1..30 {
            let d = backoff(base, max, attempts);
            let full = (1000i64 << (attempts - 1).min(20)).min(10_000);
            assert!(d >= full / 2 && d <= full, "{attempts}: {d}");
        }
    }
}

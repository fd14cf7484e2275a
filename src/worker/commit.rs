//! Committing events: each event's effects and its new status in one transaction, checked
//! against the claim token (so a lease taken over writes nothing of ours) and against the
//! store's current connection (so an event of another account or mode is ignored).

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use rand::Rng;

use super::{connection_mismatch, Routed, Step};
use crate::db::inbox::{self, EventRow, Finish, Outcome};
use crate::db::{self, now_ms, DbError, Engine, WriteTx};
use crate::domain::{Mode, StoreId};
use crate::service::Services;
use crate::supervise::panic_message;
use crate::webhooks::event::{HandlerError, Incoming, Loaded};
use crate::webhooks::registry::Handler;

/// Commits a batch's events. The effect-free outcomes (`Step::Finish`) go to the inbox's
/// writer (see `Inbox::finish`), while the others are applied here.
pub(super) async fn commit(
    s: &Services,
    token: &str,
    items: Vec<Routed<'_>>,
) -> Result<(), DbError> {
    let (finishes, mut rest): (Vec<_>, Vec<_>) = items
        .into_iter()
        .partition(|(_, step)| matches!(step, Step::Finish { .. }));
    let finished = s.db.inbox().finish(token, as_finishes(finishes));
    let (finished, applied) = tokio::join!(finished, commit_together(s, token, &mut rest));
    finished?;
    applied
}

fn as_finishes(items: Vec<Routed<'_>>) -> Vec<Finish> {
    items
        .into_iter()
        .filter_map(|(row, step)| match step {
            Step::Finish {
                outcome,
                note,
                store,
            } => Some(Finish {
                seq: row.seq,
                outcome,
                store_id: store.map(|s| s.to_string()),
                note,
            }),
            _ => None,
        })
        .collect()
}

/// Commits a group of events in one transaction; if any effect fails to write, the group is
/// rolled back and committed event by event.
async fn commit_together(
    s: &Services,
    token: &str,
    items: &mut [Routed<'_>],
) -> Result<(), DbError> {
    if items.is_empty() {
        return Ok(());
    }
    if let Err(e) = commit_all(s, token, items).await {
        tracing::warn!(error = ?e, "batch apply failed; applying its events one by one");
        for (row, step) in items.iter_mut() {
            commit_one(s, token, row, step).await?;
        }
    }
    Ok(())
}

async fn commit_all(
    s: &Services,
    token: &str,
    items: &mut [Routed<'_>],
) -> Result<(), HandlerError> {
    let mut tx = s.db.begin_unsynced().await?;
    recheck_connections(
        &mut tx,
        s.db.engine(),
        items.iter_mut().map(|(_, step)| step),
    )
    .await?;
    // Applied events whose row needs nothing but its status are marked in one statement.
    let bulk: Vec<i64> = items
        .iter()
        .filter(|(row, step)| bulk_applicable(row, step))
        .map(|(row, _)| row.seq)
        .collect();
    let owned: HashSet<i64> =
        inbox::finish_many(&mut *tx, s.db.engine(), &bulk, token, Outcome::Applied)
            .await?
            .into_iter()
            .collect();
    for (row, step) in items.iter_mut() {
        if !bulk_applicable(row, step) {
            record(s, &mut tx, token, row, step).await?;
        } else if owned.contains(&row.seq) {
            if let Step::Apply {
                handler,
                incoming,
                loaded,
            } = step
            {
                apply(s, *handler, &mut tx, incoming, loaded).await?;
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

/// An `Apply` whose store is already on its row, or an effect-free apply (see
/// `Handler::has_effects`): only the status changes.
fn bulk_applicable(row: &EventRow, step: &Step) -> bool {
    let stored = |store: Option<&StoreId>| store.is_none() || row.store_id.is_some();
    match step {
        Step::Apply { incoming, .. } => stored(incoming.store.as_ref()),
        Step::Finish {
            outcome: Outcome::Applied,
            note: None,
            store,
        } => stored(store.as_ref()),
        _ => false,
    }
}

async fn commit_one(
    s: &Services,
    token: &str,
    row: &EventRow,
    step: &mut Step,
) -> Result<(), DbError> {
    let mut tx = s.db.begin_unsynced().await?;
    let recorded =
        match recheck_connections(&mut tx, s.db.engine(), std::iter::once(&mut *step)).await {
            Ok(()) => record(s, &mut tx, token, row, step).await,
            Err(e) => Err(e.into()),
        };
    match recorded {
        Ok(()) => Ok(tx.commit().await?),
        Err(e) => {
            tx.rollback().await?;
            let mut tx = s.db.begin_unsynced().await?;
            fail(s, &mut tx, token, row, &e.describe()).await?;
            Ok(tx.commit().await?)
        }
    }
}

/// Checks, inside the transaction that applies them, that each event's store still holds the
/// account and mode the event is about: the store may have switched accounts since the event
/// was routed (or, for a replay, since it arrived). An event that no longer fits is ignored.
/// The connections are read locked (in store order, so workers cannot deadlock), so they
/// cannot change before the effects commit.
async fn recheck_connections<'s>(
    tx: &mut WriteTx,
    engine: Engine,
    steps: impl Iterator<Item = &'s mut Step>,
) -> Result<(), DbError> {
    let mut steps: Vec<&mut Step> = steps
        .filter(|step| matches!(step, Step::Apply { incoming, .. } if incoming.store.is_some()))
        .collect();
    if steps.is_empty() {
        return Ok(());
    }
    let mut stores: Vec<String> = steps
        .iter()
        .filter_map(|step| match &**step {
            Step::Apply { incoming, .. } => incoming.store.as_ref().map(StoreId::to_string),
            _ => None,
        })
        .collect();
    stores.sort_unstable();
    stores.dedup();
    let stores: Vec<&str> = stores.iter().map(String::as_str).collect();
    let current: HashMap<String, (Option<String>, Mode)> =
        db::connections::lock_for_apply(tx, engine, &stores)
            .await?
            .into_iter()
            .map(|c| (c.store_id.clone(), (c.account_id.clone(), c.mode)))
            .collect();
    for step in steps.iter_mut() {
        let Step::Apply { incoming, .. } = &**step else {
            continue;
        };
        let Some(store) = &incoming.store else {
            continue;
        };
        let connection = current
            .get(store.as_str())
            .map(|(account, mode)| (account.as_deref(), *mode));
        let Some(reason) =
            connection_mismatch(connection, incoming.account.as_deref(), incoming.livemode)
        else {
            continue;
        };
        **step = Step::Finish {
            outcome: Outcome::Ignored,
            note: Some(reason),
            store: Some(store.clone()),
        };
    }
    Ok(())
}

/// A handler's `apply`, with a panic turned into a failed attempt.
async fn apply(
    s: &Services,
    handler: Handler,
    tx: &mut WriteTx,
    incoming: &Incoming,
    loaded: &Loaded,
) -> Result<(), HandlerError> {
    match AssertUnwindSafe(handler.apply(s, tx, incoming, loaded))
        .catch_unwind()
        .await
    {
        Ok(result) => result,
        Err(panic) => Err(HandlerError::Panicked(panic_message(panic))),
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
        Step::Defer(delay) => {
            let due = now_ms() + delay.as_millis() as i64;
            inbox::release(&mut **tx, token, row.seq, due).await?;
        }
        Step::Load { .. } => {
            // Every step that loads is loaded before commit; reaching here is a bug, kept harmless.
            inbox::release(&mut **tx, token, row.seq, now_ms()).await?;
        }
        Step::Apply {
            handler,
            incoming,
            loaded,
        } => {
            let store = incoming.store.as_ref().map(StoreId::as_str);
            if inbox::finish(&mut **tx, row.seq, token, Outcome::Applied, store, None).await? {
                if let Err(e) = apply(s, *handler, tx, incoming, loaded).await {
                    *step = Step::Fail(e.describe());
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

//! The inbox worker: claims due events under a lease, routes them, runs their handlers, and
//! commits each event's effects together with its new status.
//!
//! The events of a batch that need no Stripe call are applied in one transaction (one commit for
//! all); if any effect fails to write, they are rolled back and applied one by one, so one bad
//! event cannot hold back the others. Events whose handlers call Stripe load in the background
//! (`loads`), so the loop never waits on Stripe.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::db::inbox::{self, Claimed, EventRow, Handoff, Outcome};
use crate::db::DbError;
use crate::domain::{Mode, StoreId};
use crate::service::Services;
use crate::supervise::Liveness;
use crate::webhooks::event::{Incoming, Loaded};
use crate::webhooks::registry::Handler;

mod commit;
mod loads;
pub mod notify;
mod route;

use commit::commit;
use loads::Loads;

/// Runs until `shutdown`. Events the inbox writer claimed for it come through `handoff`;
/// the table is looked at when `stored` rings (events stored unclaimed, a replay) and every
/// poll interval, for retries and for leases that ran out. On shutdown, handed-off events not
/// yet applied and loads still waiting on Stripe are handed back before it returns.
pub async fn run(
    s: Services,
    handoff: Arc<Handoff>,
    stored: Arc<Notify>,
    live: Arc<Liveness>,
    shutdown: CancellationToken,
) {
    let poll = s.config.worker.poll_interval;
    let batch = s.config.worker.batch_size as usize;
    let loads = Loads::new(shutdown.clone());
    let mut polled = tokio::time::Instant::now();
    // True when the table may hold due events now: a claim found some, or `stored` rang.
    let mut table_may_hold_due = true;
    loop {
        live.beat();
        if shutdown.is_cancelled() {
            break;
        }
        let fresh = handoff.take(batch);
        let processed = async {
            let mut n = process_claimed(&s, &loads, handoff.token(), fresh).await?;
            if table_may_hold_due || polled.elapsed() >= poll {
                polled = tokio::time::Instant::now();
                let claimed = process_batch(&s, &loads).await?;
                table_may_hold_due = claimed > 0;
                n += claimed;
            }
            Ok::<_, DbError>(n)
        };
        let busy = match processed.await {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::error!(error = ?e, "worker batch failed; retrying after the poll interval");
                false
            }
        };
        if !busy {
            tokio::select! {
                _ = handoff.ready() => {}
                _ = stored.notified() => table_may_hold_due = true,
                _ = tokio::time::sleep_until(polled + poll) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }
    hand_back(&s, &handoff).await;
    loads.idle().await;
    tracing::info!("worker stopped");
}

/// Releases the handed-off events this worker will not apply, so the next worker (after a
/// restart, at once) need not wait for their lease to run out.
async fn hand_back(s: &Services, handoff: &Handoff) {
    let left = handoff.take(usize::MAX);
    if left.is_empty() {
        return;
    }
    let now = crate::db::now_ms();
    let released = async {
        let mut tx = s.db.begin_unsynced().await?;
        let mut released = 0;
        for (row, _) in &left {
            released += usize::from(inbox::release(&mut *tx, handoff.token(), row.seq, now).await?);
        }
        tx.commit().await?;
        Ok::<_, DbError>(released)
    };
    match released.await {
        Ok(released) => tracing::info!(released, "handed-off events released at shutdown"),
        Err(e) => {
            tracing::warn!(error = %e, "handed-off events could not be released; they are retried when their lease runs out")
        }
    }
}

/// Processes batches until no event is due, waiting for background loads to commit; returns
/// how many events it claimed.
pub async fn drain(s: &Services) -> Result<usize, DbError> {
    let loads = Loads::new(CancellationToken::new());
    let mut total = 0;
    loop {
        let n = process_batch(s, &loads).await?;
        total += n;
        if n == 0 {
            // Nothing due: once the background loads have committed, nothing is in flight.
            loads.idle().await;
            if inbox::due_now(&s.db).await? == 0 {
                return Ok(total);
            }
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
    /// Routed to a handler that must call Stripe before it can apply.
    Load {
        handler: Handler,
        incoming: Incoming,
    },
    Apply {
        handler: Handler,
        incoming: Incoming,
        loaded: Loaded,
    },
    /// Back in the queue, due after this delay; the attempt is not counted.
    Defer(Duration),
}

/// Why an event must not be applied to its store's connection, if it must not: the store has
/// no connection, holds another account than the one the event is about (it reconnected while
/// the event waited, or the event is replayed), or is in the other mode.
fn connection_mismatch(
    connection: Option<(Option<&str>, Mode)>,
    event_account: Option<&str>,
    livemode: bool,
) -> Option<String> {
    let event_mode = Mode::from_livemode(livemode);
    match connection {
        None => Some("the store has no Stripe connection".into()),
        Some((account, _)) if event_account.is_some() && event_account != account => {
            Some("the store is no longer connected to this event's account".into())
        }
        Some((_, mode)) if mode != event_mode => Some(format!(
            "livemode mismatch: a {event_mode} event for a {mode} connection"
        )),
        Some(_) => None,
    }
}

/// A claimed event and what to do with it.
type Routed<'a> = (&'a EventRow, Step);

/// Claims one batch and processes it; returns the number of events claimed.
///
/// Events that need no Stripe call commit at once, in one transaction; the others are handed
/// to `loads`, which commits each when its Stripe calls are done.
async fn process_batch(s: &Services, loads: &Arc<Loads>) -> Result<usize, DbError> {
    let token = format!("{:016x}", rand::thread_rng().gen::<u64>());
    let w = &s.config.worker;
    let claimed =
        s.db.inbox()
            .claim(&token, i64::from(w.batch_size), w.lease.as_millis() as i64)
            .await?;
    process_claimed(s, loads, &token, claimed).await
}

/// Routes and commits events claimed under `token`; returns how many there were.
async fn process_claimed(
    s: &Services,
    loads: &Arc<Loads>,
    token: &str,
    claimed: Vec<Claimed>,
) -> Result<usize, DbError> {
    if claimed.is_empty() {
        return Ok(0);
    }
    let started = std::time::Instant::now();
    let (rows, payloads): (Vec<EventRow>, Vec<Option<String>>) = claimed.into_iter().unzip();
    let mut connections = HashMap::new();
    let mut ready = Vec::with_capacity(rows.len());
    for (row, payload) in rows.iter().zip(&payloads) {
        match route::route(s, row, payload.as_deref(), &mut connections).await {
            Step::Load { handler, incoming } => {
                if loads.start(s, token, row, handler, incoming).is_err() {
                    ready.push((row, Step::Defer(loads::NO_ROOM_DELAY)));
                }
            }
            step => ready.push((row, step)),
        }
    }
    commit(s, token, ready).await?;
    tracing::debug!(
        batch = rows.len(),
        micros = started.elapsed().as_micros() as u64,
        "worker batch"
    );
    Ok(rows.len())
}

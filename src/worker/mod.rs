//! The inbox worker: claims due events under a lease, routes them, runs their handlers, and
//! commits each event's effects together with its new status.
//!
//! The events of a batch that need no Stripe call are applied in one transaction (one fsync for
//! all); if any effect fails to write, they are rolled back and applied one by one, so one bad
//! event cannot hold back the others. Events whose handlers call Stripe load in the background
//! (`loads`), so the loop never waits on Stripe.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::db::inbox::{self, EventRow, Outcome};
use crate::db::DbError;
use crate::domain::{Mode, StoreId};
use crate::service::Services;
use crate::supervise::Liveness;
use crate::webhooks::registry::{Handler, Incoming, Loaded};

mod commit;
mod loads;
mod route;

use commit::commit;
use loads::Loads;

/// Runs until `shutdown`; wakes on `stored` (a commit of new events) or every poll interval.
/// On shutdown, loads still waiting on Stripe hand their events back before it returns.
pub async fn run(
    s: Services,
    stored: Arc<Notify>,
    live: Arc<Liveness>,
    shutdown: CancellationToken,
) {
    let poll = s.config.worker.poll_interval;
    let loads = Loads::new(shutdown.clone());
    loop {
        live.beat();
        if shutdown.is_cancelled() {
            break;
        }
        let busy = match process_batch(&s, &loads).await {
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
    loads.idle().await;
    tracing::info!("worker stopped");
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
type Item<'a> = (&'a EventRow, Step);

/// Claims one batch and processes it; returns the number of events claimed.
///
/// Events that need no Stripe call commit at once, in one transaction; the others are handed
/// to `loads`, which commits each when its Stripe calls are done.
async fn process_batch(s: &Services, loads: &Arc<Loads>) -> Result<usize, DbError> {
    let token = format!("{:016x}", rand::thread_rng().gen::<u64>());
    let w = &s.config.worker;
    let started = std::time::Instant::now();
    let claimed = inbox::claim_with_payloads(
        &s.db,
        &token,
        i64::from(w.batch_size),
        w.lease.as_millis() as i64,
    )
    .await?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let (rows, payloads): (Vec<EventRow>, Vec<Option<String>>) = claimed.into_iter().unzip();
    let mut connections = HashMap::new();
    let mut ready = Vec::with_capacity(rows.len());
    for (row, payload) in rows.iter().zip(&payloads) {
        match route::route(s, row, payload.as_deref(), &mut connections).await {
            Step::Load { handler, incoming } => {
                if loads.start(s, &token, row, handler, incoming).is_err() {
                    ready.push((row, Step::Defer(loads::NO_ROOM_DELAY)));
                }
            }
            step => ready.push((row, step)),
        }
    }
    commit(s, &token, &mut ready).await?;
    tracing::debug!(
        batch = rows.len(),
        micros = started.elapsed().as_micros() as u64,
        "worker batch"
    );
    Ok(rows.len())
}

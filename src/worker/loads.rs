//! Events whose handlers call Stripe run in the background, so a slow or hanging account never
//! holds the worker's loop: at most 16 at once, at most 4 of one store. Each ends within the
//! per-event timeout (then it is a failed attempt, retried later) and commits on its own. An
//! event that finds no room is deferred a moment, its attempt not counted.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::commit::commit;
use super::Step;
use crate::db::inbox::EventRow;
use crate::domain::StoreId;
use crate::service::Services;
use crate::supervise::panic_message;
use crate::webhooks::event::Incoming;
use crate::webhooks::registry::Handler;

/// How many events may wait on Stripe at once.
const SLOTS: usize = 16;
/// How many of them may be one store's.
const PER_STORE: usize = 4;
/// How long an event that found no room waits before it is claimed again.
pub const NO_ROOM_DELAY: Duration = Duration::from_secs(1);

/// All slots, or the store's share of them, are taken.
pub struct NoRoom;

pub struct Loads {
    slots: Arc<Semaphore>,
    per_store: Mutex<HashMap<Option<StoreId>, usize>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Loads {
    /// On `shutdown`, loads still running hand their events back at once.
    pub fn new(shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(SLOTS)),
            per_store: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            shutdown,
        })
    }

    /// Starts loading and committing the event in the background, if there is room for it now.
    pub fn start(
        self: &Arc<Self>,
        s: &Services,
        token: &str,
        row: &EventRow,
        handler: Handler,
        incoming: Incoming,
    ) -> Result<(), NoRoom> {
        let store = incoming.store.clone();
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            return Err(NoRoom);
        };
        {
            let mut per_store = self.per_store.lock().expect("never poisoned");
            let n = per_store.entry(store.clone()).or_default();
            if *n >= PER_STORE {
                return Err(NoRoom);
            }
            *n += 1;
        }
        let (this, s, token, row) = (self.clone(), s.clone(), token.to_owned(), row.clone());
        self.tasks.spawn(async move {
            let per_event = s.config.worker.event_timeout;
            let step = tokio::select! {
                step = load(&s, handler, incoming, per_event) => step,
                _ = this.shutdown.cancelled() => Step::Defer(Duration::ZERO),
            };
            if let Err(e) = commit(&s, &token, vec![(&row, step)]).await {
                // The claim stays until its lease ends; then the event is tried again.
                tracing::error!(error = ?e, seq = row.seq, "could not record a loaded event");
            }
            drop(slot);
            let mut per_store = this.per_store.lock().expect("never poisoned");
            if let Some(n) = per_store.get_mut(&store) {
                *n -= 1;
                if *n == 0 {
                    per_store.remove(&store);
                }
            }
        });
        Ok(())
    }

    /// Waits until every started load has committed.
    pub async fn idle(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        self.tasks.reopen();
    }
}

/// Runs a handler's Stripe calls: a panic or a timeout is a failed attempt like any error.
async fn load(s: &Services, handler: Handler, incoming: Incoming, per_event: Duration) -> Step {
    let loading = AssertUnwindSafe(handler.load(s, &incoming)).catch_unwind();
    match tokio::time::timeout(per_event, loading).await {
        Ok(Ok(Ok(loaded))) => Step::Apply {
            handler,
            incoming,
            loaded,
        },
        Ok(Ok(Err(e))) => Step::Fail(e.describe()),
        Ok(Err(panic)) => Step::Fail(format!("handler panicked: {}", panic_message(panic))),
        Err(_) => Step::Fail(format!(
            "not done within {} s (a slow Stripe call); will retry",
            per_event.as_secs_f32()
        )),
    }
}

//! The webhook inbox: each delivery stored once, claimed by a worker under a lease, finished
//! with its outcome.
//!
//! One interface, `Inbox`, chosen when the database is opened, in front of an engine module per
//! database: `sqlite` (a thread with its own connection, gathering deliveries into its commits)
//! and `postgres` (dedicated connections, a batch per array-bound statement, several batches in
//! flight). Each writes every inbox statement its own way, once. New events go to this
//! process's worker already claimed (`handoff`), so applying them needs no claim and no read of
//! what was just written. What a worker writes inside its own transaction, beside an event's
//! effects, is in `outcomes`; what operators read and do, in `operator`.
//!
//! A claim sets `next_attempt_at` to the lease's end, so one partial index over unfinished
//! rows serves both new work and work whose worker died.

mod handoff;
mod operator;
mod outcomes;
mod postgres;
pub mod prune;
mod rows;
mod sqlite;

use std::sync::Arc;

pub use handoff::Handoff;
pub use operator::{
    count_with_status, discard, due_now, find_by_event_id, get, has_payload, list, mentioning,
    oldest_unfinished, payloads, replay, status_counts, Filter,
};
pub use outcomes::{fail, finish, finish_many, release};
pub use rows::{Claimed, EventRow, Finish, Inserted, InsertedBatch, Lease, NewEvent, Outcome};

use super::{DbError, Engine, Result};
use rows::COLUMNS;

/// The most deliveries one commit stores.
pub const MAX_BATCH: usize = 512;

/// The inbox's writer for this database: SQLite's thread or PostgreSQL's connections.
#[derive(Clone, Debug)]
pub struct Inbox(Writer);

#[derive(Clone, Debug)]
enum Writer {
    Sqlite(Arc<sqlite::Thread>),
    Postgres(Arc<postgres::Writer>),
}

/// Why a delivery was not stored.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("the inbox is shutting down")]
    Closed,
    #[error("the inbox could not store the event")]
    Db(#[source] Arc<DbError>),
}

impl Inbox {
    /// SQLite's inbox: a thread writing to the database file at `path`, taking the process's
    /// write lock like every other writer.
    pub(super) fn sqlite(
        path: &std::path::Path,
        write_lock: Arc<tokio::sync::Mutex<()>>,
    ) -> Result<Self> {
        Ok(Self(Writer::Sqlite(Arc::new(sqlite::Thread::open(
            path, write_lock,
        )?))))
    }

    /// PostgreSQL's inbox: its own connections for inserts and finishes; claims run on `apply`
    /// (the worker's pool) and payloads are read on `read`.
    pub(super) async fn postgres(
        options: sqlx::postgres::PgConnectOptions,
        apply: sqlx::AnyPool,
        read: sqlx::AnyPool,
    ) -> Result<Self> {
        Ok(Self(Writer::Postgres(Arc::new(
            postgres::Writer::connect(options, apply, read).await?,
        ))))
    }

    /// Stores a batch in one commit, the new events claimed under `lease` if one is given.
    /// Connect events get their store from the account that owns them, when one is known. The
    /// first delivery of an id in the batch is the stored one; any other is a duplicate.
    pub async fn insert(
        &self,
        events: Vec<NewEvent>,
        lease: Option<&Lease>,
    ) -> Result<InsertedBatch> {
        match &self.0 {
            Writer::Sqlite(t) => t.insert(events, lease.cloned()).await,
            Writer::Postgres(w) => w.insert(events, lease).await,
        }
    }

    /// Claims up to `limit` due events for `lease_ms` under `token`, with their raw payloads,
    /// oldest due first.
    pub async fn claim(&self, token: &str, limit: i64, lease_ms: i64) -> Result<Vec<Claimed>> {
        match &self.0 {
            Writer::Sqlite(t) => t.claim(token, limit, lease_ms).await,
            Writer::Postgres(w) => w.claim(token, limit, lease_ms).await,
        }
    }

    /// Writes effect-free outcomes of events claimed under `token` (SQLite: in the thread's next
    /// commit, beside the deliveries; PostgreSQL: one statement); returns how many were still
    /// ours. Events with effects are finished in the worker's transaction (`finish`).
    pub async fn finish(&self, token: &str, finishes: Vec<Finish>) -> Result<usize> {
        if finishes.is_empty() {
            return Ok(0);
        }
        match &self.0 {
            Writer::Sqlite(t) => t.finish(token, finishes).await,
            Writer::Postgres(w) => w.finish(token, finishes).await,
        }
    }

    /// The door to this inbox for the webhook handlers: deliveries are gathered into shared
    /// commits, each answered once it is durable, and the new events handed to the worker
    /// through `handoff`. The returned task ends once every `Deliveries` handle is dropped and
    /// every batch is committed (at once on SQLite, whose thread does the gathering).
    pub fn deliveries(&self, handoff: Arc<Handoff>) -> (Deliveries, tokio::task::JoinHandle<()>) {
        match &self.0 {
            Writer::Sqlite(t) => {
                let door = Door::Sqlite(t.clone());
                (Deliveries { door, handoff }, tokio::spawn(async {}))
            }
            Writer::Postgres(w) => {
                let (tx, task) = postgres::group_commit(w.clone(), handoff.clone());
                (
                    Deliveries {
                        door: Door::Postgres(tx),
                        handoff,
                    },
                    task,
                )
            }
        }
    }

    pub(super) async fn close(&self) {
        if let Writer::Postgres(w) = &self.0 {
            w.close().await;
        }
    }
}

/// Stores webhook deliveries, each answered once durable.
#[derive(Clone)]
pub struct Deliveries {
    door: Door,
    handoff: Arc<Handoff>,
}

#[derive(Clone)]
enum Door {
    /// Straight to the inbox thread, which gathers what queues while it writes.
    Sqlite(Arc<sqlite::Thread>),
    /// Through the group-commit task.
    Postgres(postgres::Queue),
}

impl Deliveries {
    /// Returns once the event is durably stored (or was already).
    pub async fn deliver(&self, event: NewEvent) -> Result<Inserted, DeliverError> {
        match &self.door {
            Door::Sqlite(t) => t.deliver(event, self.handoff.clone()).await,
            Door::Postgres(queue) => postgres::deliver(queue, event).await,
        }
    }

    /// True once the writer has stopped: nothing can be stored any more.
    pub fn is_closed(&self) -> bool {
        match &self.door {
            Door::Sqlite(t) => !t.is_running(),
            Door::Postgres(queue) => queue.is_closed(),
        }
    }
}

/// The claim: `$1` token, `$2` lease end, `$3` now, `$4` limit. Due work in the order it fell
/// due; PostgreSQL skips rows another process is claiming, SQLite has one writer, so there is
/// nothing to skip.
fn claim_sql(engine: Engine) -> String {
    let lock = match engine {
        Engine::Sqlite => "",
        Engine::Postgres => " FOR UPDATE SKIP LOCKED",
    };
    format!(
        "UPDATE events SET status = 'processing', claim_token = $1, next_attempt_at = $2, attempts = attempts + 1 \
         WHERE seq IN (SELECT seq FROM events WHERE {} AND next_attempt_at <= $3 \
           ORDER BY next_attempt_at LIMIT $4{lock}) RETURNING {COLUMNS}",
        unfinished(engine)
    )
}

/// Events not yet finished: the predicate of the `events_due` partial index, which a query must
/// repeat as written for SQLite to use that index. SQLite tests an `IN` list of over two values
/// through a temporary B-tree, built anew each time an insert or update checks a row against
/// the index (a fifth of the inbox thread's time), so its index spells the list out as `OR`s.
fn unfinished(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => "(status = 'pending' OR status = 'retrying' OR status = 'processing')",
        Engine::Postgres => "status IN ('pending', 'retrying', 'processing')",
    }
}

/// The n-th (1-based) parameter of a long generated statement. SQLite binds `$N` by looking
/// each name up in a list (quadratic in the parameter count); plain `?` is bound by position.
fn placeholder(engine: Engine, n: usize) -> String {
    match engine {
        Engine::Sqlite => "?".to_owned(),
        Engine::Postgres => format!("${n}"),
    }
}

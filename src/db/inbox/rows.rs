//! The inbox's rows: a delivery before it is stored, a stored event, and what a claim and a
//! finish carry.

use sqlx::FromRow;

/// A verified delivery, ready to be stored.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Uniqueness domain of `event_id`: `platform`, `connect` or `store:<id>`.
    pub source: String,
    pub event_id: String,
    pub event_type: String,
    pub scope: &'static str,
    pub store_id: Option<String>,
    pub account_id: Option<String>,
    pub livemode: bool,
    pub created: i64,
    pub payload: String,
}

#[cfg(test)]
impl NewEvent {
    /// A platform `balance.available` event, for tests of the inbox's storage.
    pub fn platform_balance(event_id: String, payload: String) -> Self {
        Self {
            source: "platform".into(),
            event_id,
            event_type: "balance.available".into(),
            scope: "platform",
            store_id: None,
            account_id: None,
            livemode: false,
            created: 0,
            payload,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New(i64),
    Duplicate,
}

/// A claim taken at insert: the new rows go straight to this process's worker (see `handoff`).
#[derive(Debug, Clone)]
pub struct Lease {
    pub token: String,
    /// When the lease runs out (unix ms) and any worker may claim the event again.
    pub until: i64,
}

/// A claimed event with its raw payload.
pub type Claimed = (EventRow, Option<String>);

/// What inserting a batch did: each delivery's result, in order, and (under a lease) the new
/// events as claimed.
#[derive(Debug, Default)]
pub struct InsertedBatch {
    pub results: Vec<Inserted>,
    pub claimed: Vec<Claimed>,
}

impl InsertedBatch {
    /// Records one delivery: new (and claimed, under a lease) when `row` (its seq and store)
    /// was inserted, else a duplicate.
    pub(super) fn push(
        &mut self,
        status: &NewStatus<'_>,
        e: NewEvent,
        row: Option<(i64, Option<String>)>,
        now: i64,
    ) {
        match row {
            Some((seq, store_id)) => {
                self.results.push(Inserted::New(seq));
                if status.token.is_some() {
                    self.claimed.push(status.claimed(e, seq, store_id, now));
                }
            }
            None => self.results.push(Inserted::Duplicate),
        }
    }
}

/// The status columns of a new row: claimed under `lease`, or pending.
pub(super) struct NewStatus<'a> {
    pub status: &'static str,
    pub token: Option<&'a str>,
    pub attempts: i64,
    pub next_attempt_at: i64,
}

impl<'a> NewStatus<'a> {
    pub fn new(lease: Option<&'a Lease>, now: i64) -> Self {
        match lease {
            Some(l) => Self {
                status: "processing",
                token: Some(&l.token),
                attempts: 1,
                next_attempt_at: l.until,
            },
            None => Self {
                status: "pending",
                token: None,
                attempts: 0,
                next_attempt_at: now,
            },
        }
    }

    /// The row a worker would have claimed, built from what was just inserted.
    pub fn claimed(&self, e: NewEvent, seq: i64, store_id: Option<String>, now: i64) -> Claimed {
        let row = EventRow {
            seq,
            source: e.source,
            event_id: e.event_id,
            event_type: e.event_type,
            scope: e.scope.to_owned(),
            store_id,
            account_id: e.account_id,
            livemode: i64::from(e.livemode),
            stripe_created: e.created,
            status: self.status.to_owned(),
            attempts: self.attempts,
            next_attempt_at: self.next_attempt_at,
            last_error: None,
            received_at: now,
            applied_at: None,
        };
        (row, Some(e.payload))
    }
}

/// One stored event, as workers and operators see it.
#[derive(Debug, Clone, FromRow)]
pub struct EventRow {
    pub seq: i64,
    pub source: String,
    pub event_id: String,
    pub event_type: String,
    pub scope: String,
    pub store_id: Option<String>,
    pub account_id: Option<String>,
    pub livemode: i64,
    pub stripe_created: i64,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub received_at: i64,
    pub applied_at: Option<i64>,
}

pub(super) const COLUMNS: &str =
    "seq, source, event_id, event_type, scope, store_id, account_id, livemode, stripe_created, \
    status, attempts, next_attempt_at, last_error, received_at, applied_at";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Stored and acknowledged, deliberately not applied (unknown type, livemode mismatch).
    Ignored,
    /// A Connect event whose account belongs to no store.
    Unrouted,
}

impl Outcome {
    pub(in crate::db) fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Ignored => "ignored",
            Outcome::Unrouted => "unrouted",
        }
    }
}

/// A claimed event's outcome when it has no effects to write: only its row changes. On SQLite
/// these are written by the inbox thread, in its next commit (see `Inbox::finish`).
#[derive(Debug)]
pub struct Finish {
    pub seq: i64,
    pub outcome: Outcome,
    pub store_id: Option<String>,
    pub note: Option<String>,
}

//! What every handler works with: the stored event as parsed and routed (`Incoming`), what a
//! handler's `load` prepared for its `apply` (`Loaded`), and the error a handler answers with.

use serde_json::Value;

use crate::db::DbError;
use crate::domain::StoreId;
use crate::service::ServiceError;

/// A stored event, parsed, with the store it was routed to.
#[derive(Debug)]
pub struct Incoming {
    pub seq: i64,
    pub event_id: String,
    pub event_type: String,
    pub created: i64,
    /// When Bursar stored it (unix seconds).
    pub received: i64,
    pub livemode: bool,
    pub account: Option<String>,
    pub store: Option<StoreId>,
    /// Came through a door whose signing secret the store's merchant knows (a `keys` store's
    /// own endpoint): its payload is the merchant's word, not Stripe's, until Stripe confirms it.
    pub merchant_signed: bool,
    /// How it reached the inbox: `webhook`, or `reconcile` (fetched from Stripe's event list).
    pub via: &'static str,
    pub object: Value,
}

impl Incoming {
    /// Whose watermarks this event is compared against: the store's, per account, so a store
    /// that moves to another account starts clean instead of inheriting the old one's.
    pub fn watermark_owner(&self, store: &StoreId) -> String {
        match &self.account {
            Some(account) => format!("{store}/{account}"),
            None => store.to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth another try later (Stripe unavailable, database busy).
    #[error("{0}")]
    Transient(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<ServiceError> for HandlerError {
    fn from(e: ServiceError) -> Self {
        HandlerError::Transient(format!("{e}: {}", source_chain(&e)))
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(&s.to_string());
        cur = s.source();
        if cur.is_some() {
            out.push_str(": ");
        }
    }
    out
}

/// What `load` prepared for `apply`.
#[derive(Debug)]
pub enum Loaded {
    Nothing,
    /// The object to apply: the event's own, or one fetched from Stripe.
    Object(Value),
    /// The event's object as Stripe holds it now, fetched in the event's scope to confirm a
    /// merchant-signed event: applied for what it says, the event's type adding nothing.
    Confirmed(Value),
}

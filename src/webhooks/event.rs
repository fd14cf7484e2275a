//! What every handler works with: the stored event as parsed and routed (`Incoming`), what a
//! handler's `load` prepared for its `apply` (`Loaded`), and the error a handler answers with.

use serde_json::Value;

use crate::db::DbError;
use crate::domain::StoreId;
use crate::service::ServiceError;
use crate::stripe::StripeError;

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

/// Why a handler could not apply an event. Each variant keeps its cause (`source`); `describe`
/// gives the whole chain, as the event's recorded error.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Stripe could not answer (unavailable, rate limited, timed out): worth another try.
    #[error("Stripe: {0}")]
    Stripe(#[from] StripeError),
    /// A service the handler used failed (Stripe, the vault, the database behind it).
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The event's object is not what its type promises.
    #[error("the {what} object does not parse")]
    Malformed {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The handler panicked; the panic's message.
    #[error("handler panicked: {0}")]
    Panicked(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl HandlerError {
    /// The error and every cause under it, `: `-joined.
    pub fn describe(&self) -> String {
        let mut out = self.to_string();
        let mut cur = std::error::Error::source(self);
        while let Some(cause) = cur {
            let text = cause.to_string();
            if !out.ends_with(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            cur = cause.source();
        }
        out
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handler_error_describes_its_whole_cause() {
        let e = HandlerError::from(ServiceError::StripeUnavailable(StripeError::Network(
            "connection reset".into(),
        )));
        assert!(std::error::Error::source(&e).is_some() || e.to_string().contains("reset"));
        assert!(
            e.describe().contains("connection reset"),
            "{}",
            e.describe()
        );
        let source = serde_json::from_str::<Value>("{").unwrap_err();
        let e = HandlerError::Malformed {
            what: "account",
            source,
        };
        let text = e.describe();
        assert!(
            text.starts_with("the account object does not parse: "),
            "{text}"
        );
        assert!(text.contains("EOF"), "{text}");
    }
}

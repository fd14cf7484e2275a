//! Confirming a merchant-signed event: its object is fetched from Stripe in the store's own
//! scope, and only what Stripe answers is applied.

use serde_json::Value;

use crate::db;
use crate::service::connections::store_scope;
use crate::service::Services;
use crate::webhooks::event::{HandlerError, Incoming, Loaded};

/// Fetches the event's object at `path(id)`. An object Stripe does not know in that account
/// confirms nothing; a Stripe that cannot answer is a failed attempt, retried later.
pub async fn at_stripe(
    s: &Services,
    ev: &Incoming,
    path: impl FnOnce(&str) -> String,
) -> Result<Loaded, HandlerError> {
    let (Some(store), Some(id)) = (&ev.store, ev.object["id"].as_str()) else {
        return Ok(Loaded::Nothing);
    };
    // An id is one path segment: anything else cannot name a Stripe object.
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Ok(Loaded::Nothing);
    }
    let Some(connection) = db::connections::get(s.db.pool(), store).await? else {
        return Ok(Loaded::Nothing);
    };
    let scope = store_scope(s, store, &connection)?;
    match s.stripe.get::<Value>(scope.scope(), &path(id)).await {
        Ok(object) => Ok(Loaded::Confirmed(object)),
        Err(e) if e.is_not_found() => {
            tracing::warn!(store = %store, event = %ev.event_id, object = id, "a merchant-signed event names an object Stripe does not have; nothing applied");
            Ok(Loaded::Nothing)
        }
        Err(e) => Err(e.into()),
    }
}

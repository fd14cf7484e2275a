//! Routing a claimed event to its store and handler: database reads only, no Stripe call.

use std::collections::HashMap;

use serde_json::Value;

use super::Step;
use crate::db;
use crate::db::connections::ConnectionRow;
use crate::db::inbox::{EventRow, Outcome};
use crate::domain::{Mode, StoreId};
use crate::service::Services;
use crate::webhooks::registry::{handler_for, Incoming, Loaded};

/// Routes a claimed event: its store (Connect events by their account), the checks that need no
/// transaction (connection, livemode, handler), and what the handler needs next.
pub(super) async fn route(
    s: &Services,
    row: &EventRow,
    payload: Option<&str>,
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
    let Some(payload) = payload else {
        return Step::Fail("the event's payload is missing".into());
    };
    let payload: Value = match serde_json::from_str(payload) {
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
    let mut payload = payload;
    let object = payload
        .get_mut("data")
        .and_then(|d| d.get_mut("object"))
        .map(Value::take)
        .unwrap_or(Value::Null);
    let mut incoming = Incoming {
        seq: row.seq,
        event_id: row.event_id.clone(),
        event_type: row.event_type.clone(),
        created: row.stripe_created,
        livemode,
        account: row.account_id.clone(),
        store,
        object,
    };
    if handler.calls_stripe() {
        return Step::Load { handler, incoming };
    }
    // The event's own object is what the handler applies: moved, not copied.
    let loaded = Loaded::Object(std::mem::take(&mut incoming.object));
    Step::Apply {
        handler,
        incoming,
        loaded,
    }
}

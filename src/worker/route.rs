//! Routing a claimed event to its store and handler: database reads only, no Stripe call.

use std::collections::HashMap;

use serde_json::Value;

use super::{connection_mismatch, Step};
use crate::db;
use crate::db::connections::ConnectionRow;
use crate::db::inbox::{EventRow, Outcome};
use crate::domain::{Mode, StoreId};
use crate::service::Services;
use crate::webhooks::event::{Incoming, Loaded};
use crate::webhooks::registry::handler_for;

/// What the worker reads of a stored payload.
#[derive(serde::Deserialize)]
struct Envelope {
    data: Option<Data>,
    /// Set by `bursar reconcile` on the events it fetched (Stripe never sends it).
    #[serde(default)]
    bursar_reconciled: bool,
}

#[derive(serde::Deserialize)]
struct Data {
    object: Value,
}

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
    let mut store = row.store_id.clone();
    // Connect events name their account; so do Accounts v2 thin events, on the platform door.
    let about_account = row.scope == "connect" || row.event_type.starts_with("v2.core.account");
    if store.is_none() && about_account {
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
    if about_account && store.is_none() {
        let account = row.account_id.as_deref().unwrap_or("(none)");
        return finish(
            Outcome::Unrouted,
            format!("no store is connected to account {account}"),
            None,
        );
    }
    match &store {
        Some(id) => {
            if !connections.contains_key(id.as_str()) {
                match db::connections::get(s.db.pool(), id).await {
                    Ok(c) => connections.insert(id.to_string(), c),
                    Err(e) => return Step::Fail(e.to_string()),
                };
            }
            // Checked again where the event is applied; here it saves a stale event its
            // Stripe calls.
            let connection = connections[id.as_str()]
                .as_ref()
                .map(|c| (c.account_id.as_deref(), c.mode));
            if let Some(note) = connection_mismatch(connection, row.account_id.as_deref(), livemode)
            {
                return finish(Outcome::Ignored, note, store);
            }
        }
        // A platform event must be in the platform key's mode.
        None => {
            if let Some(mode) = s
                .config
                .stripe
                .platform_mode()
                .filter(|m| *m != Mode::from_livemode(livemode))
            {
                let note = format!(
                    "livemode mismatch: a {} event for a {mode} connection",
                    Mode::from_livemode(livemode)
                );
                return finish(Outcome::Ignored, note, store);
            }
        }
    }
    let Some(handler) = handler_for(&row.event_type) else {
        return finish(
            Outcome::Ignored,
            format!("no handler for {}", row.event_type),
            store,
        );
    };
    if !handler.has_effects(store.is_some(), row.account_id.is_some()) {
        // Nothing of it is kept (a platform-scope event of a store-only handler): applied as
        // is, its payload (checked at the door) never parsed.
        return Step::Finish {
            outcome: Outcome::Applied,
            note: None,
            store,
        };
    }
    // Only `data.object` is kept: the rest of the envelope is already in the row's columns.
    let (object, reconciled) = match serde_json::from_str::<Envelope>(payload) {
        Ok(e) => (
            e.data.map(|d| d.object).unwrap_or(Value::Null),
            e.bursar_reconciled,
        ),
        Err(e) => return Step::Fail(format!("stored payload is not an event: {e}")),
    };
    let merchant_signed = row.scope == "store";
    let mut incoming = Incoming {
        seq: row.seq,
        event_id: row.event_id.clone(),
        event_type: row.event_type.clone(),
        created: row.stripe_created,
        received: row.received_at / 1000,
        livemode,
        account: row.account_id.clone(),
        store,
        merchant_signed,
        via: if reconciled { "reconcile" } else { "webhook" },
        object,
    };
    if handler.calls_stripe(&incoming) {
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

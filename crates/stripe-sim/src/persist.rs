//! The simulator's lasting state as one JSON value, so a local Stripe can be stopped and started
//! again with its accounts, keys, objects and events. What lasts only moments (OAuth codes,
//! onboarding links, replayable answers) and what tests inspect (requests, deliveries, faults)
//! is not kept; neither are endpoints registered by a caller rather than through the API,
//! which their caller registers again.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::Endpoint;
use crate::invoices::CardBehavior;
use crate::oauth::Grant;
use crate::state::{Account, State};

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
pub(crate) struct Snapshot {
    accounts: HashMap<String, Account>,
    keys: HashMap<String, String>,
    publishable_keys: HashMap<String, String>,
    /// (owning account, key, object): a map's keys must be strings in JSON.
    objects: Vec<(String, String, Value)>,
    refresh_tokens: HashMap<String, Grant>,
    endpoints: Vec<Endpoint>,
    thin_events: HashMap<String, Value>,
    events: HashMap<String, (String, Value)>,
    event_order: Vec<String>,
    hidden: HashMap<String, Value>,
    cards: HashMap<String, CardBehavior>,
    max_retries: Option<u32>,
}

impl Snapshot {
    pub fn of(state: &State) -> Self {
        let mut objects: Vec<(String, String, Value)> = state
            .objects
            .iter()
            .map(|((owner, key), o)| (owner.clone(), key.clone(), o.clone()))
            .collect();
        objects.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        Snapshot {
            accounts: state.accounts.clone(),
            keys: state.keys.clone(),
            publishable_keys: state.publishable_keys.clone(),
            objects,
            refresh_tokens: state.refresh_tokens.clone(),
            endpoints: state
                .endpoints
                .iter()
                .filter(|e| e.id.is_some())
                .cloned()
                .collect(),
            thin_events: state.thin_events.clone(),
            events: state.events.clone(),
            event_order: state.event_order.clone(),
            hidden: state.hidden.clone(),
            cards: state.billing.cards.clone(),
            max_retries: state.billing.max_retries,
        }
    }

    /// Puts the snapshot's state in place of `state`'s lasting parts.
    pub fn restore(self, state: &mut State) {
        state.accounts = self.accounts;
        state.keys = self.keys;
        state.publishable_keys = self.publishable_keys;
        state.objects = self
            .objects
            .into_iter()
            .map(|(owner, key, o)| ((owner, key), o))
            .collect();
        state.refresh_tokens = self.refresh_tokens;
        state.endpoints.retain(|e| e.id.is_none());
        state.endpoints.extend(self.endpoints);
        state.thin_events = self.thin_events;
        state.events = self.events;
        state.event_order = self.event_order;
        state.hidden = self.hidden;
        state.billing.cards = self.cards;
        state.billing.max_retries = self.max_retries;
    }
}

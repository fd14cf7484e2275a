//! Stripe's published example objects (fixtures/stripe/objects.json, MIT, © Stripe), the
//! starting point of every object the simulator serves. Embedded rather than taken from
//! `bursar::stripe::fixtures` so this crate does not depend on (and rebuild) Bursar.

use std::sync::OnceLock;

use serde_json::Value;

static OBJECTS: OnceLock<Value> = OnceLock::new();

/// Stripe's example object of a resource (`account`, `payout`, `person`, `balance`, …).
pub fn object(resource: &str) -> Option<Value> {
    OBJECTS
        .get_or_init(|| {
            serde_json::from_str(include_str!("../../../fixtures/stripe/objects.json"))
                .expect("the fixtures are valid JSON")
        })
        .get(resource)
        .cloned()
}

/// An example object that the simulator cannot work without.
pub(crate) fn required(resource: &str) -> Value {
    object(resource).unwrap_or_else(|| panic!("fixtures/stripe/objects.json has no {resource}"))
}

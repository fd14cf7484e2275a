//! The local Stripe server lives in its own crate, `crates/stripe-sim`, so a developer can run
//! it too (`cargo run -p stripe-sim`); tests reach it through this module.

pub use ::stripe_sim::*;

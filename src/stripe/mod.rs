//! Everything that speaks Stripe: the API client (every call names its account scope),
//! webhook signatures, the event envelope, the event types Bursar subscribes to, and Stripe's
//! example objects.

pub mod client;
pub mod event;
pub mod events;
pub mod fixtures;
mod rate;
pub mod signature;

pub use client::{AccountScope, IdempotencyKey, StripeClient, StripeError, STRIPE_VERSION};

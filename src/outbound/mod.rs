//! Calls out to the platform's own endpoints (notifications): a client that follows no
//! redirects, times out, reads little, and never reaches an address it must not (`guard`);
//! and the Standard Webhooks signature (`sign`).

pub mod client;
pub mod guard;
pub mod sign;

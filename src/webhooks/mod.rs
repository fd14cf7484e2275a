//! Webhook processing after the door: the group-commit inbox writer, the handler registry
//! (event type → handler) and the handlers themselves.

pub mod doors;
pub mod handlers;
pub mod ingest;
pub mod registry;

pub use registry::{handler_for, Handler, HandlerError, Incoming};

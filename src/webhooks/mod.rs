//! Webhook processing after the door: the group-commit inbox writer, the handler registry
//! (event type → handler) and the handlers themselves.

pub mod doors;
pub mod event;
pub mod handlers;
pub mod registry;

pub use event::{HandlerError, Incoming};
pub use registry::{handler_for, Handler};

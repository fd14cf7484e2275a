//! Types and rules of the business, free of I/O. Nothing here imports another module of ours.

pub mod connection;
pub mod ids;
pub mod keys;
pub mod mode;
pub mod notification;
pub mod order;
pub mod payment_facts;
pub mod request_key;
pub mod split;
pub mod store;
pub mod subscription;

pub use ids::{
    AccountId, ApiKeyId, CustomerId, EndpointId, NotificationId, OrderId, RefundId, StoreId,
};
pub use keys::{KeyKind, PublishableKey, SecretKey};
pub use mode::Mode;
pub use request_key::RequestKey;

/// A domain value that failed to parse, with a message fit for the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

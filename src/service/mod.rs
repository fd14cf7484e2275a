//! Capabilities: the only layer that combines the database, the vault and Stripe.

use std::sync::Arc;

use crate::config::Config;
use crate::db::{Db, DbError};
use crate::domain::Invalid;
use crate::metrics::Metrics;
use crate::stripe::{StripeClient, StripeError};
use crate::vault::{Vault, VaultError};

pub mod api_keys;
pub mod billing;
pub mod checkout_sessions;
pub mod connections;
pub mod console;
pub mod customers;
pub mod doctor;
pub mod events;
pub mod health;
pub mod jobs;
pub mod links;
pub mod marketplace;
pub mod notification_types;
pub mod notifications;
pub mod onboarding;
pub mod order_view;
pub mod orders;
pub mod payouts;
pub mod reconcile;
pub mod refunds;
pub mod retention;
pub mod secrets;
pub mod status;
pub mod store_deletion;
pub mod stores;
pub mod sweeper;
pub mod transfers;
pub mod webhook_endpoints;

/// What every capability needs; one pointer to clone (the router clones it per request).
#[derive(Clone)]
pub struct Services(Arc<Parts>);

pub struct Parts {
    pub config: Arc<Config>,
    pub db: Db,
    pub vault: Vault,
    pub stripe: StripeClient,
    pub metrics: Arc<Metrics>,
}

impl std::ops::Deref for Services {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.0
    }
}

impl Services {
    pub fn new(config: Arc<Config>, db: Db) -> Self {
        let metrics = Arc::new(Metrics::new());
        Self(Arc::new(Parts {
            vault: Vault::new(config.master_keys.clone()),
            stripe: StripeClient::new(&config.stripe, metrics.clone()),
            metrics,
            config,
            db,
        }))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// A well-formed request the rules refuse (mode mismatch, key policy, …).
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    /// Stripe refused the credentials or the request; the message is Stripe's reason.
    #[error("Stripe refused: {0}")]
    StripeRefused(#[source] StripeError),
    #[error("Stripe is unavailable: {0}")]
    StripeUnavailable(#[source] StripeError),
    #[error("database failure")]
    Db(#[from] DbError),
    #[error("stored secret cannot be opened")]
    Vault(#[from] VaultError),
}

impl From<StripeError> for ServiceError {
    fn from(e: StripeError) -> Self {
        match &e {
            StripeError::Api { status, .. } if *status < 500 && *status != 429 => {
                ServiceError::StripeRefused(e)
            }
            _ => ServiceError::StripeUnavailable(e),
        }
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

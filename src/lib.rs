//! Bursar: a self-hosted Stripe Connect gateway. Data flows http → service → (db, stripe,
//! vault); webhooks come in through http/webhooks → inbox → worker → handlers.

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod domain;
pub mod http;
pub mod local_stripe;
pub mod metrics;
pub mod outbound;
pub mod service;
pub mod stripe;
pub mod supervise;
pub mod telemetry;
pub mod vault;
pub mod webhooks;
pub mod worker;

//! End-to-end tests: the real app on a random port, a real database, the local Stripe server.
//! One test binary (faster to link than one per file), one module per capability.

mod support;

mod billing;
mod browser;
mod checkout_sessions;
mod cli;
mod connected_accounts;
mod connections;
mod console;
mod console_browser;
mod crash;
mod faults;
mod limits;
mod localstripe;
mod marketplace;
mod money;
mod notifications;
mod onboarding;
mod openapi;
mod operability;
mod operator;
mod orders;
mod pages;
mod retention;
mod stores;
mod tour;
mod webhooks;
mod worker;

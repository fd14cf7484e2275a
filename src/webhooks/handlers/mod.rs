//! One module per Stripe object family.

pub mod account;
pub mod application_fee;
pub mod balance;
pub mod billing;
mod confirm;
pub mod customer;
pub mod payment;
pub mod payout;
pub mod transfer;

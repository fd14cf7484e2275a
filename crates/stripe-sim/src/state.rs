//! The simulator's memory. One mutex guards it all: requests are few and short, and a single
//! lock means no handler can observe half of a change (an account without its keys, say).
//! Nothing holds the lock across an `.await`.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::events::{Delivery, Endpoint};
use crate::faults::{Injected, Recorded};
use crate::idempotency::Saved;
use crate::oauth::{Code, Grant, Pending};
use crate::onboarding::Link;
use crate::SimAccount;

/// The platform's own account id, as `GET /v1/account` with the platform key reports it and as
/// `put_object` expects for objects on the platform account.
pub const PLATFORM_ACCOUNT: &str = "acct_platform";

/// Everything shared by the server's handlers and the `StripeSim` handle.
pub(crate) struct Sim {
    pub platform_key: String,
    /// The platform's publishable key: Stripe.js on the platform's pages, acting on the
    /// platform's account or, with `_stripe_account`, on a connected one.
    pub platform_publishable_key: String,
    pub client_id: String,
    /// The server's base URL, for the links it hands out.
    pub url: String,
    /// Prints one line per request on stderr (the binary's `--verbose`).
    pub log_requests: bool,
    /// Any unknown test-mode key opens an account of its own (see `Options::open_keys`).
    pub open_keys: bool,
    /// For event deliveries.
    pub http: reqwest::Client,
    state: Mutex<State>,
}

impl Sim {
    pub fn new(
        platform_key: String,
        platform_publishable_key: String,
        client_id: String,
        url: String,
        log_requests: bool,
        open_keys: bool,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("the delivery client builds with static settings");
        Self {
            platform_key,
            platform_publishable_key,
            client_id,
            url,
            log_requests,
            open_keys,
            http,
            state: Mutex::default(),
        }
    }

    /// The state; a panic in another handler (a failed test assertion in a callback) must not
    /// turn every later request into a second panic, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the platform key is a live one: accounts the platform creates live in its mode.
    pub fn live(&self) -> bool {
        self.platform_key.starts_with("sk_live_")
    }
}

#[derive(Default)]
pub(crate) struct State {
    pub accounts: HashMap<String, Account>,
    /// Secret, restricted and OAuth keys → the account they open.
    pub keys: HashMap<String, String>,
    /// Accounts' publishable keys → the account they act on (only through Stripe.js's routes).
    pub publishable_keys: HashMap<String, String>,
    /// (owning account, object id — or object type for id-less objects like `balance`) → object.
    pub objects: HashMap<(String, String), Value>,
    /// Account link token → link.
    pub links: HashMap<String, Link>,
    /// Login link token → Express account.
    pub login_links: HashMap<String, String>,
    /// Authorization requests shown to a user and not answered yet, by request id.
    pub pending: HashMap<String, Pending>,
    pub codes: HashMap<String, Code>,
    /// Refresh token → what it grants.
    pub refresh_tokens: HashMap<String, Grant>,
    pub last_oauth_account: Option<SimAccount>,
    pub idempotency: HashMap<(String, String, String), Saved>,
    pub faults: Vec<Injected>,
    pub requests: Vec<Recorded>,
    pub endpoints: Vec<Endpoint>,
    pub deliveries: Vec<Delivery>,
    /// Accounts v2 events by id, in full (deliveries carry only their thin form).
    pub thin_events: HashMap<String, Value>,
    /// Snapshot events about objects in an account, by id: (owning account, event).
    pub events: HashMap<String, (String, Value)>,
    /// Their ids in the order they were made (`GET /v1/events` lists newest first).
    pub event_order: Vec<String>,
    /// What an object keeps that its API form does not show, by object id (a Checkout
    /// Session's `payment_intent_data` and line items).
    pub hidden: HashMap<String, Value>,
    /// Billing settings: customers' card behavior, Smart Retries.
    pub billing: crate::billing::Books,
}

impl State {
    /// The account if the platform may act on it (connected and not deauthorized).
    pub fn reachable(&self, id: &str) -> Option<&Account> {
        self.accounts.get(id).filter(|a| a.reachable())
    }
}

/// An account as the simulator keeps it: its v1 object, its Accounts v2 object when it was
/// made through v2, and its link to the platform.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Account {
    pub v1: Value,
    pub v2: Option<Value>,
    pub live: bool,
    /// Connected to the platform (created by it, through OAuth, or by `add_account`).
    pub connected: bool,
    pub deauthorized: bool,
    /// Keys issued by OAuth: deauthorizing revokes them, unlike the account's own keys.
    pub oauth_tokens: Vec<String>,
}

impl Account {
    pub fn new(v1: Value, live: bool, connected: bool) -> Self {
        Self {
            v1,
            v2: None,
            live,
            connected,
            deauthorized: false,
            oauth_tokens: Vec::new(),
        }
    }

    pub fn reachable(&self) -> bool {
        self.connected && !self.deauthorized
    }
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// RFC 3339 with milliseconds, as Accounts v2 writes every timestamp.
pub(crate) fn rfc3339(unix: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

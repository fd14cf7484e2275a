//! A local server that speaks Stripe's HTTP API for what Bursar calls, so its tests run
//! offline and a developer can click through Connect flows without a Stripe account:
//!
//! - v1 accounts and per-account objects (payouts, persons, customers, …), keys and
//!   `Stripe-Account`, with Stripe's errors when a key may not reach an account;
//! - Connect OAuth (`/oauth/authorize|token|deauthorize`), the same server acting as
//!   `STRIPE_CONNECT_BASE`;
//! - Express/Custom accounts, Account Links with a hosted onboarding page, login links;
//! - Accounts v2 (`/v2/core/accounts`, account links, thin events);
//! - payments: PaymentIntents confirmed with Stripe's test cards, charges, refunds, disputes,
//!   application fees on direct charges, customers, Checkout Sessions with a hosted page;
//! - Connect money movement: destination charges, transfers and their reversals;
//! - a catalog (products, prices, Plans);
//! - billing: prices, subscriptions and their invoices, with a hosted invoice page and
//!   test-clock helpers (trial end, renewals, declines, Smart Retries, cancellation);
//! - a Stripe.js stand-in (`/js.stripe.com/v3/`) whose card Element is plain inputs and whose
//!   `confirmCardPayment` calls the simulator with the publishable key and client secret, as
//!   Stripe.js does, with CORS for pages on other origins;
//! - signed event delivery to registered endpoints, awaited so tests need no sleeps;
//! - `Idempotency-Key` replay, and faults injectable per route (statuses, delays, answers
//!   lost after the work was done, dropped connections).
//!
//! Objects start from Stripe's own examples (fixtures/stripe/objects.json). State lives in
//! memory; `snapshot` and `restore` carry it across restarts (`bursar serve --local-stripe`).

// The invoice and subscription objects are written as one `json!` each.
#![recursion_limit = "256"]

mod accounts;
mod auth;
mod balances;
mod billing;
mod browser;
mod calendar;
mod cards;
mod catalog;
mod checkout;
mod conn;
mod customers;
mod events;
mod faults;
pub mod fixtures;
mod http;
mod idempotency;
mod invoices;
mod oauth;
mod objects;
mod onboarding;
mod params;
mod payments;
mod persist;
mod refunds;
mod state;
mod transfers;
mod v2;
mod webhook_endpoints;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{Method, StatusCode, Uri};
use axum::Router;
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::Value;

pub use billing::DEFAULT_MAX_RETRIES;
pub use browser::STRIPE_JS_PATH;
pub use cards::Card;
pub use events::{sign, Delivery, API_VERSION};
pub use faults::{Fault, Recorded};
pub use invoices::CardBehavior;
pub use state::PLATFORM_ACCOUNT;

use events::Endpoint;
use http::ApiError;
use state::{Account, Sim};

/// An account the simulator knows, with the keys that open it.
#[derive(Clone, Debug)]
pub struct SimAccount {
    pub id: String,
    pub secret_key: String,
    pub restricted_key: String,
    pub publishable_key: String,
}

/// How to start a simulator; every `None` is chosen at random (the port by the OS).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Where to listen; `None` is `127.0.0.1:0`.
    pub listen: Option<SocketAddr>,
    /// The platform's secret key (`sk_test_…` or `sk_live_…`).
    pub platform_key: Option<String>,
    /// The platform's publishable key (`pk_test_…` or `pk_live_…`, in the platform key's mode).
    pub platform_publishable_key: Option<String>,
    /// The platform's Connect client id (`ca_…`).
    pub client_id: Option<String>,
    /// The default signing secret for platform endpoints (the binary's `--endpoint URL`).
    pub webhook_secret: Option<String>,
    /// The default signing secret for Connect endpoints.
    pub connect_webhook_secret: Option<String>,
    /// Print one line per request on stderr.
    pub log_requests: bool,
    /// Any test-mode secret or restricted key not seen before (`sk_test_X`, `rk_test_X`) opens
    /// a new account of its own, ready to take charges, whose keys are `sk_test_X`, `rk_test_X`
    /// and `pk_test_X`: someone trying things out can invent a merchant's keys. Live keys are
    /// never made up.
    pub open_keys: bool,
}

/// A running simulator and the handle tests drive it with. Clones share the same server.
#[derive(Clone)]
pub struct StripeSim {
    /// The base URL, both `STRIPE_API_BASE` and `STRIPE_CONNECT_BASE`.
    pub url: String,
    pub platform_key: String,
    /// The platform's publishable key (`STRIPE_PUBLISHABLE_KEY`): Stripe.js with it confirms
    /// the platform's PaymentIntents and, with `stripeAccount`, its connected accounts'.
    pub platform_publishable_key: String,
    /// The platform's Connect OAuth client id.
    pub client_id: String,
    /// A signing secret for platform endpoints, for callers that want one made up for them.
    pub webhook_secret: String,
    /// A signing secret for Connect endpoints, likewise.
    pub connect_webhook_secret: String,
    sim: Arc<Sim>,
}

/// `n` random alphanumeric characters.
pub fn random(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

impl StripeSim {
    /// Starts on a random local port with random keys.
    pub async fn start() -> Self {
        Self::start_with(Options::default())
            .await
            .expect("the simulator binds a local port")
    }

    pub async fn start_with(options: Options) -> std::io::Result<Self> {
        let listen = options
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let platform_key = options
            .platform_key
            .unwrap_or_else(|| format!("sk_test_platform{}", random(20)));
        let client_id = options
            .client_id
            .unwrap_or_else(|| format!("ca_{}", random(24)));
        let platform_publishable_key = options.platform_publishable_key.unwrap_or_else(|| {
            let mode = if platform_key.starts_with("sk_live_") {
                "live"
            } else {
                "test"
            };
            format!("pk_{mode}_platform{}", random(20))
        });
        let sim = Arc::new(Sim::new(
            platform_key.clone(),
            platform_publishable_key.clone(),
            client_id.clone(),
            url.clone(),
            options.log_requests,
            options.open_keys,
        ));
        let app = router(sim.clone()).into_make_service_with_connect_info::<conn::Cutter>();
        let listener = conn::Listener(listener);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("stripe-sim: the server stopped: {e}");
            }
        });
        Ok(Self {
            url,
            platform_key,
            platform_publishable_key,
            client_id,
            webhook_secret: options
                .webhook_secret
                .unwrap_or_else(|| format!("whsec_{}", random(32))),
            connect_webhook_secret: options
                .connect_webhook_secret
                .unwrap_or_else(|| format!("whsec_{}", random(32))),
            sim,
        })
    }

    /// The Stripe.js stand-in's URL (`STRIPE_JS_URL`): `{url}/js.stripe.com/v3/`.
    pub fn js_url(&self) -> String {
        format!("{}{}", self.url, browser::STRIPE_JS_PATH)
    }

    /// A new account connected to the platform (Stripe's example account with a fresh id),
    /// with its own keys in `live` or test mode.
    pub fn add_account(&self, live: bool) -> SimAccount {
        self.insert_example(live, true)
    }

    /// A new account that is not connected to the platform: its own keys open it, the
    /// platform key with `Stripe-Account` does not.
    pub fn add_independent_account(&self, live: bool) -> SimAccount {
        self.insert_example(live, false)
    }

    fn insert_example(&self, live: bool, connected: bool) -> SimAccount {
        let v1 = accounts::example(&accounts::new_id());
        accounts::insert_with_keys(&mut self.sim.lock(), Account::new(v1, live, connected))
    }

    /// A new independent account opened by exactly these test keys (as Stripe issues them:
    /// `sk_test_51…`, `pk_test_51…`), ready to charge.
    pub fn add_account_with_keys(&self, secret_key: &str, publishable_key: &str) -> SimAccount {
        let mut v1 = accounts::example(&accounts::new_id());
        v1["charges_enabled"] = serde_json::json!(true);
        let id = v1["id"].as_str().unwrap_or_default().to_owned();
        let mut state = self.sim.lock();
        state.keys.insert(secret_key.to_owned(), id.clone());
        state
            .publishable_keys
            .insert(publishable_key.to_owned(), id.clone());
        state
            .accounts
            .insert(id.clone(), Account::new(v1, false, false));
        SimAccount {
            id,
            secret_key: secret_key.to_owned(),
            restricted_key: secret_key.to_owned(),
            publishable_key: publishable_key.to_owned(),
        }
    }

    /// The same account's keys in the other mode (an account has one id in test and live mode).
    pub fn keys_in_other_mode(&self, account: &SimAccount) -> SimAccount {
        let live = account.secret_key.starts_with("sk_test_");
        let other = accounts::fresh_keys(&account.id, live);
        let mut state = self.sim.lock();
        state
            .keys
            .insert(other.secret_key.clone(), other.id.clone());
        state
            .keys
            .insert(other.restricted_key.clone(), other.id.clone());
        state
            .publishable_keys
            .insert(other.publishable_key.clone(), other.id.clone());
        other
    }

    /// Changes an account's v1 object, as the Dashboard or onboarding would (no event is sent:
    /// follow with `deliver_event` if the test needs one).
    pub fn update_account(&self, id: &str, f: impl FnOnce(&mut Value)) {
        f(&mut self
            .sim
            .lock()
            .accounts
            .get_mut(id)
            .expect("known account")
            .v1);
    }

    /// An account's v1 object as the simulator holds it now.
    pub fn account(&self, id: &str) -> Option<Value> {
        self.sim.lock().accounts.get(id).map(|a| a.v1.clone())
    }

    /// Whether the platform can still reach `account` (connected and not deauthorized).
    pub fn is_connected(&self, account: &str) -> bool {
        self.sim.lock().reachable(account).is_some()
    }

    /// Stores `object` (with `id` and `object` fields; `balance` needs no id) in `account`
    /// (`PLATFORM_ACCOUNT` for the platform's own). It is then served only to that account.
    pub fn put_object(&self, account: &str, object: Value) {
        let key = objects::storage_key(&object);
        self.sim
            .lock()
            .objects
            .insert((account.to_owned(), key), object);
    }

    /// The lasting state (accounts, keys, objects, events, endpoints made through the API) as
    /// JSON, to start a later simulator from with `restore`.
    pub fn snapshot(&self) -> Value {
        let snapshot = persist::Snapshot::of(&self.sim.lock());
        serde_json::to_value(snapshot).expect("the state serializes")
    }

    /// Replaces the lasting state with a `snapshot`'s.
    pub fn restore(&self, snapshot: Value) -> Result<(), serde_json::Error> {
        let snapshot: persist::Snapshot = serde_json::from_value(snapshot)?;
        snapshot.restore(&mut self.sim.lock());
        Ok(())
    }

    /// The next `times` requests to `method path` meet `fault`.
    pub fn fail(&self, method: Method, path: &str, fault: Fault, times: u32) {
        self.sim
            .lock()
            .faults
            .push((method, path.to_owned(), None, fault, times));
    }

    /// The same, only for requests acting on `account` (by its key, `Stripe-Account` or
    /// `Stripe-Context`).
    pub fn fail_for(&self, account: &str, method: Method, path: &str, fault: Fault, times: u32) {
        self.sim.lock().faults.push((
            method,
            path.to_owned(),
            Some(account.to_owned()),
            fault,
            times,
        ));
    }

    pub fn clear_faults(&self) {
        self.sim.lock().faults.clear();
    }

    /// Every request received on `path` (query excluded), oldest first.
    pub fn requests(&self, path: &str) -> Vec<Recorded> {
        self.sim
            .lock()
            .requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Delivers future events to `url`, signed with `secret`: events of connected accounts
    /// when `connect`, else the platform's own (and Accounts v2 thin events).
    pub fn register_endpoint(&self, url: &str, secret: &str, connect: bool) {
        self.sim
            .lock()
            .endpoints
            .push(Endpoint::registered(url, secret, connect, None));
    }

    /// Delivers future events about objects of `account` (payments, customers, …) to `url`,
    /// signed with `secret`, without an `account` field: a webhook endpoint the account made
    /// with its own key (a `keys` store's). Events of a connected account also go to Connect
    /// endpoints, with `account` set.
    pub fn register_account_endpoint(&self, account: &str, url: &str, secret: &str) {
        self.sim
            .lock()
            .endpoints
            .push(Endpoint::registered(url, secret, false, Some(account)));
    }

    /// Sends a snapshot event about `object` to every endpoint of its kind (Connect endpoints
    /// when `account` is given, with `account` set in the event; else platform endpoints), and
    /// waits for their answers: the event id and each endpoint's status (0: unreachable).
    pub async fn deliver_event(
        &self,
        event_type: &str,
        account: Option<&str>,
        object: Value,
    ) -> (String, Vec<u16>) {
        let event = events::snapshot(&self.sim, event_type, account, object, None);
        let statuses = events::deliver_snapshot(&self.sim, &event).await;
        (
            event["id"].as_str().unwrap_or_default().to_owned(),
            statuses,
        )
    }

    /// An event emitted about an object in an account (payments, customers, disputes, …), as
    /// it was delivered (without the `account` field Connect endpoints get).
    pub fn event(&self, id: &str) -> Option<Value> {
        self.sim.lock().events.get(id).map(|(_, e)| e.clone())
    }

    /// Delivers event `id` (from `event`) again, freshly signed, to the endpoints it went to:
    /// what Stripe's retries and duplicates look like. Each endpoint's status.
    pub async fn redeliver(&self, id: &str) -> Vec<u16> {
        let Some((owner, event)) = self.sim.lock().events.get(id).cloned() else {
            return Vec::new();
        };
        events::deliver_for(&self.sim, &owner, &event).await
    }

    /// What rolling a key in the Dashboard does to the old one: Stripe refuses it from now on.
    pub fn revoke_key(&self, key: &str) {
        self.sim.lock().keys.remove(key);
    }

    /// Every webhook endpoint made through `POST /v1/webhook_endpoints`, oldest first, as the
    /// API shows it plus `owner` (its account), `connect` and `secret`.
    pub fn webhook_endpoints(&self) -> Vec<Value> {
        webhook_endpoints::all(&self.sim)
    }

    /// Every delivery so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.sim.lock().deliveries.clone()
    }

    /// Creates an Accounts v2 event of `event_type` about `account` (fetchable with
    /// `GET /v2/core/events/{id}`) and delivers its thin form to the platform endpoints; the id.
    pub async fn emit_thin(&self, event_type: &str, account: &str) -> String {
        let data = events::thin_data(event_type);
        events::emit_thin(&self.sim, event_type, account, data, None).await
    }

    /// What a user clicking "Connect" on the authorize page does, without a browser: a new
    /// Standard account connected to the platform and an authorization code (`ac_…`) for it.
    /// The account's `secret_key` is the access token `/oauth/token` will issue for the code;
    /// it opens the account only once exchanged.
    pub fn authorize(&self, live: bool) -> (String, SimAccount) {
        oauth::new_connection(&self.sim, live, "read_write")
    }

    /// The account made by the latest "Connect" (on the page or by `authorize`).
    pub fn last_oauth_account(&self) -> Option<SimAccount> {
        self.sim.lock().last_oauth_account.clone()
    }

    /// What finishing the hosted onboarding page does: the account is enabled, Connect
    /// endpoints get `account.updated` and, for an Accounts v2 account, platform endpoints get
    /// its thin events. Returns after delivery, with the event ids.
    pub async fn complete_onboarding(&self, account: &str) -> Vec<String> {
        onboarding::complete(&self.sim, account).await
    }

    /// What the account holder disconnecting the platform in their Dashboard does: like
    /// `POST /oauth/deauthorize`, with `account.application.deauthorized` delivered to Connect
    /// endpoints. The event id; `None` if the account was not connected.
    pub async fn deauthorize(&self, account: &str) -> Option<String> {
        oauth::deauthorize(&self.sim, account).await
    }

    /// Makes every account link issued so far expired (opening one redirects to its
    /// `refresh_url`).
    pub fn expire_account_links(&self) {
        for link in self.sim.lock().links.values_mut() {
            link.expires_at = 0;
        }
    }

    /// A PaymentIntent, in whichever account holds it.
    pub fn payment_intent(&self, id: &str) -> Option<Value> {
        self.object(id)
            .map(|(_, o)| o)
            .filter(|o| o["object"] == "payment_intent")
    }

    /// Any object the simulator holds under `id` (PaymentIntent, charge, refund, dispute,
    /// customer, Checkout Session, …) and the account holding it (`PLATFORM_ACCOUNT` for the
    /// platform's own).
    pub fn object(&self, id: &str) -> Option<(String, Value)> {
        self.sim
            .lock()
            .objects
            .iter()
            .find(|((_, oid), _)| oid == id)
            .map(|((owner, _), o)| (owner.clone(), o.clone()))
    }

    /// How many objects of a type (`"payment_intent"`, `"charge"`, `"refund"`, `"customer"`,
    /// `"checkout.session"`, …) exist across all accounts; a deleted customer still counts.
    pub fn count(&self, object_type: &str) -> usize {
        self.sim
            .lock()
            .objects
            .values()
            .filter(|o| o["object"] == object_type)
            .count()
    }

    /// How many accounts the local Stripe holds: the platform's, connected and independent.
    pub fn account_count(&self) -> usize {
        self.sim.lock().accounts.len()
    }

    /// What `account` holds now, per currency (see `balances`).
    pub fn available(&self, account: &str) -> std::collections::BTreeMap<String, i64> {
        balances::available(&self.sim.lock(), account)
    }

    /// The bank's answer to payout `payout` of `account`: paid, or failed with `failure` (a
    /// Stripe failure code). Emits `payout.updated` and `payout.paid|failed`; the payout.
    pub async fn settle_payout(&self, account: &str, payout: &str, failure: Option<&str>) -> Value {
        balances::settle(&self.sim, account, payout, failure)
            .await
            .unwrap_or_else(|e| panic!("stripe-sim: cannot settle the payout: {e}"))
    }

    /// Every object of a type across all accounts, as Stripe holds it now.
    pub fn objects(&self, object_type: &str) -> Vec<Value> {
        self.sim
            .lock()
            .objects
            .values()
            .filter(|o| o["object"] == object_type)
            .cloned()
            .collect()
    }

    /// What a customer paying in the browser does (Stripe.js confirming PaymentIntent
    /// `payment_intent` with `card`), without a key: the charge is made (or declined) and the
    /// events delivered (`charge.succeeded` + `payment_intent.succeeded`, or `charge.failed` +
    /// `payment_intent.payment_failed`; `payment_intent.amount_capturable_updated` for manual
    /// capture). Returns that `payment_intent.*` event's id once every endpoint answered.
    /// Panics if the PaymentIntent does not exist or cannot be confirmed (canceled, already
    /// succeeded), with Stripe's message.
    pub async fn pay(&self, payment_intent: &str, card: Card) -> String {
        payments::pay(&self.sim, payment_intent, card)
            .await
            .unwrap_or_else(|e| panic!("stripe-sim: cannot pay {payment_intent}: {e}"))
    }

    /// The cardholder disputing `charge` of `account`: a `dp_…` dispute (`needs_response`),
    /// the charge `disputed`, and `charge.dispute.created` delivered. Returns the event id and
    /// the dispute id. Panics unless the charge succeeded there.
    pub async fn dispute(&self, account: &str, charge: &str) -> (String, String) {
        refunds::open_dispute(&self.sim, account, charge)
            .await
            .unwrap_or_else(|e| panic!("stripe-sim: cannot dispute: {e}"))
    }

    /// Closes dispute `dispute` of `account`, `won` or lost: `charge.dispute.closed`
    /// delivered; the event id.
    pub async fn close_dispute(&self, account: &str, dispute: &str, won: bool) -> String {
        refunds::close_dispute(&self.sim, account, dispute, won)
            .await
            .unwrap_or_else(|e| panic!("stripe-sim: cannot close the dispute: {e}"))
    }

    /// The customer paying Checkout Session `session` of `account` on its hosted page, with a
    /// card that succeeds (`card_ok`) or is declined. The PaymentIntent is created then (with
    /// the session's `payment_intent_data`: metadata, application fee). On success the session
    /// is `complete` / `paid`, and `payment_intent.created`, `charge.succeeded`,
    /// `payment_intent.succeeded` and `checkout.session.completed` are delivered: returns the
    /// last one's id. On a decline the session stays `open` and the id of
    /// `payment_intent.payment_failed` is returned. Panics unless the session is open there.
    pub async fn complete_checkout(&self, account: &str, session: &str, card_ok: bool) -> String {
        let card = if card_ok { Card::Visa } else { Card::Declined };
        checkout::complete(&self.sim, account, session, card)
            .await
            .map(|(event, _)| event)
            .unwrap_or_else(|e| panic!("stripe-sim: cannot complete the checkout: {e}"))
    }

    /// Checkout Session `session` of `account` expiring: `checkout.session.expired`
    /// delivered; the event id. Panics unless the session is open there.
    pub async fn expire_checkout(&self, account: &str, session: &str) -> String {
        checkout::expire_helper(&self.sim, account, session)
            .await
            .unwrap_or_else(|e| panic!("stripe-sim: cannot expire the checkout: {e}"))
    }

    /// Makes every OAuth code issued so far expired.
    pub fn expire_oauth_codes(&self) {
        oauth::expire_codes(&self.sim);
    }

    /// A new price on the platform account (Stripe's example price with a fresh `price_…` id
    /// and a made-up `prod_…`): `unit_amount` in `currency`'s minor unit, recurring every
    /// `interval` (`"day"`, `"week"`, `"month"`, `"year"`; `interval_count` 1) or one-time for
    /// `None`, `active` or archived. Its id.
    pub fn add_price(
        &self,
        unit_amount: i64,
        currency: &str,
        interval: Option<&str>,
        active: bool,
    ) -> String {
        billing::add_price(
            &self.sim,
            PLATFORM_ACCOUNT,
            unit_amount,
            currency,
            interval,
            active,
        )
    }

    /// What `customer`'s default payment method does on its next charges (until changed):
    /// every customer's starts as `Succeeds`.
    pub fn set_customer_card(&self, customer: &str, behavior: CardBehavior) {
        self.sim
            .lock()
            .billing
            .cards
            .insert(customer.to_owned(), behavior);
    }

    /// How many failed Smart Retries (`retry_invoice`) end a subscription
    /// (`DEFAULT_MAX_RETRIES` until set).
    pub fn set_max_retries(&self, n: u32) {
        self.sim.lock().billing.max_retries = Some(n);
    }

    /// The trial of `subscription` ends: its first invoice (`subscription_cycle`) is charged
    /// with the customer's card. Delivers `invoice.paid` (status `active`),
    /// `invoice.payment_failed` or `invoice.payment_action_required` (status `past_due`), then
    /// `customer.subscription.updated`; with `cancel_at_period_end`, only
    /// `customer.subscription.deleted`. The event ids. Panics unless it is trialing.
    pub async fn end_trial(&self, subscription: &str) -> Vec<String> {
        billing::end_trial(&self.sim, subscription)
            .await
            .unwrap_or_else(|e| panic!("stripe-sim: cannot end the trial: {e}"))
    }

    /// The current period of `subscription` ends and the next begins: a renewal invoice
    /// charged as in `end_trial` (or, for `send_invoice`, `invoice.finalized`), then
    /// `customer.subscription.updated`. Same as `period_end`: a subscription set to
    /// `cancel_at_period_end` is canceled instead. Panics unless it is trialing, active or
    /// past due.
    pub async fn advance_period(&self, subscription: &str) -> Vec<String> {
        self.period_end(subscription).await
    }

    /// The end of the current period: with `cancel_at_period_end`, the subscription is
    /// `canceled` (`cancellation_details.reason: "cancellation_requested"`, `ended_at` the
    /// period's end) and `customer.subscription.deleted` delivered; otherwise a renewal, as
    /// `advance_period`. The event ids.
    pub async fn period_end(&self, subscription: &str) -> Vec<String> {
        billing::period_end(&self.sim, subscription)
            .await
            .unwrap_or_else(|e| panic!("stripe-sim: cannot end the period: {e}"))
    }

    /// A Smart Retries attempt on the latest (open) invoice of `subscription` with the
    /// customer's card: `invoice.paid` and `customer.subscription.updated` (`active`) on
    /// success; else `invoice.payment_failed` (or `invoice.payment_action_required`), and once
    /// this was the `set_max_retries`-th failed retry, `invoice.payment_failed` (without
    /// `next_payment_attempt`) then `customer.subscription.deleted` (`canceled`, reason
    /// `payment_failed`). The event ids.
    pub async fn retry_invoice(&self, subscription: &str) -> Vec<String> {
        billing::retry_invoice(&self.sim, subscription)
            .await
            .unwrap_or_else(|e| panic!("stripe-sim: cannot retry: {e}"))
    }

    /// The customer paying open invoice `invoice` on its hosted page (`POST
    /// /invoice/{id}/pay`, whatever their default card does): `invoice.paid`, then
    /// `customer.subscription.updated` if its subscription was `past_due` or `incomplete` (now
    /// `active`). The event ids. Panics unless the invoice is open.
    pub async fn pay_invoice(&self, invoice: &str) -> Vec<String> {
        billing::pay_invoice(&self.sim, invoice)
            .await
            .unwrap_or_else(|e| panic!("stripe-sim: cannot pay the invoice: {e}"))
    }

    /// What `DELETE /v1/customers/{id}` does: `customer.subscription.deleted` for each of the
    /// customer's live subscriptions (canceled, reason `cancellation_requested`), then
    /// `customer.deleted`. The event ids. Panics if there is no such customer.
    pub async fn delete_customer(&self, customer: &str) -> Vec<String> {
        customers::delete_helper(&self.sim, customer)
            .await
            .unwrap_or_else(|e| panic!("stripe-sim: cannot delete the customer: {e}"))
    }
}

fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .merge(accounts::routes())
        .merge(objects::routes())
        .merge(payments::routes())
        .merge(refunds::routes())
        .merge(customers::routes())
        .merge(billing::routes())
        .merge(catalog::routes())
        .merge(transfers::routes())
        .merge(balances::routes())
        .merge(checkout::routes())
        .merge(onboarding::routes())
        .merge(oauth::routes())
        .merge(v2::routes())
        .merge(webhook_endpoints::routes())
        .merge(browser::routes())
        .fallback(|method: Method, uri: Uri| async move {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("Unrecognized request URL ({method}: {}).", uri.path()),
            )
        })
        .layer(axum::middleware::from_fn(browser::lift_publishable))
        .layer(axum::middleware::from_fn_with_state(
            sim.clone(),
            idempotency::replay,
        ))
        .layer(axum::middleware::from_fn_with_state(
            sim.clone(),
            faults::record_and_fault,
        ))
        .layer(axum::middleware::from_fn(browser::cors))
        .with_state(sim)
}

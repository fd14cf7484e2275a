//! Orders: a PaymentIntent created with the right merchant's credentials, and a status only
//! Stripe moves (a verified webhook, or Stripe's answer when Bursar re-checks).
//!
//! Creation is crash- and retry-safe: the order row (and so the Stripe idempotency key
//! `bursar:payment_intent:<order id>`) is saved before Stripe is called, a retried request with
//! the same `Idempotency-Key` resumes the same order, and the sweep finishes orders whose
//! process stopped between Stripe's answer and our commit. Stripe returns the PaymentIntent it
//! already made for a key it has seen, so there is never a second one.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

use super::connections::{store_scope, StoreScope};
use super::order_view::{client_secret_binding, transfers_of, view, OrderView};
use super::{stores, Result, ServiceError, Services};
use crate::db::connections::ConnectionRow;
use crate::db::orders::{NewOrder, OrderRow};
use crate::db::{self, now_ms};
use crate::domain::connection::ConnectionKind;
use crate::domain::order::{Currency, OrderFacts};
use crate::domain::payment_facts::{charge_facts, checkout_session_facts, payment_intent_facts};
use crate::domain::split::ChargeType;
use crate::domain::store::Metadata;
use crate::domain::{Invalid, OrderId, RequestKey, StoreId};
use crate::stripe::{AccountScope, IdempotencyKey, StripeError};

pub struct OrderInput {
    /// Positive, and within what Stripe takes in `currency`.
    pub amount: i64,
    pub currency: Currency,
    pub description: Option<String>,
    /// The shape of a customer id (`cu_…` or `cus_…`); whose it is is checked here.
    pub customer_id: Option<String>,
    /// At least 0 and less than the amount.
    pub application_fee_amount: Option<i64>,
    pub metadata: Metadata,
    /// Checked against the allow-list here.
    pub return_url: Option<String>,
    /// By default destination for Express and v2 accounts, direct otherwise.
    pub charge_type: Option<ChargeType>,
    /// A destination charge made on the connected account's behalf (its statement descriptor,
    /// its country's rules).
    pub on_behalf_of: bool,
    /// A destination charge's part for the store (`transfer_data[amount]`); the platform keeps
    /// the rest. Instead of `application_fee_amount`.
    pub transfer_amount: Option<i64>,
}

/// The same `Idempotency-Key` sent with another request than the one it first came with.
pub(super) fn key_reused() -> ServiceError {
    conflict(
        "idempotency_key_reused",
        "this Idempotency-Key was used with a different request; use a new key for a new request",
    )
}

pub(super) fn conflict(code: &'static str, message: &str) -> ServiceError {
    ServiceError::Conflict {
        code,
        message: message.to_owned(),
    }
}

/// The store's connection, if it may take payments now; otherwise a 409 saying why.
pub(super) async fn chargeable(s: &Services, store: &StoreId) -> Result<ConnectionRow> {
    let row = db::connections::get(s.db.pool(), store)
        .await?
        .ok_or_else(|| conflict("store_not_connected", "the store has no Stripe connection"))?;
    if row.is_deauthorized() {
        return Err(conflict(
            "store_deauthorized",
            "the store's connected account has deauthorized the platform",
        ));
    }
    if row.charges_enabled == 0 {
        return Err(conflict(
            "charges_disabled",
            "the store's Stripe account cannot accept charges yet (charges_enabled is false); see GET /api/v1/stores/{id}/account for what Stripe still requires",
        ));
    }
    Ok(row)
}

pub async fn create(
    s: &Services,
    store: &StoreId,
    input: OrderInput,
    request_key: Option<&RequestKey>,
) -> Result<OrderView> {
    stores::require(s, store).await?;
    // A retry resumes the order its key made, if it is the same request; the same key with
    // another request is refused, whatever became of the first attempt.
    let existing = match request_key {
        Some(k) => match db::orders::by_request_key(&s.db, Some(store), &k.key).await? {
            Some(o) if !k.same_request(o.request_hash.as_deref()) => return Err(key_reused()),
            found => found,
        },
        None => None,
    };
    let (currency, amount, fee) = (&input.currency, input.amount, input.application_fee_amount);
    let (description, metadata) = (input.description, input.metadata);
    let return_url = input
        .return_url
        .as_deref()
        .map(|u| super::links::check_return_url(s, u).map(String::from))
        .transpose()?;
    let requested = input.charge_type;
    let connection = chargeable(s, store).await?;
    super::billing::may_sell(s, store).await?;
    let connect = connection.is_connect();
    if fee.is_some() && !connect {
        return Err(ServiceError::Refused {
            code: "application_fee_not_allowed",
            message: "application_fee_amount applies only to connected (connect) stores; a keys store's own account takes the whole payment".into(),
        });
    }
    let charge_type = requested.unwrap_or_else(|| default_charge_type(&connection));
    if charge_type == ChargeType::Destination && !connect {
        return Err(ServiceError::Refused {
            code: "destination_needs_connect",
            message: "a destination charge is made on the platform and transferred to a connected account; a keys store's account is its own, so its orders are direct charges".into(),
        });
    }
    let on_behalf_of = input.on_behalf_of;
    if on_behalf_of && charge_type != ChargeType::Destination {
        return Err(Invalid::new("on_behalf_of", "applies only to a destination charge").into());
    }
    if let Some(part) = input.transfer_amount {
        if charge_type != ChargeType::Destination {
            return Err(
                Invalid::new("transfer_amount", "applies only to a destination charge").into(),
            );
        }
        if fee.is_some() {
            return Err(Invalid::new(
                "transfer_amount",
                "give either application_fee_amount or transfer_amount: the platform keeps what is not transferred",
            )
            .into());
        }
        if part <= 0 || part > amount {
            return Err(
                Invalid::new("transfer_amount", "must be positive and at most the amount").into(),
            );
        }
    }
    if charge_type == ChargeType::Destination && input.customer_id.is_some() {
        return Err(ServiceError::Refused {
            code: "customer_not_on_platform",
            message: "a store's customers live in its connected account; a destination charge is made on the platform, so it cannot name one (use charge_type: direct)".into(),
        });
    }
    let account = connection.account_id.clone().unwrap_or_default();
    // Only this store's own customers, in its current account: never another store's.
    let customer = match &input.customer_id {
        Some(c) => Some(super::customers::stripe_id_for_order(s, store, &account, c).await?),
        None => None,
    };
    let order = match existing {
        Some(o) if o.payment_intent_id.is_some() => {
            return view(s, o, Some(&connection), Vec::new())
        }
        Some(o) => o,
        None => {
            let id = OrderId::generate();
            db::orders::insert(
                &s.db,
                &NewOrder {
                    id: &id,
                    store: Some(store),
                    connection_kind: connection.kind.into(),
                    account_id: &account,
                    mode: connection.mode,
                    amount,
                    currency: currency.as_str(),
                    description: description.as_deref(),
                    customer_id: customer.as_deref(),
                    application_fee_amount: fee,
                    metadata: &metadata.to_json(),
                    request_key,
                    return_url: return_url.as_deref(),
                    checkout: false,
                    charge_type,
                    on_behalf_of,
                    transfer_amount: input.transfer_amount,
                    splits: &[],
                },
            )
            .await?
            .ok_or(ServiceError::NotFound("store"))?
        }
    };
    let scope = order_scope(s, &order).await?;
    match create_payment_intent(s, &order, &scope).await {
        Ok(order) => view(s, order, Some(&connection), Vec::new()),
        // Stripe made nothing (a key still in use is another request making it, not a no).
        Err(ServiceError::StripeRefused(e)) if !e.is_key_in_use() => {
            // Forget the order, so nothing retries it.
            db::orders::delete_unstarted(&s.db, &OrderId::parse(&order.id)?).await?;
            Err(ServiceError::StripeRefused(e))
        }
        Err(e) => Err(e),
    }
}

/// Stripe's guidance: the platform answers for Express and v2 accounts' payments (destination
/// charges); a Standard account takes its own (direct charges).
fn default_charge_type(connection: &ConnectionRow) -> ChargeType {
    match (connection.kind, connection.connect_type.as_deref()) {
        (ConnectionKind::Connect, Some("express" | "v2")) => ChargeType::Destination,
        _ => ChargeType::Direct,
    }
}

/// Where an order's payment lives: in the store's account (a direct charge), or the platform's.
pub(super) enum OrderScope {
    Store(StoreScope),
    Platform,
}

impl OrderScope {
    pub(super) fn scope(&self) -> AccountScope<'_> {
        match self {
            OrderScope::Store(s) => s.scope(),
            OrderScope::Platform => AccountScope::Platform,
        }
    }
}

/// The credentials to act on an order's payment: the platform's for a charge on the platform;
/// for a direct charge, the store's, if it still holds the account the order was made in.
pub(super) async fn order_scope(s: &Services, order: &OrderRow) -> Result<OrderScope> {
    if order.charge_type().on_platform() {
        return Ok(OrderScope::Platform);
    }
    let (store, connection) = order_connection(s, order).await?;
    Ok(OrderScope::Store(store_scope(s, &store, &connection)?))
}

/// Creates (or, for a key Stripe has seen, gets back) the order's PaymentIntent and saves it.
pub(super) async fn create_payment_intent(
    s: &Services,
    order: &OrderRow,
    scope: &OrderScope,
) -> Result<OrderRow> {
    // Only what the request needs: automatic payment methods are the default at the pinned API
    // version, and emulators such as localstripe refuse parameters they do not know.
    let mut form: Vec<(String, String)> = vec![
        ("amount".into(), order.amount.to_string()),
        ("currency".into(), order.currency.clone()),
        ("metadata[bursar_order_id]".into(), order.id.clone()),
    ];
    if let Some(store) = &order.store_id {
        form.push(("metadata[bursar_store_id]".into(), store.clone()));
    }
    match order.charge_type() {
        ChargeType::Direct => {}
        ChargeType::Destination => {
            form.push((
                "transfer_data[destination]".into(),
                order.account_id.clone(),
            ));
            if let Some(part) = order.transfer_amount {
                form.push(("transfer_data[amount]".into(), part.to_string()));
            }
            if order.on_behalf_of != 0 {
                form.push(("on_behalf_of".into(), order.account_id.clone()));
            }
        }
        // The transfers name the order as their group, and the charge as their source.
        ChargeType::Separate => form.push(("transfer_group".into(), order.id.clone())),
    }
    if let Some(d) = &order.description {
        form.push(("description".into(), d.clone()));
    }
    if let Some(c) = &order.customer_id {
        form.push(("customer".into(), c.clone()));
    }
    if let Some(f) = order.application_fee_amount {
        form.push(("application_fee_amount".into(), f.to_string()));
    }
    let metadata: BTreeMap<String, String> =
        serde_json::from_str(&order.metadata).unwrap_or_default();
    for (k, v) in metadata {
        if !k.starts_with("bursar_") {
            form.push((format!("metadata[{k}]"), v));
        }
    }
    #[derive(Deserialize)]
    struct Created {
        id: String,
        client_secret: SecretString,
    }
    let pi: Created = s
        .stripe
        .post(
            scope.scope(),
            "/v1/payment_intents",
            &form,
            &IdempotencyKey::new("payment_intent", &order.id),
        )
        .await?;
    let sealed = s
        .vault
        .seal(&pi.client_secret, client_secret_binding(&order.id));
    let id = OrderId::parse(&order.id)?;
    db::orders::set_payment_intent(&s.db, &id, &pi.id, &sealed).await?;
    tracing::info!(order = %order.id, store = ?order.store_id, payment_intent = %pi.id, "payment intent created");
    db::orders::get(&s.db, &id)
        .await?
        .ok_or(ServiceError::NotFound("order"))
}

pub async fn get(s: &Services, id: &OrderId) -> Result<OrderView> {
    let row = db::orders::get(&s.db, id)
        .await?
        .ok_or(ServiceError::NotFound("order"))?;
    let connection = match &row.store_id {
        Some(store) => db::connections::get(s.db.pool(), &StoreId::parse(store)?).await?,
        None => None,
    };
    let transfers = transfers_of(s.db.pool(), &row).await?;
    view(s, row, connection.as_ref(), transfers)
}

pub struct Page {
    pub data: Vec<OrderView>,
    pub next_cursor: Option<String>,
}

pub async fn list(s: &Services, store: &StoreId, cursor: Option<&str>, limit: i64) -> Result<Page> {
    stores::require(s, store).await?;
    let before = cursor.map(OrderId::parse).transpose()?;
    let rows = db::orders::list(&s.db, store, before.as_ref(), limit + 1).await?;
    let connection = db::connections::get(s.db.pool(), store).await?;
    let more = rows.len() as i64 > limit;
    let mut data = Vec::new();
    for row in rows.into_iter().take(limit as usize) {
        // A multi-vendor order shows this store its own split.
        let transfers = transfers_of(s.db.pool(), &row)
            .await?
            .into_iter()
            .filter(|t| t.store_id == store.as_str())
            .collect();
        let own = row.store_id.as_deref() == Some(store.as_str());
        data.push(view(
            s,
            row,
            connection.as_ref().filter(|_| own),
            transfers,
        )?);
    }
    let next_cursor = more.then(|| data.last().map(|o| o.id.clone())).flatten();
    Ok(Page { data, next_cursor })
}

/// Orders of every store, or of one (its split orders included), newest first, in one status
/// if `status` names it. A multi-vendor order is shown whole, all its transfers with it.
pub async fn list_filtered(
    s: &Services,
    store: Option<&StoreId>,
    status: Option<&str>,
    cursor: Option<&str>,
    limit: i64,
) -> Result<Page> {
    if let Some(store) = store {
        stores::require(s, store).await?;
    }
    let before = cursor.map(OrderId::parse).transpose()?;
    let rows = db::orders::list_filtered(&s.db, store, status, before.as_ref(), limit + 1).await?;
    let more = rows.len() as i64 > limit;
    let mut data = Vec::new();
    // A page is mostly a few stores' orders: each store's connection is read once.
    let mut connections = std::collections::HashMap::new();
    for row in rows.into_iter().take(limit as usize) {
        let connection = match &row.store_id {
            Some(id) => {
                if !connections.contains_key(id) {
                    let found = db::connections::get(s.db.pool(), &StoreId::parse(id)?).await?;
                    connections.insert(id.clone(), found);
                }
                connections[id].as_ref()
            }
            None => None,
        };
        let transfers = transfers_of(s.db.pool(), &row).await?;
        data.push(view(s, row, connection, transfers)?);
    }
    let next_cursor = more.then(|| data.last().map(|o| o.id.clone())).flatten();
    Ok(Page { data, next_cursor })
}

/// Asks Stripe for the order's PaymentIntent (and its charge) in the store's scope and applies
/// the answer through the same facts as webhooks; `sync` is recorded as the source.
pub async fn sync(s: &Services, id: &OrderId) -> Result<OrderView> {
    let row = db::orders::get(&s.db, id)
        .await?
        .ok_or(ServiceError::NotFound("order"))?;
    let scope = order_scope(s, &row).await?;
    let pi_id = match (&row.payment_intent_id, &row.checkout_session_id) {
        (Some(pi), _) => pi.clone(),
        // A Checkout order whose session Stripe never confirmed making: its creator got an
        // error, so it is closed rather than left to look pending.
        (None, Some(session)) if session.is_empty() => {
            let facts = OrderFacts {
                canceled: true,
                ..Default::default()
            };
            let mut tx = s.db.begin_write().await?;
            let merged = db::orders::merge_facts(&mut tx, &row.id, &facts, None, "sync").await?;
            super::order_view::order_merged(s, &mut tx, merged).await?;
            tx.commit().await?;
            return get(s, id).await;
        }
        // A Checkout order: the session says whether it was paid (and by which PaymentIntent).
        (None, Some(session)) => {
            let session: Value = s
                .stripe
                .get(scope.scope(), &format!("/v1/checkout/sessions/{session}"))
                .await?;
            let facts = checkout_session_facts(&session, None, (now_ms() / 1000, i64::MAX));
            let mut tx = s.db.begin_write().await?;
            if let Some(pi) = session["payment_intent"].as_str() {
                db::orders::learn_payment_intent(&mut tx, &row.id, pi).await?;
            }
            let merged =
                db::orders::merge_facts(&mut tx, id.as_str(), &facts, None, "sync").await?;
            super::order_view::order_merged(s, &mut tx, merged).await?;
            tx.commit().await?;
            return get(s, id).await;
        }
        (None, None) => {
            create_payment_intent(s, &row, &scope).await?;
            return get(s, id).await;
        }
    };
    let pi: Value = s
        .stripe
        .get(scope.scope(), &format!("/v1/payment_intents/{pi_id}"))
        .await?;
    let mut facts = payment_intent_facts(&pi, (now_ms() / 1000, i64::MAX));
    let charge_id = pi["latest_charge"].as_str().map(str::to_owned);
    if let Some(charge_id) = &charge_id {
        let charge: Value = s
            .stripe
            .get(scope.scope(), &format!("/v1/charges/{charge_id}"))
            .await?;
        facts = facts.merge(&charge_facts(&charge));
    }
    let mut tx = s.db.begin_write().await?;
    let merged =
        db::orders::merge_facts(&mut tx, id.as_str(), &facts, charge_id.as_deref(), "sync").await?;
    super::order_view::order_merged(s, &mut tx, merged).await?;
    tx.commit().await?;
    if row.charge_type() == ChargeType::Separate {
        // A re-check also finishes the money movement Stripe's answer calls for, and asks
        // again for what Stripe refused before.
        super::transfers::retry_refused(s, id).await?;
        super::transfers::settle_order(s, id).await?;
    }
    get(s, id).await
}

/// The order's store and its connection, if the store still holds the account the order was
/// made in: a store that moved to another account cannot act on its old orders.
async fn order_connection(s: &Services, order: &OrderRow) -> Result<(StoreId, ConnectionRow)> {
    let store = StoreId::parse(order.store_id.as_deref().unwrap_or_default())?;
    let connection = db::connections::get(s.db.pool(), &store)
        .await?
        .ok_or_else(|| conflict("store_not_connected", "the store has no Stripe connection"))?;
    if connection.account_id.as_deref() != Some(order.account_id.as_str()) {
        return Err(conflict(
            "account_changed",
            "the store is now connected to another Stripe account than this order's",
        ));
    }
    Ok((store, connection))
}

/// Before a forced deletion: every order of the store that Stripe may still settle is closed
/// at Stripe (its PaymentIntent canceled, or its Checkout Session expired) and Stripe's answer
/// applied; one Stripe will not close (already paid, say) is re-checked instead, so it ends in
/// Stripe's state.
pub async fn cancel_unsettled(s: &Services, store: &StoreId, since_ms: i64) -> Result<()> {
    for row in db::orders::unsettled_of_store(&s.db, store, since_ms).await? {
        let id = OrderId::parse(&row.id)?;
        let row = match (&row.payment_intent_id, &row.checkout_session_id) {
            // Its PaymentIntent's answer never came: replayed under its key to learn it first.
            (None, None) => {
                sync(s, &id).await?;
                db::orders::get(&s.db, &id)
                    .await?
                    .ok_or(ServiceError::NotFound("order"))?
            }
            // A Checkout Session still being made may be answered any moment.
            (None, Some(session)) if session.is_empty() => {
                if now_ms() - row.created_at < CREATION_SETTLES_MS {
                    return Err(conflict(
                        "order_being_created",
                        "an order of this store is still being created at Stripe; try again in a few minutes",
                    ));
                }
                sync(s, &id).await?;
                continue;
            }
            _ => row,
        };
        let Ok(scope) = order_scope(s, &row).await else {
            continue;
        };
        let at = (now_ms() / 1000, i64::MAX);
        let closed = match (&row.payment_intent_id, &row.checkout_session_id) {
            (Some(pi), _) => s
                .stripe
                .post::<Value>(
                    scope.scope(),
                    &format!("/v1/payment_intents/{pi}/cancel"),
                    &[],
                    &IdempotencyKey::new("payment_intent_cancel", &row.id),
                )
                .await
                .map(|pi| payment_intent_facts(&pi, at)),
            (None, Some(session)) => s
                .stripe
                .post::<Value>(
                    scope.scope(),
                    &format!("/v1/checkout/sessions/{session}/expire"),
                    &[],
                    &IdempotencyKey::new("checkout_session_expire", &row.id),
                )
                .await
                .map(|session| checkout_session_facts(&session, None, at)),
            (None, None) => continue,
        };
        match closed {
            Ok(facts) => {
                let mut tx = s.db.begin_write().await?;
                let merged =
                    db::orders::merge_facts(&mut tx, &row.id, &facts, None, "sync").await?;
                super::order_view::order_merged(s, &mut tx, merged).await?;
                tx.commit().await?;
            }
            Err(StripeError::Api { status, .. }) if status < 500 && status != 429 => {
                sync(s, &id).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// How long a creating call to Stripe can take, its retries included: an order younger than
/// this without Stripe's answer may still get one.
const CREATION_SETTLES_MS: i64 = 15 * 60 * 1000;

/// The sweep: re-checks orders left unsettled longer than `age`, oldest first. Errors are
/// logged per order; the next round tries again.
pub async fn sweep(s: &Services, age: std::time::Duration) -> Result<usize> {
    let before = now_ms() - age.as_millis() as i64;
    let rows = db::orders::unsettled(&s.db, before, 100).await?;
    let mut checked = 0;
    for row in rows {
        let id = OrderId::parse(&row.id)?;
        match sync(s, &id).await {
            Ok(o) => {
                checked += 1;
                tracing::info!(order = %row.id, status = %o.status, "order re-checked at Stripe");
            }
            Err(e) => {
                // Stamped anyway, so orders that cannot be re-checked (a store disconnected)
                // wait their turn instead of taking every round's slots.
                db::orders::touch_synced(&s.db, &id).await?;
                tracing::warn!(order = %row.id, error = %e, "could not re-check order");
            }
        }
    }
    Ok(checked)
}

//! Vendor billing: the platform charges its stores with a Stripe subscription on the platform
//! account (platform key only: a store's own key never pays for this). Stripe's answers and
//! events move the store's vendor status; see `domain::subscription`.

use serde::Serialize;
use serde_json::Value;

use super::{stores, Result, ServiceError, Services};
use crate::db::vendor_subscriptions::{CreateClaim, NewCreation, VendorRow};
use crate::db::{self, now_ms};
use crate::domain::subscription::{ended_reason, Snapshot, Stamp, SubscriptionFacts, VendorStatus};
use crate::domain::{Invalid, StoreId};
use crate::stripe::{AccountScope, IdempotencyKey, StripeError};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SubscriptionView {
    pub object: &'static str,
    pub store_id: String,
    /// The store's standing: pending, trialing, active, past_due, suspended or canceled.
    pub vendor_status: VendorStatus,
    pub subscription_id: Option<String>,
    pub customer_id: Option<String>,
    pub price_id: String,
    /// Stripe's own status of the subscription.
    pub status: Option<String>,
    pub current_period_end: Option<i64>,
    pub trial_end: Option<i64>,
    pub cancel_at_period_end: bool,
    pub ended_reason: Option<String>,
    pub latest_invoice: Option<String>,
    /// When Stripe needs the vendor to act (authenticate or pay), the hosted invoice page.
    pub hosted_invoice_url: Option<String>,
    pub last_payment_error: Option<String>,
}

impl From<VendorRow> for SubscriptionView {
    fn from(r: VendorRow) -> Self {
        Self {
            vendor_status: r.facts().vendor_status(),
            object: "vendor_subscription",
            store_id: r.store_id,
            subscription_id: r.subscription_id,
            customer_id: r.customer_id,
            price_id: r.price_id,
            status: r.status,
            current_period_end: r.current_period_end,
            trial_end: r.trial_end,
            cancel_at_period_end: r.cancel_at_period_end != 0,
            ended_reason: r.ended_reason,
            latest_invoice: r.latest_invoice,
            hosted_invoice_url: r.action_url,
            last_payment_error: r.last_payment_error,
        }
    }
}

/// What a subscription object says, stamped for "newest wins".
pub fn subscription_facts(sub: &Value, at: Stamp) -> SubscriptionFacts {
    let status = sub["status"].as_str().unwrap_or_default().to_owned();
    let item = &sub["items"]["data"][0];
    let reason = sub["cancellation_details"]["reason"].as_str();
    SubscriptionFacts {
        ended: ended_reason(&status, reason),
        snapshot: Some(Snapshot {
            at,
            cancel_at_period_end: sub["cancel_at_period_end"].as_bool().unwrap_or(false),
            current_period_end: sub["current_period_end"]
                .as_i64()
                .or(item["current_period_end"].as_i64()),
            trial_end: sub["trial_end"].as_i64(),
            price: item["price"]["id"]
                .as_str()
                .or(item["plan"]["id"].as_str())
                .map(str::to_owned),
            status,
        }),
    }
}

/// The price must exist, be active and recurring: checked before anything is created. Returns
/// the subscription item's field for it: `price`, or `plan` for a legacy Plan on a Stripe API
/// (or emulator) that has no Price under that id.
async fn check_price(s: &Services, price: &str) -> Result<&'static str> {
    let (p, field): (Value, _) = match s
        .stripe
        .get(AccountScope::Platform, &format!("/v1/prices/{price}"))
        .await
    {
        Ok(p) => (p, "price"),
        Err(e) if e.is_not_found() && !price.starts_with("price_") => {
            let plan: Value = s
                .stripe
                .get(AccountScope::Platform, &format!("/v1/plans/{price}"))
                .await?;
            (plan, "plan")
        }
        Err(e) => return Err(e.into()),
    };
    if p["active"].as_bool() != Some(true) {
        return Err(refused(
            "price_not_usable",
            format!("price {price} is not active"),
        ));
    }
    if field == "price" && !p["recurring"].is_object() {
        return Err(refused(
            "price_not_usable",
            format!("price {price} is not recurring (a subscription needs a recurring price)"),
        ));
    }
    Ok(field)
}

fn refused(code: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Refused {
        code,
        message: message.into(),
    }
}

/// Creates the subscription (and, once, the store's customer), or moves it to another price.
pub async fn put(
    s: &Services,
    store: &StoreId,
    price: &str,
    trial_days: Option<i64>,
) -> Result<SubscriptionView> {
    let store_row = stores::require(s, store).await?;
    // Stripe object ids: a Price (`price_…`) or a legacy Plan, whose id may be chosen freely.
    if price.is_empty()
        || price.len() > 255
        || !price
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(
            Invalid::new("price_id", "must be a Stripe price id (price_…) or plan id").into(),
        );
    }
    if trial_days.is_some_and(|d| !(1..=730).contains(&d)) {
        return Err(Invalid::new("trial_days", "must be between 1 and 730").into());
    }
    let item_field = check_price(s, price).await?;
    let key = format!("{store}:{}", now_ms());
    let new = NewCreation {
        price,
        trial_days,
        key: &key,
    };
    let lease_until = now_ms() + CREATE_LEASE_MS;
    let (row, resumed, token) =
        match db::vendor_subscriptions::claim_create(&s.db, store, &new, lease_until).await? {
            CreateClaim::NoStore => return Err(ServiceError::NotFound("store")),
            CreateClaim::Busy => {
                return Err(ServiceError::Conflict {
                    code: "subscription_pending",
                    message: "another request is creating this store's subscription now; try again once it has answered".into(),
                })
            }
            CreateClaim::Live(row) => {
                let sub = row.subscription_id.clone().unwrap_or_default();
                return change_price(s, store, &row, &sub, price, item_field).await;
            }
            CreateClaim::Create {
                row,
                resumed,
                token,
            } => (row, resumed, token),
        };
    let created = create(s, store, &store_row.name, row, resumed, &token).await;
    // The lease ends with the request; a process that dies holding it loses it at its expiry.
    if let Err(e) = db::vendor_subscriptions::release_create(&s.db, store, &token).await {
        tracing::warn!(store = %store, error = %e, "could not end the subscription creation lease; it expires by itself");
    }
    let row = created?;
    // A creation resumed for another price than it was made with ends at the asked price.
    let sub = row.subscription_id.clone().unwrap_or_default();
    change_price(s, store, &row, &sub, price, item_field).await
}

/// How long a request holds its store's creation lease if its process dies: longer than the
/// Stripe client's retries take. The lease only spaces requests out: a creation is replayed
/// under its one key, so even two requests past the lease make one subscription.
const CREATE_LEASE_MS: i64 = 15 * 60 * 1000;

/// Creates the subscription the record describes (its price, trial and idempotency key, saved
/// before the first attempt), under the store's creation lease. A creation resumed after a lost
/// answer first looks for what it made at Stripe and adopts it; otherwise it is replayed with
/// exactly its first parameters and key, so Stripe answers with the one it made, if any. Never
/// a new key while an earlier one may have made a subscription.
async fn create(
    s: &Services,
    store: &StoreId,
    store_name: &str,
    row: VendorRow,
    resumed: bool,
    token: &str,
) -> Result<VendorRow> {
    let customer = match (&row.customer_id, row.customer_deleted) {
        (Some(c), 0) => c.clone(),
        _ => {
            let form = vec![
                ("name".to_owned(), store_name.to_owned()),
                ("metadata[bursar_store_id]".to_owned(), store.to_string()),
            ];
            let customer: Value = s
                .stripe
                .post(
                    AccountScope::Platform,
                    "/v1/customers",
                    &form,
                    &IdempotencyKey::new("vendor_customer", &row.create_key),
                )
                .await?;
            let id = customer["id"].as_str().unwrap_or_default().to_owned();
            db::vendor_subscriptions::set_customer(&s.db, store, &id).await?;
            id
        }
    };
    let sub = match made_for(s, store, &customer, &row.create_key, resumed).await? {
        // Stripe made it and it has ended since: recorded as ended (never replayed as if live);
        // the next request starts a new one.
        Some(sub) if ended_at_stripe(&sub) => {
            let id = sub["id"].as_str().unwrap_or_default();
            db::vendor_subscriptions::set_subscription(&s.db, store, id, None).await?;
            apply_answer(s, store, &sub).await?;
            return Err(ServiceError::Conflict {
                code: "subscription_ended",
                message: format!(
                    "the subscription an earlier request made ({id}) has ended at Stripe; send the request again to start a new one"
                ),
            });
        }
        Some(sub) => {
            tracing::info!(store = %store, subscription = sub["id"].as_str().unwrap_or_default(), "vendor subscription adopted: Stripe made it, its answer was lost");
            sub
        }
        None => {
            let item_field = match check_price(s, &row.price_id).await {
                Ok(field) => field,
                // The saved price can no longer be used, and nothing was made with it: the
                // creation ends, and the next request starts one with the price it asks for.
                Err(e @ (ServiceError::Refused { .. } | ServiceError::StripeRefused(_)))
                    if resumed =>
                {
                    db::vendor_subscriptions::end_creation(
                        &s.db,
                        store,
                        "creation_abandoned",
                        token,
                    )
                    .await?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            let mut form = vec![
                ("customer".to_owned(), customer),
                (format!("items[0][{item_field}]"), row.price_id.clone()),
                ("metadata[bursar_store_id]".to_owned(), store.to_string()),
                // Names this creation, so only it is ever adopted for this record.
                (
                    "metadata[bursar_create_key]".to_owned(),
                    row.create_key.clone(),
                ),
                // The first invoice comes back with the answer: if it needs the vendor, the URL
                // is known at once (its event may have arrived before this answer).
                ("expand[0]".to_owned(), "latest_invoice".to_owned()),
            ];
            if let Some(d) = row.create_trial_days {
                form.push(("trial_period_days".to_owned(), d.to_string()));
            }
            match s
                .stripe
                .post::<Value>(
                    AccountScope::Platform,
                    "/v1/subscriptions",
                    &form,
                    &IdempotencyKey::new("vendor_subscription", &row.create_key),
                )
                .await
            {
                Ok(sub) => sub,
                // Stripe made nothing and will not for this key: the record holds nothing live.
                Err(e @ StripeError::Api { status, .. })
                    if status < 500 && status != 429 && status != 409 =>
                {
                    db::vendor_subscriptions::end_creation(&s.db, store, "creation_refused", token)
                        .await?;
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let id = sub["id"].as_str().unwrap_or_default();
    let item = sub["items"]["data"][0]["id"].as_str();
    db::vendor_subscriptions::set_subscription(&s.db, store, id, item).await?;
    apply_answer(s, store, &sub).await?;
    tracing::info!(store = %store, subscription = id, price = %row.price_id, "vendor subscription created");
    db::vendor_subscriptions::get(s.db.pool(), store)
        .await?
        .ok_or(ServiceError::NotFound("subscription"))
}

/// For a resumed creation: the subscription Stripe holds for the store's platform customer
/// that this very creation made (`metadata.bursar_create_key`), whatever its status, if any.
async fn made_for(
    s: &Services,
    store: &StoreId,
    customer: &str,
    create_key: &str,
    resumed: bool,
) -> Result<Option<Value>> {
    if !resumed {
        return Ok(None);
    }
    let list: Value = s
        .stripe
        .get(
            AccountScope::Platform,
            &format!("/v1/subscriptions?customer={customer}&status=all&limit=100"),
        )
        .await?;
    Ok(list["data"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|sub| {
            sub["metadata"]["bursar_store_id"] == store.as_str()
                && sub["metadata"]["bursar_create_key"] == create_key
        })
        .cloned())
}

fn ended_at_stripe(sub: &Value) -> bool {
    matches!(
        sub["status"].as_str(),
        Some("canceled" | "incomplete_expired")
    )
}

async fn change_price(
    s: &Services,
    store: &StoreId,
    row: &VendorRow,
    sub: &str,
    price: &str,
    item_field: &str,
) -> Result<SubscriptionView> {
    if row.price_id == price {
        return Ok(row.clone().into());
    }
    let item = row.item_id.clone().ok_or_else(|| {
        refused(
            "subscription_not_ready",
            "the subscription's item is not known yet; try again",
        )
    })?;
    let form = vec![
        ("items[0][id]".to_owned(), item),
        // Stripe's default proration (`create_prorations`) applies: the vendor is credited for
        // the unused time of the old price.
        (format!("items[0][{item_field}]"), price.to_owned()),
    ];
    let answer: Value = s
        .stripe
        .post(
            AccountScope::Platform,
            &format!("/v1/subscriptions/{sub}"),
            &form,
            // From, to and the snapshot it changes: A→B→A→B are four operations, not two.
            &IdempotencyKey::new(
                "vendor_subscription_price",
                &format!(
                    "{sub}:{}:{price}:{}",
                    row.price_id,
                    row.snapshot_seq.unwrap_or(0)
                ),
            ),
        )
        .await?;
    apply_answer(s, store, &answer).await?;
    get(s, store).await
}

/// Stripe's answer is Stripe's word: merged like an event, stamped with the time it was given.
async fn apply_answer(s: &Services, store: &StoreId, sub: &Value) -> Result<()> {
    let mut tx = s.db.begin_write().await?;
    if let Some(row) = db::vendor_subscriptions::get_locked(&mut tx, store.as_str()).await? {
        // Stripe's answer is newer than every event received before it (and than earlier
        // answers) and older than every event received after: stamped with the inbox's newest
        // sequence number now, and a tick that only grows.
        let newest: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
            .fetch_one(&mut *tx)
            .await
            .map_err(db::DbError::from)?;
        let tick = now_ms().max(row.snapshot_tick + 1);
        let facts = subscription_facts(sub, (now_ms() / 1000, newest, tick));
        let item = sub["items"]["data"][0]["id"].as_str();
        let subscription = sub["id"].as_str().unwrap_or_default();
        let merged =
            db::vendor_subscriptions::merge(&mut tx, store.as_str(), subscription, &facts, item)
                .await?;
        let applied = merged.is_some();
        if let Some((before, after)) = merged {
            vendor_status_moved(&mut tx, before, after).await?;
        }
        let invoice = &sub["latest_invoice"];
        if let (true, Some(id)) = (applied, invoice["id"].as_str()) {
            let open = invoice["status"].as_str() == Some("open");
            let url = invoice["hosted_invoice_url"].as_str().filter(|_| open);
            let error = open.then(|| invoice_error(invoice));
            db::vendor_subscriptions::set_invoice(
                &mut tx,
                store.as_str(),
                subscription,
                id,
                url,
                error.as_deref(),
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

pub async fn get(s: &Services, store: &StoreId) -> Result<SubscriptionView> {
    stores::require(s, store).await?;
    Ok(db::vendor_subscriptions::get(s.db.pool(), store)
        .await?
        .ok_or(ServiceError::NotFound("subscription"))?
        .into())
}

/// Cancels at the end of the period (the vendor keeps what it paid for), or now.
pub async fn cancel(s: &Services, store: &StoreId, now: bool) -> Result<SubscriptionView> {
    stores::require(s, store).await?;
    let row = db::vendor_subscriptions::get(s.db.pool(), store)
        .await?
        .ok_or(ServiceError::NotFound("subscription"))?;
    let (Some(sub), None) = (&row.subscription_id, &row.ended_reason) else {
        return Err(ServiceError::Conflict {
            code: "subscription_not_active",
            message: "the store has no running subscription to cancel".into(),
        });
    };
    let answer: Value = if now {
        s.stripe
            .delete(
                AccountScope::Platform,
                &format!("/v1/subscriptions/{sub}"),
                &IdempotencyKey::new("vendor_subscription_cancel", sub),
            )
            .await?
    } else {
        s.stripe
            .post(
                AccountScope::Platform,
                &format!("/v1/subscriptions/{sub}"),
                &[("cancel_at_period_end".to_owned(), "true".to_owned())],
                &IdempotencyKey::new("vendor_subscription_cancel_at_period_end", sub),
            )
            .await?
    };
    apply_answer(s, store, &answer).await?;
    get(s, store).await
}

/// Before a forced deletion: the store's subscription ended at Stripe, whatever state its
/// record is in. A creation in flight is waited for (409); one whose answer was lost is looked
/// up and, if Stripe made it, adopted and canceled; otherwise it never existed.
pub async fn end_for_deletion(s: &Services, store: &StoreId) -> Result<()> {
    let Some(row) = db::vendor_subscriptions::get(s.db.pool(), store).await? else {
        return Ok(());
    };
    if row.ended_reason.is_some() {
        return Ok(());
    }
    if row.subscription_id.is_none() {
        // The store's creation lease, so no request creates meanwhile.
        let pending = || {
            ServiceError::Conflict {
            code: "subscription_pending",
            message: "the store's vendor subscription is being created now; try again once it has answered".into(),
        }
        };
        let token = db::vendor_subscriptions::take_lease(&s.db, store, now_ms() + CREATE_LEASE_MS)
            .await?
            .ok_or_else(pending)?;
        let settled = settle_lost_creation(s, store, &row, &token).await;
        if let Err(e) = db::vendor_subscriptions::release_create(&s.db, store, &token).await {
            tracing::warn!(store = %store, error = %e, "could not end the subscription creation lease; it expires by itself");
        }
        if !settled? {
            return Ok(());
        }
    }
    cancel(s, store, true).await?;
    Ok(())
}

/// Under the lease: a creation whose answer was lost is looked up; true if Stripe made it
/// (now adopted, to be canceled), false if not (the record ends: nothing was made).
async fn settle_lost_creation(
    s: &Services,
    store: &StoreId,
    row: &VendorRow,
    token: &str,
) -> Result<bool> {
    let found = match (&row.customer_id, row.customer_deleted) {
        (Some(c), 0) => made_for(s, store, c, &row.create_key, true).await?,
        _ => None,
    };
    let Some(sub) = found else {
        db::vendor_subscriptions::end_creation(&s.db, store, "creation_abandoned", token).await?;
        return Ok(false);
    };
    let id = sub["id"].as_str().unwrap_or_default();
    db::vendor_subscriptions::set_subscription(&s.db, store, id, None).await?;
    apply_answer(s, store, &sub).await?;
    Ok(!ended_at_stripe(&sub))
}

/// After a merge into a vendor subscription in `conn`'s transaction: a move of the store's
/// vendor status is told to the platform's app in that same transaction.
pub async fn vendor_status_moved(
    conn: &mut sqlx::AnyConnection,
    before: VendorStatus,
    after: VendorRow,
) -> Result<()> {
    let now = after.facts().vendor_status();
    if now == before {
        return Ok(());
    }
    let event_type = match now {
        VendorStatus::Suspended => "vendor_subscription.suspended",
        VendorStatus::Canceled => "vendor_subscription.canceled",
        _ => "vendor_subscription.updated",
    };
    let store = after.store_id.clone();
    let view = SubscriptionView::from(after);
    super::notifications::emit(conn, event_type, Some(&store), &view).await
}

/// Whether the store may take new orders under `BURSAR_SUSPENDED_STORES_CAN_SELL`.
pub async fn may_sell(s: &Services, store: &StoreId) -> Result<()> {
    if s.config.suspended_stores_can_sell {
        return Ok(());
    }
    let suspended = db::vendor_subscriptions::get(s.db.pool(), store)
        .await?
        .is_some_and(|r| r.facts().vendor_status() == VendorStatus::Suspended);
    if suspended {
        return Err(ServiceError::Conflict {
            code: "store_suspended",
            message: "the store is suspended: Stripe cancelled its vendor subscription after failed payments, and this platform does not let suspended stores sell (BURSAR_SUSPENDED_STORES_CAN_SELL=false)".into(),
        });
    }
    Ok(())
}

/// Why an invoice's payment failed, in Stripe's words.
pub fn invoice_error(invoice: &Value) -> String {
    invoice["payment_intent"]["last_payment_error"]["message"]
        .as_str()
        .or(invoice["last_payment_error"]["message"].as_str())
        .unwrap_or("the payment failed")
        .to_owned()
}

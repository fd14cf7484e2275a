//! Refunds of an order: asked for at Stripe under the refund's own idempotency key, settled
//! when an answer was lost (looked up before being asked again), and read back while Stripe
//! has not finished with them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::orders::{conflict, key_reused, order_scope};
use super::{Result, ServiceError, Services};
use crate::db::orders::{OrderRow, RefundRow};
use crate::db::{self, now_ms};
use crate::domain::order::{parse_amount, ChargedThrough, Currency};
use crate::domain::split::ChargeType;
use crate::domain::{Invalid, OrderId, RefundId, RequestKey};
use crate::stripe::{IdempotencyKey, StripeError};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RefundView {
    pub id: String,
    pub object: &'static str,
    pub order_id: String,
    pub amount: i64,
    pub reason: Option<String>,
    pub status: String,
    pub stripe_refund_id: Option<String>,
    pub created: i64,
}

impl From<RefundRow> for RefundView {
    fn from(r: RefundRow) -> Self {
        Self {
            id: r.id,
            object: "refund",
            order_id: r.order_id,
            amount: r.amount,
            reason: r.reason,
            status: r.status,
            stripe_refund_id: r.stripe_refund_id,
            created: r.created_at / 1000,
        }
    }
}

/// Every refund asked for on the order, oldest first.
pub async fn of_order(s: &Services, id: &OrderId) -> Result<Vec<RefundView>> {
    Ok(db::orders::refunds_of(&s.db, id)
        .await?
        .into_iter()
        .map(RefundView::from)
        .collect())
}

const REFUND_REASONS: [&str; 3] = ["duplicate", "fraudulent", "requested_by_customer"];

/// Refunds all that is left, or `amount`. Refused before Stripe is called when the order is not
/// paid or the amount is more than what is left (counting refunds asked for and not refused).
///
/// Refunds whose answer never came (Stripe failed or timed out on every try) are settled
/// first: looked up at Stripe by their own id, adopted if Stripe made them, otherwise asked for
/// again under their own idempotency key. A request for the same amount as such a refund made
/// without a key is that refund asked again (its key, if it has one, is bound to it), so a lost
/// answer never makes a second refund.
pub async fn refund(
    s: &Services,
    id: &OrderId,
    amount: Option<i64>,
    reason: Option<String>,
    request_key: Option<&RequestKey>,
) -> Result<RefundView> {
    let order = db::orders::get(&s.db, id)
        .await?
        .ok_or(ServiceError::NotFound("order"))?;
    // A retried request (same Idempotency-Key and body) resumes its refund: the same refund id,
    // so the same Stripe idempotency key, so never a second refund at Stripe.
    if let Some(key) = request_key {
        if let Some(row) = db::orders::refund_by_request_key(&s.db, &order.id, &key.key).await? {
            if !key.same_request(row.request_hash.as_deref()) {
                return Err(key_reused());
            }
            if row.stripe_refund_id.is_some() || row.status == "failed" {
                return Ok(row.into());
            }
            return resume_refund(s, &order, row).await;
        }
    }
    if !matches!(order.status.as_str(), "paid" | "partially_refunded") {
        return Err(conflict(
            "order_not_refundable",
            &format!(
                "only a paid order can be refunded; this one is {}",
                order.status
            ),
        ));
    }
    if let Some(r) = &reason {
        if !REFUND_REASONS.contains(&r.as_str()) {
            return Err(Invalid::new(
                "reason",
                "must be duplicate, fraudulent or requested_by_customer",
            )
            .into());
        }
    }
    let currency = Currency::parse(&order.currency)?;
    let amount = match amount {
        Some(a) => parse_amount("refund amount", a, &currency)?,
        None => order.amount - order.amount_refunded,
    };
    let unanswered = db::orders::unanswered_refunds(&s.db, &order.id).await?;
    let asked_again = unanswered
        .iter()
        .find(|r| r.request_key.is_none() && r.amount == amount && r.reason == reason);
    if let Some(same) = asked_again {
        let bound = match request_key {
            Some(key) => {
                db::orders::bind_refund_key(&s.db, &RefundId::parse(&same.id)?, key).await?
            }
            None => true,
        };
        if bound {
            return resume_refund(s, &order, same.clone()).await;
        }
    }
    for row in unanswered {
        if let Err(e) = resume_refund(s, &order, row).await {
            tracing::warn!(order = %order.id, error = %e, "an earlier refund is still unanswered; it stays counted");
        }
    }
    let refund_id = RefundId::generate();
    let row = db::orders::insert_refund(&s.db, &order, &refund_id, amount, reason.as_deref(), request_key)
        .await?
        .ok_or_else(|| {
            ServiceError::Invalid(Invalid::new(
                "amount",
                "is more than what is left to refund on this order (counting refunds already requested)",
            ))
        })?;
    send_refund(s, &order, row).await
}

/// How long Stripe keeps an idempotency key: past it, a refund Stripe has no trace of was
/// never made, and asking again under its key could make it now, twice over.
const STRIPE_KEY_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// Settles a refund whose answer never came: adopted if Stripe made it (found by its
/// `bursar_refund_id`), else asked for again under its own key while Stripe still knows that
/// key, else released. Never a blind second request.
async fn resume_refund(s: &Services, order: &OrderRow, row: RefundRow) -> Result<RefundView> {
    let refund_id = RefundId::parse(&row.id)?;
    let scope = order_scope(s, order).await?;
    let pi = order.payment_intent_id.clone().unwrap_or_default();
    let list: Value = s
        .stripe
        .get(
            scope.scope(),
            &format!("/v1/refunds?payment_intent={pi}&limit=100"),
        )
        .await?;
    let made = list["data"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["metadata"]["bursar_refund_id"] == row.id.as_str());
    if let Some(made) = made {
        let stripe_id = made["id"].as_str().unwrap_or_default().to_owned();
        let status = made["status"].as_str().unwrap_or("pending").to_owned();
        db::orders::finish_refund(&s.db, &refund_id, Some(&stripe_id), &status).await?;
        tracing::info!(order = %order.id, refund = %refund_id, stripe_refund = %stripe_id, "refund found at Stripe: its answer had been lost");
        return Ok(RefundView {
            stripe_refund_id: Some(stripe_id),
            status,
            ..row.into()
        });
    }
    let age = now_ms() - row.created_at;
    let quiet = now_ms() - row.attempted_at.unwrap_or(row.created_at);
    if age <= STRIPE_KEY_WINDOW_MS - SETTLE_MARGIN_MS {
        return send_refund(s, order, row).await;
    }
    // Past the key's window, and long after its last attempt could have landed: never made.
    if age > STRIPE_KEY_WINDOW_MS && quiet > SETTLE_MARGIN_MS {
        db::orders::finish_refund(&s.db, &refund_id, None, "failed").await?;
        return Err(conflict(
            "refund_not_made",
            "Stripe has no trace of this refund a day after it was asked for: it was never made, and its amount is free again",
        ));
    }
    // Too close to the key's end to ask again safely, too early to call it never made.
    Err(conflict(
        "refund_unconfirmed",
        "Stripe has not confirmed this refund yet; Bursar looks it up again shortly",
    ))
}

/// Stripe's key window is not met to the second: re-sending stops this long before it ends,
/// and a refund is called never made only this long after its last attempt (longer than a
/// call and its retries take).
const SETTLE_MARGIN_MS: i64 = 3600 * 1000;

/// Asks Stripe for a recorded refund, with the refund's own idempotency key. Stripe's refusal
/// (a 4xx other than a key still in use) releases its amount: under this key Stripe made
/// nothing, or it would have answered with it. No answer (5xx, timeout) leaves it counted and
/// unanswered, for the next request or the sweep to settle.
async fn send_refund(s: &Services, order: &OrderRow, row: RefundRow) -> Result<RefundView> {
    let refund_id = RefundId::parse(&row.id)?;
    let amount = row.amount;
    let reason = row.reason.clone();
    let scope = match order_scope(s, order).await {
        Ok(found) => found,
        // Never sent: nothing can exist at Stripe. Sent before: it may, so it stays counted.
        Err(e) if row.attempted_at.is_none() => {
            db::orders::finish_refund(&s.db, &refund_id, None, "failed").await?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let mut form: Vec<(String, String)> = vec![
        (
            "payment_intent".into(),
            order.payment_intent_id.clone().unwrap_or_default(),
        ),
        ("amount".into(), amount.to_string()),
        ("metadata[bursar_order_id]".into(), order.id.clone()),
        ("metadata[bursar_refund_id]".into(), refund_id.to_string()),
    ];
    if let Some(r) = &reason {
        form.push(("reason".into(), r.clone()));
    }
    match order.charge_type() {
        // Stripe takes the store's share back from its account, and the platform's fee.
        ChargeType::Destination => {
            form.push(("reverse_transfer".into(), "true".into()));
            form.push(("refund_application_fee".into(), "true".into()));
        }
        ChargeType::Direct
            if order.connection_kind == ChargedThrough::Connect
                && order.application_fee_amount.is_some() =>
        {
            form.push(("refund_application_fee".into(), "true".into()));
        }
        // A multi-vendor order's transfers are reversed by Bursar once Stripe says the refund
        // is made (`transfers`); a direct charge of a keys store has no fee.
        _ => {}
    }
    #[derive(Deserialize)]
    struct Created {
        id: String,
        status: Option<String>,
    }
    db::orders::touch_refund(&s.db, &refund_id).await?;
    match s
        .stripe
        .post::<Created>(
            scope.scope(),
            "/v1/refunds",
            &form,
            &IdempotencyKey::new("refund", refund_id.as_str()),
        )
        .await
    {
        Ok(r) => {
            let status = r.status.unwrap_or_else(|| "pending".into());
            db::orders::finish_refund(&s.db, &refund_id, Some(&r.id), &status).await?;
            tracing::info!(order = %order.id, refund = %refund_id, stripe_refund = %r.id, amount, "refund created");
            Ok(RefundView {
                stripe_refund_id: Some(r.id),
                status,
                ..row.into()
            })
        }
        Err(e @ StripeError::Api { status, .. })
            if status < 500 && status != 429 && status != 409 =>
        {
            db::orders::finish_refund(&s.db, &refund_id, None, "failed").await?;
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Settles refunds Stripe has not finished with: an unanswered one is resumed (looked up, then
/// asked again under its own key), one Stripe answered `pending` is read back. Each is claimed
/// first, so one process's sweep settles it. Returns how many were settled.
pub async fn sweep_refunds(s: &Services, age: std::time::Duration) -> Result<usize> {
    let before = now_ms() - age.as_millis() as i64;
    let mut settled = 0;
    for row in db::orders::refunds_to_settle(&s.db, before, 100).await? {
        let refund_id = RefundId::parse(&row.id)?;
        if !db::orders::claim_refund(&s.db, &refund_id, before).await? {
            continue;
        }
        let Some(order) = db::orders::get(&s.db, &OrderId::parse(&row.order_id)?).await? else {
            continue;
        };
        let outcome = match &row.stripe_refund_id {
            None => resume_refund(s, &order, row.clone()).await.map(|_| ()),
            Some(stripe_id) => recheck_refund(s, &order, &refund_id, stripe_id).await,
        };
        match outcome {
            Ok(()) => settled += 1,
            Err(e) => {
                tracing::warn!(refund = %row.id, error = %e, "could not settle refund; next round retries");
            }
        }
    }
    Ok(settled)
}

/// Reads a refund back from Stripe and records its status.
async fn recheck_refund(
    s: &Services,
    order: &OrderRow,
    refund_id: &RefundId,
    stripe_id: &str,
) -> Result<()> {
    let scope = order_scope(s, order).await?;
    let refund: Value = s
        .stripe
        .get(scope.scope(), &format!("/v1/refunds/{stripe_id}"))
        .await?;
    let status = refund["status"].as_str().unwrap_or("pending");
    db::orders::finish_refund(&s.db, refund_id, None, status).await?;
    Ok(())
}

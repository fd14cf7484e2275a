//! A multi-vendor order's money movement (separate charges and transfers): once Stripe says
//! the order is paid, one transfer per split from the order's charge; once Stripe says more of
//! it was refunded, each split's share reversed.
//!
//! Every transfer and reversal is a row saved before Stripe is called, and its Stripe
//! idempotency key is derived from that row (`bursar:transfer:<order>:<store>`,
//! `bursar:transfer_reversal:<order>:<store>:<refunded level>`). A row is claimed before each
//! call, so duplicated events, the worker, a re-check, a crash and other processes all make the
//! one request under the one key. Past Stripe's key window the key no longer guards, so an
//! attempt that old looks for what it made (by the order's `transfer_group`, or the transfer's
//! reversals) before asking again.

use serde::Deserialize;
use serde_json::Value;
use sqlx::AnyConnection;
use tokio_util::sync::CancellationToken;

use super::{Result, Services};
use crate::db::transfers::{Answer, DueReversal, DueTransfer, TransferRow};
use crate::db::{self, now_ms};
use crate::domain::OrderId;
use crate::stripe::{AccountScope, IdempotencyKey, StripeError};

/// How long a claim holds a row: longer than a call to Stripe with all its retries, so a
/// claim is only ever taken over from a process that stopped.
fn lease_ms(s: &Services) -> i64 {
    let c = &s.config.stripe;
    let tries = i64::from(c.max_retries) + 1;
    let backoff = c.retry_base.as_millis() as i64 * (1_i64 << c.max_retries.min(10));
    tries * c.timeout.as_millis() as i64 + 2 * backoff + 5_000
}

/// An attempt older than this may have outlived its Stripe idempotency key (24 h, less a
/// margin): what it made is looked for before asking again.
const KEY_TRUSTED_MS: i64 = 23 * 3600 * 1000;

/// How often the worker looks for transfers and reversals that are due.
const POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Makes what is due until `stop`.
pub async fn run(s: Services, stop: CancellationToken) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = settle_due(&s, None).await {
                    tracing::warn!(error = %e, "transfers: a round failed; the next one retries");
                }
            }
        }
    }
}

/// Makes the transfers and reversals that are due (of one order, or all), each under its
/// claim. Returns how many Stripe answered.
pub async fn settle_due(s: &Services, order: Option<&OrderId>) -> Result<usize> {
    let mut answered = 0;
    for t in db::transfers::due(&s.db, order, lease_ms(s), 50).await? {
        match make_transfer(s, &t).await {
            Ok(true) => answered += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(order = %t.order_id, store = %t.store_id, error = %e, "transfer not made yet; retried later")
            }
        }
    }
    for r in db::transfers::due_reversals(&s.db, order, lease_ms(s), 50).await? {
        match reverse(s, &r).await {
            Ok(true) => answered += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(order = %r.order_id, store = %r.store_id, error = %e, "reversal not made yet; retried later")
            }
        }
    }
    Ok(answered)
}

/// One order's due transfers and reversals, now (a re-check's follow-up).
pub async fn settle_order(s: &Services, id: &OrderId) -> Result<()> {
    settle_due(s, Some(id)).await.map(|_| ())
}

#[derive(Deserialize)]
struct StripeTransfer {
    id: String,
    #[serde(default)]
    amount_reversed: i64,
}

/// Makes one split's transfer. False if another holds its claim.
async fn make_transfer(s: &Services, t: &DueTransfer) -> Result<bool> {
    let Some(claim) = db::transfers::claim(&s.db, &t.order_id, &t.store_id, lease_ms(s)).await?
    else {
        return Ok(false);
    };
    let (amount, by) = (claim.amount, Answer::Attempt(claim.generation));
    if amount == 0 {
        tracing::info!(order = %t.order_id, store = %t.store_id, "the split was refunded whole before its transfer: nothing to send");
        record_transfer(s, t, by, Ok(("", 0))).await?;
        return Ok(true);
    }
    if now_ms() - claim.first_attempt_at > KEY_TRUSTED_MS {
        if let Some(made) = find_transfer(s, &t.order_id, &t.store_id).await? {
            tracing::info!(order = %t.order_id, store = %t.store_id, transfer = %made.id, "transfer found at Stripe: its answer had been lost");
            record_transfer(s, t, Answer::Found, Ok((&made.id, made.amount_reversed))).await?;
            return Ok(true);
        }
    }
    let mut form: Vec<(String, String)> = vec![
        ("amount".into(), amount.to_string()),
        ("currency".into(), t.currency.clone()),
        ("destination".into(), t.account_id.clone()),
        ("source_transaction".into(), t.latest_charge.clone()),
        ("transfer_group".into(), t.order_id.clone()),
        ("metadata[bursar_order_id]".into(), t.order_id.clone()),
        ("metadata[bursar_store_id]".into(), t.store_id.clone()),
    ];
    if let Some(d) = &t.description {
        form.push(("description".into(), d.clone()));
    }
    let key = IdempotencyKey::new(
        "transfer",
        &generation(format!("{}:{}", t.order_id, t.store_id), claim.generation),
    );
    match s
        .stripe
        .post::<StripeTransfer>(AccountScope::Platform, "/v1/transfers", &form, &key)
        .await
    {
        Ok(made) => {
            tracing::info!(order = %t.order_id, store = %t.store_id, transfer = %made.id, amount, "transfer created");
            record_transfer(s, t, by, Ok((&made.id, made.amount_reversed))).await?;
            Ok(true)
        }
        Err(e) if refused(&e) => {
            tracing::warn!(order = %t.order_id, store = %t.store_id, error = %e, "Stripe refused the transfer");
            record_transfer(s, t, by, Err(&e.to_string())).await?;
            Ok(true)
        }
        Err(e) => Err(e.into()),
    }
}

/// A row's key: its own, or after `n` refusals asked again, its `n`th successor.
fn generation(base: String, n: i64) -> String {
    if n == 0 {
        base
    } else {
        format!("{base}:{n}")
    }
}

/// Stripe said no, so under this key it made nothing: a 4xx in Stripe's own error envelope.
/// A key still in use, a rate limit, a timeout, Stripe's own failures, an idempotency error
/// (the key was used with other parameters: what it made is unknown) and any answer not in
/// Stripe's shape (a proxy's, say) are no answer.
fn refused(e: &StripeError) -> bool {
    match e {
        StripeError::Api {
            status,
            kind: Some(kind),
            ..
        } => kind != "idempotency_error" && *status < 500 && ![408, 409, 429].contains(status),
        _ => false,
    }
}

/// The transfer an earlier attempt made, found by the order's group and its metadata.
async fn find_transfer(s: &Services, order: &str, store: &str) -> Result<Option<StripeTransfer>> {
    let list: Value = s
        .stripe
        .get(
            AccountScope::Platform,
            &format!("/v1/transfers?transfer_group={order}&limit=100"),
        )
        .await?;
    let found = list["data"].as_array().into_iter().flatten().find(|tr| {
        tr["metadata"]["bursar_order_id"] == order && tr["metadata"]["bursar_store_id"] == store
    });
    Ok(found.and_then(|tr| serde_json::from_value(tr.clone()).ok()))
}

/// The reversal an earlier attempt made, found among the transfer's by its metadata.
async fn find_reversal(s: &Services, r: &DueReversal) -> Result<Option<String>> {
    let list: Value = s
        .stripe
        .get(
            AccountScope::Platform,
            &format!("/v1/transfers/{}/reversals?limit=100", r.stripe_transfer_id),
        )
        .await?;
    let level = r.refunded_to.to_string();
    let found = list["data"].as_array().into_iter().flatten().find(|x| {
        x["metadata"]["bursar_order_id"] == r.order_id.as_str()
            && x["metadata"]["bursar_refunded_to"] == level.as_str()
    });
    Ok(found.and_then(|x| x["id"].as_str().map(str::to_owned)))
}

/// Before asking again for what Stripe refused (an operator's re-check, the cause fixed): what
/// Stripe holds after all is recorded; the rest is asked for again under a new key.
pub async fn retry_refused(s: &Services, order: &OrderId) -> Result<()> {
    for t in db::transfers::refused_transfers(&s.db, order).await? {
        match find_transfer(s, &t.order_id, &t.store_id).await? {
            Some(made) => {
                let mut tx = s.db.begin_write().await?;
                let found = Ok((made.id.as_str(), made.amount_reversed));
                recorded(s, &mut tx, &t.order_id, &t.store_id, Answer::Found, found).await?;
                tx.commit().await?;
            }
            None => db::transfers::retry_transfer(&s.db, &t.order_id, &t.store_id).await?,
        }
    }
    for r in db::transfers::refused_reversals(&s.db, order).await? {
        match find_reversal(s, &r).await? {
            Some(id) => record_reversal(s, &r, Answer::Found, Ok(&id)).await?,
            None => db::transfers::retry_reversal(&s.db, &r).await?,
        }
    }
    Ok(())
}

/// Records Stripe's answer (see `recorded`).
async fn record_transfer(
    s: &Services,
    t: &DueTransfer,
    by: Answer,
    made: std::result::Result<(&str, i64), &str>,
) -> Result<()> {
    let mut tx = s.db.begin_write().await?;
    recorded(s, &mut tx, &t.order_id, &t.store_id, by, made).await?;
    tx.commit().await?;
    Ok(())
}

/// Records a split's transfer under the order's row lock, in `conn`'s transaction; the answer
/// that completes the order's transfers tells the platform `order.transferred`, once.
async fn recorded(
    s: &Services,
    conn: &mut AnyConnection,
    order: &str,
    store: &str,
    by: Answer,
    made: std::result::Result<(&str, i64), &str>,
) -> Result<()> {
    let Some(row) = db::orders::lock(&mut *conn, order).await? else {
        return Ok(());
    };
    let first = db::transfers::finish(&mut *conn, order, store, by, made).await?;
    let all = db::transfers::for_order(&mut *conn, order).await?;
    let settled = |x: &TransferRow| x.status == "created" || x.status == "canceled";
    if first && made.is_ok() && all.iter().all(settled) {
        super::order_view::order_told(s, conn, row, "order.transferred").await?;
    }
    Ok(())
}

/// A transfer as Stripe's event describes it.
pub struct Made<'a> {
    pub order: &'a str,
    pub store: &'a str,
    pub transfer: &'a str,
    pub destination: &'a str,
    pub amount: i64,
    pub source: &'a str,
    pub reversed: i64,
}

/// Adopts a transfer Stripe made for a split still waiting for its answer (the answer was
/// lost): only if it is that split's transfer exactly.
pub async fn adopt(s: &Services, conn: &mut AnyConnection, m: &Made<'_>) -> Result<()> {
    // Read under the order's lock, which `recorded` takes again: the match and the record
    // see the same row.
    let Some(row) = db::orders::lock(&mut *conn, m.order).await? else {
        return Ok(());
    };
    let split = db::transfers::for_order(&mut *conn, m.order)
        .await?
        .into_iter()
        .find(|t| t.store_id == m.store);
    let matches = split.is_some_and(|t| {
        t.stripe_transfer_id.is_none()
            && t.account_id == m.destination
            && t.sent_amount.unwrap_or(t.amount) == m.amount
            && row.latest_charge.as_deref() == Some(m.source)
    });
    if matches {
        tracing::info!(
            order = m.order,
            store = m.store,
            transfer = m.transfer,
            "transfer adopted from Stripe's event: its answer had been lost"
        );
        let found = Ok((m.transfer, m.reversed));
        recorded(s, conn, m.order, m.store, Answer::Found, found).await?;
    }
    Ok(())
}

#[derive(Deserialize)]
struct StripeReversal {
    id: String,
}

/// Makes one planned reversal. False if another holds its claim.
async fn reverse(s: &Services, r: &DueReversal) -> Result<bool> {
    let Some(claim) = db::transfers::claim_reversal(&s.db, r, lease_ms(s)).await? else {
        return Ok(false);
    };
    let by = Answer::Attempt(claim.generation);
    let level = r.refunded_to.to_string();
    if now_ms() - claim.first_attempt_at > KEY_TRUSTED_MS {
        if let Some(id) = find_reversal(s, r).await? {
            record_reversal(s, r, Answer::Found, Ok(&id)).await?;
            return Ok(true);
        }
    }
    let form: Vec<(String, String)> = vec![
        ("amount".into(), r.amount.to_string()),
        ("metadata[bursar_order_id]".into(), r.order_id.clone()),
        ("metadata[bursar_store_id]".into(), r.store_id.clone()),
        ("metadata[bursar_refunded_to]".into(), level.clone()),
    ];
    let key = IdempotencyKey::new(
        "transfer_reversal",
        &generation(
            format!("{}:{}:{level}", r.order_id, r.store_id),
            claim.generation,
        ),
    );
    match s
        .stripe
        .post::<StripeReversal>(
            AccountScope::Platform,
            &format!("/v1/transfers/{}/reversals", r.stripe_transfer_id),
            &form,
            &key,
        )
        .await
    {
        Ok(made) => {
            tracing::info!(order = %r.order_id, store = %r.store_id, reversal = %made.id, amount = r.amount, "transfer reversed");
            record_reversal(s, r, by, Ok(&made.id)).await?;
            Ok(true)
        }
        Err(e) if refused(&e) => {
            tracing::warn!(order = %r.order_id, store = %r.store_id, error = %e, "Stripe refused the reversal");
            record_reversal(s, r, by, Err(&e.to_string())).await?;
            Ok(true)
        }
        Err(e) => Err(e.into()),
    }
}

async fn record_reversal(
    s: &Services,
    r: &DueReversal,
    by: Answer,
    made: std::result::Result<&str, &str>,
) -> Result<()> {
    let mut tx = s.db.begin_write().await?;
    db::transfers::finish_reversal(&mut tx, r, by, made).await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, kind: Option<&str>) -> StripeError {
        StripeError::Api {
            status,
            kind: kind.map(str::to_owned),
            code: None,
            message: "no".into(),
        }
    }

    #[test]
    fn only_stripes_own_refusal_counts_as_nothing_made() {
        assert!(refused(&api(400, Some("invalid_request_error"))));
        assert!(refused(&api(402, Some("card_error"))));
        // No answer: what Stripe did under the key is unknown.
        assert!(!refused(&api(400, Some("idempotency_error"))));
        assert!(
            !refused(&api(400, None)),
            "a 4xx not in Stripe's shape (a proxy's)"
        );
        for status in [408, 409, 429, 500, 503] {
            assert!(!refused(&api(status, Some("api_error"))), "{status}");
        }
        assert!(!refused(&StripeError::Network("reset".into())));
    }

    #[test]
    fn a_key_keeps_its_name_until_asked_again() {
        assert_eq!(generation("ord_1:st_1".into(), 0), "ord_1:st_1");
        assert_eq!(generation("ord_1:st_1".into(), 2), "ord_1:st_1:2");
    }
}

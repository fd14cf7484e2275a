//! Per-account balances and payouts. A balance is worked out from what moved money in the
//! account: its charges less refunds, application fees paid or received (less their refunds),
//! transfers sent or received (less their reversals), and payouts not failed or canceled. The
//! local Stripe has no settlement delay and takes no processing fees, so every net amount is
//! `available` at once; `pending` is zero.
//!
//! `POST /v1/payouts` pays out of the available balance (`balance_insufficient` otherwise);
//! `StripeSim::settle_payout` plays the bank's answer (`payout.paid`, or `payout.failed` with
//! Stripe's failure code and message).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use crate::events::{emit_all, Pending};
use crate::http::{ok, ApiError, ApiResult, Form};
use crate::objects::{acting, owned};
use crate::params::{self, reject_unknown};
use crate::payments::id;
use crate::state::{now, Sim, State as SimState, PLATFORM_ACCOUNT};

pub(crate) fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/v1/payouts", post(create))
        .route("/v1/payouts/{id}", owned("payout"))
}

/// What `owner` holds, per currency.
pub(crate) fn available(state: &SimState, owner: &str) -> BTreeMap<String, i64> {
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    let mut add = |currency: &Value, amount: i64| {
        *out.entry(currency.as_str().unwrap_or("usd").to_owned())
            .or_default() += amount;
    };
    let net = |o: &Value, of: &str, less: &str| {
        o[of].as_i64().unwrap_or(0) - o[less].as_i64().unwrap_or(0)
    };
    for ((holder, oid), o) in &state.objects {
        match o["object"].as_str() {
            // A transfer's payment (`py_…`) is counted as the transfer, below.
            Some("charge") if holder == owner && o["paid"] == true && !oid.starts_with("py_") => {
                add(&o["currency"], net(o, "amount", "amount_refunded"))
            }
            Some("application_fee") => {
                let fee = net(o, "amount", "amount_refunded");
                if holder == owner {
                    add(&o["currency"], fee);
                }
                if o["account"] == owner {
                    add(&o["currency"], -fee);
                }
            }
            Some("transfer") => {
                let moved = net(o, "amount", "amount_reversed");
                if holder == owner {
                    add(&o["currency"], -moved);
                }
                if o["destination"] == owner {
                    add(&o["currency"], moved);
                }
            }
            Some("payout")
                if holder == owner
                    && !matches!(o["status"].as_str(), Some("failed" | "canceled")) =>
            {
                add(&o["currency"], -o["amount"].as_i64().unwrap_or(0));
            }
            _ => {}
        }
    }
    out
}

/// The `balance` object of `owner`.
pub(crate) fn balance(state: &SimState, owner: &str, livemode: bool) -> Value {
    let funds = available(state, owner);
    let amounts = |zero: bool| -> Vec<Value> {
        funds
            .iter()
            .map(|(currency, amount)| {
                let amount = if zero { 0 } else { *amount };
                json!({"amount": amount, "currency": currency, "source_types": {"card": amount}})
            })
            .collect()
    };
    json!({
        "object": "balance",
        "available": amounts(false),
        "pending": amounts(true),
        "connect_reserved": [],
        "livemode": livemode,
    })
}

async fn create(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let form = Form::parse(&body);
    reject_unknown(&form, &["amount", "currency", "description", "metadata"])?;
    let amount = params::positive(&form, "amount")?.ok_or_else(|| ApiError::missing("amount"))?;
    let currency = params::currency(&form, "currency")?;
    let metadata = params::metadata(&form, "metadata")?;
    let payout = {
        let mut state = sim.lock();
        let has = available(&state, &acting.owner)
            .get(&currency)
            .copied()
            .unwrap_or(0);
        if has < amount {
            return Err(ApiError::invalid(format!(
                "You have insufficient funds in your Stripe account for this payout: {has} {currency} is available."
            ))
            .code("balance_insufficient"));
        }
        let live = state
            .accounts
            .get(&acting.owner)
            .map_or(acting.owner == PLATFORM_ACCOUNT && sim.live(), |a| a.live);
        let payout = json!({
            "id": id("po_1"),
            "object": "payout",
            "amount": amount,
            "arrival_date": now() + 2 * 86_400,
            "automatic": false,
            "balance_transaction": format!("txn_1{}", crate::random(23)),
            "created": now(),
            "currency": currency,
            "description": form.get("description"),
            "destination": format!("ba_1{}", crate::random(23)),
            "failure_code": null,
            "failure_message": null,
            "livemode": live,
            "metadata": metadata,
            "method": "standard",
            "source_type": "card",
            "statement_descriptor": null,
            "status": "pending",
            "type": "bank_account",
        });
        state.objects.insert(
            (
                acting.owner.clone(),
                payout["id"].as_str().unwrap_or_default().to_owned(),
            ),
            payout.clone(),
        );
        payout
    };
    emit_all(
        &sim,
        vec![Pending::new(&acting.owner, "payout.created", &payout)],
    )
    .await;
    ok(payout)
}

/// The bank's answer to payout `id` of `account`: paid, or failed with Stripe's failure code
/// (`account_closed`, `no_account`, …). Emits `payout.updated` and `payout.paid|failed`.
pub(crate) async fn settle(
    sim: &Sim,
    account: &str,
    id: &str,
    failure: Option<&str>,
) -> Result<Value, String> {
    let payout = {
        let mut state = sim.lock();
        let p = state
            .objects
            .get_mut(&(account.to_owned(), id.to_owned()))
            .filter(|p| p["object"] == "payout")
            .ok_or_else(|| format!("no payout {id} in {account}"))?;
        if p["status"] != "pending" && p["status"] != "in_transit" {
            return Err(format!("payout {id} is already {}", p["status"]));
        }
        match failure {
            None => p["status"] = json!("paid"),
            Some(code) => {
                p["status"] = json!("failed");
                p["failure_code"] = json!(code);
                p["failure_message"] = json!(failure_message(code));
            }
        }
        p.clone()
    };
    let kind = if failure.is_some() {
        "payout.failed"
    } else {
        "payout.paid"
    };
    emit_all(
        sim,
        vec![
            Pending::new(account, "payout.updated", &payout),
            Pending::new(account, kind, &payout),
        ],
    )
    .await;
    Ok(payout)
}

/// Stripe's messages for its payout failure codes.
fn failure_message(code: &str) -> &'static str {
    match code {
        "account_closed" => "The bank account has been closed.",
        "no_account" => "The bank account details on file are probably incorrect. No bank account could be located with those details.",
        "insufficient_funds" => "Your Stripe account has insufficient funds to cover the payout.",
        "account_frozen" => "The bank account has been frozen.",
        _ => "The payout failed.",
    }
}

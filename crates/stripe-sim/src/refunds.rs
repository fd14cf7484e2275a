//! Refunds (`POST /v1/refunds`, full or partial, with the platform's fee on a direct charge
//! refunded in proportion when asked) and disputes, which only the cardholder opens: the
//! `StripeSim::dispute` and `close_dispute` helpers.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Map, Value};

use crate::events::{emit_all, Pending};
use crate::fixtures;
use crate::http::{ApiError, ApiResult, Form};
use crate::objects::{acting, owned};
use crate::params::{self, reject_unknown};
use crate::payments::{id, respond};
use crate::random;
use crate::state::{now, Sim, State as SimState, PLATFORM_ACCOUNT};

pub(crate) fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/v1/refunds", post(refund_route).get(list))
        .route("/v1/refunds/{id}", owned("refund"))
        .route("/v1/disputes/{id}", owned("dispute"))
}

/// `GET /v1/refunds`: the acting account's refunds, newest first, filtered by `payment_intent`
/// or `charge`.
async fn list(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let form = Form::parse(query.unwrap_or_default().as_bytes());
    reject_unknown(
        &form,
        &[
            "payment_intent",
            "charge",
            "limit",
            "starting_after",
            "ending_before",
        ],
    )?;
    let limit = crate::webhook_endpoints::limit(&form)?;
    let all: Vec<Value> = crate::objects::newest_first(&sim.lock(), &acting.owner, "refund")
        .into_iter()
        .filter(|o| {
            form.get("payment_intent")
                .is_none_or(|p| o["payment_intent"] == p)
        })
        .filter(|o| form.get("charge").is_none_or(|c| o["charge"] == c))
        .collect();
    crate::http::ok(crate::webhook_endpoints::page(
        all,
        &form,
        limit,
        "/v1/refunds",
    ))
}

const REFUND_PARAMS: &[&str] = &[
    "payment_intent",
    "charge",
    "amount",
    "reason",
    "refund_application_fee",
    "reverse_transfer",
    "metadata",
    "instructions_email",
    "origin",
    "currency",
    "customer",
];

/// `POST /v1/refunds`.
async fn refund_route(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let form = Form::parse(&body);
    reject_unknown(&form, REFUND_PARAMS)?;
    params::exclusive(&form, "charge", "payment_intent")?;
    let reason = params::one_of(
        &form,
        "reason",
        &["duplicate", "fraudulent", "requested_by_customer"],
    )?;
    let refund_fee = params::boolean(&form, "refund_application_fee")?.unwrap_or(false);
    let reverse_transfer = params::boolean(&form, "reverse_transfer")?.unwrap_or(false);
    // The platform made the charge: as the application on a connected account (direct), or
    // on its own account (a destination charge).
    if refund_fee && !acting.as_platform && acting.owner != PLATFORM_ACCOUNT {
        return Err(ApiError::invalid(
            "refund_application_fee can only be used by the Connect application that created \
             the charge (with its OAuth key or the Stripe-Account header).",
        )
        .param("refund_application_fee"));
    }
    let metadata = params::metadata(&form, "metadata")?;
    let amount = params::positive(&form, "amount")?;
    let mut events = Vec::new();
    let refund = {
        let mut guard = sim.lock();
        let state = &mut *guard;
        let owner = acting.owner.as_str();
        let charge_id = match (form.get("payment_intent"), form.get("charge")) {
            (Some(pi_id), _) => {
                let pi = match state.objects.get(&(owner.to_owned(), pi_id.to_owned())) {
                    Some(pi) if pi["object"] == "payment_intent" => pi,
                    _ => {
                        return Err(ApiError::no_such("payment_intent", pi_id)
                            .status(StatusCode::BAD_REQUEST)
                            .param("payment_intent"))
                    }
                };
                if pi["status"] != "succeeded" {
                    return Err(ApiError::invalid(
                        "This PaymentIntent does not have a successful charge to refund.",
                    )
                    .param("payment_intent"));
                }
                pi["latest_charge"].as_str().unwrap_or_default().to_owned()
            }
            (None, Some(ch)) => ch.to_owned(),
            (None, None) => {
                return Err(ApiError::invalid(
                    "One of the following params should be provided for this request: \
                     payment_intent or charge.",
                ))
            }
        };
        let charge_key = (owner.to_owned(), charge_id.clone());
        let mut charge = match state.objects.get(&charge_key) {
            Some(c) if c["object"] == "charge" => c.clone(),
            _ => {
                return Err(ApiError::no_such("charge", &charge_id)
                    .status(StatusCode::BAD_REQUEST)
                    .param("charge"))
            }
        };
        if charge["status"] != "succeeded" || charge["captured"] != true {
            return Err(ApiError::invalid(format!(
                "Charge {charge_id} has not been captured or has failed; it cannot be refunded."
            ))
            .param("charge"));
        }
        if charge["disputed"] == true {
            return Err(ApiError::invalid(format!(
                "Charge {charge_id} has been charged back; cannot issue a refund."
            ))
            .code("charge_disputed"));
        }
        let total = charge["amount"].as_i64().unwrap_or_default();
        let refunded = charge["amount_refunded"].as_i64().unwrap_or_default();
        let currency = charge["currency"].as_str().unwrap_or("usd").to_owned();
        if refunded >= total {
            return Err(ApiError::invalid(format!(
                "Charge {charge_id} has already been refunded."
            ))
            .code("charge_already_refunded"));
        }
        let remaining = total - refunded;
        let amount = amount.unwrap_or(remaining);
        if amount > remaining {
            return Err(ApiError::invalid(format!(
                "Refund amount ({}) is greater than unrefunded amount on charge ({})",
                params::money(amount, &currency),
                params::money(remaining, &currency)
            ))
            .param("amount"));
        }
        let mut refund = fixtures::required("refund");
        let id = id("re_3");
        refund["id"] = json!(id);
        refund["amount"] = json!(amount);
        refund["balance_transaction"] = json!(format!("txn_3{}", random(23)));
        refund["charge"] = json!(charge_id);
        refund["created"] = json!(now());
        refund["currency"] = json!(currency);
        refund["metadata"] = Value::Object(metadata);
        refund["payment_intent"] = charge["payment_intent"].clone();
        refund["reason"] = json!(reason);
        refund["status"] = json!("succeeded");
        // A destination charge's transfer goes back in proportion (all that is left of it once
        // the charge is fully refunded; nothing when the share rounds to nothing).
        if let (true, Some(tr)) = (reverse_transfer, charge["transfer"].as_str()) {
            let transferred = state
                .objects
                .get(&(PLATFORM_ACCOUNT.to_owned(), tr.to_owned()))
                .map_or(0, |t| t["amount"].as_i64().unwrap_or(0));
            let back = if refunded + amount == total {
                None
            } else {
                Some((amount * transferred + total / 2) / total.max(1))
            };
            if back != Some(0) {
                let reversed = crate::transfers::reverse_in(
                    state,
                    PLATFORM_ACCOUNT,
                    tr,
                    back,
                    Map::new(),
                    &mut events,
                );
                if let Ok(reversal) = reversed {
                    refund["transfer_reversal"] = reversal["id"].clone();
                }
            }
        }
        let old = charge.clone();
        charge["amount_refunded"] = json!(refunded + amount);
        charge["refunded"] = json!(refunded + amount == total);
        state.objects.insert(charge_key, charge.clone());
        state.objects.insert((owner.to_owned(), id), refund.clone());
        events.push(Pending::new(owner, "refund.created", &refund));
        events.push(
            Pending::new(owner, "charge.refunded", &charge).previous(json!({
                "amount_refunded": old["amount_refunded"],
                "refunded": old["refunded"],
            })),
        );
        if refund_fee {
            if let Some(fee) = refund_application_fee(state, &charge, amount, total) {
                events.push(Pending::new(
                    PLATFORM_ACCOUNT,
                    "application_fee.refunded",
                    &fee,
                ));
            }
        }
        refund
    };
    emit_all(&sim, events).await;
    Ok(respond(&sim, &acting.owner, refund, &form))
}

/// Refunds the platform's fee on `charge` in proportion to a refund of `amount` out of
/// `total` (all that is left of it when the charge is now fully refunded); the fee after.
fn refund_application_fee(
    state: &mut SimState,
    charge: &Value,
    amount: i64,
    total: i64,
) -> Option<Value> {
    let fee_id = charge["application_fee"].as_str()?;
    let fee = state
        .objects
        .get_mut(&(PLATFORM_ACCOUNT.to_owned(), fee_id.to_owned()))?;
    let fee_amount = fee["amount"].as_i64().unwrap_or_default();
    let already = fee["amount_refunded"].as_i64().unwrap_or_default();
    let back = if charge["refunded"] == true {
        fee_amount - already
    } else {
        (fee_amount * amount / total.max(1)).min(fee_amount - already)
    };
    if back <= 0 {
        return None;
    }
    let refund = json!({
        "id": id("fr_1"),
        "object": "fee_refund",
        "amount": back,
        "balance_transaction": format!("txn_1{}", random(23)),
        "created": now(),
        "currency": fee["currency"],
        "fee": fee_id,
        "metadata": {},
    });
    fee["amount_refunded"] = json!(already + back);
    fee["refunded"] = json!(already + back == fee_amount);
    if let Some(list) = fee["refunds"]["data"].as_array_mut() {
        list.insert(0, refund);
    }
    let count = fee["refunds"]["data"].as_array().map_or(0, Vec::len);
    fee["refunds"]["total_count"] = json!(count);
    Some(fee.clone())
}

/// A dispute on `charge` of `account`: `charge.dispute.created` delivered; its event id and
/// the dispute's id.
pub(crate) async fn open_dispute(
    sim: &Sim,
    account: &str,
    charge_id: &str,
) -> Result<(String, String), String> {
    let dispute = {
        let mut state = sim.lock();
        let key = (account.to_owned(), charge_id.to_owned());
        let charge = match state.objects.get_mut(&key) {
            Some(c) if c["object"] == "charge" && c["status"] == "succeeded" => c,
            _ => return Err(format!("No successful charge {charge_id} in {account}")),
        };
        charge["disputed"] = json!(true);
        let charge = charge.clone();
        let amount = charge["amount"].as_i64().unwrap_or_default()
            - charge["amount_refunded"].as_i64().unwrap_or_default();
        let mut d = fixtures::required("dispute");
        let id = id("dp_1");
        d["id"] = json!(id);
        d["amount"] = json!(amount);
        d["charge"] = json!(charge_id);
        d["created"] = json!(now());
        d["currency"] = charge["currency"].clone();
        d["enhanced_eligibility_types"] = json!([]);
        d["evidence_details"]["due_by"] = json!(now() + 7 * 86_400);
        d["is_charge_refundable"] = json!(false);
        d["livemode"] = charge["livemode"].clone();
        d["payment_intent"] = charge["payment_intent"].clone();
        d["payment_method_details"]["card"]["case_type"] = json!("chargeback");
        d["payment_method_details"]["card"]["brand"] =
            charge["payment_method_details"]["card"]["brand"].clone();
        d["reason"] = json!("fraudulent");
        d["status"] = json!("needs_response");
        state.objects.insert((account.to_owned(), id), d.clone());
        d
    };
    let ids = emit_all(
        sim,
        vec![Pending::new(account, "charge.dispute.created", &dispute)],
    )
    .await;
    let event = ids.into_iter().next().unwrap_or_default();
    Ok((event, dispute["id"].as_str().unwrap_or_default().to_owned()))
}

/// Closes dispute `id` of `account` as won or lost: `charge.dispute.closed`; its event id.
pub(crate) async fn close_dispute(
    sim: &Sim,
    account: &str,
    id: &str,
    won: bool,
) -> Result<String, String> {
    let (dispute, previous) = {
        let mut state = sim.lock();
        let d = match state.objects.get_mut(&(account.to_owned(), id.to_owned())) {
            Some(d) if d["object"] == "dispute" => d,
            _ => return Err(format!("No dispute {id} in {account}")),
        };
        if matches!(d["status"].as_str(), Some("won" | "lost")) {
            return Err(format!("Dispute {id} is already closed"));
        }
        let previous = json!({ "status": d["status"] });
        d["status"] = json!(if won { "won" } else { "lost" });
        (d.clone(), previous)
    };
    let ids = emit_all(
        sim,
        vec![Pending::new(account, "charge.dispute.closed", &dispute).previous(previous)],
    )
    .await;
    Ok(ids.into_iter().next().unwrap_or_default())
}

//! Connect transfers on the platform account: `POST/GET /v1/transfers`, their reversals, and the
//! transfer a destination charge makes when it succeeds. A transfer lands in the destination
//! account as a payment (`py_…`, an object `charge` there), as at Stripe.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Map, Value};

use crate::events::{emit_all, Pending};
use crate::http::{ok, ApiError, ApiResult, Form};
use crate::objects::{acting, owned};
use crate::params::{self, reject_unknown};
use crate::payments::id;
use crate::state::{now, Sim, State as SimState, PLATFORM_ACCOUNT};
use crate::webhook_endpoints::{limit, page};

pub(crate) fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/v1/transfers", post(create).get(list))
        .route("/v1/transfers/{id}", owned("transfer"))
        .route(
            "/v1/transfers/{id}/reversals",
            post(reverse).get(list_reversals),
        )
}

/// What a new transfer is made of.
pub(crate) struct NewTransfer {
    pub amount: i64,
    pub currency: String,
    pub destination: String,
    pub source_transaction: Option<String>,
    pub transfer_group: Option<String>,
    pub description: Option<String>,
    pub metadata: Map<String, Value>,
    pub livemode: bool,
}

/// Makes the transfer on the platform and its payment in the destination account.
pub(crate) fn make(state: &mut SimState, n: NewTransfer, events: &mut Vec<Pending>) -> Value {
    let tr_id = id("tr_1");
    let py_id = id("py_1");
    let created = now();
    let transfer = json!({
        "id": tr_id,
        "object": "transfer",
        "amount": n.amount,
        "amount_reversed": 0,
        "balance_transaction": format!("txn_1{}", crate::random(23)),
        "created": created,
        "currency": n.currency,
        "description": n.description,
        "destination": n.destination,
        "destination_payment": py_id,
        "livemode": n.livemode,
        "metadata": n.metadata,
        "reversals": {
            "object": "list", "data": [], "has_more": false, "total_count": 0,
            "url": format!("/v1/transfers/{tr_id}/reversals"),
        },
        "reversed": false,
        "source_transaction": n.source_transaction,
        "source_type": "card",
        "transfer_group": n.transfer_group,
    });
    let payment = json!({
        "id": py_id,
        "object": "charge",
        "amount": n.amount,
        "amount_refunded": 0,
        "captured": true,
        "created": created,
        "currency": n.currency,
        "livemode": n.livemode,
        "paid": true,
        "refunded": false,
        "source_transfer": tr_id,
        "status": "succeeded",
    });
    state
        .objects
        .insert((PLATFORM_ACCOUNT.to_owned(), tr_id), transfer.clone());
    state
        .objects
        .insert((n.destination.clone(), py_id), payment);
    events.push(Pending::new(
        PLATFORM_ACCOUNT,
        "transfer.created",
        &transfer,
    ));
    transfer
}

/// `POST /v1/transfers`: platform key only, to a connected account the platform may reach.
async fn create(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    if acting.owner != PLATFORM_ACCOUNT {
        return Err(ApiError::invalid(
            "Transfers are made by the platform: use the platform's secret key, without Stripe-Account.",
        ));
    }
    let form = Form::parse(&body);
    reject_unknown(
        &form,
        &[
            "amount",
            "currency",
            "destination",
            "source_transaction",
            "transfer_group",
            "description",
            "metadata",
        ],
    )?;
    let amount = params::positive(&form, "amount")?.ok_or_else(|| ApiError::missing("amount"))?;
    let currency = params::currency(&form, "currency")?;
    let destination = form
        .get("destination")
        .ok_or_else(|| ApiError::missing("destination"))?
        .to_owned();
    let metadata = params::metadata(&form, "metadata")?;
    let mut events = Vec::new();
    let transfer = {
        let mut state = sim.lock();
        if state.reachable(&destination).is_none() {
            return Err(ApiError::invalid(format!(
                "No such destination: '{destination}' is not an account connected to this platform"
            ))
            .param("destination"));
        }
        let source = form.get("source_transaction").map(str::to_owned);
        if let Some(ch) = &source {
            let charge = state
                .objects
                .get(&(PLATFORM_ACCOUNT.to_owned(), ch.clone()))
                .filter(|o| o["object"] == "charge")
                .cloned()
                .ok_or_else(|| {
                    ApiError::invalid(format!("No such charge: '{ch}'")).param("source_transaction")
                })?;
            if charge["currency"] != currency.as_str() {
                return Err(ApiError::invalid(
                    "The currency of source_transaction's balance transaction must match the transfer's currency.",
                )
                .param("currency"));
            }
            let already: i64 = state
                .objects
                .iter()
                .filter(|((o, _), t)| {
                    o == PLATFORM_ACCOUNT
                        && t["object"] == "transfer"
                        && t["source_transaction"] == ch.as_str()
                })
                .map(|(_, t)| t["amount"].as_i64().unwrap_or(0))
                .sum();
            let available = charge["amount"].as_i64().unwrap_or(0)
                - charge["amount_refunded"].as_i64().unwrap_or(0)
                - already;
            if amount > available {
                return Err(ApiError::invalid(format!(
                    "Insufficient funds in the source transaction: {} can still be transferred from {ch}.",
                    params::money(available.max(0), &currency)
                ))
                .param("amount"));
            }
        }
        make(
            &mut state,
            NewTransfer {
                amount,
                currency,
                destination,
                source_transaction: source,
                transfer_group: form.get("transfer_group").map(str::to_owned),
                description: form.get("description").map(str::to_owned),
                metadata,
                livemode: acting.live,
            },
            &mut events,
        )
    };
    emit_all(&sim, events).await;
    ok(transfer)
}

/// `GET /v1/transfers`: the platform's transfers, newest first, by `destination` and
/// `transfer_group`.
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
            "destination",
            "transfer_group",
            "limit",
            "starting_after",
            "ending_before",
        ],
    )?;
    let all = crate::objects::newest_first(&sim.lock(), &acting.owner, "transfer")
        .into_iter()
        .filter(|t| {
            form.get("destination")
                .is_none_or(|d| t["destination"] == d)
        })
        .filter(|t| {
            form.get("transfer_group")
                .is_none_or(|g| t["transfer_group"] == g)
        })
        .collect();
    ok(page(all, &form, limit(&form)?, "/v1/transfers"))
}

/// `POST /v1/transfers/{id}/reversals`: all that is left, or `amount` of it; the destination's
/// payment is refunded as much.
async fn reverse(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(tr): Path<String>,
    body: Bytes,
) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let form = Form::parse(&body);
    reject_unknown(
        &form,
        &[
            "amount",
            "description",
            "metadata",
            "refund_application_fee",
        ],
    )?;
    let metadata = params::metadata(&form, "metadata")?;
    let amount = params::positive(&form, "amount")?;
    let mut events = Vec::new();
    let reversal = {
        let mut state = sim.lock();
        reverse_in(
            &mut state,
            &acting.owner,
            &tr,
            amount,
            metadata,
            &mut events,
        )?
    };
    emit_all(&sim, events).await;
    ok(reversal)
}

/// Reverses `amount` (None: all that is left) of transfer `tr` of `owner`.
pub(crate) fn reverse_in(
    state: &mut SimState,
    owner: &str,
    tr: &str,
    amount: Option<i64>,
    metadata: Map<String, Value>,
    events: &mut Vec<Pending>,
) -> Result<Value, ApiError> {
    let key = (owner.to_owned(), tr.to_owned());
    let mut transfer = state
        .objects
        .get(&key)
        .filter(|o| o["object"] == "transfer")
        .cloned()
        .ok_or_else(|| ApiError::no_such("transfer", tr))?;
    let left = transfer["amount"].as_i64().unwrap_or(0)
        - transfer["amount_reversed"].as_i64().unwrap_or(0);
    let amount = amount.unwrap_or(left);
    if amount > left || left == 0 {
        return Err(ApiError::invalid(format!(
            "You have attempted to reverse {} of transfer {tr}, which has only {} left to reverse.",
            amount,
            left.max(0)
        ))
        .param("amount"));
    }
    let reversal = json!({
        "id": id("trr_1"),
        "object": "transfer_reversal",
        "amount": amount,
        "balance_transaction": format!("txn_1{}", crate::random(23)),
        "created": now(),
        "currency": transfer["currency"],
        "destination_payment_refund": id("pyr_1"),
        "metadata": metadata,
        "source_refund": null,
        "transfer": tr,
    });
    let reversed = transfer["amount_reversed"].as_i64().unwrap_or(0) + amount;
    transfer["amount_reversed"] = json!(reversed);
    transfer["reversed"] = json!(reversed == transfer["amount"].as_i64().unwrap_or(0));
    if let Some(data) = transfer["reversals"]["data"].as_array_mut() {
        data.insert(0, reversal.clone());
    }
    let count = transfer["reversals"]["data"].as_array().map_or(0, Vec::len);
    transfer["reversals"]["total_count"] = json!(count);
    if let (Some(dest), Some(py)) = (
        transfer["destination"].as_str(),
        transfer["destination_payment"].as_str(),
    ) {
        if let Some(p) = state.objects.get_mut(&(dest.to_owned(), py.to_owned())) {
            let refunded = p["amount_refunded"].as_i64().unwrap_or(0) + amount;
            p["amount_refunded"] = json!(refunded);
            p["refunded"] = json!(refunded >= p["amount"].as_i64().unwrap_or(0));
        }
    }
    state.objects.insert(key, transfer.clone());
    events.push(Pending::new(owner, "transfer.reversed", &transfer));
    Ok(reversal)
}

async fn list_reversals(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(tr): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let acting = acting(&sim, &headers)?;
    let form = Form::parse(query.unwrap_or_default().as_bytes());
    let transfer = sim
        .lock()
        .objects
        .get(&(acting.owner.clone(), tr.clone()))
        .filter(|o| o["object"] == "transfer")
        .cloned()
        .ok_or_else(|| ApiError::no_such("transfer", &tr))?;
    let all = transfer["reversals"]["data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ok(page(
        all,
        &form,
        limit(&form)?,
        &format!("/v1/transfers/{tr}/reversals"),
    ))
}

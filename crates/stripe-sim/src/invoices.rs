//! A subscription's invoices: made for a period, charged through a PaymentIntent kept in the
//! same account, and what each charge attempt comes to.

use serde_json::{json, Map, Value};

use crate::calendar::DAY;
use crate::fixtures;
use crate::objects::store;
use crate::params;
use crate::payments::{create_intent, id, NewIntent};
use crate::random;
use crate::state::{now, Sim, State as SimState};

/// What a customer's default payment method does when an invoice is charged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CardBehavior {
    /// The charge succeeds (the default for every customer).
    #[default]
    Succeeds,
    /// The charge is declined (`card_declined`, `generic_decline`).
    Declines,
    /// The bank asks for authentication (3D Secure): the PaymentIntent `requires_action`.
    RequiresAction,
}

/// Days between Smart Retries, for `next_payment_attempt`.
const RETRY_DAYS: i64 = 3;

/// The price of a subscription's one item.
pub(crate) fn price_of(sub: &Value) -> Value {
    sub["items"]["data"][0]["price"].clone()
}

/// A new, finalized (`open`) invoice for `sub`'s item over `start..end`, stored in `owner`.
pub(crate) fn new_invoice(
    state: &mut SimState,
    sim: &Sim,
    owner: &str,
    sub: &Value,
    reason: &str,
    amount: i64,
    (start, end): (i64, i64),
) -> Value {
    let price = price_of(sub);
    let currency = price["currency"].as_str().unwrap_or("usd").to_owned();
    let id = id("in_1");
    let customer = sub["customer"].as_str().unwrap_or_default();
    let (email, name) = state
        .objects
        .get(&(owner.to_owned(), customer.to_owned()))
        .map_or((Value::Null, Value::Null), |c| {
            (c["email"].clone(), c["name"].clone())
        });
    let send_invoice = sub["collection_method"] == "send_invoice";
    let days_until_due = sub["days_until_due"].as_i64().unwrap_or(30);
    let mut inv = fixtures::required("invoice");
    let sub_id = sub["id"].clone();
    let item_id = sub["items"]["data"][0]["id"].clone();
    let number = format!(
        "{}-{:04}",
        random(8).to_uppercase(),
        state
            .objects
            .values()
            .filter(|o| o["object"] == "invoice")
            .count()
            + 1
    );
    let t = now();
    let fields = json!({
        "id": id,
        "account_name": null,
        "amount_due": amount,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_remaining": amount,
        "attempt_count": 0,
        "attempted": false,
        "auto_advance": true,
        "automatically_finalizes_at": null,
        "billing_reason": reason,
        "collection_method": sub["collection_method"],
        "created": t,
        "currency": currency,
        "customer": customer,
        "customer_email": email,
        "customer_name": name,
        "description": null,
        "due_date": if send_invoice { json!(t + days_until_due * DAY) } else { Value::Null },
        "effective_at": t,
        "ending_balance": 0,
        "from_invoice": null,
        "hosted_invoice_url": format!("{}/invoice/{id}", sim.url),
        "invoice_pdf": null,
        "last_finalization_error": null,
        "latest_revision": null,
        "lines": {
            "object": "list",
            "data": [{
                "id": format!("il_1{}", random(23)),
                "object": "line_item",
                "amount": amount,
                "currency": currency,
                "description": format!(
                    "1 × {} (at {} / {})",
                    price["product"].as_str().unwrap_or_default(),
                    params::money(price["unit_amount"].as_i64().unwrap_or_default(), &currency),
                    price["recurring"]["interval"].as_str().unwrap_or("month"),
                ),
                "discount_amounts": [],
                "discountable": true,
                "discounts": [],
                "invoice": id,
                "livemode": sim.live(),
                "metadata": {},
                "parent": {
                    "type": "subscription_item_details",
                    "invoice_item_details": null,
                    "subscription_item_details": {
                        "invoice_item": null,
                        "proration": false,
                        "proration_details": { "credited_items": null },
                        "subscription": sub_id,
                        "subscription_item": item_id,
                    },
                },
                "period": { "start": start, "end": end },
                "pretax_credit_amounts": [],
                "pricing": {
                    "type": "price_details",
                    "price_details": { "price": price["id"], "product": price["product"] },
                    "unit_amount_decimal": price["unit_amount_decimal"],
                },
                "quantity": 1,
                "subtotal": amount,
                "taxes": [],
            }],
            "has_more": false,
            "url": format!("/v1/invoices/{id}/lines"),
        },
        "livemode": sim.live(),
        "metadata": {},
        "next_payment_attempt": null,
        "number": number,
        "parent": {
            "type": "subscription_details",
            "quote_details": null,
            "subscription_details": { "metadata": sub["metadata"], "subscription": sub_id },
        },
        "payment_intent": null,
        "period_end": end,
        "period_start": start,
        "receipt_number": null,
        "shipping_cost": null,
        "shipping_details": null,
        "status": "open",
        "status_transitions": {
            "finalized_at": t,
            "marked_uncollectible_at": null,
            "paid_at": null,
            "voided_at": null,
        },
        "subscription": sub_id,
        "subtotal": amount,
        "subtotal_excluding_tax": amount,
        "test_clock": null,
        "total": amount,
        "total_excluding_tax": amount,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": t,
    });
    for (k, v) in fields.as_object().expect("an object") {
        inv[k] = v.clone();
    }
    if amount == 0 {
        mark_paid(&mut inv);
    }
    store(state, owner, &inv);
    inv
}

pub(crate) fn mark_paid(inv: &mut Value) {
    inv["status"] = json!("paid");
    inv["amount_paid"] = inv["amount_due"].clone();
    inv["amount_remaining"] = json!(0);
    inv["next_payment_attempt"] = Value::Null;
    inv["status_transitions"]["paid_at"] = json!(now());
}

/// How one charge of an invoice went.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    Paid,
    Failed,
    ActionRequired,
}

/// Charges open invoice `inv` of `owner` with `card` (forced success when `card` is `None`:
/// the customer paying on the hosted page): its PaymentIntent (made on the first attempt) and
/// the invoice are updated and stored.
pub(crate) fn attempt(
    state: &mut SimState,
    owner: &str,
    inv: &mut Value,
    card: Option<CardBehavior>,
    live: bool,
) -> Attempt {
    let mut pi = match inv["payment_intent"]
        .as_str()
        .and_then(|p| state.objects.get(&(owner.to_owned(), p.to_owned())))
    {
        Some(pi) => pi.clone(),
        None => {
            let mut discarded = Vec::new();
            create_intent(
                state,
                owner,
                NewIntent {
                    amount: inv["amount_due"].as_i64().unwrap_or_default(),
                    currency: inv["currency"].as_str().unwrap_or("usd").to_owned(),
                    description: Some(
                        if inv["billing_reason"] == "subscription_create" {
                            "Subscription creation"
                        } else {
                            "Subscription update"
                        }
                        .into(),
                    ),
                    customer: inv["customer"].as_str().map(str::to_owned),
                    metadata: Map::new(),
                    application_fee_amount: None,
                    application: None,
                    payment_method_types: Some(vec!["card".into()]),
                    capture_method: "automatic".into(),
                    receipt_email: None,
                    transfer_data: Value::Null,
                    transfer_group: None,
                    livemode: live,
                },
                &mut discarded,
            )
        }
    };
    let counted = card.is_some();
    let outcome = match card {
        None | Some(CardBehavior::Succeeds) => Attempt::Paid,
        Some(CardBehavior::Declines) => Attempt::Failed,
        Some(CardBehavior::RequiresAction) => Attempt::ActionRequired,
    };
    pi["payment_method"] = json!(format!("pm_1{}", random(23)));
    pi["next_action"] = Value::Null;
    pi["last_payment_error"] = Value::Null;
    match outcome {
        Attempt::Paid => {
            pi["status"] = json!("succeeded");
            pi["amount_received"] = pi["amount"].clone();
        }
        Attempt::Failed => {
            pi["status"] = json!("requires_payment_method");
            pi["last_payment_error"] = json!({
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "generic_decline",
                "message": "Your card was declined.",
                "payment_method": { "id": pi["payment_method"], "object": "payment_method", "type": "card" },
            });
        }
        Attempt::ActionRequired => {
            pi["status"] = json!("requires_action");
            pi["next_action"] = json!({
                "type": "use_stripe_sdk",
                "use_stripe_sdk": { "type": "three_d_secure_redirect" },
            });
        }
    }
    inv["payment_intent"] = pi["id"].clone();
    if counted {
        inv["attempted"] = json!(true);
        inv["attempt_count"] = json!(inv["attempt_count"].as_i64().unwrap_or_default() + 1);
    }
    if outcome == Attempt::Paid {
        mark_paid(inv);
    } else {
        inv["next_payment_attempt"] = json!(now() + RETRY_DAYS * DAY);
    }
    store(state, owner, &pi);
    store(state, owner, inv);
    outcome
}

pub(crate) fn failure_event(outcome: Attempt) -> &'static str {
    match outcome {
        Attempt::Paid => "invoice.paid",
        Attempt::Failed => "invoice.payment_failed",
        Attempt::ActionRequired => "invoice.payment_action_required",
    }
}

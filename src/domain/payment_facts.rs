//! What Stripe's payment objects (a PaymentIntent, a Checkout Session, a Charge) say about an
//! order, as the facts `domain::order` merges. Pure: the same object always says the same.

use serde_json::Value;

use super::order::{OrderFacts, Stamped};

/// What a PaymentIntent object says, stamped for "newest wins" comparisons.
pub fn payment_intent_facts(pi: &Value, at: (i64, i64)) -> OrderFacts {
    let mut f = OrderFacts::default();
    match pi["status"].as_str() {
        Some("succeeded") => f.paid = true,
        Some("canceled") => f.canceled = true,
        _ => {}
    }
    if let Some(error) = pi.get("last_payment_error").filter(|e| e.is_object()) {
        let code = error["decline_code"]
            .as_str()
            .or(error["code"].as_str())
            .unwrap_or("payment_failed")
            .to_owned();
        let message = error["message"].as_str().unwrap_or_default().to_owned();
        if !f.paid {
            f.failure = Some(Stamped {
                at,
                value: (code, message),
            });
        }
    }
    f
}

/// What a Checkout Session says: paid once complete and paid (or, for delayed methods, when
/// `event` is the async success), canceled when expired, failed on an async failure.
pub fn checkout_session_facts(session: &Value, event: Option<&str>, at: (i64, i64)) -> OrderFacts {
    let mut f = OrderFacts::default();
    let paid = matches!(
        session["payment_status"].as_str(),
        Some("paid" | "no_payment_required")
    );
    match event {
        Some("checkout.session.async_payment_succeeded") => f.paid = true,
        Some("checkout.session.async_payment_failed") => {
            f.failure = Some(Stamped {
                at,
                value: (
                    "async_payment_failed".into(),
                    "The delayed payment method failed.".into(),
                ),
            })
        }
        Some("checkout.session.expired") => f.canceled = true,
        _ => {
            f.paid = paid;
            f.canceled = session["status"].as_str() == Some("expired");
        }
    }
    f
}

/// What a Charge says: paid, and how much has been refunded so far (cumulative).
pub fn charge_facts(charge: &Value) -> OrderFacts {
    OrderFacts {
        paid: charge["paid"].as_bool().unwrap_or(false)
            || charge["captured"].as_bool() == Some(true),
        amount_refunded: charge["amount_refunded"].as_i64().unwrap_or(0),
        disputed: charge["disputed"].as_bool().unwrap_or(false),
        ..Default::default()
    }
}

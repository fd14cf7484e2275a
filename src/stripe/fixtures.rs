//! Stripe's published example objects (fixtures/stripe/objects.json, MIT, © Stripe) and
//! realistic events built from them, for `bursar trigger`, the benchmark and tests.

use std::sync::OnceLock;

use serde_json::{json, Value};

static OBJECTS: OnceLock<Value> = OnceLock::new();

fn objects() -> &'static Value {
    OBJECTS.get_or_init(|| {
        serde_json::from_str(include_str!("../../fixtures/stripe/objects.json"))
            .expect("fixtures are valid JSON")
    })
}

/// Stripe's example object of a resource (`account`, `payout`, `checkout.session`, …).
pub fn object(resource: &str) -> Option<Value> {
    objects().get(resource).cloned()
}

/// What to put in a built event besides its type.
#[derive(Debug, Clone, Default)]
pub struct EventOptions {
    pub id: Option<String>,
    pub account: Option<String>,
    pub livemode: bool,
    pub created: Option<i64>,
}

/// A complete event of `event_type` with the data object Stripe would send, adjusted to the
/// state the type implies (a failed payout has a failure code, a paid invoice is paid, …).
/// Returns `None` for a type Bursar has no object for.
pub fn event(event_type: &str, options: &EventOptions) -> Option<Value> {
    let mut object = data_object(event_type)?;
    if let Some(map) = object.as_object_mut() {
        if map.contains_key("livemode") {
            map.insert("livemode".into(), json!(options.livemode));
        }
    }
    let created = options
        .created
        .unwrap_or_else(|| crate::clock::now_ms() / 1000);
    let id = options
        .id
        .clone()
        .unwrap_or_else(|| format!("evt_{}", random_suffix()));
    let mut event = json!({
        "id": id,
        "object": "event",
        "api_version": crate::stripe::STRIPE_VERSION,
        "created": created,
        "data": { "object": object },
        "livemode": options.livemode,
        "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": null },
        "type": event_type,
    });
    if let Some(account) = &options.account {
        event["account"] = json!(account);
    }
    Some(event)
}

fn data_object(event_type: &str) -> Option<Value> {
    let mut o = match event_type {
        "account.application.deauthorized" => {
            json!({"id": "ca_1PgafTB7WZ01zgkWxAppLicat", "object": "application", "name": "Bursar platform"})
        }
        "account.external_account.updated" => object("bank_account")?,
        t if t.starts_with("account.") => object("account")?,
        t if t.starts_with("person.") => object("person")?,
        t if t.starts_with("payout.") => object("payout")?,
        t if t.starts_with("transfer.") => object("transfer")?,
        t if t.starts_with("application_fee.") => object("application_fee")?,
        "charge.refund.updated" => object("refund")?,
        t if t.starts_with("balance.") => object("balance")?,
        t if t.starts_with("payment_intent.") => object("payment_intent")?,
        t if t.starts_with("charge.dispute.") => object("dispute")?,
        t if t.starts_with("charge.") => object("charge")?,
        t if t.starts_with("checkout.session.") => object("checkout.session")?,
        t if t.starts_with("customer.subscription.") => object("subscription")?,
        t if t.starts_with("customer.") => object("customer")?,
        t if t.starts_with("invoice.") => object("invoice")?,
        _ => return None,
    };
    match event_type {
        "account.updated" => {
            o["charges_enabled"] = json!(true);
            o["payouts_enabled"] = json!(true);
            o["details_submitted"] = json!(true);
        }
        "payout.paid" => o["status"] = json!("paid"),
        "payout.canceled" => o["status"] = json!("canceled"),
        "transfer.reversed" => {
            o["amount_reversed"] = o["amount"].clone();
            o["reversed"] = json!(true);
        }
        "application_fee.refunded" => {
            o["amount_refunded"] = o["amount"].clone();
            o["refunded"] = json!(true);
        }
        "charge.dispute.closed" => o["status"] = json!("won"),
        "checkout.session.async_payment_succeeded" => {
            o["status"] = json!("complete");
            o["payment_status"] = json!("paid");
        }
        "checkout.session.async_payment_failed" => {
            o["status"] = json!("complete");
            o["payment_status"] = json!("unpaid");
        }
        "payout.failed" => {
            o["status"] = json!("failed");
            o["failure_code"] = json!("account_closed");
            o["failure_message"] = json!("The bank account has been closed.");
        }
        "payment_intent.succeeded" => o["status"] = json!("succeeded"),
        "payment_intent.payment_failed" => o["status"] = json!("requires_payment_method"),
        "payment_intent.canceled" => o["status"] = json!("canceled"),
        "charge.refunded" => {
            o["refunded"] = json!(true);
            o["amount_refunded"] = o["amount"].clone();
        }
        "checkout.session.completed" => {
            o["status"] = json!("complete");
            o["payment_status"] = json!("paid");
        }
        "checkout.session.expired" => o["status"] = json!("expired"),
        "customer.subscription.deleted" => o["status"] = json!("canceled"),
        "customer.deleted" => o["deleted"] = json!(true),
        "invoice.paid" => o["status"] = json!("paid"),
        "invoice.payment_failed" | "invoice.payment_action_required" => o["status"] = json!("open"),
        _ => {}
    }
    Some(o)
}

fn random_suffix() -> String {
    use rand::distributions::Alphanumeric;
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_handled_type_has_a_realistic_event() {
        for t in crate::stripe::events::handled() {
            let e = event(t, &EventOptions::default()).unwrap_or_else(|| panic!("{t}"));
            assert_eq!(e["type"], t);
            assert!(e["data"]["object"]["object"].is_string(), "{t}");
            assert!(e["id"].as_str().unwrap().starts_with("evt_"));
        }
        assert!(event("nothing.here", &EventOptions::default()).is_none());
    }
}

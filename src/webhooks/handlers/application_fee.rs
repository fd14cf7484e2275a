//! `application_fee.created|refunded` on the platform endpoint: the platform's fee on an
//! order's charge, and how much of it Stripe refunded, recorded on the order.
//!
//! Stripe sends the fee's event before the payment's, so the order may not know its charge yet:
//! `load` asks Stripe which PaymentIntent the fee's charge belongs to (in the account the fee
//! was taken from; for a destination charge, the platform's `originating_transaction`), and the
//! order is found by that.

use serde_json::Value;
use sqlx::AnyConnection;

use crate::db;
use crate::domain::AccountId;
use crate::service::Services;
use crate::stripe::AccountScope;
use crate::webhooks::event::{HandlerError, Incoming, Loaded};

fn id_of(v: &Value) -> Option<&str> {
    v.as_str()
        .or_else(|| v["id"].as_str())
        .filter(|id| id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
}

/// The fee with the PaymentIntent of its charge (`payment_intent`), as Stripe answers.
pub async fn load(s: &Services, ev: &Incoming) -> Result<Loaded, HandlerError> {
    let fee = &ev.object;
    let Some(account) = fee["account"]
        .as_str()
        .and_then(|a| AccountId::parse(a).ok())
    else {
        return Ok(Loaded::Nothing);
    };
    let asks = [
        (AccountScope::Connected(&account), id_of(&fee["charge"])),
        (
            AccountScope::Platform,
            id_of(&fee["originating_transaction"]),
        ),
    ];
    for (scope, charge) in asks {
        let Some(charge) = charge else { continue };
        match s
            .stripe
            .get::<Value>(scope, &format!("/v1/charges/{charge}"))
            .await
        {
            Ok(c) => {
                if let Some(pi) = c["payment_intent"].as_str() {
                    let mut fee = fee.clone();
                    fee["payment_intent"] = Value::from(pi);
                    return Ok(Loaded::Object(fee));
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Loaded::Nothing)
}

pub async fn apply(conn: &mut AnyConnection, fee: &Value) -> Result<(), HandlerError> {
    let (Some(id), Some(account), Some(pi)) = (
        fee["id"].as_str(),
        fee["account"].as_str(),
        fee["payment_intent"].as_str(),
    ) else {
        return Ok(());
    };
    let refunded = fee["amount_refunded"].as_i64().unwrap_or(0);
    db::orders::learn_application_fee(conn, account, pi, id, refunded).await?;
    Ok(())
}

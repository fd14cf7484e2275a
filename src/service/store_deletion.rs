//! Deleting a store without orphaning money at Stripe: refused while the store holds a live
//! vendor subscription, an active connection or orders and refunds Stripe may still settle;
//! forced, it first cancels the subscription and disconnects (deauthorizing a Standard account)
//! at Stripe. Either way the store's orders and refunds are kept.

use super::{billing, connections, stores, Result, ServiceError, Services};
use crate::db::{self, now_ms, stores::LiveObjects};
use crate::domain::StoreId;

/// How far back an order counts as one Stripe may still settle (the sweep's horizon).
const UNSETTLED_HORIZON_MS: i64 = 7 * 86_400_000;

pub async fn delete(s: &Services, id: &StoreId, force: bool) -> Result<()> {
    stores::require(s, id).await?;
    let live = db::stores::live_objects(&s.db, id, now_ms() - UNSETTLED_HORIZON_MS).await?;
    if !live.is_empty() && !force {
        return Err(ServiceError::Conflict {
            code: "store_has_live_objects",
            message: format!(
                "the store still holds {}; settle or cancel them first, or delete with ?force=true, \
                 which cancels the subscription and disconnects at Stripe first and keeps orders and refunds",
                describe(&live)
            ),
        });
    }
    if live.subscription.is_some() {
        match billing::cancel(s, id, true).await {
            Ok(_) => {}
            // Still being created: there is nothing to cancel yet, and deleting now would lose
            // the record that adopts it.
            Err(ServiceError::Conflict { .. }) => {
                return Err(ServiceError::Conflict {
                    code: "subscription_pending",
                    message: "the store's vendor subscription is still being created; try again once it has answered".into(),
                })
            }
            Err(e) => return Err(e),
        }
    }
    if live.connection.is_some() {
        connections::disconnect(s, id).await?;
    }
    if !db::stores::delete(&s.db, id).await? {
        return Err(ServiceError::NotFound("store"));
    }
    tracing::info!(store = %id, force, "store deleted");
    Ok(())
}

/// The live objects, named for the person deleting the store.
fn describe(live: &LiveObjects) -> String {
    let mut parts = Vec::new();
    if let Some(sub) = &live.subscription {
        parts.push(format!("a live vendor subscription ({sub})"));
    }
    if let Some((kind, account)) = &live.connection {
        let account = account.as_deref().unwrap_or("no account yet");
        parts.push(format!("an active {kind} connection ({account})"));
    }
    if !live.unsettled_orders.is_empty() {
        let more = if live.unsettled_orders.len() > 3 {
            ", …"
        } else {
            ""
        };
        let named: Vec<&str> = live
            .unsettled_orders
            .iter()
            .take(3)
            .map(String::as_str)
            .collect();
        parts.push(format!("unsettled orders ({}{more})", named.join(", ")));
    }
    if live.pending_refunds > 0 {
        parts.push(format!(
            "{} refund(s) Stripe has not settled",
            live.pending_refunds
        ));
    }
    parts.join(", ")
}

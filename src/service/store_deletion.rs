//! Deleting a store without orphaning money at Stripe: refused while the store holds a live
//! vendor subscription, an active connection or orders and refunds Stripe may still settle;
//! forced, it first cancels the subscription, cancels the open PaymentIntents and Checkout
//! Sessions and disconnects (deauthorizing a Standard account) at Stripe, and waits for refunds
//! to settle. Either way the store's orders and refunds are kept.

use super::{billing, connections, orders, stores, Result, ServiceError, Services};
use crate::db::stores::{Deleted, LiveObjects};
use crate::db::{self, DbError};
use crate::domain::StoreId;

pub async fn delete(s: &Services, id: &StoreId, force: bool) -> Result<()> {
    stores::require(s, id).await?;
    // Every open order counts, however old: a PaymentIntent never expires at Stripe, and one
    // being created (no id yet) may be answered any moment.
    let since = 0;
    let live = {
        let mut conn = s.db.pool().acquire().await.map_err(DbError::from)?;
        db::stores::live_objects(&mut conn, id, since).await?
    };
    if !live.is_empty() && !force {
        return Err(live_conflict(
            &live,
            "settle or cancel them first, or delete with ?force=true, which cancels the \
             subscription and open payments and disconnects at Stripe first, keeping orders and refunds",
        ));
    }
    if force && !live.is_empty() {
        if live.pending_refunds > 0 {
            return Err(ServiceError::Conflict {
                code: "refunds_pending",
                message: format!(
                    "{} refund(s) of this store are not settled at Stripe yet; delete it once they are",
                    live.pending_refunds
                ),
            });
        }
        if live.pending_transfers > 0 {
            return Err(ServiceError::Conflict {
                code: "transfers_pending",
                message: format!(
                    "{} transfer(s) or reversal(s) of multi-vendor orders with this store are not made at Stripe yet; delete it once they are",
                    live.pending_transfers
                ),
            });
        }
        billing::end_for_deletion(s, id).await?;
        orders::cancel_unsettled(s, id, since).await?;
        if live.unpaid_splits > 0 {
            let mut tx = s.db.begin_write().await?;
            let canceled = db::transfers::cancel_unpaid_splits(&mut tx, id).await?;
            tx.commit().await?;
            tracing::info!(store = %id, canceled, "splits of unpaid multi-vendor orders canceled: the platform keeps them if those orders are paid");
        }
        if live.connection.is_some() {
            super::webhook_endpoints::disconnect(s, id).await?;
        }
    }
    let disconnected =
        serde_json::to_value(connections::account_view(id, None)).expect("views serialize");
    match db::stores::delete(&s.db, id, since, &disconnected).await? {
        Deleted::Done => {
            tracing::info!(store = %id, force, "store deleted");
            Ok(())
        }
        Deleted::NoStore => Err(ServiceError::NotFound("store")),
        // Something live arrived while Stripe was being called: nothing is deleted.
        Deleted::Live(live) => Err(live_conflict(
            &live,
            "it changed while being deleted; try again",
        )),
    }
}

fn live_conflict(live: &LiveObjects, then: &str) -> ServiceError {
    ServiceError::Conflict {
        code: "store_has_live_objects",
        message: format!("the store still holds {}; {then}", describe(live)),
    }
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
    if live.pending_transfers > 0 {
        parts.push(format!(
            "{} transfer(s) or reversal(s) of multi-vendor orders not made yet",
            live.pending_transfers
        ));
    }
    if live.unpaid_splits > 0 {
        parts.push(format!(
            "{} split(s) in multi-vendor orders not paid yet",
            live.unpaid_splits
        ));
    }
    parts.join(", ")
}

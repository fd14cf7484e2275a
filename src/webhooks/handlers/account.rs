//! `account.updated` and `account.application.deauthorized`.
//!
//! `account.updated` re-fetches the account from Stripe in the store's own scope rather than
//! trusting the event's snapshot: whatever order deliveries arrive in, the state applied is
//! Stripe's current one. Deauthorization is terminal and guarded by a watermark.

use serde_json::Value;
use sqlx::AnyConnection;

use crate::db::{self, watermarks};
use crate::domain::StoreId;
use crate::service::connections::{store_scope, StripeAccount};
use crate::service::Services;
use crate::webhooks::registry::{HandlerError, Incoming, Loaded};

pub async fn load_updated(s: &Services, ev: &Incoming) -> Result<Loaded, HandlerError> {
    let Some(store) = &ev.store else {
        return Ok(Loaded::Nothing);
    };
    let Some(row) = db::connections::get(s.db.pool(), store).await? else {
        return Ok(Loaded::Nothing);
    };
    // An event about another account must never touch this store.
    if ev.object.get("id").and_then(Value::as_str) != row.account_id.as_deref() {
        return Ok(Loaded::Nothing);
    }
    let scope = store_scope(s, store, &row)?;
    let fresh: Value = s
        .stripe
        .get(scope.scope(), "/v1/account")
        .await
        .map_err(|e| HandlerError::Transient(e.to_string()))?;
    Ok(Loaded::Object(fresh))
}

pub async fn apply_updated(
    conn: &mut AnyConnection,
    store: &StoreId,
    ev: &Incoming,
    object: &Value,
) -> Result<(), HandlerError> {
    let account: StripeAccount = serde_json::from_value(object.clone())
        .map_err(|e| HandlerError::Transient(format!("account object: {e}")))?;
    // The worker has checked (in this transaction) that the store still holds `ev.account`;
    // what Stripe returned must be that same account.
    if ev.account.as_deref().is_some_and(|a| a != account.id) {
        return Ok(());
    }
    db::connections::set_account_state(&mut *conn, store, &account.state()).await?;
    Ok(())
}

pub async fn apply_deauthorized(
    conn: &mut AnyConnection,
    store: &StoreId,
    ev: &Incoming,
) -> Result<(), HandlerError> {
    let account = ev.account.as_deref().unwrap_or("account");
    if watermarks::advance(
        &mut *conn,
        &ev.watermark_owner(store),
        &format!("deauthorized:{account}"),
        ev.created,
        ev.seq,
    )
    .await?
    {
        db::connections::set_deauthorized(&mut *conn, store).await?;
    }
    Ok(())
}

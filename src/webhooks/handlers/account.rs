//! `account.updated` and `account.application.deauthorized`.
//!
//! `account.updated` re-fetches the account from Stripe in the store's own scope rather than
//! trusting the event's snapshot: whatever order deliveries arrive in, the state applied is
//! Stripe's current one. Deauthorization is terminal and guarded by a watermark.

use serde_json::Value;
use sqlx::AnyConnection;

use crate::db::{self, watermarks};
use crate::domain::StoreId;
use crate::service::connections::{account_view, store_scope, StoreScope, StripeAccount};
use crate::service::notifications;
use crate::service::onboarding::v2_account_state;
use crate::service::Services;
use crate::stripe::AccountScope;
use crate::webhooks::event::{HandlerError, Incoming, Loaded};

pub async fn load_updated(s: &Services, ev: &Incoming) -> Result<Loaded, HandlerError> {
    // An event about another account must never touch this store.
    let about = ev.object.get("id").and_then(Value::as_str);
    if ev.account.is_some() && about != ev.account.as_deref() {
        return Ok(Loaded::Nothing);
    }
    load_account(s, ev, about).await
}

/// `person.updated`: a person's change moves the account's requirements, so the account is
/// re-fetched as for `account.updated`.
pub async fn load_for_person(s: &Services, ev: &Incoming) -> Result<Loaded, HandlerError> {
    load_account(s, ev, ev.account.as_deref()).await
}

/// The store's account, fetched in its scope (`Stripe-Account` for a connected account), if the
/// store still holds `account` and has not been deauthorized.
async fn load_account(
    s: &Services,
    ev: &Incoming,
    account: Option<&str>,
) -> Result<Loaded, HandlerError> {
    let Some((_, scope)) = store_credentials(s, ev, account).await? else {
        return Ok(Loaded::Nothing);
    };
    let fresh: Value = s.stripe.get(scope.scope(), "/v1/account").await?;
    Ok(Loaded::Object(fresh))
}

/// The store's connection and credentials when it still holds `account` and may be called.
async fn store_credentials(
    s: &Services,
    ev: &Incoming,
    account: Option<&str>,
) -> Result<Option<(db::connections::ConnectionRow, StoreScope)>, HandlerError> {
    let Some(store) = &ev.store else {
        return Ok(None);
    };
    let Some(row) = db::connections::get(s.db.pool(), store).await? else {
        return Ok(None);
    };
    // Deauthorized is final: nothing is fetched for that account again.
    if row.is_deauthorized() || account.is_none() || account != row.account_id.as_deref() {
        return Ok(None);
    }
    let scope = store_scope(s, store, &row)?;
    Ok(Some((row, scope)))
}

/// `account.external_account.updated`: the bank account or card, re-fetched in the account's
/// scope (the event's snapshot may be older than another delivery already applied).
pub async fn load_external_account(s: &Services, ev: &Incoming) -> Result<Loaded, HandlerError> {
    let Some((row, scope)) = store_credentials(s, ev, ev.account.as_deref()).await? else {
        return Ok(Loaded::Nothing);
    };
    let (Some(account), Some(id)) = (
        row.account_id.as_deref(),
        ev.object.get("id").and_then(Value::as_str),
    ) else {
        return Ok(Loaded::Nothing);
    };
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Ok(Loaded::Nothing);
    }
    let fresh: Value = s
        .stripe
        .get(
            scope.scope(),
            &format!("/v1/accounts/{account}/external_accounts/{id}"),
        )
        .await?;
    Ok(Loaded::Object(fresh))
}

pub async fn apply_external_account(
    conn: &mut AnyConnection,
    store: &StoreId,
    ev: &Incoming,
    object: &Value,
) -> Result<(), HandlerError> {
    let summary = serde_json::json!({
        "id": object.get("id"),
        "object": object.get("object"),
        "bank_name": object.get("bank_name"),
        "brand": object.get("brand"),
        "last4": object.get("last4"),
        "currency": object.get("currency"),
        "status": object.get("status"),
        "default_for_currency": object.get("default_for_currency"),
        "event": ev.event_id,
    });
    db::connections::set_json(
        &mut *conn,
        store,
        db::connections::JsonColumn::ExternalAccount,
        &summary.to_string(),
    )
    .await?;
    Ok(())
}

pub async fn apply_updated(
    conn: &mut AnyConnection,
    store: &StoreId,
    ev: &Incoming,
    object: &Value,
) -> Result<(), HandlerError> {
    let account: StripeAccount =
        serde_json::from_value(object.clone()).map_err(|source| HandlerError::Malformed {
            what: "account",
            source,
        })?;
    // The worker has checked (in this transaction) that the store still holds `ev.account`;
    // what Stripe returned must be that same account.
    if ev.account.as_deref().is_some_and(|a| a != account.id) {
        return Ok(());
    }
    set_state(conn, store, &account.state()).await
}

/// Saves the account's state; a change of what it may do (charges, payouts) is told to the
/// platform's app in the same transaction.
async fn set_state(
    conn: &mut AnyConnection,
    store: &StoreId,
    state: &db::connections::AccountState,
) -> Result<(), HandlerError> {
    let before = db::connections::get(&mut *conn, store).await?;
    db::connections::set_account_state(&mut *conn, store, state).await?;
    let moved = before.as_ref().is_some_and(|b| {
        (b.charges_enabled != 0, b.payouts_enabled != 0)
            != (state.charges_enabled, state.payouts_enabled)
    });
    if moved {
        let after = db::connections::get(&mut *conn, store).await?;
        let view = account_view(store, after);
        notifications::emit(conn, "store.account_updated", Some(store.as_str()), &view).await?;
    }
    Ok(())
}

/// A thin `v2.core.account*` event: the event itself is fetched (a thin payload is only a
/// notice), then the account it relates to, with the fields Bursar keeps.
pub async fn load_v2(s: &Services, ev: &Incoming) -> Result<Loaded, HandlerError> {
    let (Some(store), Some(account)) = (&ev.store, &ev.account) else {
        return Ok(Loaded::Nothing);
    };
    let Some(row) = db::connections::get(s.db.pool(), store).await? else {
        return Ok(Loaded::Nothing);
    };
    if row.is_deauthorized() || row.account_id.as_deref() != Some(account.as_str()) {
        return Ok(Loaded::Nothing);
    }
    let event: Value = s
        .stripe
        .get(
            AccountScope::Platform,
            &format!("/v2/core/events/{}", ev.event_id),
        )
        .await?;
    let related = event["related_object"]["id"].as_str();
    if related != Some(account.as_str()) {
        return Ok(Loaded::Nothing);
    }
    let fresh: Value = s
        .stripe
        .get(
            AccountScope::Platform,
            &format!(
                "/v2/core/accounts/{account}?include=configuration.merchant&include=requirements"
            ),
        )
        .await?;
    Ok(Loaded::Object(fresh))
}

pub async fn apply_v2(
    conn: &mut AnyConnection,
    store: &StoreId,
    ev: &Incoming,
    account: &Value,
) -> Result<(), HandlerError> {
    if ev.account.as_deref() != account["id"].as_str() {
        return Ok(());
    }
    set_state(conn, store, &v2_account_state(account)).await
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
        && db::connections::set_deauthorized(&mut *conn, store).await?
    {
        let view = account_view(store, db::connections::get(&mut *conn, store).await?);
        notifications::emit(conn, "store.deauthorized", Some(store.as_str()), &view).await?;
    }
    Ok(())
}

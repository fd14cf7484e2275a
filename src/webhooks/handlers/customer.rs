//! `customer.created|updated|deleted`: the store's local copy of a customer it created, newest
//! event first; deleted is final. Customers Bursar did not create are left in the event log.
//! A change of what the API shows of one is told to the platform's app.

use serde_json::Value;
use sqlx::AnyConnection;

use crate::db;
use crate::domain::StoreId;
use crate::service::customers::CustomerView;
use crate::service::notifications;
use crate::webhooks::event::{HandlerError, Incoming};

pub async fn apply(
    conn: &mut AnyConnection,
    store: &StoreId,
    ev: &Incoming,
    object: &Value,
    deleted: bool,
) -> Result<(), HandlerError> {
    let Some(id) = object["id"].as_str() else {
        return Ok(());
    };
    let Some(row) = db::customers::by_stripe_id(&mut *conn, store, id).await? else {
        return Ok(());
    };
    if ev.account.as_deref().is_some_and(|a| a != row.account_id) {
        return Ok(());
    }
    let changed = db::customers::apply_event(
        &mut *conn,
        &row,
        object["email"].as_str(),
        object["name"].as_str(),
        deleted || object["deleted"].as_bool() == Some(true),
        ev.created,
    )
    .await?;
    if let Some(after) = changed {
        let event_type = if after.deleted != 0 {
            "customer.deleted"
        } else {
            "customer.updated"
        };
        let view = CustomerView::from(after);
        notifications::emit(conn, event_type, Some(store.as_str()), &view).await?;
    }
    Ok(())
}

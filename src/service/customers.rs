//! A store's customers: created in the store's Stripe account (its own key, or as the
//! connected account), kept current by `customer.*` events, and usable only for that store's
//! orders.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::connections::store_scope;
use super::{stores, Result, ServiceError, Services};
use crate::db::customers::{CustomerRow, NewCustomer};
use crate::db::{self};
use crate::domain::store::Metadata;
use crate::domain::{CustomerId, Invalid, StoreId};
use crate::stripe::IdempotencyKey;

pub struct CustomerInput {
    pub email: String,
    pub name: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CustomerView {
    pub id: String,
    pub object: &'static str,
    pub store_id: String,
    pub stripe_customer_id: Option<String>,
    pub email: String,
    pub name: Option<String>,
    pub metadata: Value,
    pub deleted: bool,
    pub created: i64,
}

impl From<CustomerRow> for CustomerView {
    fn from(r: CustomerRow) -> Self {
        Self {
            metadata: serde_json::from_str(&r.metadata).unwrap_or_default(),
            deleted: r.deleted != 0,
            created: r.created_at / 1000,
            id: r.id,
            object: "customer",
            store_id: r.store_id,
            stripe_customer_id: r.stripe_customer_id,
            email: r.email,
            name: r.name,
        }
    }
}

fn check_email(raw: &str) -> Result<String, Invalid> {
    let email = raw.trim();
    let ok = email.len() <= 512
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@')
        });
    if ok {
        Ok(email.to_owned())
    } else {
        Err(Invalid::new("email", "must be an email address"))
    }
}

pub async fn create(s: &Services, store: &StoreId, input: CustomerInput) -> Result<CustomerView> {
    stores::require(s, store).await?;
    let email = check_email(&input.email)?;
    let name = input.name.filter(|n| !n.trim().is_empty());
    if name.as_ref().is_some_and(|n| n.chars().count() > 256) {
        return Err(Invalid::new("name", "must be at most 256 characters").into());
    }
    let metadata = Metadata::parse(input.metadata.unwrap_or_default())?;
    let connection = db::connections::get(s.db.pool(), store)
        .await?
        .ok_or_else(|| ServiceError::Conflict {
            code: "store_not_connected",
            message: "the store has no Stripe connection".into(),
        })?;
    let scope = store_scope(s, store, &connection)?;
    let id = CustomerId::generate();
    let account = connection.account_id.clone().unwrap_or_default();
    let row = db::customers::insert(
        &s.db,
        &NewCustomer {
            id: &id,
            store,
            account_id: &account,
            email: &email,
            name: name.as_deref(),
            metadata: &metadata.to_json(),
        },
    )
    .await?;
    let mut form: Vec<(String, String)> = vec![
        ("email".into(), email.clone()),
        ("metadata[bursar_customer_id]".into(), id.to_string()),
        ("metadata[bursar_store_id]".into(), store.to_string()),
    ];
    if let Some(n) = &name {
        form.push(("name".into(), n.clone()));
    }
    let extra: BTreeMap<String, String> = serde_json::from_str(&row.metadata).unwrap_or_default();
    for (k, v) in extra {
        if !k.starts_with("bursar_") {
            form.push((format!("metadata[{k}]"), v));
        }
    }
    #[derive(Deserialize)]
    struct Created {
        id: String,
    }
    let created: Created = match s
        .stripe
        .post(
            scope.scope(),
            "/v1/customers",
            &form,
            &IdempotencyKey::new("customer", id.as_str()),
        )
        .await
    {
        Ok(c) => c,
        Err(e) => {
            let e = ServiceError::from(e);
            if matches!(e, ServiceError::StripeRefused(_)) {
                db::customers::delete(&s.db, &id).await?;
            }
            return Err(e);
        }
    };
    db::customers::set_stripe_id(&s.db, &id, &created.id).await?;
    let row = db::customers::get(&s.db, &id)
        .await?
        .ok_or(ServiceError::NotFound("customer"))?;
    Ok(row.into())
}

/// A page of the store's customers, newest first, and the cursor of the next page.
pub async fn list(
    s: &Services,
    store: &StoreId,
    before: Option<&CustomerId>,
    limit: i64,
) -> Result<(Vec<CustomerView>, Option<String>)> {
    stores::require(s, store).await?;
    let rows = db::customers::list(&s.db, store, before, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    let data: Vec<CustomerView> = rows
        .into_iter()
        .take(limit as usize)
        .map(CustomerView::from)
        .collect();
    let next = more.then(|| data.last().map(|c| c.id.clone())).flatten();
    Ok((data, next))
}

pub async fn get(s: &Services, id: &CustomerId) -> Result<CustomerView> {
    Ok(db::customers::get(&s.db, id)
        .await?
        .ok_or(ServiceError::NotFound("customer"))?
        .into())
}

/// The Stripe id of `id` (Bursar's `cu_…` or Stripe's `cus_…`) when it is a live customer of this
/// store in `account`; otherwise a refusal that names the problem.
pub async fn stripe_id_for_order(
    s: &Services,
    store: &StoreId,
    account: &str,
    id: &str,
) -> Result<String> {
    let refused = |message: &str| ServiceError::Refused {
        code: "customer_not_found",
        message: message.to_owned(),
    };
    let row = db::customers::find(&s.db, store, id)
        .await?
        .ok_or_else(|| refused("no such customer in this store (create it with POST /api/v1/stores/{id}/customers)"))?;
    if row.deleted != 0 {
        return Err(refused("this customer was deleted"));
    }
    if row.account_id != account {
        return Err(refused(
            "this customer belongs to the store's previous Stripe account",
        ));
    }
    row.stripe_customer_id
        .ok_or_else(|| refused("this customer was not created at Stripe; create it again"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_loosely_but_surely() {
        assert!(check_email(" ana@shop.example ").is_ok());
        for bad in [
            "",
            "ana",
            "@shop.example",
            "ana@shop",
            "a b@shop.example",
            "a@b@c.example",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }
}

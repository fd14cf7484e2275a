//! The `customers` table: a store's customers and their Stripe ids, always looked up within
//! the store, so one store's customer can never be used for another's order.

use sqlx::{AnyConnection, FromRow};

use super::{now_ms, Db, Result};
use crate::domain::{CustomerId, StoreId};

#[derive(Debug, Clone, FromRow)]
pub struct CustomerRow {
    pub id: String,
    pub store_id: String,
    pub account_id: String,
    pub stripe_customer_id: Option<String>,
    pub email: String,
    pub name: Option<String>,
    pub metadata: String,
    pub deleted: i64,
    pub stripe_updated_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str =
    "id, store_id, account_id, stripe_customer_id, email, name, metadata, deleted, \
    stripe_updated_at, created_at, updated_at";

pub struct NewCustomer<'a> {
    pub id: &'a CustomerId,
    pub store: &'a StoreId,
    pub account_id: &'a str,
    pub email: &'a str,
    pub name: Option<&'a str>,
    pub metadata: &'a str,
}

/// Saved before Stripe is called, so the Stripe idempotency key (from the id) exists first.
pub async fn insert(db: &Db, c: &NewCustomer<'_>) -> Result<CustomerRow> {
    let _turn = db.write_turn().await;
    let sql = format!(
        "INSERT INTO customers (id, store_id, account_id, email, name, metadata, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, CustomerRow>(&sql)
        .bind(c.id.as_str())
        .bind(c.store.as_str())
        .bind(c.account_id)
        .bind(c.email)
        .bind(c.name)
        .bind(c.metadata)
        .bind(now_ms())
        .fetch_one(db.pool())
        .await?)
}

pub async fn set_stripe_id(db: &Db, id: &CustomerId, stripe_id: &str) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query("UPDATE customers SET stripe_customer_id = $1, updated_at = $2 WHERE id = $3")
        .bind(stripe_id)
        .bind(now_ms())
        .bind(id.as_str())
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn delete(db: &Db, id: &CustomerId) -> Result<()> {
    let _turn = db.write_turn().await;
    sqlx::query("DELETE FROM customers WHERE id = $1 AND stripe_customer_id IS NULL")
        .bind(id.as_str())
        .execute(db.pool())
        .await?;
    Ok(())
}

/// A store's customer by Bursar's id (`cu_…`) or Stripe's (`cus_…`).
pub async fn find(db: &Db, store: &StoreId, id: &str) -> Result<Option<CustomerRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM customers WHERE store_id = $1 AND (id = $2 OR stripe_customer_id = $2)"
    );
    Ok(sqlx::query_as::<_, CustomerRow>(&sql)
        .bind(store.as_str())
        .bind(id)
        .fetch_optional(db.pool())
        .await?)
}

pub async fn get(db: &Db, id: &CustomerId) -> Result<Option<CustomerRow>> {
    let sql = format!("SELECT {COLUMNS} FROM customers WHERE id = $1");
    Ok(sqlx::query_as::<_, CustomerRow>(&sql)
        .bind(id.as_str())
        .fetch_optional(db.pool())
        .await?)
}

pub async fn by_stripe_id(
    conn: &mut AnyConnection,
    store: &StoreId,
    stripe_id: &str,
) -> Result<Option<CustomerRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM customers WHERE store_id = $1 AND stripe_customer_id = $2{}",
        super::for_update(conn)
    );
    Ok(sqlx::query_as::<_, CustomerRow>(&sql)
        .bind(store.as_str())
        .bind(stripe_id)
        .fetch_optional(conn)
        .await?)
}

/// Applies what a `customer.*` event says, if it is newer than what was applied (Stripe's
/// `created`); a deleted customer stays deleted.
/// Applies what a Stripe event says of the customer (read with `by_stripe_id` in the same
/// transaction, which locks it); an older event than the last applied, or any after a deletion,
/// changes nothing. Returns the row after, when the event changed what the API shows.
pub async fn apply_event(
    conn: &mut AnyConnection,
    row: &CustomerRow,
    email: Option<&str>,
    name: Option<&str>,
    deleted: bool,
    at: i64,
) -> Result<Option<CustomerRow>> {
    if row.deleted != 0 || row.stripe_updated_at.is_some_and(|t| t > at) {
        return Ok(None);
    }
    let sql = format!(
        "UPDATE customers SET email = COALESCE($1, email), name = CASE WHEN $2 IS NULL THEN name ELSE $2 END, \
         deleted = $3, stripe_updated_at = $4, updated_at = $5 WHERE id = $6 RETURNING {COLUMNS}"
    );
    let after = sqlx::query_as::<_, CustomerRow>(&sql)
        .bind(email)
        .bind(name)
        .bind(i64::from(deleted))
        .bind(at)
        .bind(now_ms())
        .bind(row.id.as_str())
        .fetch_one(conn)
        .await?;
    let changed =
        (&after.email, &after.name, after.deleted) != (&row.email, &row.name, row.deleted);
    Ok(changed.then_some(after))
}

/// A store's customers, newest first, before the cursor `before`.
pub async fn list(
    db: &Db,
    store: &StoreId,
    before: Option<&CustomerId>,
    limit: i64,
) -> Result<Vec<CustomerRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM customers WHERE store_id = $1 AND ($2 = '' OR id < $2) ORDER BY id DESC LIMIT $3"
    );
    Ok(sqlx::query_as::<_, CustomerRow>(&sql)
        .bind(store.as_str())
        .bind(before.map(CustomerId::as_str).unwrap_or(""))
        .bind(limit)
        .fetch_all(db.pool())
        .await?)
}

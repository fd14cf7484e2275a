//! The `connections` table: a store's one Stripe connection, its sealed secrets, and the
//! account state that webhooks keep current. Every function takes the `StoreId` it acts on.

use sqlx::{Any, AnyConnection, Executor, FromRow};

use super::{flag, now_ms, Db, Engine, Result};
use crate::domain::connection::ConnectionKind;
use crate::domain::{AccountId, KeyKind, Mode, StoreId};

#[derive(Debug, Clone, FromRow)]
pub struct ConnectionRow {
    pub store_id: String,
    #[sqlx(try_from = "String")]
    pub kind: ConnectionKind,
    /// `standard`, `express` or `v2` on `connect` connections.
    pub connect_type: Option<String>,
    #[sqlx(try_from = "String")]
    pub mode: Mode,
    pub account_id: Option<String>,
    pub key_kind: Option<String>,
    pub publishable_key: Option<String>,
    pub secret_key_enc: Option<String>,
    pub webhook_secret_enc: Option<String>,
    pub charges_enabled: i64,
    pub payouts_enabled: i64,
    pub details_submitted: i64,
    pub requirements: Option<String>,
    pub deauthorized: i64,
    pub last_payout_failure: Option<String>,
    pub balance: Option<String>,
    pub external_account: Option<String>,
    pub account_synced_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ConnectionRow {
    pub fn is_connect(&self) -> bool {
        self.kind == ConnectionKind::Connect
    }

    pub fn is_deauthorized(&self) -> bool {
        self.deauthorized != 0
    }
}

const COLUMNS: &str = "store_id, kind, connect_type, mode, account_id, key_kind, publishable_key, secret_key_enc, \
    webhook_secret_enc, charges_enabled, payouts_enabled, details_submitted, requirements, deauthorized, \
    last_payout_failure, balance, external_account, account_synced_at, created_at, updated_at";

/// A validated `keys` connection, secrets already sealed.
pub struct NewKeys<'a> {
    pub mode: Mode,
    pub account_id: &'a AccountId,
    pub key_kind: KeyKind,
    pub publishable_key: &'a str,
    pub secret_key_enc: &'a str,
    pub webhook_secret_enc: Option<&'a str>,
    /// The account as Stripe described it when the key was checked.
    pub account: &'a AccountState,
}

/// What Bursar keeps of a Stripe account.
#[derive(Debug, Clone, Default)]
pub struct AccountState {
    pub charges_enabled: bool,
    pub payouts_enabled: bool,
    pub details_submitted: bool,
    pub requirements: Option<String>,
}

/// Saves a `keys` connection. A webhook secret that is not given is kept while the account and
/// mode stay the same (an account has one `acct_` id but separate test and live endpoints); a
/// different account or mode starts clean.
pub async fn upsert_keys(
    conn: &mut AnyConnection,
    store: &StoreId,
    new: &NewKeys<'_>,
) -> Result<ConnectionRow> {
    let now = now_ms();
    let sql = format!(
        "INSERT INTO connections (store_id, kind, mode, account_id, key_kind, publishable_key, secret_key_enc, \
           webhook_secret_enc, charges_enabled, payouts_enabled, details_submitted, requirements, account_synced_at, \
           created_at, updated_at) \
         VALUES ($1, 'keys', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $12) \
         ON CONFLICT (store_id) DO UPDATE SET kind = 'keys', connect_type = NULL, mode = excluded.mode, \
           webhook_secret_enc = CASE WHEN excluded.webhook_secret_enc IS NOT NULL THEN excluded.webhook_secret_enc \
             WHEN connections.account_id = excluded.account_id AND connections.mode = excluded.mode THEN connections.webhook_secret_enc ELSE NULL END, \
           deauthorized = 0, \
           last_payout_failure = CASE WHEN connections.account_id = excluded.account_id AND connections.mode = excluded.mode THEN connections.last_payout_failure ELSE NULL END, \
           balance = CASE WHEN connections.account_id = excluded.account_id AND connections.mode = excluded.mode THEN connections.balance ELSE NULL END, \
           external_account = CASE WHEN connections.account_id = excluded.account_id AND connections.mode = excluded.mode THEN connections.external_account ELSE NULL END, \
           account_id = excluded.account_id, key_kind = excluded.key_kind, publishable_key = excluded.publishable_key, \
           secret_key_enc = excluded.secret_key_enc, charges_enabled = excluded.charges_enabled, \
           payouts_enabled = excluded.payouts_enabled, details_submitted = excluded.details_submitted, \
           requirements = excluded.requirements, account_synced_at = excluded.account_synced_at, \
           updated_at = excluded.updated_at \
         RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, ConnectionRow>(&sql)
        .bind(store.as_str())
        .bind(new.mode.as_str())
        .bind(new.account_id.as_str())
        .bind(new.key_kind.as_str())
        .bind(new.publishable_key)
        .bind(new.secret_key_enc)
        .bind(new.webhook_secret_enc)
        .bind(flag(new.account.charges_enabled))
        .bind(flag(new.account.payouts_enabled))
        .bind(flag(new.account.details_submitted))
        .bind(new.account.requirements.as_deref())
        .bind(now)
        .fetch_one(conn)
        .await?)
}

/// A `connect` connection: a connected account of the platform.
pub struct NewConnect<'a> {
    pub mode: Mode,
    pub account_id: &'a AccountId,
    pub connect_type: &'a str,
    pub publishable_key: Option<&'a str>,
    pub account: &'a AccountState,
}

/// Saves a `connect` connection, replacing whatever the store held (its keys and secrets are
/// dropped). The same account again keeps its projections; another account starts clean. An
/// account already connected to another store is a conflict (`connections_connect_account`).
pub async fn upsert_connect(
    conn: &mut AnyConnection,
    store: &StoreId,
    new: &NewConnect<'_>,
) -> Result<ConnectionRow> {
    let now = now_ms();
    let same = "connections.account_id = excluded.account_id AND connections.mode = excluded.mode";
    let sql = format!(
        "INSERT INTO connections (store_id, kind, connect_type, mode, account_id, publishable_key, \
           charges_enabled, payouts_enabled, details_submitted, requirements, account_synced_at, created_at, updated_at) \
         VALUES ($1, 'connect', $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $10) \
         ON CONFLICT (store_id) DO UPDATE SET kind = 'connect', connect_type = excluded.connect_type, \
           mode = excluded.mode, key_kind = NULL, secret_key_enc = NULL, webhook_secret_enc = NULL, deauthorized = 0, \
           last_payout_failure = CASE WHEN {same} THEN connections.last_payout_failure ELSE NULL END, \
           balance = CASE WHEN {same} THEN connections.balance ELSE NULL END, \
           external_account = CASE WHEN {same} THEN connections.external_account ELSE NULL END, \
           account_id = excluded.account_id, publishable_key = excluded.publishable_key, \
           charges_enabled = excluded.charges_enabled, payouts_enabled = excluded.payouts_enabled, \
           details_submitted = excluded.details_submitted, requirements = excluded.requirements, \
           account_synced_at = excluded.account_synced_at, updated_at = excluded.updated_at \
         RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, ConnectionRow>(&sql)
        .bind(store.as_str())
        .bind(new.connect_type)
        .bind(new.mode.as_str())
        .bind(new.account_id.as_str())
        .bind(new.publishable_key)
        .bind(flag(new.account.charges_enabled))
        .bind(flag(new.account.payouts_enabled))
        .bind(flag(new.account.details_submitted))
        .bind(new.account.requirements.as_deref())
        .bind(now)
        .fetch_one(conn)
        .await?)
}

pub async fn get<'e>(
    ex: impl Executor<'e, Database = Any>,
    store: &StoreId,
) -> Result<Option<ConnectionRow>> {
    let sql = format!("SELECT {COLUMNS} FROM connections WHERE store_id = $1");
    Ok(sqlx::query_as::<_, ConnectionRow>(&sql)
        .bind(store.as_str())
        .fetch_optional(ex)
        .await?)
}

/// Every connection, by store id.
pub async fn all(db: &Db) -> Result<Vec<ConnectionRow>> {
    let sql = format!("SELECT {COLUMNS} FROM connections ORDER BY store_id");
    Ok(sqlx::query_as::<_, ConnectionRow>(&sql)
        .fetch_all(db.pool())
        .await?)
}

/// Sets the webhook secret only while the connection still holds the key `key_enc` (the one
/// its endpoint was made with) and the webhook secret `previous` (None: none), as its setup
/// found them; false when either changed (new keys, a disconnection, another setup first).
pub async fn set_webhook_secret_for_key(
    db: &Db,
    store: &StoreId,
    sealed: &str,
    key_enc: &str,
    previous: Option<&str>,
) -> Result<bool> {
    let _turn = db.write_turn().await;
    let done = sqlx::query(
        "UPDATE connections SET webhook_secret_enc = $1, updated_at = $2 WHERE store_id = $3 AND secret_key_enc = $4 \
           AND COALESCE(webhook_secret_enc, '') = $5",
    )
    .bind(sealed)
    .bind(now_ms())
    .bind(store.as_str())
    .bind(key_enc)
    .bind(previous.unwrap_or(""))
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Returns false when the store has no connection to attach the secret to.
pub async fn set_webhook_secret(db: &Db, store: &StoreId, sealed: &str) -> Result<bool> {
    let _turn = db.write_turn().await;
    let done = sqlx::query(
        "UPDATE connections SET webhook_secret_enc = $1, updated_at = $2 WHERE store_id = $3",
    )
    .bind(sealed)
    .bind(now_ms())
    .bind(store.as_str())
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn delete(conn: &mut AnyConnection, store: &StoreId) -> Result<bool> {
    let done = sqlx::query("DELETE FROM connections WHERE store_id = $1")
        .bind(store.as_str())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The connections of `stores` (sorted), read inside a write transaction so they cannot
/// change before it commits: PostgreSQL locks the rows in store order (so concurrent workers
/// cannot deadlock); SQLite's write transaction already excludes every other writer.
pub async fn lock_for_apply(
    conn: &mut sqlx::AnyConnection,
    engine: Engine,
    stores: &[&str],
) -> Result<Vec<ConnectionRow>> {
    let list = (1..=stores.len())
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(",");
    let lock = match engine {
        Engine::Postgres => " ORDER BY store_id FOR UPDATE",
        Engine::Sqlite => "",
    };
    let sql = format!("SELECT {COLUMNS} FROM connections WHERE store_id IN ({list}){lock}");
    let mut query = sqlx::query_as::<_, ConnectionRow>(&sql);
    for store in stores {
        query = query.bind(*store);
    }
    Ok(query.persistent(false).fetch_all(conn).await?)
}

/// The store that owns a connected account (`connect` connections only).
pub async fn store_for_connect_account<'e>(
    ex: impl Executor<'e, Database = Any>,
    account: &str,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar::<_, String>(
        "SELECT store_id FROM connections WHERE kind = 'connect' AND account_id = $1",
    )
    .bind(account)
    .fetch_optional(ex)
    .await?)
}

pub async fn set_account_state<'e>(
    ex: impl Executor<'e, Database = Any>,
    store: &StoreId,
    state: &AccountState,
) -> Result<()> {
    sqlx::query(
        "UPDATE connections SET charges_enabled = $1, payouts_enabled = $2, details_submitted = $3, \
         requirements = $4, account_synced_at = $5, updated_at = $5 WHERE store_id = $6",
    )
    .bind(flag(state.charges_enabled))
    .bind(flag(state.payouts_enabled))
    .bind(flag(state.details_submitted))
    .bind(state.requirements.as_deref())
    .bind(now_ms())
    .bind(store.as_str())
    .execute(ex)
    .await?;
    Ok(())
}

/// Marks the store's connection deauthorized; false when it already was (or is gone).
pub async fn set_deauthorized<'e>(
    ex: impl Executor<'e, Database = Any>,
    store: &StoreId,
) -> Result<bool> {
    let done = sqlx::query("UPDATE connections SET deauthorized = 1, charges_enabled = 0, payouts_enabled = 0, updated_at = $1 WHERE store_id = $2 AND deauthorized = 0")
        .bind(now_ms())
        .bind(store.as_str())
        .execute(ex)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets one of the JSON projection columns (`last_payout_failure`, `balance`).
pub async fn set_json<'e>(
    ex: impl Executor<'e, Database = Any>,
    store: &StoreId,
    column: JsonColumn,
    json: &str,
) -> Result<()> {
    let sql = format!(
        "UPDATE connections SET {} = $1, updated_at = $2 WHERE store_id = $3",
        column.name()
    );
    sqlx::query(&sql)
        .bind(json)
        .bind(now_ms())
        .bind(store.as_str())
        .execute(ex)
        .await?;
    Ok(())
}

#[derive(Clone, Copy, Debug)]
pub enum JsonColumn {
    LastPayoutFailure,
    Balance,
    ExternalAccount,
}

impl JsonColumn {
    fn name(self) -> &'static str {
        match self {
            JsonColumn::LastPayoutFailure => "last_payout_failure",
            JsonColumn::Balance => "balance",
            JsonColumn::ExternalAccount => "external_account",
        }
    }
}

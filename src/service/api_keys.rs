//! Platform API keys: `bsr_` + 32 random base62 characters, shown once, stored as SHA-256.

use rand::distributions::Alphanumeric;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use serde::Serialize;

use super::{Result, ServiceError};
use crate::db::{self, api_keys::ApiKeyRow, Db};
use crate::domain::{ApiKeyId, Invalid};

pub const PREFIX: &str = "bsr_";

/// Creates a key and returns its id and the only copy of its plaintext.
pub async fn create(db: &Db, name: &str) -> Result<(ApiKeyId, SecretString)> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(Invalid::new("name", "must be 1 to 100 characters").into());
    }
    let body: String = rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let key = SecretString::from(format!("{PREFIX}{body}"));
    let id = ApiKeyId::generate();
    let shown = &key.expose_secret()[..PREFIX.len() + 4];
    db::api_keys::insert(db, &id, name, &hash(key.expose_secret()), shown).await?;
    Ok((id, key))
}

/// The active key matching `presented`, if any.
pub async fn authenticate(db: &Db, presented: &str) -> Result<Option<ApiKeyRow>> {
    if !presented.starts_with(PREFIX) || presented.len() > 100 {
        return Ok(None);
    }
    Ok(db::api_keys::find_active_by_hash(db, &hash(presented)).await?)
}

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A key as operators see it: never the key itself, only its first characters.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub object: &'static str,
    pub name: String,
    /// The key's first characters, to recognise it.
    pub prefix: String,
    pub created: i64,
    pub revoked: Option<i64>,
}

impl From<ApiKeyRow> for ApiKeyView {
    fn from(r: ApiKeyRow) -> Self {
        Self {
            id: r.id,
            object: "api_key",
            name: r.name,
            prefix: r.prefix,
            created: r.created_at / 1000,
            revoked: r.revoked_at.map(|t| t / 1000),
        }
    }
}

pub async fn list(db: &Db) -> Result<Vec<ApiKeyView>> {
    Ok(db::api_keys::list(db)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// Revokes a key: from then on it authenticates nothing, and its console sessions are over.
pub async fn revoke(db: &Db, id: &str) -> Result<ApiKeyView> {
    let id = ApiKeyId::parse(id).map_err(|_| ServiceError::NotFound("API key"))?;
    let row = db::api_keys::revoke(db, &id)
        .await?
        .ok_or(ServiceError::NotFound("API key"))?;
    // Sessions also check the key on every request; deleting them keeps none around.
    let sessions = db::console_sessions::delete_for_key(db, &row.id).await?;
    tracing::info!(key_id = %row.id, sessions, "API key revoked");
    Ok(row.into())
}

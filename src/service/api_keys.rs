//! Platform API keys: `bsr_` + 32 random base62 characters, shown once, stored as SHA-256.

use rand::distributions::Alphanumeric;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::Result;
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

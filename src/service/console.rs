//! Operator console sessions: opened with a platform API key, held by the browser as a random
//! id (32 bytes, base64url) of which only the SHA-256 is stored, ended by logging out, by
//! revoking the key (`api_keys::revoke`), after 12 hours, or after 30 minutes without a request.
//!
//! A session's CSRF token is derived from its id (HMAC-SHA256 keyed with the id), so it needs
//! no storage, differs per session, and cannot be computed without the cookie.

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use super::{api_keys, Result, Services};
use crate::db::{self, now_ms};

/// How long a session lasts at most, whatever its use.
pub const LIFETIME_MS: i64 = 12 * 3600 * 1000;
/// How long a session survives without a request.
pub const IDLE_MS: i64 = 30 * 60 * 1000;
/// Activity is written at most this often per session: a page view is not a write each time.
const TOUCH_EVERY_MS: i64 = 60 * 1000;

/// The base64url length of a 32-byte id.
const TOKEN_LEN: usize = 43;

/// A session just opened: the cookie's value, for the browser only.
pub struct Opened {
    pub token: SecretString,
}

/// A live session, as the console's pages see it.
#[derive(Clone, Debug)]
pub struct Session {
    pub api_key_id: String,
    /// Every POST form of the session carries this.
    pub csrf: String,
}

/// Opens a session for `api_key` if it is an active key; `None` otherwise (why is not told).
/// Sessions no longer usable are deleted on the way, so the table holds only live ones.
pub async fn open(s: &Services, api_key: &str) -> Result<Option<Opened>> {
    let Some(key) = api_keys::authenticate(&s.db, api_key.trim()).await? else {
        return Ok(None);
    };
    let now = now_ms();
    db::console_sessions::prune(&s.db, now, now - IDLE_MS).await?;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    db::console_sessions::insert(&s.db, &hash(&token), &key.id, now, now + LIFETIME_MS).await?;
    tracing::info!(operator = %key.id, "console session opened");
    Ok(Some(Opened {
        token: SecretString::from(token),
    }))
}

/// The live session this cookie value names, if any; its activity is recorded.
pub async fn find(s: &Services, token: &str) -> Result<Option<Session>> {
    if !well_formed(token) {
        return Ok(None);
    }
    let id_hash = hash(token);
    let now = now_ms();
    let Some(row) = db::console_sessions::find_live(&s.db, &id_hash, now, now - IDLE_MS).await?
    else {
        return Ok(None);
    };
    if now - row.last_seen_at >= TOUCH_EVERY_MS {
        db::console_sessions::touch(&s.db, &id_hash, now).await?;
    }
    Ok(Some(Session {
        api_key_id: row.api_key_id,
        csrf: csrf_token(token),
    }))
}

/// Ends the session this cookie value names (nothing if there is none).
pub async fn close(s: &Services, token: &str) -> Result<()> {
    if well_formed(token) {
        db::console_sessions::delete(&s.db, &hash(token)).await?;
    }
    Ok(())
}

/// Whether `presented` is the session's CSRF token, compared in constant time.
pub fn csrf_matches(session: &Session, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            p.as_bytes(),
            session.csrf.as_bytes(),
        ))
    })
}

/// A token as `open` makes them; anything else is refused before the database is asked.
fn well_formed(token: &str) -> bool {
    token.len() == TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn csrf_token(token: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(token.as_bytes()).expect("HMAC takes any key length");
    mac.update(b"bursar console csrf");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_differ_per_session_and_are_not_the_stored_hash() {
        let a = "a".repeat(TOKEN_LEN);
        let b = "b".repeat(TOKEN_LEN);
        assert_ne!(csrf_token(&a), csrf_token(&b));
        assert_eq!(csrf_token(&a), csrf_token(&a));
        assert_ne!(csrf_token(&a), hash(&a));
        let session = Session {
            api_key_id: "key_x".into(),
            csrf: csrf_token(&a),
        };
        assert!(csrf_matches(&session, Some(csrf_token(&a).as_str())));
        assert!(!csrf_matches(&session, Some(csrf_token(&b).as_str())));
        assert!(!csrf_matches(&session, Some("")));
        assert!(!csrf_matches(&session, None));
    }

    #[test]
    fn only_tokens_of_the_right_shape_are_looked_up() {
        assert!(well_formed(&format!("{}A-_", "z".repeat(TOKEN_LEN - 3))));
        assert!(!well_formed("short"));
        assert!(!well_formed(&format!("{}=", "a".repeat(TOKEN_LEN - 1))));
        assert!(!well_formed(&"a".repeat(TOKEN_LEN + 1)));
    }
}

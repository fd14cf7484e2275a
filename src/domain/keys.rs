//! Stripe API keys as typed values: the prefix tells the kind and the mode, so a key that is
//! not a Stripe key never reaches Stripe, and a secret never leaves its `SecretString`.

use secrecy::{ExposeSecret, SecretString};

use super::{Invalid, Mode};

/// A full secret key (`sk_`) or a restricted key (`rk_`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    Secret,
    Restricted,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Secret => "secret",
            KeyKind::Restricted => "restricted",
        }
    }
}

/// A secret or restricted Stripe key. `Debug` never shows the key.
#[derive(Clone)]
pub struct SecretKey {
    key: SecretString,
    kind: KeyKind,
    mode: Mode,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SecretKey({}, {}, [REDACTED])",
            self.kind.as_str(),
            self.mode
        )
    }
}

impl SecretKey {
    pub fn parse(key: SecretString) -> Result<Self, Invalid> {
        let raw = key.expose_secret();
        let (kind, mode) = match raw.get(..8) {
            Some("sk_test_") => (KeyKind::Secret, Mode::Test),
            Some("sk_live_") => (KeyKind::Secret, Mode::Live),
            Some("rk_test_") => (KeyKind::Restricted, Mode::Test),
            Some("rk_live_") => (KeyKind::Restricted, Mode::Live),
            _ => return Err(Invalid::new(
                "secret_key",
                "must be a Stripe secret (sk_test_/sk_live_) or restricted (rk_test_/rk_live_) key",
            )),
        };
        check_key_body(&raw[8..], "secret_key")?;
        Ok(Self { key, kind, mode })
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn secret(&self) -> &SecretString {
        &self.key
    }
}

/// A publishable key (`pk_`): public by design, so a plain string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishableKey {
    key: String,
    mode: Mode,
}

impl PublishableKey {
    pub fn parse(key: &str) -> Result<Self, Invalid> {
        let mode = match key.get(..8) {
            Some("pk_test_") => Mode::Test,
            Some("pk_live_") => Mode::Live,
            _ => {
                return Err(Invalid::new(
                    "publishable_key",
                    "must be a Stripe publishable key (pk_test_/pk_live_)",
                ))
            }
        };
        check_key_body(&key[8..], "publishable_key")?;
        Ok(Self {
            key: key.to_owned(),
            mode,
        })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn as_str(&self) -> &str {
        &self.key
    }
}

/// A webhook signing secret (`whsec_`).
pub fn parse_webhook_secret(secret: SecretString) -> Result<SecretString, Invalid> {
    match secret.expose_secret().strip_prefix("whsec_") {
        Some(body)
            if !body.is_empty()
                && body.len() <= 200
                && body.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(secret)
        }
        _ => Err(Invalid::new(
            "webhook_secret",
            "must be a Stripe webhook signing secret (whsec_…)",
        )),
    }
}

/// Whether a secret (or restricted) key and a publishable key visibly belong to different
/// accounts. Stripe's keys of one account share the part after `51` (`sk_test_51Hx…`,
/// `pk_test_51Hx…`); Stripe gives no call that checks a pair, so keys without that shape
/// say nothing either way.
pub fn visibly_unpaired(secret: &SecretKey, publishable: &PublishableKey) -> bool {
    const SHARED: usize = 12;
    let part = |key: &str| {
        key.get(8..)
            .and_then(|body| body.strip_prefix("51"))
            .and_then(|rest| rest.get(..SHARED))
            .map(str::to_owned)
    };
    match (
        part(secret.secret().expose_secret()),
        part(publishable.as_str()),
    ) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    }
}

fn check_key_body(body: &str, field: &'static str) -> Result<(), Invalid> {
    if body.len() < 8
        || body.len() > 250
        || !body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(Invalid::new(
            field,
            "is not a whole Stripe key (after its prefix come 8 to 250 letters, digits or underscores; check it was copied in full)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_two_accounts_are_told_apart_only_when_their_shape_says_so() {
        let sk = |k: &str| SecretKey::parse(secret(k)).unwrap();
        let pk = |k: &str| PublishableKey::parse(k).unwrap();
        let a = "51HxYzAbCdEfGh12345678901234567890";
        let b = "51QqRrSsTtUuVv12345678901234567890";
        assert!(!visibly_unpaired(
            &sk(&format!("rk_test_{a}")),
            &pk(&format!("pk_test_{a}"))
        ));
        assert!(visibly_unpaired(
            &sk(&format!("sk_test_{a}")),
            &pk(&format!("pk_test_{b}"))
        ));
        assert!(!visibly_unpaired(
            &sk("sk_test_abcdefgh1234"),
            &pk(&format!("pk_test_{b}"))
        ));
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn prefixes_give_kind_and_mode() {
        let k = SecretKey::parse(secret("rk_live_abcdefgh1234")).unwrap();
        assert_eq!((k.kind(), k.mode()), (KeyKind::Restricted, Mode::Live));
        let k = SecretKey::parse(secret("sk_test_abcdefgh1234")).unwrap();
        assert_eq!((k.kind(), k.mode()), (KeyKind::Secret, Mode::Test));
        assert_eq!(
            PublishableKey::parse("pk_live_abcdefgh1234")
                .unwrap()
                .mode(),
            Mode::Live
        );
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(SecretKey::parse(secret("pk_test_abcdefgh1234")).is_err());
        assert!(SecretKey::parse(secret("sk_test_short")).is_err());
        assert!(SecretKey::parse(secret("sk_test_abc def ghi")).is_err());
        assert!(PublishableKey::parse("sk_test_abcdefgh1234").is_err());
        assert!(parse_webhook_secret(secret("whsec_")).is_err());
        assert!(parse_webhook_secret(secret("whsec_abc123")).is_ok());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let k = SecretKey::parse(secret("sk_test_supersecretvalue")).unwrap();
        assert!(!format!("{k:?}").contains("supersecret"));
    }
}

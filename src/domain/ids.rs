//! Prefixed, time-ordered identifiers. A `StoreId` can never be passed where an `AccountId`
//! is expected: each is its own type, parsed once at the edge.

use std::fmt;

use rand::Rng;

use super::Invalid;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// 10 characters of milliseconds then 16 random ones: ids sort by creation time, which makes
/// them usable as pagination cursors.
fn new_suffix() -> String {
    let mut out = String::with_capacity(26);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    for i in (0..10).rev() {
        out.push(ALPHABET[((millis >> (i * 5)) & 31) as usize] as char);
    }
    let mut rng = rand::thread_rng();
    for _ in 0..16 {
        out.push(ALPHABET[rng.gen_range(0..32)] as char);
    }
    out
}

macro_rules! prefixed_id {
    ($name:ident, $prefix:literal) => {
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, new_suffix()))
            }

            /// Parses an id from untrusted input: the right prefix, then 1..=64 of `[A-Za-z0-9]`.
            pub fn parse(s: &str) -> Result<Self, Invalid> {
                let rest = s.strip_prefix($prefix).ok_or_else(|| {
                    Invalid::new(stringify!($name), format!("must start with `{}`", $prefix))
                })?;
                if rest.is_empty()
                    || rest.len() > 64
                    || !rest.bytes().all(|b| b.is_ascii_alphanumeric())
                {
                    return Err(Invalid::new(stringify!($name), "is not a valid id"));
                }
                Ok(Self(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(StoreId, "st_");
prefixed_id!(ApiKeyId, "key_");
prefixed_id!(AccountId, "acct_");
prefixed_id!(OrderId, "ord_");
prefixed_id!(RefundId, "rf_");
prefixed_id!(CustomerId, "cu_");
prefixed_id!(EndpointId, "ne_");
prefixed_id!(NotificationId, "msg_");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_sort_by_time() {
        let a = StoreId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = StoreId::generate();
        assert!(a < b);
        assert_eq!(StoreId::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn wrong_prefix_or_characters_are_refused() {
        assert!(StoreId::parse("acct_123").is_err());
        assert!(StoreId::parse("st_").is_err());
        assert!(StoreId::parse("st_abc'--").is_err());
        assert!(AccountId::parse("acct_1PgafTB7WZ01zgkW").is_ok());
    }
}

//! A client's `Idempotency-Key` as the rows a creating request makes keep it: the key (hashed
//! with the caller's API key) and a hash of the request it came with. A retry with the same
//! key resumes the row only if it is the same request, and only within the key's window.

/// How long an `Idempotency-Key` binds its request, as at Stripe.
pub const WINDOW_MS: i64 = 24 * 3600 * 1000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestKey {
    /// The client's key, hashed with its API key id (hex).
    pub key: String,
    /// The request's method, path and body, hashed (hex).
    pub request_hash: String,
}

impl RequestKey {
    /// Whether a row made under this key, with `stored` as its request hash, answers this
    /// request. Rows saved before hashes were kept have none and match any request.
    pub fn same_request(&self, stored: Option<&str>) -> bool {
        stored.is_none_or(|h| h == self.request_hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_request_matches() {
        let k = RequestKey {
            key: "k".into(),
            request_hash: "aa".into(),
        };
        assert!(k.same_request(Some("aa")));
        assert!(!k.same_request(Some("bb")));
        assert!(k.same_request(None));
    }
}

//! How the console writes times and links: pure functions, tested here.

use std::time::{Duration, UNIX_EPOCH};

/// A moment, for `<time datetime="{{ iso }}" title="{{ text }}">{{ text }}</time>`: RFC 3339
/// and readable text, both in UTC (the console's script shows it in the viewer's zone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Time {
    /// `2024-05-01T12:34:56Z`
    pub iso: String,
    /// `2024-05-01 12:34:56 UTC`
    pub text: String,
}

impl Time {
    /// From unix seconds, as the API's views carry them.
    pub fn secs(unix: i64) -> Self {
        Self::ms(unix.saturating_mul(1000))
    }

    /// From unix milliseconds, as the tables keep them.
    pub fn ms(unix: i64) -> Self {
        // RFC 3339 writes years up to 9999; a stored time past it is no real time anyway.
        let at = UNIX_EPOCH + Duration::from_millis(unix.clamp(0, 253_402_300_799_000) as u64);
        let iso = humantime::format_rfc3339_seconds(at).to_string();
        let text = format!("{} UTC", iso.trim_end_matches('Z').replacen('T', " ", 1));
        Self { iso, text }
    }
}

/// `path?k=v&…` with the parameters whose value is not empty, query-encoded: the links that
/// carry a list's filters (and its cursor) to the next page.
pub fn href(path: &str, params: &[(&str, &str)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (name, value) in params.iter().filter(|(_, v)| !v.is_empty()) {
        query.append_pair(name, value);
        any = true;
    }
    if any {
        format!("{path}?{}", query.finish())
    } else {
        path.to_owned()
    }
}

/// A JSON value as text: strings as they are, anything else as JSON.
pub fn plain(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_in_utc_twice_over() {
        let t = Time::secs(1_700_000_000);
        assert_eq!(t.iso, "2023-11-14T22:13:20Z");
        assert_eq!(t.text, "2023-11-14 22:13:20 UTC");
        assert_eq!(Time::ms(1_700_000_000_999), t);
        assert_eq!(Time::secs(-5).iso, "1970-01-01T00:00:00Z");
        assert_eq!(Time::secs(i64::MAX).iso, "9999-12-31T23:59:59Z");
    }

    #[test]
    fn links_carry_only_the_filters_that_are_set() {
        assert_eq!(href("/console/orders", &[]), "/console/orders");
        assert_eq!(
            href("/console/orders", &[("status", ""), ("store_id", "")]),
            "/console/orders"
        );
        assert_eq!(
            href(
                "/console/events",
                &[("type", "payment_intent.succeeded"), ("cursor", "42")]
            ),
            "/console/events?type=payment_intent.succeeded&cursor=42"
        );
        assert_eq!(
            href("/console/stores", &[("q", "a&b c")]),
            "/console/stores?q=a%26b+c"
        );
    }
}

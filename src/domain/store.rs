//! A store: one tenant of the platform.

use std::collections::BTreeMap;

use super::Invalid;

/// A store's display name: 1..=200 characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreName(String);

impl StoreName {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Err(Invalid::new("name", "must not be empty"));
        }
        if trimmed.chars().count() > 200 {
            return Err(Invalid::new("name", "must be at most 200 characters"));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(Invalid::new("name", "must not contain control characters"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The platform's own id for the store: 1..=200 printable ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalId(String);

impl ExternalId {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if s.is_empty() || s.len() > 200 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Invalid::new(
                "external_id",
                "must be 1 to 200 printable ASCII characters",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Key-value metadata with Stripe's limits: 50 keys, keys up to 40 and values up to 500 chars.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    pub fn parse(map: BTreeMap<String, String>) -> Result<Self, Invalid> {
        if map.len() > 50 {
            return Err(Invalid::new("metadata", "at most 50 keys"));
        }
        for (k, v) in &map {
            if k.is_empty() || k.chars().count() > 40 {
                return Err(Invalid::new("metadata", "keys must be 1 to 40 characters"));
            }
            if v.chars().count() > 500 {
                return Err(Invalid::new(
                    "metadata",
                    "values must be at most 500 characters",
                ));
            }
        }
        Ok(Self(map))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(StoreName::parse("  Shop ").unwrap().as_str(), "Shop");
        assert!(StoreName::parse("   ").is_err());
        assert!(StoreName::parse(&"x".repeat(201)).is_err());
        assert!(StoreName::parse("a\u{0}b").is_err());
    }

    #[test]
    fn metadata_limits_follow_stripe() {
        let many: BTreeMap<_, _> = (0..51).map(|i| (format!("k{i}"), "v".into())).collect();
        assert!(Metadata::parse(many).is_err());
        let long: BTreeMap<_, _> = [("k".to_string(), "v".repeat(501))].into();
        assert!(Metadata::parse(long).is_err());
    }
}

//! How a store is connected to Stripe.

use super::Invalid;

/// A store's connection: its merchant's own API keys (`keys`), or an account connected to the
/// platform through Connect (`connect`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionKind {
    Keys,
    Connect,
}

impl ConnectionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionKind::Keys => "keys",
            ConnectionKind::Connect => "connect",
        }
    }
}

impl TryFrom<String> for ConnectionKind {
    type Error = Invalid;

    fn try_from(s: String) -> Result<Self, Invalid> {
        match s.as_str() {
            "keys" => Ok(ConnectionKind::Keys),
            "connect" => Ok(ConnectionKind::Connect),
            _ => Err(Invalid::new(
                "kind",
                format!("`{s}` is not a connection kind"),
            )),
        }
    }
}

impl std::fmt::Display for ConnectionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_back_as_stored() {
        for k in [ConnectionKind::Keys, ConnectionKind::Connect] {
            assert_eq!(ConnectionKind::try_from(k.as_str().to_owned()), Ok(k));
        }
        assert!(ConnectionKind::try_from("oauth".to_owned()).is_err());
    }
}

use std::fmt;

/// Stripe's test or live mode, read from key prefixes or an object's `livemode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Test,
    Live,
}

impl Mode {
    pub fn from_livemode(livemode: bool) -> Self {
        if livemode {
            Mode::Live
        } else {
            Mode::Test
        }
    }

    pub fn is_live(self) -> bool {
        self == Mode::Live
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Live => "live",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "test" => Some(Mode::Test),
            "live" => Some(Mode::Live),
            _ => None,
        }
    }
}

impl TryFrom<String> for Mode {
    type Error = super::Invalid;

    fn try_from(s: String) -> Result<Self, super::Invalid> {
        Mode::parse(&s).ok_or_else(|| super::Invalid::new("mode", "must be test or live"))
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

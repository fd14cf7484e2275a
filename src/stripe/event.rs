//! The part of Stripe's event envelope Bursar reads at the door; the full payload is kept raw.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Envelope {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub created: i64,
    pub livemode: bool,
    /// The connected account, on Connect events.
    #[serde(default)]
    pub account: Option<String>,
    pub data: EnvelopeData,
}

#[derive(Debug, Deserialize)]
pub struct EnvelopeData {
    /// Checked to be a JSON object, not parsed: workers read it, the door does not need to.
    pub object: Box<serde_json::value::RawValue>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("body is not a Stripe event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("event {0} is malformed")]
    Field(&'static str),
}

impl Envelope {
    pub fn parse(raw: &[u8]) -> Result<Self, EnvelopeError> {
        let e: Envelope = serde_json::from_slice(raw)?;
        let ok =
            |s: &str| !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic());
        if !ok(&e.id) {
            return Err(EnvelopeError::Field("id"));
        }
        if !ok(&e.event_type) {
            return Err(EnvelopeError::Field("type"));
        }
        if e.account
            .as_deref()
            .is_some_and(|a| !a.starts_with("acct_") || !ok(a))
        {
            return Err(EnvelopeError::Field("account"));
        }
        if !e.data.object.get().starts_with('{') {
            return Err(EnvelopeError::Field("data.object"));
        }
        Ok(e)
    }
}

//! The part of Stripe's event envelope Bursar reads at the door; the full payload is kept raw.
//!
//! Two shapes arrive: v1 snapshot events (`object: "event"`, `created` in unix seconds, the
//! object in `data.object`) and v2 thin events (`object: "v2.core.event"`, `created` as an
//! RFC 3339 string, no `data`, a `related_object` to fetch).

use serde::Deserialize;

/// What the door keeps of an event of either shape.
#[derive(Debug)]
pub struct Envelope {
    pub id: String,
    pub event_type: String,
    /// Unix seconds.
    pub created: i64,
    pub livemode: bool,
    /// The connected account: `account` on v1 Connect events; on thin events the context, or
    /// the related account itself.
    pub account: Option<String>,
    pub thin: bool,
}

#[derive(Deserialize)]
struct Raw<'a> {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    created: serde_json::Value,
    livemode: bool,
    #[serde(default)]
    object: Option<String>,
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    related_object: Option<Related>,
    #[serde(default, borrow)]
    data: Option<Data<'a>>,
}

#[derive(Deserialize)]
struct Related {
    id: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Data<'a> {
    /// Checked to be a JSON object, not parsed (nor copied): workers read it, the door does not
    /// need to.
    #[serde(borrow)]
    object: Option<&'a serde_json::value::RawValue>,
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
        let e: Raw = serde_json::from_slice(raw)?;
        let ok =
            |s: &str| !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic());
        let account_ok =
            |a: &Option<String>| a.as_deref().is_none_or(|a| a.starts_with("acct_") && ok(a));
        if !ok(&e.id) {
            return Err(EnvelopeError::Field("id"));
        }
        if !ok(&e.event_type) {
            return Err(EnvelopeError::Field("type"));
        }
        let thin = e.object.as_deref() == Some("v2.core.event");
        let (created, account) = if thin {
            let created = e
                .created
                .as_str()
                .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .ok_or(EnvelopeError::Field("created"))?
                .as_secs() as i64;
            let related_account = e
                .related_object
                .as_ref()
                .filter(|r| r.kind == "v2.core.account")
                .map(|r| r.id.clone());
            if !account_ok(&related_account) {
                return Err(EnvelopeError::Field("related_object"));
            }
            (created, e.context.or(related_account))
        } else {
            let created = e.created.as_i64().ok_or(EnvelopeError::Field("created"))?;
            let object = e.data.and_then(|d| d.object);
            if !object.is_some_and(|o| o.get().starts_with('{')) {
                return Err(EnvelopeError::Field("data.object"));
            }
            (created, e.account)
        };
        if !account_ok(&account) {
            return Err(EnvelopeError::Field("account"));
        }
        Ok(Envelope {
            id: e.id,
            event_type: e.event_type,
            created,
            livemode: e.livemode,
            account,
            thin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thin_events_take_created_from_rfc3339_and_account_from_related_object() {
        let raw = br#"{"id":"evt_test_65R","object":"v2.core.event","type":"v2.core.account[requirements].updated",
            "livemode":false,"created":"2026-11-24T10:00:00.123Z",
            "related_object":{"id":"acct_1Abc","type":"v2.core.account","url":"/v2/core/accounts/acct_1Abc"}}"#;
        let e = Envelope::parse(raw).unwrap();
        assert!(e.thin);
        assert_eq!(e.created, 1_795_514_400);
        assert_eq!(e.account.as_deref(), Some("acct_1Abc"));
    }

    #[test]
    fn snapshot_events_need_an_object_and_integer_created() {
        let ok = br#"{"id":"evt_1","object":"event","type":"payout.failed","livemode":false,"created":1,"data":{"object":{}}}"#;
        assert!(!Envelope::parse(ok).unwrap().thin);
        let no_data = br#"{"id":"evt_1","object":"event","type":"payout.failed","livemode":false,"created":1}"#;
        assert!(Envelope::parse(no_data).is_err());
        let text_created = br#"{"id":"evt_1","type":"x","livemode":false,"created":"2026-01-01T00:00:00Z","data":{"object":{}}}"#;
        assert!(Envelope::parse(text_created).is_err());
        let bad_thin = br#"{"id":"evt_1","object":"v2.core.event","type":"x","livemode":false,"created":"yesterday"}"#;
        assert!(Envelope::parse(bad_thin).is_err());
    }
}

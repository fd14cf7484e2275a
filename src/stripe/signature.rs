//! Stripe webhook signatures: `Stripe-Signature: t=<unix>,v1=<hex hmac>[,v1=…][,v0=…]`,
//! where v1 = HMAC-SHA256(secret, "<t>.<raw body>"). Verified over the raw bytes, before any
//! parsing; any v1 may match any configured secret; comparison is constant-time.

use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// A longer header is refused unread; this bounds the work of trying its v1 values (at most
/// ~60 of 64 hex characters each) against every secret.
const MAX_HEADER: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("missing Stripe-Signature header")]
    Missing,
    #[error("malformed Stripe-Signature header")]
    Malformed,
    #[error("no v1 signature in Stripe-Signature header")]
    NoSignature,
    #[error("signature timestamp is outside the tolerance")]
    OutsideTolerance,
    #[error("no signature matches")]
    NoMatch,
}

/// Checks `header` against `payload` with every secret; `now` is unix seconds.
pub fn verify(
    header: Option<&str>,
    payload: &[u8],
    secrets: &[SecretString],
    tolerance: Duration,
    now: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    if header.len() > MAX_HEADER {
        return Err(SignatureError::Malformed);
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        // Stripe's libraries skip items that are not `key=value` (a trailing comma, say).
        let Some((k, v)) = item.trim().split_once('=') else {
            continue;
        };
        match k {
            "t" => {
                if timestamp.is_some() {
                    return Err(SignatureError::Malformed);
                }
                timestamp = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?);
            }
            // An undecodable v1 can never match; skip it like Stripe's libraries do.
            "v1" => {
                if let Ok(sig) = hex::decode(v) {
                    signatures.push(sig);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::NoSignature);
    }
    if now.abs_diff(timestamp) > tolerance.as_secs() {
        return Err(SignatureError::OutsideTolerance);
    }
    let mut matched = subtle::Choice::from(0);
    for secret in secrets {
        let expected = mac(secret.expose_secret(), timestamp, payload);
        for sig in &signatures {
            matched |= expected.as_slice().ct_eq(sig.as_slice());
        }
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(SignatureError::NoMatch)
    }
}

/// The header Stripe would send for `payload` at `timestamp` (used by `bursar trigger`,
/// the benchmark and tests).
pub fn sign(payload: &[u8], secret: &str, timestamp: i64) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, payload))
    )
}

fn mac(secret: &str, timestamp: i64, payload: &[u8]) -> [u8; 32] {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: Duration = Duration::from_secs(300);

    fn secrets(list: &[&str]) -> Vec<SecretString> {
        list.iter()
            .map(|s| SecretString::from(s.to_string()))
            .collect()
    }

    #[test]
    fn valid_signature_passes() {
        let h = sign(b"{}", "whsec_a", 1000);
        assert_eq!(
            verify(Some(&h), b"{}", &secrets(&["whsec_a"]), TOL, 1000),
            Ok(())
        );
    }

    #[test]
    fn any_v1_and_any_secret_may_match() {
        let good = sign(b"{}", "whsec_new", 1000);
        let header = format!(
            "t=1000,v1={},{},v0=zz,scheme=x",
            "ab".repeat(32),
            good.split_once(',').unwrap().1
        );
        assert_eq!(
            verify(
                Some(&header),
                b"{}",
                &secrets(&["whsec_old", "whsec_new"]),
                TOL,
                1000
            ),
            Ok(())
        );
    }

    #[test]
    fn stray_items_are_skipped_and_a_late_v1_still_matches() {
        let s = secrets(&["whsec_a"]);
        let good = sign(b"{}", "whsec_a", 1000);
        assert_eq!(
            verify(Some(&format!("{good},")), b"{}", &s, TOL, 1000),
            Ok(())
        );
        assert_eq!(
            verify(Some(&format!("junk,{good},,")), b"{}", &s, TOL, 1000),
            Ok(())
        );
        let v1 = good.split_once(',').unwrap().1;
        let many_bad = (0..20)
            .map(|i| format!("v1={:064x}", i))
            .collect::<Vec<_>>()
            .join(",");
        let header = format!("t=1000,{many_bad},{v1}");
        assert_eq!(verify(Some(&header), b"{}", &s, TOL, 1000), Ok(()));
    }

    #[test]
    fn failures_are_told_apart() {
        let s = secrets(&["whsec_a"]);
        let h = sign(b"{}", "whsec_a", 1000);
        assert_eq!(
            verify(None, b"{}", &s, TOL, 1000),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(Some("garbage"), b"{}", &s, TOL, 1000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(Some("t=1000"), b"{}", &s, TOL, 1000),
            Err(SignatureError::NoSignature)
        );
        assert_eq!(
            verify(Some(&h), b"{}", &s, TOL, 1301),
            Err(SignatureError::OutsideTolerance)
        );
        assert_eq!(
            verify(Some(&h), b"{}", &s, TOL, 699),
            Err(SignatureError::OutsideTolerance)
        );
        assert_eq!(
            verify(Some(&h), b"{ }", &s, TOL, 1000),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify(Some(&h), b"{}", &secrets(&["whsec_b"]), TOL, 1000),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify(Some(&h), b"{}", &[], TOL, 1000),
            Err(SignatureError::NoMatch)
        );
    }
}

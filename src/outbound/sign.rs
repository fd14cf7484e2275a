//! Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`, `webhook-signature`), made
//! with the specification's reference library. During a secret's rotation both secrets sign,
//! space-separated, so a receiver holding either verifies.

use secrecy::{ExposeSecret, SecretString};

/// The three headers of one delivery attempt.
pub struct Signed {
    pub id: String,
    pub timestamp: i64,
    pub signature: String,
}

/// Signs `body` for message `id` at `timestamp` (unix seconds) with every secret given.
pub fn sign(
    secrets: &[SecretString],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<Signed, standardwebhooks::WebhookError> {
    let mut signatures = Vec::with_capacity(secrets.len());
    for secret in secrets {
        let hook = standardwebhooks::Webhook::new(secret.expose_secret())?;
        signatures.push(hook.sign(id, timestamp, body)?);
    }
    Ok(Signed {
        id: id.to_owned(),
        timestamp,
        signature: signatures.join(" "),
    })
}

/// A new endpoint secret: `whsec_` and 32 random bytes in base64, as Standard Webhooks
/// libraries take it.
pub fn new_secret() -> SecretString {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    SecretString::from(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_secret_signs_and_the_reference_verifier_accepts_either() {
        let (a, b) = (new_secret(), new_secret());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let signed = sign(&[a.clone(), b.clone()], "msg_1", now, b"{}").unwrap();
        assert_eq!(signed.signature.split(' ').count(), 2);
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("webhook-id", "msg_1".parse().unwrap());
        headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
        headers.insert("webhook-signature", signed.signature.parse().unwrap());
        for secret in [a, b] {
            standardwebhooks::Webhook::new(secret.expose_secret())
                .unwrap()
                .verify(b"{}", &headers)
                .unwrap();
        }
    }
}

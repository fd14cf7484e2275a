//! Authenticated encryption of secrets at rest.
//!
//! Every ciphertext is `bv1.<key id>.<base64(nonce ‖ ciphertext ‖ tag)>`, sealed with AES-256-GCM
//! under associated data that names the table, row and field it belongs to. A ciphertext copied
//! to another row or field fails to open, and the key id lets `bursar vault rotate` re-seal
//! rows key by key without a migration.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};

const FORMAT: &str = "bv1";

/// One master key: an id and 32 secret bytes. `Debug` shows only the id.
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    key: std::sync::Arc<SecretBox<[u8; 32]>>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({}, [REDACTED])", self.id)
    }
}

impl MasterKey {
    pub fn new(id: &str, bytes: &[u8]) -> Result<Self, String> {
        let id = id.trim();
        if id.is_empty()
            || id.len() > 32
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!("key id `{id}` must be 1 to 32 of [A-Za-z0-9_-]"));
        }
        let key: [u8; 32] = bytes.try_into().map_err(|_| {
            format!(
                "key `{id}` must decode to exactly 32 bytes, got {}",
                bytes.len()
            )
        })?;
        Ok(Self {
            id: id.to_owned(),
            key: std::sync::Arc::new(SecretBox::new(Box::new(key))),
        })
    }

    /// HMAC-SHA256 under a key derived from this master key for signing (never the raw
    /// encryption key), over the purpose and the message.
    fn mac(&self, purpose: &str, message: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        type HmacSha256 = Hmac<sha2::Sha256>;
        let mut derive = <HmacSha256 as Mac>::new_from_slice(self.key.expose_secret())
            .expect("HMAC takes any key length");
        derive.update(b"bursar/signing/v1");
        let signing: zeroize::Zeroizing<[u8; 32]> =
            zeroize::Zeroizing::new(derive.finalize().into_bytes().into());
        let mut mac = <HmacSha256 as Mac>::new_from_slice(signing.as_slice())
            .expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        mac.update(b"\n");
        mac.update(message.as_bytes());
        mac.finalize().into_bytes().into()
    }

    pub fn generate(id: &str) -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let key = Self::new(id, &bytes).expect("valid generated key");
        zeroize::Zeroize::zeroize(&mut bytes);
        key
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// `id:base64`, the form `BURSAR_MASTER_KEYS` takes.
    pub fn to_config_entry(&self) -> SecretString {
        SecretString::from(format!(
            "{}:{}",
            self.id,
            B64.encode(self.key.expose_secret())
        ))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.key.expose_secret().into())
    }
}

/// Reads the local development key, creating it (mode 0600) if it does not exist.
pub fn dev_key(path: &Path) -> Result<MasterKey, String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        refuse_if_shared(path)?;
        let (id, b64) = text
            .trim()
            .split_once(':')
            .ok_or("dev key file is malformed")?;
        let bytes = B64.decode(b64).map_err(|_| "dev key file is not base64")?;
        return MasterKey::new(id, &bytes);
    }
    let key = MasterKey::generate("dev");
    write_private(path, key.to_config_entry().expose_secret().as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!(
        "WARNING: BURSAR_MASTER_KEYS is not set; generated a DEVELOPMENT master key in {} (mode 0600).\n\
         WARNING: anyone with this file can decrypt every stored secret. Never use --dev in production.",
        path.display()
    );
    Ok(key)
}

/// A key file others can read is no secret: refuse it rather than use it.
fn refuse_if_shared(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "{} is readable by other users (mode {:o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            ));
        }
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

/// Where a ciphertext belongs: it opens only under the same binding.
#[derive(Clone, Copy, Debug)]
pub struct Binding<'a> {
    pub table: &'static str,
    pub row: &'a str,
    pub field: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("no master key with id `{0}` is configured")]
    UnknownKey(String),
    #[error("ciphertext does not open under its binding (tampered, or copied from another row)")]
    Rejected,
}

/// Seals and opens secrets. The first key seals; every key opens.
#[derive(Clone, Debug)]
pub struct Vault {
    keys: Vec<MasterKey>,
}

impl Vault {
    pub fn new(keys: Vec<MasterKey>) -> Self {
        assert!(!keys.is_empty(), "the vault needs at least one key");
        Self { keys }
    }

    /// The id of the key new secrets are sealed with (the first configured).
    pub fn sealing_key_id(&self) -> &str {
        self.keys[0].id()
    }

    pub fn seal(&self, plaintext: &SecretString, binding: Binding<'_>) -> String {
        let key = &self.keys[0];
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = associated_data(binding, key.id());
        let ciphertext = key
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.expose_secret().as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ciphertext);
        format!("{FORMAT}.{}.{}", key.id(), B64.encode(blob))
    }

    pub fn open(&self, sealed: &str, binding: Binding<'_>) -> Result<SecretString, VaultError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(FORMAT), Some(key_id), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(VaultError::Malformed);
        };
        let key = self
            .keys
            .iter()
            .find(|k| k.id() == key_id)
            .ok_or_else(|| VaultError::UnknownKey(key_id.to_owned()))?;
        let blob = B64.decode(b64).map_err(|_| VaultError::Malformed)?;
        if blob.len() < 12 + 16 {
            return Err(VaultError::Malformed);
        }
        let (nonce, ciphertext) = blob.split_at(12);
        let aad = associated_data(binding, key_id);
        let plain = zeroize::Zeroizing::new(
            key.cipher()
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: aad.as_bytes(),
                    },
                )
                .map_err(|_| VaultError::Rejected)?,
        );
        let text = std::str::from_utf8(&plain).map_err(|_| VaultError::Malformed)?;
        Ok(SecretString::from(text.to_owned()))
    }

    /// The id of the key new ciphertexts are sealed with.
    pub fn current_key_id(&self) -> &str {
        self.keys[0].id()
    }

    /// An HMAC-SHA256 tag (hex) over `message` for `purpose`, with a signing key derived from the
    /// current master key: links and OAuth states are signed by the platform without a new secret
    /// to configure. Purposes are separated so one kind of signed value never passes for another.
    pub fn sign(&self, purpose: &str, message: &str) -> String {
        hex::encode(self.keys[0].mac(purpose, message))
    }

    /// Whether `tag` is `sign(purpose, message)` under any configured master key (so links made
    /// before a rotation stay valid until they expire). Constant-time per key.
    pub fn verify(&self, purpose: &str, message: &str, tag: &str) -> bool {
        let Ok(tag) = hex::decode(tag) else {
            return false;
        };
        self.keys.iter().fold(false, |ok, key| {
            ok | bool::from(subtle::ConstantTimeEq::ct_eq(
                key.mac(purpose, message).as_slice(),
                tag.as_slice(),
            ))
        })
    }

    /// The key id a ciphertext was sealed with, if it is well-formed.
    pub fn key_id_of(sealed: &str) -> Option<&str> {
        let mut parts = sealed.splitn(3, '.');
        match (parts.next(), parts.next()) {
            (Some(FORMAT), Some(id)) => Some(id),
            _ => None,
        }
    }
}

fn associated_data(binding: Binding<'_>, key_id: &str) -> String {
    format!(
        "bursar/{FORMAT}/{}/{}/{}/{key_id}",
        binding.table, binding.row, binding.field
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(row: &str) -> Binding<'_> {
        Binding {
            table: "connections",
            row,
            field: "secret_key",
        }
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn signatures_bind_purpose_and_message_and_survive_rotation() {
        let old = MasterKey::generate("k1");
        let vault = Vault::new(vec![old.clone()]);
        let tag = vault.sign("connect", "st_1|x");
        assert!(vault.verify("connect", "st_1|x", &tag));
        assert!(!vault.verify("oauth", "st_1|x", &tag));
        assert!(!vault.verify("connect", "st_2|x", &tag));
        assert!(!vault.verify("connect", "st_1|x", "zz"));
        let rotated = Vault::new(vec![MasterKey::generate("k2"), old]);
        assert!(rotated.verify("connect", "st_1|x", &tag));
        assert_ne!(rotated.sign("connect", "st_1|x"), tag);
    }

    #[test]
    fn round_trip_names_the_key() {
        let vault = Vault::new(vec![MasterKey::generate("k1")]);
        let sealed = vault.seal(&secret("sk_test_123"), binding("st_a"));
        assert!(sealed.starts_with("bv1.k1."));
        assert!(!sealed.contains("sk_test_123"));
        assert_eq!(
            vault
                .open(&sealed, binding("st_a"))
                .unwrap()
                .expose_secret(),
            "sk_test_123"
        );
    }

    #[test]
    fn ciphertext_moved_to_another_row_or_field_does_not_open() {
        let vault = Vault::new(vec![MasterKey::generate("k1")]);
        let sealed = vault.seal(&secret("sk_test_123"), binding("st_a"));
        assert!(matches!(
            vault.open(&sealed, binding("st_b")),
            Err(VaultError::Rejected)
        ));
        let other_field = Binding {
            field: "webhook_secret",
            ..binding("st_a")
        };
        assert!(matches!(
            vault.open(&sealed, other_field),
            Err(VaultError::Rejected)
        ));
    }

    #[test]
    fn tampering_is_detected() {
        let vault = Vault::new(vec![MasterKey::generate("k1")]);
        let sealed = vault.seal(&secret("sk_test_123"), binding("st_a"));
        let mut bytes = sealed.into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(vault.open(&tampered, binding("st_a")).is_err());
        assert!(matches!(
            vault.open("garbage", binding("st_a")),
            Err(VaultError::Malformed)
        ));
    }

    #[test]
    fn old_keys_still_open_after_rotation() {
        let old = MasterKey::generate("old");
        let sealed = Vault::new(vec![old.clone()]).seal(&secret("whsec_x"), binding("st_a"));
        let rotated = Vault::new(vec![MasterKey::generate("new"), old]);
        assert_eq!(
            rotated
                .open(&sealed, binding("st_a"))
                .unwrap()
                .expose_secret(),
            "whsec_x"
        );
        assert_eq!(
            Vault::key_id_of(&rotated.seal(&secret("x"), binding("st_a"))),
            Some("new")
        );
        let without_old = Vault::new(vec![MasterKey::generate("new")]);
        assert!(matches!(
            without_old.open(&sealed, binding("st_a")),
            Err(VaultError::UnknownKey(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn a_dev_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".bursar-dev-key");
        let key = dev_key(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(dev_key(&path).unwrap().id(), key.id());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = dev_key(&path).unwrap_err();
        assert!(err.contains("readable by other users"), "{err}");
    }

    #[test]
    fn debug_shows_no_key_bytes() {
        let key = MasterKey::generate("k1");
        let entry = key.to_config_entry();
        let b64 = entry.expose_secret().split_once(':').unwrap().1.to_owned();
        assert!(!format!("{:?}", Vault::new(vec![key])).contains(&b64));
    }
}

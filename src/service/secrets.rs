//! The start-up check that the configured master keys open what the database holds: a missing
//! or wrong key stops start-up with one line, instead of a 500 on every store's endpoint.

use std::collections::BTreeMap;

use super::{Result, Services};
use crate::db;
use crate::vault::{Binding, Vault, VaultError};

/// What the check found wrong, by key id: (secrets sealed with an unconfigured key, secrets a
/// configured key failed to open).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KeyReport {
    pub missing: BTreeMap<String, usize>,
    pub unopenable: BTreeMap<String, usize>,
}

impl KeyReport {
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty() && self.unopenable.is_empty()
    }

    /// One line for an operator, naming each key and how many secrets need it.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (id, n) in &self.missing {
            parts.push(format!(
                "{n} stored secret(s) are sealed with key `{id}`, which is not configured (add it back to the list; the first key seals, every listed key opens)"
            ));
        }
        for (id, n) in &self.unopenable {
            parts.push(format!(
                "key `{id}` does not open {n} stored secret(s) sealed with that id (wrong key bytes for this id?)"
            ));
        }
        parts.join("; ")
    }
}

/// Tries to open every stored secret with the configured keys.
pub async fn check_master_keys(s: &Services) -> Result<KeyReport> {
    let mut report = KeyReport::default();
    for sealed in db::secrets::all(&s.db).await? {
        let binding = Binding {
            table: sealed.table,
            row: &sealed.row,
            field: sealed.field,
        };
        let id = Vault::key_id_of(&sealed.value)
            .unwrap_or("(malformed)")
            .to_owned();
        match s.vault.open(&sealed.value, binding) {
            Ok(_) => {}
            Err(VaultError::UnknownKey(_)) => *report.missing.entry(id).or_default() += 1,
            Err(VaultError::Rejected | VaultError::Malformed) => {
                *report.unopenable.entry(id).or_default() += 1
            }
        }
    }
    Ok(report)
}

/// What `rotate` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RotateReport {
    pub key_id: String,
    pub resealed: usize,
    pub current: usize,
    pub unopenable: usize,
}

/// Re-seals every secret not sealed with the first key. Each row is swapped only if it still
/// holds the ciphertext read, so a concurrent change wins and an interrupted run just leaves
/// the rest for the next one.
pub async fn rotate(s: &Services) -> Result<RotateReport> {
    let key_id = s.vault.sealing_key_id().to_owned();
    let mut report = RotateReport {
        key_id: key_id.clone(),
        ..Default::default()
    };
    for sealed in db::secrets::all(&s.db).await? {
        if Vault::key_id_of(&sealed.value) == Some(key_id.as_str()) {
            report.current += 1;
            continue;
        }
        let binding = Binding {
            table: sealed.table,
            row: &sealed.row,
            field: sealed.field,
        };
        match s.vault.open(&sealed.value, binding) {
            Ok(plain) => {
                let fresh = s.vault.seal(&plain, binding);
                if db::secrets::swap(&s.db, &sealed, &fresh).await? {
                    report.resealed += 1;
                }
            }
            Err(_) => report.unopenable += 1,
        }
    }
    Ok(report)
}

//! What the webhook doors remember between deliveries: the signing secrets `bursar webhooks
//! setup` stored for the platform and Connect endpoints (tried after the configured ones), and
//! signature failures per door, so `bursar doctor` can say which endpoint has the wrong secret
//! and since when.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokio::sync::RwLock;

use crate::db;
use crate::service::webhook_endpoints::{stored_secret, Target};
use crate::service::Services;

/// How often a door may reload stored secrets after a failed verification: a secret made by
/// `bursar webhooks setup` in another process is picked up by the first delivery signed with
/// it, and forged deliveries cannot turn into a database read each.
const RELOAD_EVERY: Duration = Duration::from_secs(2);
/// Failures are written at most this often per door; counts in between are added up.
const RECORD_EVERY: Duration = Duration::from_secs(1);

/// The secrets each door tries, configured first: rebuilt when the stored ones are reloaded,
/// shared by every delivery until then.
#[derive(Default)]
struct SecretsByDoor {
    platform: Arc<[SecretString]>,
    connect: Arc<[SecretString]>,
    loaded: Option<Instant>,
}

impl SecretsByDoor {
    fn door(&self, connect: bool) -> Arc<[SecretString]> {
        if connect {
            self.connect.clone()
        } else {
            self.platform.clone()
        }
    }
}

#[derive(Default)]
struct Failures {
    /// Per door: failures not yet written, and when it last wrote.
    pending: HashMap<String, (i64, Option<Instant>)>,
    /// Doors whose record this process has cleared since their last failure.
    clear: HashSet<String>,
}

#[derive(Default)]
pub struct Doors {
    stored: RwLock<SecretsByDoor>,
    failures: Mutex<Failures>,
}

impl Doors {
    /// The secrets to try at the platform (`connect` false) or Connect door.
    pub async fn secrets(&self, s: &Services, connect: bool) -> Arc<[SecretString]> {
        {
            let stored = self.stored.read().await;
            if stored.loaded.is_some() {
                return stored.door(connect);
            }
        }
        self.reload(s).await;
        self.stored.read().await.door(connect)
    }

    /// After a failed verification: reloads the stored secrets unless that was done just now;
    /// true when it did (the delivery is worth checking again).
    pub async fn reload_if_stale(&self, s: &Services) -> bool {
        if self
            .stored
            .read()
            .await
            .loaded
            .is_some_and(|t| t.elapsed() < RELOAD_EVERY)
        {
            return false;
        }
        self.reload(s).await;
        true
    }

    async fn reload(&self, s: &Services) {
        let platform = stored_secret(s, &Target::Platform).await;
        let connect = stored_secret(s, &Target::Connect).await;
        if let Err(e) = platform.as_ref().and(connect.as_ref()) {
            tracing::warn!(error = %e, "stored webhook secrets could not be read");
        }
        let door = |configured: &[SecretString], extra: Option<SecretString>| {
            configured.iter().cloned().chain(extra).collect()
        };
        let stripe = &s.config.stripe;
        let mut stored = self.stored.write().await;
        stored.platform = door(&stripe.webhook_secrets, platform.ok().flatten());
        stored.connect = door(&stripe.connect_webhook_secrets, connect.ok().flatten());
        stored.loaded = Some(Instant::now());
    }

    /// A delivery at `source` failed verification.
    pub async fn failed(&self, s: &Services, source: &str, reason: &str) {
        let write = {
            let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            f.clear.remove(source);
            let (count, last) = f.pending.entry(source.to_owned()).or_default();
            *count += 1;
            if last.is_none_or(|t| t.elapsed() >= RECORD_EVERY) {
                *last = Some(Instant::now());
                Some(std::mem::take(count))
            } else {
                None
            }
        };
        if let Some(count) = write {
            if let Err(e) =
                db::operator::record_signature_failure(&s.db, source, reason, count).await
            {
                tracing::warn!(error = %e, "signature failure could not be recorded");
            }
        }
    }

    /// A delivery at `source` verified: its failures, if any were recorded, are over. Costs a
    /// write only on the first good delivery after a failure (or after start).
    pub async fn succeeded(&self, s: &Services, source: &str) {
        let clear = {
            let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            if f.clear.contains(source) {
                false
            } else {
                f.pending.remove(source);
                f.clear.insert(source.to_owned())
            }
        };
        if clear {
            if let Err(e) = db::operator::clear_signature_failures(&s.db, source).await {
                tracing::warn!(error = %e, "signature failures could not be cleared");
            }
        }
    }
}

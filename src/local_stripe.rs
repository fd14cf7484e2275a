//! `bursar serve --dev --local-stripe`: the bundled local Stripe (the emulator the tests use)
//! in the same process, so Bursar can be tried with no Stripe account. Its platform keys,
//! client id and webhook secrets are made up once (unless configured) and kept, with the local
//! Stripe's state, in `bursar-local-stripe.json` in the working directory, so a restart keeps
//! Bursar's database and the local Stripe in step.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stripe_sim::{Options, StripeSim};
use tokio_util::sync::CancellationToken;

/// Beside the default database, in the working directory.
pub const STATE_FILE: &str = "bursar-local-stripe.json";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:12111";

/// The platform's made-up Stripe identity.
#[derive(Clone, Serialize, Deserialize)]
pub struct Platform {
    pub secret_key: String,
    pub publishable_key: String,
    pub client_id: String,
    pub account_id: String,
    pub webhook_secret: String,
    pub connect_webhook_secret: String,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    platform: Platform,
    /// Where the local Stripe listened last, for the `--dev` commands run beside it.
    #[serde(default)]
    url: String,
    #[serde(default)]
    state: Value,
}

impl Platform {
    /// The configuration variable `name` for Bursar against a local Stripe at `url`.
    fn variable(&self, url: &str, name: &str) -> Option<String> {
        Some(match name {
            "STRIPE_API_BASE" | "STRIPE_CONNECT_BASE" => url.to_owned(),
            "STRIPE_JS_URL" => format!("{url}{}", stripe_sim::STRIPE_JS_PATH),
            "STRIPE_SECRET_KEY" => self.secret_key.clone(),
            "STRIPE_PUBLISHABLE_KEY" => self.publishable_key.clone(),
            "STRIPE_CLIENT_ID" => self.client_id.clone(),
            "STRIPE_ACCOUNT_ID" => self.account_id.clone(),
            "STRIPE_WEBHOOK_SECRET" => self.webhook_secret.clone(),
            "STRIPE_CONNECT_WEBHOOK_SECRET" => self.connect_webhook_secret.clone(),
            _ => return None,
        })
    }
}

/// For a `--dev` command run where `serve --dev --local-stripe` keeps its state: the variables
/// that point it at that local Stripe (None without a state file, or with one it cannot read).
pub fn saved_variables(path: &Path) -> Option<impl Fn(&str) -> Option<String>> {
    let saved: Saved = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    if saved.url.is_empty() {
        return None;
    }
    Some(move |name: &str| saved.platform.variable(&saved.url, name))
}

pub struct LocalStripe {
    pub sim: StripeSim,
    pub platform: Platform,
    path: PathBuf,
    /// Held while the process runs: one local Stripe per state file.
    _lock: std::fs::File,
}

/// Takes the lock file beside the state file, or says that another process holds it.
fn lock_beside(path: &Path) -> anyhow::Result<std::fs::File> {
    let lock_path = path.with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another `bursar serve --local-stripe` runs in this directory ({} is locked)",
            lock_path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", lock_path.display()))
        }
    }
}

fn random(n: usize) -> String {
    stripe_sim::random(n)
}

impl LocalStripe {
    /// Starts the local Stripe on `listen`, from `path` when it exists. `configured` reads a
    /// variable the operator set: a platform value set there wins over a saved or made-up one.
    pub async fn start(
        listen: SocketAddr,
        path: &Path,
        configured: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let lock = lock_beside(path)?;
        let saved: Option<Saved> = match std::fs::read_to_string(path) {
            // serde's message could quote the file (keys): the position says enough.
            Ok(text) => Some(serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{}: not a local Stripe state file (at line {}, column {}); move it away to start afresh",
                    path.display(),
                    e.line(),
                    e.column()
                )
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let (mut platform, state) = match saved {
            Some(s) => (s.platform, s.state),
            None => (
                Platform {
                    secret_key: format!("sk_test_{}", random(24)),
                    publishable_key: format!("pk_test_{}", random(24)),
                    client_id: format!("ca_{}", random(24)),
                    account_id: stripe_sim::PLATFORM_ACCOUNT.into(),
                    webhook_secret: format!("whsec_{}", random(32)),
                    connect_webhook_secret: format!("whsec_{}", random(32)),
                },
                Value::Null,
            ),
        };
        let set = |var: &str, value: &mut String| {
            if let Some(v) = configured(var) {
                *value = v;
            }
        };
        set("STRIPE_SECRET_KEY", &mut platform.secret_key);
        set("STRIPE_PUBLISHABLE_KEY", &mut platform.publishable_key);
        set("STRIPE_CLIENT_ID", &mut platform.client_id);
        // A list of secrets (a rotation) signs with its first.
        let first = |v: String| v.split(',').next().unwrap_or_default().trim().to_owned();
        if let Some(v) = configured("STRIPE_WEBHOOK_SECRET") {
            platform.webhook_secret = first(v);
        }
        if let Some(v) = configured("STRIPE_CONNECT_WEBHOOK_SECRET") {
            platform.connect_webhook_secret = first(v);
        }
        for (var, key) in [
            ("STRIPE_SECRET_KEY", &platform.secret_key),
            ("STRIPE_PUBLISHABLE_KEY", &platform.publishable_key),
        ] {
            if key.contains("_live_") {
                anyhow::bail!("{var}: the local Stripe takes test keys only, never live ones");
            }
        }
        if !listen.ip().is_loopback() {
            anyhow::bail!("BURSAR_LOCAL_STRIPE_LISTEN: {listen} is not a loopback address: the local Stripe opens an account for any invented key, so it listens on this machine only (for example 127.0.0.1:12111)");
        }
        let sim = StripeSim::start_with(Options {
            listen: Some(listen),
            platform_key: Some(platform.secret_key.clone()),
            platform_publishable_key: Some(platform.publishable_key.clone()),
            client_id: Some(platform.client_id.clone()),
            webhook_secret: Some(platform.webhook_secret.clone()),
            connect_webhook_secret: Some(platform.connect_webhook_secret.clone()),
            log_requests: false,
            open_keys: true,
        })
        .await
        .with_context(|| format!("BURSAR_LOCAL_STRIPE_LISTEN: cannot listen on {listen}"))?;
        if !state.is_null() {
            sim.restore(state).with_context(|| {
                format!("{}: the local Stripe state is damaged", path.display())
            })?;
        }
        let local = Self {
            sim,
            platform,
            path: path.to_owned(),
            _lock: lock,
        };
        local.save()?;
        Ok(local)
    }

    /// What Bursar's configuration takes from the local Stripe: its endpoints and the
    /// platform's identity there.
    pub fn variable(&self, name: &str) -> Option<String> {
        self.platform.variable(&self.sim.url, name)
    }

    /// Has the local Stripe deliver platform and Connect events to Bursar at `public_url`.
    pub fn register_endpoints(&self, public_url: &str) {
        let base = public_url.trim_end_matches('/');
        let p = &self.platform;
        self.sim
            .register_endpoint(&format!("{base}/webhooks/stripe"), &p.webhook_secret, false);
        self.sim.register_endpoint(
            &format!("{base}/webhooks/stripe/connect"),
            &p.connect_webhook_secret,
            true,
        );
    }

    /// Writes the state file (mode 0600: it holds keys) through a fresh temporary file in the
    /// same directory (created exclusively, never through a planted link), renamed over the old
    /// one, so a crash never leaves half of one.
    pub fn save(&self) -> anyhow::Result<()> {
        use std::io::Write;
        let saved = Saved {
            platform: self.platform.clone(),
            url: self.sim.url.clone(),
            state: self.sim.snapshot(),
        };
        let text = serde_json::to_string_pretty(&saved).expect("the state serializes");
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let cannot = || format!("cannot write {}", self.path.display());
        let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(cannot)?;
        tmp.write_all(text.as_bytes()).with_context(cannot)?;
        tmp.as_file().sync_all().with_context(cannot)?;
        tmp.persist(&self.path).with_context(cannot)?;
        Ok(())
    }

    /// Saves every second while the state changes, and once more at `shutdown`.
    pub async fn keep_saved(self, shutdown: CancellationToken) {
        let mut last = self.sim.snapshot();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let now = self.sim.snapshot();
            if now != last {
                if let Err(e) = self.save() {
                    tracing::warn!(error = %e, "the local Stripe's state was not saved");
                }
                last = now;
            }
        }
        if let Err(e) = self.save() {
            tracing::warn!(error = %e, "the local Stripe's state was not saved");
        }
    }

    /// The commands a newcomer can paste, against Bursar at `public_url`.
    pub fn try_it(&self, public_url: &str) -> String {
        let bursar = public_url.trim_end_matches('/');
        let stripe = &self.sim.url;
        format!(
            r#"
Bursar is running against a local Stripe at {stripe} (no Stripe account needed).
Try it (in another terminal, in this directory; needs curl and jq):

  KEY=$(bursar --dev api-key create --name try-it)
  AUTH="Authorization: Bearer $KEY"; JSON='Content-Type: application/json'
  STORE=$(curl -s -X POST {bursar}/api/v1/stores -H "$AUTH" -H "$JSON" -d '{{"name":"Acme"}}' | jq -r .id)
  # Any invented test keys with one suffix are a merchant account of the local Stripe:
  curl -s -X PUT {bursar}/api/v1/stores/$STORE/connection/keys -H "$AUTH" -H "$JSON" \
    -d '{{"secret_key":"sk_test_acme12345","publishable_key":"pk_test_acme12345"}}' | jq .webhook
  ORDER=$(curl -s -X POST {bursar}/api/v1/stores/$STORE/orders -H "$AUTH" -H "$JSON" \
    -d '{{"amount":4200,"currency":"usd"}}')
  echo "$ORDER" | jq -r .checkout_url     # open it; pay with 4242 4242 4242 4242
  # or confirm it as Stripe.js would, with a test PaymentMethod (pm_card_chargeDeclined fails):
  curl -s {stripe}/v1/payment_intents/$(echo "$ORDER" | jq -r .payment_intent)/confirm \
    -u sk_test_acme12345: -d payment_method=pm_card_visa | jq .status
  curl -s {bursar}/api/v1/orders/$(echo "$ORDER" | jq -r .id) -H "$AUTH" | jq .status   # "paid"
  # See it in the operator console: open {bursar}/console and sign in with $KEY.

Test cards: 4242 4242 4242 4242 succeeds, 4000 0000 0000 0002 is declined,
4000 0000 0000 9995 has insufficient funds. The local Stripe's state is kept in {file}.
"#,
            file = self.path.display(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn it_listens_on_this_machine_only_and_keeps_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        let open = "0.0.0.0:0".parse().unwrap();
        let e = LocalStripe::start(open, &path, |_| None)
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("loopback"), "{e}");
        let live =
            |v: &str| (v == "STRIPE_SECRET_KEY").then(|| "sk_live_abcdefgh12345678".to_owned());
        let local = "127.0.0.1:0".parse().unwrap();
        let e = LocalStripe::start(local, &path, live).await.err().unwrap();
        assert!(e.to_string().contains("test keys only"), "{e}");
        let first = LocalStripe::start(local, &path, |_| None).await.unwrap();
        let key = first.platform.secret_key.clone();
        drop(first);
        let again = LocalStripe::start(local, &path, |_| None).await.unwrap();
        assert_eq!(again.platform.secret_key, key, "kept for the next start");
        let mode = std::fs::metadata(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(mode.permissions().mode() & 0o777, 0o600);
        }
    }
}

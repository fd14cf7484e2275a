//! `TestApp::spawn`: the real app on a random port, a fresh database (SQLite file, or a new
//! PostgreSQL database when `BURSAR_TEST_DATABASE_URL` is a postgres URL), the local Stripe
//! server, and every log line captured so tests can look for leaked secrets.

pub mod stripe_sim;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine;
use bursar::app::App;
use bursar::config::Config;
use bursar::service::Services;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub use stripe_sim::{random, Fault, SimAccount, StripeSim};

pub const PLATFORM_SECRET: &str = "whsec_test_platform_secret";
pub const PLATFORM_SECRET_OLD: &str = "whsec_test_platform_rotated_out";
pub const CONNECT_SECRET: &str = "whsec_test_connect_secret";
pub const CONNECT_SECRET_LIVE: &str = "whsec_live_connect_secret";
/// The platform's pages merchants return to (allow-listed in every test app).
pub const RETURN_PREFIX: &str = "https://platform.example/vendors";
pub const INTERNAL_SECRET: &str = "internal-secret-for-tests-0123456789abcdef";

pub struct TestApp {
    pub url: String,
    pub api_key: String,
    pub services: Services,
    pub sim: StripeSim,
    pub client: reqwest::Client,
    /// The environment the app was configured with (for running the CLI against it).
    pub env: HashMap<String, String>,
    pub sqlite_path: Option<std::path::PathBuf>,
    shutdown: CancellationToken,
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Every log line of every test in this binary.
pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.get_or_init(Default::default).lock().unwrap()).into_owned()
}

/// The captured ERROR lines, to show with a failed assertion.
pub fn log_errors() -> String {
    logs()
        .lines()
        .filter(|l| l.contains("ERROR"))
        .collect::<Vec<_>>()
        .join("\n")
}

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.get_or_init(Default::default)
            .lock()
            .unwrap()
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let filter = tracing_subscriber::EnvFilter::new(
            "trace,hyper=debug,hyper_util=debug,h2=info,rustls=info",
        );
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(|| Capture)
            .with_ansi(false)
            .init();
    });
}

pub fn master_key() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "k{}:{}",
        random(4),
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// A database URL for a fresh database of the engine under test.
pub async fn fresh_database(dir: &std::path::Path) -> (String, Option<std::path::PathBuf>) {
    match std::env::var("BURSAR_TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            use sqlx::Connection;
            let name = format!("bursar_test_{}", random(12).to_lowercase());
            let mut conn = sqlx::PgConnection::connect(&url)
                .await
                .expect("BURSAR_TEST_DATABASE_URL is reachable");
            sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
                .await
                .unwrap();
            // Same server and options (sslmode, password), another database.
            let mut fresh = url::Url::parse(&url).expect("BURSAR_TEST_DATABASE_URL is a URL");
            fresh.set_path(&name);
            (fresh.to_string(), None)
        }
        _ => {
            let path = dir.join("bursar.db");
            (format!("sqlite://{}", path.display()), Some(path))
        }
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// Spawns with the test defaults, then `overrides` (an empty value removes a variable).
    pub async fn spawn_with(overrides: &[(&str, &str)]) -> Self {
        Self::spawn_mode(overrides, false).await
    }

    /// As `spawn_with`, in dev mode (`serve --dev`) when `dev`.
    pub async fn spawn_mode(overrides: &[(&str, &str)], dev: bool) -> Self {
        capture_logs();
        let sim = StripeSim::start().await;
        let dir = tempfile::tempdir().unwrap();
        let (database_url, sqlite_path) = fresh_database(dir.path()).await;
        let mut env: HashMap<String, String> = [
            ("BURSAR_DATABASE_URL", database_url.as_str()),
            ("BURSAR_LISTEN", "127.0.0.1:0"),
            ("BURSAR_INTERNAL_SECRET", INTERNAL_SECRET),
            ("STRIPE_SECRET_KEY", sim.platform_key.as_str()),
            ("STRIPE_API_BASE", sim.url.as_str()),
            ("STRIPE_CONNECT_BASE", sim.url.as_str()),
            ("STRIPE_CLIENT_ID", sim.client_id.as_str()),
            (
                "STRIPE_PUBLISHABLE_KEY",
                sim.platform_publishable_key.as_str(),
            ),
            ("STRIPE_JS_URL", &format!("{}/js.stripe.com/v3/", sim.url)),
            ("BURSAR_RETURN_URL_ALLOWLIST", RETURN_PREFIX),
            (
                "STRIPE_WEBHOOK_SECRET",
                &format!("{PLATFORM_SECRET},{PLATFORM_SECRET_OLD}"),
            ),
            (
                "STRIPE_CONNECT_WEBHOOK_SECRET",
                &format!("{CONNECT_SECRET},{CONNECT_SECRET_LIVE}"),
            ),
            ("BURSAR_STRIPE_RETRY_BASE_MS", "5"),
            ("BURSAR_STRIPE_TIMEOUT_SECS", "2"),
            ("BURSAR_WORKER_RETRY_BASE_MS", "20"),
            ("BURSAR_WORKER_MAX_ATTEMPTS", "3"),
            ("BURSAR_WORKER_POLL_MS", "20"),
            ("BURSAR_WORKER_LEASE_SECS", "5"),
            ("BURSAR_WORKER_EVENT_TIMEOUT_SECS", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.insert("BURSAR_MASTER_KEYS".into(), master_key());
        for (k, v) in overrides {
            if v.is_empty() {
                env.remove(*k);
            } else {
                env.insert(k.to_string(), v.to_string());
            }
        }
        let dev_key = dir.path().join(".bursar-dev-key");
        let config = Config::from_lookup(|k| env.get(k).cloned(), dev.then_some(dev_key.as_path()))
            .expect("test config is valid");
        let app = App::build(config).await.expect("app builds");
        let url = format!("http://{}", app.local_addr());
        env.insert("BURSAR_PUBLIC_URL".into(), url.clone());
        let services = app.services();
        let shutdown = CancellationToken::new();
        let running = Some(tokio::spawn(app.run(shutdown.clone())));
        let (_, key) = bursar::service::api_keys::create(&services.db, "tests")
            .await
            .unwrap();
        let api_key = secrecy::ExposeSecret::expose_secret(&key).to_owned();
        Self {
            url,
            api_key,
            services,
            sim,
            client: reqwest::Client::new(),
            env,
            sqlite_path,
            shutdown,
            running,
            _dir: dir,
        }
    }

    /// Asks the app to stop and waits until `run` returns; how long that took.
    pub async fn stop(&mut self) -> std::time::Duration {
        let started = std::time::Instant::now();
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.await.unwrap().unwrap();
        }
        started.elapsed()
    }

    /// A management request with the test API key.
    pub fn api(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.api_key)
    }

    /// A client that does not follow redirects, to read where the app sends a browser.
    pub fn browserless(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// Registers the app's platform and Connect endpoints with the local Stripe, as the
    /// Dashboard settings would, so the simulator's events reach it signed.
    pub fn register_endpoints(&self) {
        self.sim.register_endpoint(
            &format!("{}/webhooks/stripe", self.url),
            PLATFORM_SECRET,
            false,
        );
        self.sim.register_endpoint(
            &format!("{}/webhooks/stripe/connect", self.url),
            CONNECT_SECRET,
            true,
        );
    }

    pub fn anon(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.url))
    }

    /// An authenticated GET, parsed as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        self.api(Method::GET, path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The public `GET /stripe/status/{store}`.
    pub async fn public_status(&self, store: &str) -> Value {
        let r = self
            .anon(Method::GET, &format!("/stripe/status/{store}"))
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    pub async fn create_store(&self, name: &str) -> String {
        let r = self
            .api(Method::POST, "/api/v1/stores")
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A store connected with a restricted key to a new simulated account, with a webhook secret.
    pub async fn connected_store(&self) -> (String, SimAccount, String) {
        let store = self.create_store("Connected shop").await;
        let account = self.sim.add_account(false);
        let secret = format!("whsec_store_{}", random(24));
        let r = self
            .api(Method::PUT, &format!("/api/v1/stores/{store}/connection/keys"))
            .json(&json!({ "secret_key": account.restricted_key, "publishable_key": account.publishable_key, "webhook_secret": secret }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        (store, account, secret)
    }

    /// Posts `event` to a webhook path, signed with `secret` at the current time.
    pub async fn deliver(&self, path: &str, event: &Value, secret: &str) -> Response {
        let body = serde_json::to_vec(event).unwrap();
        let header = bursar::stripe::signature::sign(&body, secret, now());
        self.deliver_raw(path, body, Some(&header)).await
    }

    pub async fn deliver_raw(
        &self,
        path: &str,
        body: Vec<u8>,
        signature: Option<&str>,
    ) -> Response {
        let mut r = self
            .anon(Method::POST, path)
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(s) = signature {
            r = r.header("Stripe-Signature", s);
        }
        r.send().await.unwrap()
    }

    /// Applies every due event now, so tests can assert state without sleeping. The app's own
    /// worker may hold some events, so this also waits for its claims to finish.
    pub async fn drain(&self) {
        loop {
            bursar::worker::drain(&self.services).await.unwrap();
            let in_flight: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM events WHERE status IN ('pending', 'processing')",
            )
            .fetch_one(self.services.db.pool())
            .await
            .unwrap();
            if in_flight == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Drains until `pred` holds for the event, for states reached only after retry delays.
    /// A connected store and `n` `account.updated` events about its account that died for real
    /// (see `dead_events_of`). Returns the store and the events' ids.
    pub async fn dead_events(&self, n: usize) -> (String, Vec<String>) {
        let (store, account, secret) = self.connected_store().await;
        let ids = self.dead_events_of(&store, &account.id, &secret, n).await;
        (store, ids)
    }

    /// `n` `account.updated` events about `account`, through `store`'s endpoint, that died for
    /// real: Stripe refused every re-fetch of the account. The fault is gone afterwards, so a
    /// replay applies them.
    pub async fn dead_events_of(
        &self,
        store: &str,
        account: &str,
        secret: &str,
        n: usize,
    ) -> Vec<String> {
        self.sim.fail(
            Method::GET,
            "/v1/account",
            Fault::Message(400, "No such account".into()),
            1000,
        );
        let mut ids = Vec::new();
        for _ in 0..n {
            let e = account_updated(account);
            let r = self.deliver(&store_path(store), &e, secret).await;
            assert_eq!(r.status(), 200);
            ids.push(e["id"].as_str().unwrap().to_owned());
        }
        for id in &ids {
            self.wait_for_event(id, |e| e["status"] == "dead").await;
        }
        self.sim.clear_faults();
        ids
    }

    pub async fn wait_for_event(&self, event_id: &str, pred: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..200 {
            self.drain().await;
            let e = self.event(event_id).await;
            if pred(&e) {
                return e;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!(
            "event {event_id} never reached the expected state: {}",
            self.event(event_id).await
        );
    }

    pub async fn event(&self, event_id: &str) -> Value {
        let r = self
            .api(Method::GET, &format!("/api/v1/events/{event_id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM events")
            .fetch_one(self.services.db.pool())
            .await
            .unwrap()
    }

    pub async fn account(&self, store: &str) -> Value {
        self.get_json(&format!("/api/v1/stores/{store}/account"))
            .await
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A realistic event of `event_type` built from Stripe's example objects.
pub fn event(event_type: &str, account: Option<&str>, livemode: bool) -> Value {
    let options = bursar::stripe::fixtures::EventOptions {
        account: account.map(str::to_owned),
        livemode,
        ..Default::default()
    };
    bursar::stripe::fixtures::event(event_type, &options).unwrap()
}

/// A store's own webhook endpoint.
pub fn store_path(store: &str) -> String {
    format!("/webhooks/stripe/stores/{store}")
}

/// An `account.updated` event about the simulated account `id`.
pub fn account_updated(id: &str) -> Value {
    let mut e = event("account.updated", None, false);
    e["data"]["object"]["id"] = json!(id);
    e
}

/// The error code of an error response.
pub async fn error_code(r: Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or_default();
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// A `bursar` process of the built binary.
pub struct Server {
    pub child: std::process::Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The built `bursar` binary with exactly `env` (plus PATH), run in `dir`.
pub fn bursar(env: &HashMap<String, String>, dir: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_bursar"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .envs(env)
        .current_dir(dir);
    cmd
}

/// Starts `bursar serve` and waits for it to say where it listens.
pub fn spawn_server(env: &HashMap<String, String>, dir: &std::path::Path, args: &[&str]) -> Server {
    use std::io::BufRead;
    let mut child = bursar(env, dir)
        .args(args)
        .arg("serve")
        .env("BURSAR_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("bursar starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if !sent {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                        .collect();
                    let _ = tx.send(addr);
                    sent = true;
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the server reports its address");
    Server {
        child,
        url: format!("http://{addr}"),
    }
}

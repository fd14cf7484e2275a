//! Configuration from the environment (and a `.env` file), validated once at start.
//! A bad value stops start-up with one line that names the variable.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use secrecy::SecretString;

use crate::vault::MasterKey;

#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

fn bad(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        reason: reason.into(),
    }
}

/// What a pasted full secret key (`sk_`) gets: restricted keys are always accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyPolicy {
    RestrictedOnly,
    Warn,
    Allow,
}

#[derive(Clone, Debug)]
pub struct StripeConfig {
    pub secret_key: Option<SecretString>,
    pub publishable_key: Option<String>,
    pub client_id: Option<String>,
    pub account_id: Option<String>,
    pub webhook_secrets: Vec<SecretString>,
    pub connect_webhook_secrets: Vec<SecretString>,
    pub api_base: String,
    pub connect_base: String,
    pub js_url: String,
    /// Retries after the first attempt for 429, 5xx and network errors.
    pub max_retries: u32,
    pub retry_base: Duration,
    pub timeout: Duration,
}

impl StripeConfig {
    /// The platform key's mode (accounts created or connected through it live in that mode);
    /// None without a platform key.
    pub fn platform_mode(&self) -> Option<crate::domain::Mode> {
        use secrecy::ExposeSecret;
        self.secret_key
            .as_ref()
            .map(|k| crate::domain::Mode::from_livemode(k.expose_secret().contains("_live_")))
    }
}

/// How the inbox worker retries and leases events.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub batch_size: u32,
    /// How long one event's Stripe calls may take before it is retried later.
    pub event_timeout: Duration,
}

/// Limits of the HTTP server: what a slow or greedy client may hold.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// A client must send a request's headers within this.
    pub header_timeout: Duration,
    /// A whole request body must arrive within this (a large one waits at most half of it for
    /// room in the memory budget).
    pub body_timeout: Duration,
    /// Open connections; past this, new ones wait in the listen backlog.
    pub max_connections: usize,
    /// Bytes of large (over 64 KiB) request bodies held at once, across all connections.
    pub body_budget: usize,
    /// After a shutdown signal, in-flight requests get this long; then they are abandoned.
    pub shutdown_grace: Duration,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: String,
    pub listen: SocketAddr,
    pub public_url: String,
    pub master_keys: Vec<MasterKey>,
    pub internal_secret: Option<SecretString>,
    pub stripe: StripeConfig,
    pub key_policy: KeyPolicy,
    pub return_url_allowlist: Vec<String>,
    /// Return URLs on this machine (`http://127.0.0.1:…`, `http://localhost:…`) are allowed
    /// too: only under `serve --dev --local-stripe`, never from a variable.
    pub allow_local_return_urls: bool,
    pub webhook_tolerance: Duration,
    /// Proxies whose `X-Forwarded-For` names the client (`BURSAR_TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub worker: WorkerConfig,
    pub http: HttpLimits,
    /// An `Idempotency-Key` claim not refreshed for this long belongs to a dead request.
    pub idempotency_lock: Duration,
    /// How often the order sweep runs, and how long an order may stay unsettled before it is
    /// re-checked at Stripe.
    pub order_sweep_interval: Duration,
    pub order_pending_age: Duration,
    /// Whether a store whose vendor subscription Stripe cancelled for non-payment may still take
    /// new orders.
    pub suspended_stores_can_sell: bool,
    /// A `keys` store connected without a webhook secret gets its endpoint made at Stripe.
    pub auto_webhook_endpoints: bool,
    /// How often `serve` catches up on events from Stripe's event list (`None`: never).
    pub reconcile_every: Option<Duration>,
    pub notifications: NotificationConfig,
    pub retention: RetentionConfig,
}

/// How long finished work is kept, and how often it is pruned.
#[derive(Clone, Debug)]
pub struct RetentionConfig {
    /// A finished event's payload and a delivered notification (`BURSAR_EVENT_RETENTION_DAYS`);
    /// an event's id as long as Stripe may send it again (`retention::id_horizon`).
    pub events: Duration,
    /// How often the pruning job runs (`BURSAR_PRUNE_SECS`).
    pub prune_every: Duration,
}

/// Notifications to the platform's app.
#[derive(Clone, Debug)]
pub struct NotificationConfig {
    /// Plain `http` targets (only with `serve --dev`).
    pub allow_http: bool,
    /// Targets on loopback, private or link-local addresses (`BURSAR_ALLOW_PRIVATE_NOTIFICATION_TARGETS`).
    pub allow_private: bool,
    /// The delays before each attempt (`BURSAR_NOTIFICATION_RETRY_SCHEDULE`).
    pub retry_schedule: Vec<Duration>,
    /// An endpoint failing this long is disabled (`BURSAR_NOTIFICATION_DISABLE_AFTER`).
    pub disable_after: Duration,
}

/// Stripe-like and Svix-like: at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
const DEFAULT_RETRY_SCHEDULE: &str = "0s,5s,5m,30m,2h,5h,10h,10h";

impl Config {
    /// Reads the process environment after loading `.env` from the working directory.
    /// With `dev`, a missing `BURSAR_MASTER_KEYS` is replaced by a local key file.
    pub fn from_env(dev: bool) -> Result<Self, ConfigError> {
        load_dotenv()?;
        Self::from_lookup(env_var, dev.then_some(Path::new(DEV_KEY_FILE)))
    }

    /// As `from_env`, with `first` answering before the environment (the local Stripe's
    /// endpoints and platform identity).
    pub fn from_env_with(
        dev: bool,
        first: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        load_dotenv()?;
        let lookup = |name: &str| first(name).or_else(|| env_var(name));
        Self::from_lookup(lookup, dev.then_some(Path::new(DEV_KEY_FILE)))
    }

    /// Builds the configuration from any variable source. `dev_key_file` means dev mode
    /// (`serve --dev`): a local master key is generated there when none is configured, and
    /// notification targets may be plain http.
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
        dev_key_file: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        let database_url = get("BURSAR_DATABASE_URL")
            .map(|u| u.trim().to_owned())
            .unwrap_or_else(|| "sqlite://bursar.db".into());
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(bad(
                "BURSAR_DATABASE_URL",
                "must start with sqlite:// or postgres://",
            ));
        }
        let listen = parse_or(
            "BURSAR_LISTEN",
            get("BURSAR_LISTEN"),
            "127.0.0.1:8080".parse().unwrap(),
            parse_listen,
        )?;
        let public_url = match get("BURSAR_PUBLIC_URL") {
            Some(u) => parse_base_url("BURSAR_PUBLIC_URL", &u)?,
            None => format!("http://{listen}"),
        };
        let master_keys = match get("BURSAR_MASTER_KEYS") {
            Some(v) => parse_master_keys(&v)?,
            None => match dev_key_file {
                Some(path) => vec![crate::vault::dev_key(path).map_err(|e| bad("BURSAR_MASTER_KEYS", e))?],
                None => {
                    return Err(bad(
                        "BURSAR_MASTER_KEYS",
                        "required (comma list of id:base64 of 32 bytes); `bursar serve --dev` creates a local key",
                    ))
                }
            },
        };
        let stripe = stripe_config(&get)?;
        let key_policy = match get("BURSAR_KEY_POLICY").as_deref() {
            None | Some("warn") => KeyPolicy::Warn,
            Some("restricted-only") => KeyPolicy::RestrictedOnly,
            Some("allow") => KeyPolicy::Allow,
            Some(_) => {
                return Err(bad(
                    "BURSAR_KEY_POLICY",
                    "must be restricted-only, warn or allow",
                ))
            }
        };
        let return_url_allowlist = get("BURSAR_RETURN_URL_ALLOWLIST")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| parse_base_url("BURSAR_RETURN_URL_ALLOWLIST", s))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let trusted_proxies = get("BURSAR_TRUSTED_PROXIES")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(parse_network)
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let tolerance = parse_or(
            "BURSAR_WEBHOOK_TOLERANCE_SECS",
            get("BURSAR_WEBHOOK_TOLERANCE_SECS"),
            300,
            |v| parse_range(v, 1, 3600),
        )?;
        let worker = worker_config(&get)?;
        let http = http_limits(&get)?;
        let idempotency_lock = secs(&get, "BURSAR_IDEMPOTENCY_LOCK_SECS", 30, (1, 3600))?;
        let order_sweep_interval = secs(&get, "BURSAR_ORDER_SWEEP_SECS", 60, (1, 86_400))?;
        let order_pending_age = secs(&get, "BURSAR_ORDER_PENDING_SECS", 900, (1, 30 * 86_400))?;
        let suspended_stores_can_sell = flag(&get, "BURSAR_SUSPENDED_STORES_CAN_SELL", true)?;
        let auto_webhook_endpoints = flag(&get, "BURSAR_AUTO_WEBHOOK_ENDPOINTS", true)?;
        let reconcile_every = match get("BURSAR_RECONCILE_EVERY").as_deref().map(str::trim) {
            None | Some("" | "0" | "off") => None,
            Some(v) => match humantime::parse_duration(v) {
                Ok(d) if d >= Duration::from_secs(60) => Some(d),
                _ => {
                    return Err(bad(
                        "BURSAR_RECONCILE_EVERY",
                        "must be a duration of at least 1m (e.g. 15m, 1h) or off",
                    ))
                }
            },
        };
        let notifications = notification_config(&get, dev_key_file.is_some())?;
        let retention = retention_config(&get)?;
        let internal_secret = match get("BURSAR_INTERNAL_SECRET") {
            Some(v) if v.trim().chars().count() < 32 => {
                return Err(bad(
                    "BURSAR_INTERNAL_SECRET",
                    "must be at least 32 characters (e.g. `openssl rand -hex 32`)",
                ))
            }
            v => v.map(|v| SecretString::from(v.trim().to_owned())),
        };
        Ok(Self {
            database_url,
            listen,
            public_url,
            master_keys,
            internal_secret,
            stripe,
            key_policy,
            return_url_allowlist,
            allow_local_return_urls: false,
            webhook_tolerance: Duration::from_secs(tolerance.into()),
            trusted_proxies,
            worker,
            http,
            idempotency_lock,
            order_sweep_interval,
            order_pending_age,
            suspended_stores_can_sell,
            auto_webhook_endpoints,
            reconcile_every,
            notifications,
            retention,
        })
    }
}

/// The Stripe section: the platform's keys and client id, webhook secrets, where Stripe is,
/// and how calls to it are retried.
fn stripe_config(get: &impl Fn(&str) -> Option<String>) -> Result<StripeConfig, ConfigError> {
    Ok(StripeConfig {
        secret_key: optional_key(get, "STRIPE_SECRET_KEY", &["sk_", "rk_"])?,
        publishable_key: optional_key(get, "STRIPE_PUBLISHABLE_KEY", &["pk_"])?
            .map(|s| secrecy::ExposeSecret::expose_secret(&s).to_owned()),
        client_id: prefixed(get, "STRIPE_CLIENT_ID", "ca_")?,
        account_id: prefixed(get, "STRIPE_ACCOUNT_ID", "acct_")?,
        webhook_secrets: secret_list(get, "STRIPE_WEBHOOK_SECRET")?,
        connect_webhook_secrets: secret_list(get, "STRIPE_CONNECT_WEBHOOK_SECRET")?,
        api_base: parse_stripe_url(
            "STRIPE_API_BASE",
            &get("STRIPE_API_BASE").unwrap_or_else(|| "https://api.stripe.com".into()),
        )?,
        connect_base: parse_stripe_url(
            "STRIPE_CONNECT_BASE",
            &get("STRIPE_CONNECT_BASE").unwrap_or_else(|| "https://connect.stripe.com".into()),
        )?,
        js_url: parse_stripe_url(
            "STRIPE_JS_URL",
            &get("STRIPE_JS_URL").unwrap_or_else(|| "https://js.stripe.com/v3/".into()),
        )?,
        max_retries: parse_or(
            "BURSAR_STRIPE_MAX_RETRIES",
            get("BURSAR_STRIPE_MAX_RETRIES"),
            3,
            |v| parse_range(v, 0, 10),
        )?,
        retry_base: Duration::from_millis(
            parse_or(
                "BURSAR_STRIPE_RETRY_BASE_MS",
                get("BURSAR_STRIPE_RETRY_BASE_MS"),
                500,
                parse_u32,
            )?
            .into(),
        ),
        timeout: Duration::from_secs(
            parse_or(
                "BURSAR_STRIPE_TIMEOUT_SECS",
                get("BURSAR_STRIPE_TIMEOUT_SECS"),
                30,
                |v| parse_range(v, 1, 120),
            )?
            .into(),
        ),
    })
}

/// The inbox worker: retries, leases, polling, batches and each event's deadline.
fn worker_config(get: &impl Fn(&str) -> Option<String>) -> Result<WorkerConfig, ConfigError> {
    let worker = WorkerConfig {
        max_attempts: parse_or(
            "BURSAR_WORKER_MAX_ATTEMPTS",
            get("BURSAR_WORKER_MAX_ATTEMPTS"),
            8,
            parse_positive,
        )?,
        retry_base: Duration::from_millis(
            parse_or(
                "BURSAR_WORKER_RETRY_BASE_MS",
                get("BURSAR_WORKER_RETRY_BASE_MS"),
                2_000,
                parse_positive,
            )?
            .into(),
        ),
        retry_max: Duration::from_secs(
            parse_or(
                "BURSAR_WORKER_RETRY_MAX_SECS",
                get("BURSAR_WORKER_RETRY_MAX_SECS"),
                3_600,
                parse_positive,
            )?
            .into(),
        ),
        lease: Duration::from_secs(
            parse_or(
                "BURSAR_WORKER_LEASE_SECS",
                get("BURSAR_WORKER_LEASE_SECS"),
                60,
                parse_positive,
            )?
            .into(),
        ),
        poll_interval: Duration::from_millis(
            parse_or(
                "BURSAR_WORKER_POLL_MS",
                get("BURSAR_WORKER_POLL_MS"),
                500,
                parse_positive,
            )?
            .into(),
        ),
        batch_size: parse_or(
            "BURSAR_WORKER_BATCH",
            get("BURSAR_WORKER_BATCH"),
            256,
            |v| parse_range(v, 1, 1000),
        )?,
        event_timeout: secs(get, "BURSAR_WORKER_EVENT_TIMEOUT_SECS", 15, (1, 600))?,
    };
    // A claimed event's Stripe calls end within the event timeout; its lease must outlast
    // that with room for routing and the commit.
    if worker.lease < worker.event_timeout * 3 {
        return Err(bad(
            "BURSAR_WORKER_LEASE_SECS",
            "must be at least three times BURSAR_WORKER_EVENT_TIMEOUT_SECS",
        ));
    }
    Ok(worker)
}

/// The HTTP server's limits.
fn http_limits(get: &impl Fn(&str) -> Option<String>) -> Result<HttpLimits, ConfigError> {
    Ok(HttpLimits {
        header_timeout: secs(get, "BURSAR_HEADER_TIMEOUT_SECS", 10, (1, 300))?,
        body_timeout: secs(get, "BURSAR_BODY_TIMEOUT_SECS", 30, (1, 600))?,
        max_connections: parse_or(
            "BURSAR_MAX_CONNECTIONS",
            get("BURSAR_MAX_CONNECTIONS"),
            1024,
            |v| parse_range(v, 1, 1_000_000),
        )? as usize,
        body_budget: parse_or(
            "BURSAR_BODY_BUDGET_MB",
            get("BURSAR_BODY_BUDGET_MB"),
            64,
            |v| parse_range(v, 2, 65_536),
        )? as usize
            * 1024
            * 1024,
        shutdown_grace: secs(get, "BURSAR_SHUTDOWN_GRACE_SECS", 10, (0, 3600))?,
    })
}

/// Notifications to the platform's app: which targets are allowed, and the retry schedule.
fn notification_config(
    get: &impl Fn(&str) -> Option<String>,
    dev: bool,
) -> Result<NotificationConfig, ConfigError> {
    Ok(NotificationConfig {
        allow_http: dev,
        allow_private: match get("BURSAR_ALLOW_PRIVATE_NOTIFICATION_TARGETS")
            .as_deref()
            .map(str::trim)
        {
            None | Some("false" | "0") => false,
            Some("true" | "1") => true,
            Some(_) => {
                return Err(bad(
                    "BURSAR_ALLOW_PRIVATE_NOTIFICATION_TARGETS",
                    "must be true or false",
                ))
            }
        },
        retry_schedule: {
            let raw = get("BURSAR_NOTIFICATION_RETRY_SCHEDULE")
                .unwrap_or_else(|| DEFAULT_RETRY_SCHEDULE.to_owned());
            let parsed: Result<Vec<Duration>, _> = raw
                .split(',')
                .map(|d| humantime::parse_duration(d.trim()))
                .collect();
            match parsed {
                Ok(list) if (1..=20).contains(&list.len()) => list,
                _ => {
                    return Err(bad(
                        "BURSAR_NOTIFICATION_RETRY_SCHEDULE",
                        format!("must be 1 to 20 comma-separated durations, the delay before each attempt (default {DEFAULT_RETRY_SCHEDULE})"),
                    ))
                }
            }
        },
        disable_after: match get("BURSAR_NOTIFICATION_DISABLE_AFTER")
            .as_deref()
            .map(str::trim)
        {
            None => Duration::from_secs(5 * 86_400),
            Some(v) => humantime::parse_duration(v).map_err(|_| {
                bad(
                    "BURSAR_NOTIFICATION_DISABLE_AFTER",
                    "must be a duration such as 5d or 12h",
                )
            })?,
        },
    })
}

/// Where `bursar serve --dev` keeps its generated master key.
pub const DEV_KEY_FILE: &str = ".bursar-dev-key";

fn parse_or<T>(
    var: &'static str,
    value: Option<String>,
    default: T,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => parse(v.trim()).map_err(|e| bad(var, e)),
    }
}

fn parse_u32(s: &str) -> Result<u32, String> {
    s.parse::<u32>()
        .map_err(|_| "must be a whole number".to_string())
}

fn parse_range(s: &str, min: u32, max: u32) -> Result<u32, String> {
    match parse_u32(s)? {
        n if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("must be between {min} and {max}")),
    }
}

/// A whole number of seconds within `range`, or `default`.
fn secs(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: u32,
    (min, max): (u32, u32),
) -> Result<Duration, ConfigError> {
    let n = parse_or(var, get(var), default, |v| parse_range(v, min, max))?;
    Ok(Duration::from_secs(n.into()))
}

/// The retention section: days (fractions allowed) of finished events, and the pruning period.
fn retention_config(get: &impl Fn(&str) -> Option<String>) -> Result<RetentionConfig, ConfigError> {
    const VAR: &str = "BURSAR_EVENT_RETENTION_DAYS";
    let days = match get(VAR).as_deref().map(str::trim) {
        None | Some("") => 30.0,
        Some(v) => match v.parse::<f64>() {
            Ok(d) if d > 0.0 && d <= 3650.0 => d,
            _ => return Err(bad(
                VAR,
                "must be a number of days above 0 and at most 3650 (e.g. 30, or 0.5 for 12 hours)",
            )),
        },
    };
    Ok(RetentionConfig {
        events: Duration::from_secs_f64(days * 86_400.0),
        prune_every: secs(get, "BURSAR_PRUNE_SECS", 600, (1, 86_400))?,
    })
}

/// A Stripe endpoint: https, or plain http only to this machine (a local emulator in tests),
/// so secret keys never cross a network in clear.
fn parse_stripe_url(var: &'static str, url: &str) -> Result<String, ConfigError> {
    let url = parse_base_url(var, url)?;
    let parsed = reqwest::Url::parse(&url).map_err(|e| bad(var, e.to_string()))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if parsed.scheme() != "https" && !loopback {
        return Err(bad(
            var,
            "must be https (plain http is allowed only to localhost / 127.0.0.1 / [::1])",
        ));
    }
    Ok(url)
}

fn parse_positive(s: &str) -> Result<u32, String> {
    match parse_u32(s)? {
        0 => Err("must be greater than 0".into()),
        n => Ok(n),
    }
}

/// One entry of `BURSAR_TRUSTED_PROXIES`: a network, or one address. An IPv4-mapped IPv6
/// address or network is taken as IPv4, as the addresses it is compared with are.
fn parse_network(s: &str) -> Result<ipnet::IpNet, ConfigError> {
    let var = "BURSAR_TRUSTED_PROXIES";
    let net = s
        .parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            bad(
                var,
                format!(
                    "`{s}` is not an IP address or network (for example 127.0.0.1 or 10.0.0.0/8)"
                ),
            )
        })?;
    let net = match net {
        ipnet::IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(ipnet::IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        other => other,
    };
    if net.prefix_len() == 0 {
        return Err(bad(
            var,
            format!(
                "`{s}` trusts every address, so any client could name itself; list your proxies"
            ),
        ));
    }
    Ok(net)
}

/// `address:port`; `localhost:port` is the IPv4 loopback.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let addr = match s.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => s.to_owned(),
    };
    addr.parse::<SocketAddr>().map_err(|_| {
        format!(
            "`{s}` is not an address:port (for example 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080)"
        )
    })
}

/// A `true`/`false` (or `1`/`0`) variable.
fn flag(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match get(var).as_deref().map(str::trim) {
        None => Ok(default),
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(_) => Err(bad(var, "must be true or false")),
    }
}

/// The working directory's `.env` only: dotenvy's default also searches parent folders.
pub fn load_dotenv() -> Result<(), ConfigError> {
    match dotenvy::from_path(".env") {
        Ok(_) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(e) => Err(bad(".env", format!("could not be read: {e}"))),
    }
}

/// A variable of the environment; an empty one counts as unset.
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse_base_url(var: &'static str, url: &str) -> Result<String, ConfigError> {
    let parsed =
        reqwest::Url::parse(url.trim()).map_err(|e| bad(var, format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(bad(var, "must be an http(s) URL with a host"));
    }
    Ok(url.trim().to_owned())
}

fn parse_master_keys(value: &str) -> Result<Vec<MasterKey>, ConfigError> {
    let var = "BURSAR_MASTER_KEYS";
    let mut keys = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, b64) = item
            .split_once(':')
            .ok_or_else(|| bad(var, "each entry must be id:base64"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| bad(var, format!("key `{id}` is not valid base64")))?;
        let key = MasterKey::new(id, &bytes).map_err(|e| bad(var, e))?;
        if keys.iter().any(|k: &MasterKey| k.id() == key.id()) {
            return Err(bad(var, format!("key id `{id}` appears twice")));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(bad(var, "no keys given"));
    }
    Ok(keys)
}

fn optional_key(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    prefixes: &[&str],
) -> Result<Option<SecretString>, ConfigError> {
    match get(var) {
        None => Ok(None),
        Some(v) if prefixes.iter().any(|p| v.trim().starts_with(p)) => {
            Ok(Some(SecretString::from(v.trim().to_owned())))
        }
        Some(_) => Err(bad(
            var,
            format!("must start with {}", prefixes.join(" or ")),
        )),
    }
}

fn prefixed(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    prefix: &str,
) -> Result<Option<String>, ConfigError> {
    match get(var) {
        None => Ok(None),
        Some(v) if v.trim().starts_with(prefix) => Ok(Some(v.trim().to_owned())),
        Some(_) => Err(bad(var, format!("must start with {prefix}"))),
    }
}

fn secret_list(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
) -> Result<Vec<SecretString>, ConfigError> {
    let Some(v) = get(var) else {
        return Ok(Vec::new());
    };
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            crate::domain::keys::parse_webhook_secret(SecretString::from(s.to_owned()))
                .map_err(|_| bad(var, "each entry must be a webhook signing secret (whsec_…)"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned(), None)
    }

    const KEY: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn defaults_follow_the_spec() {
        let c = with(&[("BURSAR_MASTER_KEYS", KEY)]).unwrap();
        assert_eq!(c.database_url, "sqlite://bursar.db");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.public_url, "http://127.0.0.1:8080");
        assert_eq!(c.key_policy, KeyPolicy::Warn);
        assert_eq!(c.webhook_tolerance, Duration::from_secs(300));
        assert_eq!(c.stripe.api_base, "https://api.stripe.com");
        assert!(c.trusted_proxies.is_empty());
    }

    #[test]
    fn trusted_proxies_are_addresses_and_networks() {
        let c = with(&[
            ("BURSAR_MASTER_KEYS", KEY),
            (
                "BURSAR_TRUSTED_PROXIES",
                " 127.0.0.1, 10.0.0.0/8,fd00::/8 ,",
            ),
        ])
        .unwrap();
        let shown: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(shown, ["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"]);
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        let cases = [
            ("BURSAR_MASTER_KEYS", "k1:notbase64!"),
            ("BURSAR_MASTER_KEYS", "k1:AAAA"),
            ("BURSAR_LISTEN", "nowhere"),
            ("BURSAR_KEY_POLICY", "sometimes"),
            ("BURSAR_WEBHOOK_TOLERANCE_SECS", "0"),
            ("STRIPE_SECRET_KEY", "pk_test_123"),
            ("STRIPE_WEBHOOK_SECRET", "nope"),
            ("STRIPE_API_BASE", "ftp://x"),
            ("BURSAR_DATABASE_URL", "mysql://x"),
            ("BURSAR_WEBHOOK_TOLERANCE_SECS", "3601"),
            ("BURSAR_WORKER_BATCH", "0"),
            ("BURSAR_WORKER_BATCH", "5000"),
            ("BURSAR_INTERNAL_SECRET", "short"),
            ("STRIPE_API_BASE", "http://stripe.example.com"),
            ("STRIPE_CONNECT_BASE", "http://10.0.0.1"),
            ("BURSAR_STRIPE_MAX_RETRIES", "50"),
            ("BURSAR_WORKER_LEASE_SECS", "20"),
            ("BURSAR_MAX_CONNECTIONS", "0"),
            ("BURSAR_TRUSTED_PROXIES", "10.0.0.0/33"),
            ("BURSAR_TRUSTED_PROXIES", "127.0.0.1, proxy.internal"),
            ("BURSAR_TRUSTED_PROXIES", "0.0.0.0/0"),
            ("BURSAR_TRUSTED_PROXIES", "::/0"),
        ];
        for (var, value) in cases {
            let mut vars = vec![("BURSAR_MASTER_KEYS", KEY)];
            vars.retain(|(k, _)| *k != var);
            vars.push((var, value));
            let err = with(&vars).unwrap_err();
            assert_eq!(err.var, var, "{value}");
            assert!(err.to_string().starts_with(var));
        }
        assert_eq!(with(&[]).unwrap_err().var, "BURSAR_MASTER_KEYS");
    }

    #[test]
    fn loopback_stripe_urls_may_be_plain_http() {
        for url in [
            "http://127.0.0.1:12111",
            "http://localhost:8420",
            "http://[::1]:9000",
            "https://api.stripe.com",
        ] {
            let c = with(&[("BURSAR_MASTER_KEYS", KEY), ("STRIPE_API_BASE", url)]).unwrap();
            assert_eq!(c.stripe.api_base, url);
        }
    }

    #[test]
    fn secret_lists_allow_rotation() {
        let c = with(&[
            ("BURSAR_MASTER_KEYS", KEY),
            ("STRIPE_WEBHOOK_SECRET", "whsec_a, whsec_b"),
        ])
        .unwrap();
        assert_eq!(c.stripe.webhook_secrets.len(), 2);
        assert!(!format!("{c:?}").contains("whsec_a"));
    }

    #[test]
    fn listen_takes_localhost_and_explains_a_bad_address() {
        let c = with(&[
            ("BURSAR_MASTER_KEYS", KEY),
            ("BURSAR_LISTEN", "localhost:18571"),
        ])
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:18571");
        let e = with(&[
            ("BURSAR_MASTER_KEYS", KEY),
            ("BURSAR_LISTEN", "example.com:80"),
        ])
        .err()
        .unwrap();
        assert_eq!(e.var, "BURSAR_LISTEN");
        assert!(
            e.reason.contains("for example 127.0.0.1:8080"),
            "{}",
            e.reason
        );
    }

    /// Every variable Bursar reads (asked for by `from_lookup`, or named anywhere in `src/`) is
    /// documented in docs/configuration.md, one per table row, and nothing else is.
    #[test]
    fn every_variable_read_is_documented_and_every_documented_one_is_read() {
        use std::collections::BTreeSet;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let doc = std::fs::read_to_string(root.join("docs/configuration.md")).unwrap();
        let documented: BTreeSet<String> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split_once('`'))
            .map(|(name, _)| name.to_owned())
            .filter(|n| n.starts_with("BURSAR_") || n.starts_with("STRIPE_"))
            .collect();
        let asked = std::cell::RefCell::new(BTreeSet::new());
        let dir = tempfile::tempdir().unwrap();
        Config::from_lookup(
            |k| {
                asked.borrow_mut().insert(k.to_owned());
                None
            },
            Some(&dir.path().join("dev-key")),
        )
        .unwrap();
        let mut read = asked.into_inner();
        // Named in the source: variables read outside `Config` (logging, the local Stripe).
        let mut stack = vec![root.join("src")];
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, _) in text.match_indices('"') {
                let rest = &text[i + 1..];
                let len = rest
                    .bytes()
                    .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
                    .count();
                let name = &rest[..len];
                let quoted = rest[len..].starts_with('"');
                let named = name.starts_with("BURSAR_") || name.starts_with("STRIPE_");
                if quoted && named && !name.ends_with('_') {
                    read.insert(name.to_owned());
                }
            }
        }
        // The test suite's own switches.
        for own in ["BURSAR_TEST_DATABASE_URL", "BURSAR_BLESS"] {
            read.remove(own);
        }
        let undocumented: Vec<_> = read.difference(&documented).collect();
        let unread: Vec<_> = documented.difference(&read).collect();
        assert!(
            undocumented.is_empty() && unread.is_empty(),
            "read but not in docs/configuration.md: {undocumented:?}; documented but never read: {unread:?}"
        );
    }
}

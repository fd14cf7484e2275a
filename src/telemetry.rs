//! The tracing subscriber: human-readable by default, JSON with `BURSAR_LOG_FORMAT=json`.
//! Secrets are kept out of logs by type (`SecretString` prints `[REDACTED]`), not by filtering.

use tracing_subscriber::{fmt, EnvFilter};

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,sqlx=warn,tower_http=info,hyper=warn,reqwest=warn")
    });
    let json = std::env::var("BURSAR_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

//! `bursar connect-link`: a signed, expiring key-entry link for a store's merchant.

use std::sync::Arc;

use clap::Args;

use crate::config::Config;
use crate::domain::StoreId;
use crate::service::{links, Services};

#[derive(Debug, Args)]
pub struct ConnectLinkArgs {
    /// The store (st_…) whose merchant will enter keys.
    #[arg(long)]
    store: String,
    /// Where to send the merchant afterwards; must match BURSAR_RETURN_URL_ALLOWLIST.
    #[arg(long)]
    return_url: Option<String>,
    /// How long the link works, e.g. 30m, 24h (at most 7 days).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    expires_in: std::time::Duration,
}

/// Prints the link alone on stdout, its expiry on stderr.
pub async fn run(config: Config, args: ConnectLinkArgs) -> anyhow::Result<()> {
    let db = super::open_db(&config).await?;
    let services = Services::new(Arc::new(config), db);
    let store = StoreId::parse(&args.store).map_err(|e| anyhow::anyhow!("--store: {e}"))?;
    let ttl = i64::try_from(args.expires_in.as_secs()).unwrap_or(i64::MAX);
    let (url, expires) =
        links::connect_link(&services, &store, args.return_url.as_deref(), Some(ttl))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!(
        "key-entry link for {store}, valid until {}:",
        super::date(expires)
    );
    println!("{url}");
    Ok(())
}

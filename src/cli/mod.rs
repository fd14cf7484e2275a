//! The `bursar` command line: one module per command.

use clap::{Parser, Subcommand};

use crate::config::Config;

mod api_key;
mod bench;
mod connect_link;
mod events;
mod migrate;
mod serve;
mod trigger;

#[derive(Debug, Parser)]
#[command(name = "bursar", version, about = "Self-hosted Stripe Connect gateway")]
pub struct Cli {
    /// Development mode: without BURSAR_MASTER_KEYS, create and use a local key file
    /// (.bursar-dev-key, mode 0600). Never use in production.
    #[arg(long, global = true)]
    pub dev: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server and the webhook workers (migrates the database first).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage platform API keys.
    #[command(subcommand)]
    ApiKey(api_key::ApiKeyCommand),
    /// Print a signed, expiring link to the key-entry page for a store's merchant.
    ConnectLink(connect_link::ConnectLinkArgs),
    /// Inspect and replay received webhook events.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Send a realistic, correctly signed event to a running Bursar (offline).
    Trigger(trigger::TriggerArgs),
    /// Load-test webhook ingestion of a running server (Bursar, or the benchmark's ceiling).
    BenchIngest(bench::BenchArgs),
    /// Time the worker alone: preload events into an empty inbox, then apply them.
    BenchApply(bench::ApplyArgs),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = || Config::from_env(cli.dev).map_err(|e| anyhow::anyhow!("{e}"));
    match cli.command {
        Command::Serve => serve::run(config()?).await,
        Command::Migrate => migrate::run(config()?).await,
        Command::ApiKey(cmd) => api_key::run(config()?, cmd).await,
        Command::ConnectLink(args) => connect_link::run(config()?, args).await,
        Command::Events(cmd) => events::run(config()?, cmd).await,
        Command::Trigger(args) => trigger::run(config()?, args).await,
        Command::BenchIngest(args) => bench::ingest(config()?, args).await,
        Command::BenchApply(args) => bench::apply(config()?, args).await,
    }
}

/// Connects to the configured database and brings it up to date.
async fn open_db(config: &Config) -> anyhow::Result<crate::db::Db> {
    crate::db::Db::open(&config.database_url).await
}

/// A unix time in seconds as RFC 3339 UTC, for tables.
fn date(unix_secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

//! The `bursar` command line: one module per command.

use std::path::Path;

use clap::{Parser, Subcommand};

use crate::config::Config;

mod api_key;
mod bench;
mod connect_link;
mod doctor;
mod events;
mod migrate;
mod notifications;
mod reconcile;
mod serve;
mod trigger;
mod vault;
mod webhooks;

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
    Serve(serve::ServeArgs),
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
    /// Inspect and resend notifications to the platform's app.
    #[command(subcommand)]
    Notifications(notifications::NotificationsCommand),
    /// Send a realistic, correctly signed event to a running Bursar (offline).
    Trigger(trigger::TriggerArgs),
    /// Set up Stripe's webhook endpoints for Bursar.
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCommand),
    /// Check configuration, keys, webhook endpoints, signatures, dead events and pending orders;
    /// exit 1 on a problem.
    Doctor(doctor::DoctorArgs),
    /// Catch up on events whose webhooks never arrived, from Stripe's event list.
    Reconcile(reconcile::ReconcileArgs),
    /// Manage the encryption of stored secrets.
    #[command(subcommand)]
    Vault(vault::VaultCommand),
    /// Load-test webhook ingestion of a running server (Bursar, or the benchmark's ceiling).
    BenchIngest(bench::BenchArgs),
    /// Time the worker alone: preload events into an empty inbox, then apply them.
    BenchApply(bench::ApplyArgs),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // Beside a `serve --dev --local-stripe`, the `--dev` commands talk to its local Stripe.
    let config = || {
        let local = cli
            .dev
            .then(|| {
                crate::local_stripe::saved_variables(Path::new(crate::local_stripe::STATE_FILE))
            })
            .flatten();
        match local {
            Some(local) => Config::from_env_with(cli.dev, local),
            None => Config::from_env(cli.dev),
        }
        .map_err(|e| anyhow::anyhow!("{e}"))
    };
    match cli.command {
        Command::Serve(args) => serve::run(cli.dev, args).await,
        Command::Migrate => migrate::run(config()?).await,
        Command::ApiKey(cmd) => api_key::run(config()?, cmd).await,
        Command::ConnectLink(args) => connect_link::run(config()?, args).await,
        Command::Events(cmd) => events::run(config()?, cmd).await,
        Command::Notifications(cmd) => notifications::run(config()?, cmd).await,
        Command::Trigger(args) => trigger::run(config()?, args).await,
        Command::Webhooks(cmd) => webhooks::run(config()?, cmd).await,
        Command::Doctor(args) => exit_unless(doctor::run(config()?, args).await?),
        Command::Reconcile(args) => exit_unless(reconcile::run(config()?, args).await?),
        Command::Vault(cmd) => vault::run(config()?, cmd).await,
        Command::BenchIngest(args) => bench::ingest(config()?, args).await,
        Command::BenchApply(args) => bench::apply(config()?, args).await,
    }
}

/// Ends the process with status 1 when a check found a problem (already reported).
fn exit_unless(ok: bool) -> anyhow::Result<()> {
    if !ok {
        std::process::exit(1);
    }
    Ok(())
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

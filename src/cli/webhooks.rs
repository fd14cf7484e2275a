//! `bursar webhooks setup`: the webhook endpoints Bursar needs, made (or put right) at Stripe,
//! with their signing secrets stored sealed. Running it again changes nothing.

use std::sync::Arc;

use clap::{Args, Subcommand};

use crate::config::Config;
use crate::domain::StoreId;
use crate::service::webhook_endpoints::{self, Outcome, Target};
use crate::service::Services;

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Create or update the platform and Connect endpoints and each `keys` store's own (or only
    /// the given store's), each with exactly the events Bursar handles and a pinned API
    /// version, delivering to BURSAR_PUBLIC_URL; store the signing secrets Stripe returns.
    Setup(SetupArgs),
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Only this `keys` store's own endpoint (made with the store's key).
    #[arg(long)]
    store: Option<String>,
    /// One JSON object per endpoint on stdout instead of a line of text.
    #[arg(long)]
    json: bool,
}

pub async fn run(config: Config, cmd: WebhooksCommand) -> anyhow::Result<()> {
    let WebhooksCommand::Setup(args) = cmd;
    let db = super::open_db(&config).await?;
    let s = Services::new(Arc::new(config), db);
    let targets = match &args.store {
        Some(id) => vec![Target::Store(
            StoreId::parse(id).map_err(|e| anyhow::anyhow!("--store: {e}"))?,
        )],
        None => webhook_endpoints::all_targets(&s)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    if s.config.public_url.starts_with("http://127.") || s.config.public_url.contains("localhost") {
        eprintln!(
            "warning: BURSAR_PUBLIC_URL is {}, which Stripe cannot reach; set it to this server's public https URL",
            s.config.public_url
        );
    }
    let mut failed = 0;
    for target in targets {
        match webhook_endpoints::setup(&s, &target).await {
            Ok(r) if args.json => println!("{}", serde_json::to_string(&r)?),
            Ok(r) => println!(
                "{:<8} {} {} → {}",
                match r.outcome {
                    Outcome::Created => "created",
                    Outcome::Updated => "updated",
                    Outcome::Unchanged => "ok",
                    Outcome::Recreated => "replaced",
                },
                target.describe(),
                r.endpoint_id,
                r.url
            ),
            Err(e) => {
                failed += 1;
                eprintln!("error: {}: {e}", target.describe());
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} endpoint(s) could not be set up");
    }
    Ok(())
}

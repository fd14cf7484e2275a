use std::sync::Arc;

use clap::Subcommand;

use crate::config::Config;
use crate::db::inbox::Filter;
use crate::service::{events, Services};

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List received events, newest first.
    List {
        #[arg(long)]
        store: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long = "type")]
        event_type: Option<String>,
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=100))]
        limit: i64,
    },
    /// Show one event (by Bursar's id or Stripe's evt_ id) with its payload.
    Show {
        id: String,
        /// Which endpoint's copy, when an evt_ id arrived through several:
        /// platform, connect or store:st_…
        #[arg(long)]
        source: Option<String>,
    },
    /// Queue a finished (e.g. dead) event to be applied again.
    Replay {
        id: String,
        /// Which endpoint's copy, when an evt_ id arrived through several.
        #[arg(long)]
        source: Option<String>,
    },
    /// Give up on a dead event: kept as discarded, never applied, pruned with the others.
    Discard {
        id: String,
        /// Which endpoint's copy, when an evt_ id arrived through several.
        #[arg(long)]
        source: Option<String>,
    },
}

pub async fn run(config: Config, cmd: EventsCommand) -> anyhow::Result<()> {
    let db = super::open_db(&config).await?;
    let s = Services::new(Arc::new(config), db);
    let fail = |e: crate::service::ServiceError| anyhow::anyhow!("{e}");
    match cmd {
        EventsCommand::List {
            store,
            status,
            event_type,
            limit,
        } => {
            if let Some(st) = &status {
                anyhow::ensure!(
                    events::STATUSES.contains(&st.as_str()),
                    "--status must be one of {}",
                    events::STATUSES.join(", ")
                );
            }
            let page = events::list(
                &s,
                &Filter {
                    store_id: store,
                    status,
                    event_type,
                },
                None,
                limit,
            )
            .await
            .map_err(fail)?;
            println!(
                "{:>8}  {:<34}  {:<36}  {:<9}  {:>3}  store",
                "id", "event", "type", "status", "try"
            );
            for e in page.data {
                println!(
                    "{:>8}  {:<34}  {:<36}  {:<9}  {:>3}  {}",
                    e.id,
                    e.event_id,
                    e.event_type,
                    e.status,
                    e.attempts,
                    e.store_id.as_deref().unwrap_or("-")
                );
            }
        }
        EventsCommand::Show { id, source } => {
            let event = events::get(&s, &id, source.as_deref())
                .await
                .map_err(fail)?;
            println!("{}", serde_json::to_string_pretty(&event)?);
        }
        EventsCommand::Replay { id, source } => {
            let e = events::replay(&s, &id, source.as_deref())
                .await
                .map_err(fail)?;
            println!(
                "event {} ({}) is queued again; a running `bursar serve` applies it",
                e.id, e.event_id
            );
        }
        EventsCommand::Discard { id, source } => {
            let e = events::discard(&s, &id, source.as_deref())
                .await
                .map_err(fail)?;
            println!("event {} ({}) is discarded", e.id, e.event_id);
        }
    }
    Ok(())
}

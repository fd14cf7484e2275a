//! `bursar notifications list|redeliver`: the delivery log, and sending one again.

use std::sync::Arc;

use clap::Subcommand;

use crate::config::Config;
use crate::domain::NotificationId;
use crate::service::notifications::{self, LogQuery};
use crate::service::Services;

#[derive(Debug, Subcommand)]
pub enum NotificationsCommand {
    /// List notifications, newest first, with their attempts.
    List {
        #[arg(long)]
        endpoint: Option<String>,
        /// pending, delivered or failed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long = "type")]
        event_type: Option<String>,
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=100))]
        limit: i64,
    },
    /// Send a notification again now, with the same webhook-id.
    Redeliver { id: String },
}

pub async fn run(config: Config, cmd: NotificationsCommand) -> anyhow::Result<()> {
    let db = super::open_db(&config).await?;
    let s = Services::new(Arc::new(config), db);
    let fail = |e: crate::service::ServiceError| anyhow::anyhow!("{e}");
    match cmd {
        NotificationsCommand::List {
            endpoint,
            status,
            event_type,
            limit,
        } => {
            let (data, _) = notifications::log(
                &s,
                LogQuery {
                    endpoint_id: endpoint,
                    status,
                    event_type,
                    cursor: None,
                    limit,
                },
            )
            .await
            .map_err(fail)?;
            println!(
                "{:<30}  {:<30}  {:<28}  {:<9}  {:>3}  last answer",
                "id", "endpoint", "type", "status", "try"
            );
            for n in data {
                let last = n.attempts.last().map_or("-".to_owned(), |a| {
                    a.status_code
                        .map_or_else(|| a.error.clone().unwrap_or_default(), |c| c.to_string())
                });
                println!(
                    "{:<30}  {:<30}  {:<28}  {:<9}  {:>3}  {last}",
                    n.id,
                    n.endpoint_id,
                    n.event_type,
                    n.status,
                    n.attempts.len()
                );
            }
        }
        NotificationsCommand::Redeliver { id } => {
            let id = NotificationId::parse(&id).map_err(|e| anyhow::anyhow!("{e}"))?;
            let n = notifications::redeliver(&s, &id).await.map_err(fail)?;
            println!(
                "notification {} ({}) is due again; a running `bursar serve` sends it",
                n.id, n.event_type
            );
        }
    }
    Ok(())
}

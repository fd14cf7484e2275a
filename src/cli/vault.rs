//! `bursar vault rotate`: every stored secret re-sealed under the first key of
//! BURSAR_MASTER_KEYS, so the others can then be removed.

use std::sync::Arc;

use clap::Subcommand;

use crate::config::Config;
use crate::service::{secrets, Services};

#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Re-seal every stored secret under the first key of BURSAR_MASTER_KEYS. Safe to
    /// interrupt and run again; afterwards the other keys can be removed from the list.
    Rotate,
}

pub async fn run(config: Config, cmd: VaultCommand) -> anyhow::Result<()> {
    let VaultCommand::Rotate = cmd;
    let db = super::open_db(&config).await?;
    let s = Services::new(Arc::new(config), db);
    let report = secrets::rotate(&s)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "re-sealed {} secret(s) under key `{}`; {} already were; {} could not be opened",
        report.resealed, report.key_id, report.current, report.unopenable
    );
    if report.unopenable > 0 {
        anyhow::bail!(
            "{} secret(s) are sealed with a key that is not configured or does not open them; \
             add that key to BURSAR_MASTER_KEYS and run again",
            report.unopenable
        );
    }
    eprintln!(
        "every stored secret now opens with `{}` alone",
        report.key_id
    );
    Ok(())
}

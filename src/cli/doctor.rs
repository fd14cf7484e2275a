//! `bursar doctor`: one line per check (ok, or the problem and its fix); exit 1 on a problem.

use std::sync::Arc;

use clap::Args;

use crate::config::Config;
use crate::domain::StoreId;
use crate::service::{doctor, Services};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Only what concerns this store (and the configuration it stands on).
    #[arg(long)]
    store: Option<String>,
    /// A JSON array of checks ({check, ok, detail, fix}) on stdout.
    #[arg(long)]
    json: bool,
}

/// Whether every check passed.
pub async fn run(config: Config, args: DoctorArgs) -> anyhow::Result<bool> {
    let db = super::open_db(&config).await?;
    let s = Services::new(Arc::new(config), db);
    let store = args
        .store
        .as_deref()
        .map(StoreId::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--store: {e}"))?;
    let checks = doctor::run(&s, store.as_ref())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let healthy = checks.iter().all(|c| c.ok);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        for c in &checks {
            match &c.fix {
                None => println!("ok       {}: {}", c.check, c.detail),
                Some(fix) => println!("PROBLEM  {}: {} → fix: {fix}", c.check, c.detail),
            }
        }
        let problems = checks.iter().filter(|c| !c.ok).count();
        eprintln!("{} check(s), {problems} problem(s)", checks.len());
    }
    Ok(healthy)
}

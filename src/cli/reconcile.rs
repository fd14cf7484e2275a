//! `bursar reconcile`: catches up on events whose webhooks never arrived, from Stripe's event
//! list, through the same inbox as webhooks (so each applies once).

use std::io::IsTerminal;
use std::sync::Arc;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::domain::StoreId;
use crate::service::reconcile::{self, Scope, Window};
use crate::service::Services;

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["store", "all"]))]
pub struct ReconcileArgs {
    /// One store: its connected account's events, or its own key's.
    #[arg(long)]
    store: Option<String>,
    /// Every store, and the platform's own events (vendor billing).
    #[arg(long)]
    all: bool,
    /// How far back to look, e.g. 72h, 7d (at most 30d, Stripe's retention). Without it, each
    /// scope goes on from where the last run stopped (72h the first time).
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<std::time::Duration>,
    /// Only report what is missing; exit 1 if anything is.
    #[arg(long)]
    dry_run: bool,
}

/// Whether everything was in order (always true unless a dry run found drift).
pub async fn run(config: Config, args: ReconcileArgs) -> anyhow::Result<bool> {
    let since_secs = args
        .since
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if let Some(since) = since_secs {
        reconcile::check_since(since).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    }
    let db = super::open_db(&config).await?;
    let s = Services::new(Arc::new(config), db);
    let scopes = match &args.store {
        Some(id) => {
            let store = StoreId::parse(id).map_err(|e| anyhow::anyhow!("--store: {e}"))?;
            vec![Scope::store(&s, &store)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?]
        }
        None => {
            let scopes = reconcile::all_scopes(&s)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if s.config.stripe.secret_key.is_none() {
                if scopes.is_empty() {
                    anyhow::bail!("nothing to reconcile: STRIPE_SECRET_KEY is not set (the platform's scope) and no store has a connection Bursar can reach");
                }
                eprintln!("the platform's scope is skipped: STRIPE_SECRET_KEY is not set");
            }
            scopes
        }
    };
    let window = Window {
        since_secs,
        dry_run: args.dry_run,
    };
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}: {pos} events checked ({per_sec})")
                .expect("a valid template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let (mut checked, mut missing, mut fed) = (0, 0, 0);
    for scope in &scopes {
        bar.set_message(scope.name.clone());
        let tick_bar = bar.clone();
        let report = reconcile::run_scope(&s, scope, window, &mut move || tick_bar.inc(1))
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", scope.name))?;
        checked += report.checked;
        missing += report.missing;
        fed += report.fed;
        if report.missing > 0 {
            bar.suspend(|| {
                eprintln!(
                    "{}: {} of {} events were missing{}",
                    report.scope,
                    report.missing,
                    report.checked,
                    if args.dry_run {
                        ""
                    } else {
                        "; fed to the inbox"
                    }
                )
            });
        }
    }
    bar.finish_and_clear();
    println!(
        "{} scope(s), {checked} events checked, {missing} missing, {fed} fed{}",
        scopes.len(),
        if args.dry_run { " (dry run)" } else { "" }
    );
    Ok(!(args.dry_run && missing > 0))
}

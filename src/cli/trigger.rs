//! `bursar trigger`: like `stripe trigger`, but offline: builds a realistic event from Stripe's
//! example objects, signs it with the endpoint's secret and posts it to a running Bursar.

use std::sync::Arc;

use clap::Args;
use secrecy::{ExposeSecret, SecretString};

use crate::config::Config;
use crate::db;
use crate::domain::StoreId;
use crate::service::{connections, Services};
use crate::stripe::fixtures::{self, EventOptions};
use crate::stripe::signature;

#[derive(Debug, Args)]
pub struct TriggerArgs {
    /// Event type, e.g. account.updated, payout.failed, payment_intent.succeeded.
    pub event: String,
    /// Send to this store's own endpoint, signed with its webhook secret.
    #[arg(long, conflicts_with = "account")]
    pub store: Option<String>,
    /// Send as a Connect event of this connected account (to /webhooks/stripe/connect).
    #[arg(long)]
    pub account: Option<String>,
    /// Mark the event (and its object) as live mode.
    #[arg(long)]
    pub livemode: bool,
    /// Base URL of the running Bursar (default: BURSAR_PUBLIC_URL).
    #[arg(long)]
    pub url: Option<String>,
}

pub async fn run(config: Config, args: TriggerArgs) -> anyhow::Result<()> {
    let options = EventOptions {
        account: args.account.clone(),
        livemode: args.livemode,
        ..Default::default()
    };
    let event = fixtures::event(&args.event, &options).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown event type `{}`; known: {}",
            args.event,
            crate::stripe::events::handled().join(", ")
        )
    })?;
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| config.public_url.clone());
    let base = base.trim_end_matches('/');
    let (url, secret) = match (&args.store, &args.account) {
        (Some(store), _) => {
            let store = StoreId::parse(store).map_err(|e| anyhow::anyhow!("--store: {e}"))?;
            let db = super::open_db(&config).await?;
            let s = Services::new(Arc::new(config.clone()), db);
            let secret = match connections::webhook_secret(&s, &store)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
            {
                Some(secret) => secret,
                None => {
                    let account = db::connections::get(s.db.pool(), &store).await?;
                    return Err(match account {
                        Some(c) if c.is_connect() => anyhow::anyhow!(
                            "store {store} is connected through Connect: its events come to the Connect endpoint; send one with `--account {}`",
                            c.account_id.as_deref().unwrap_or("acct_…")
                        ),
                        Some(_) => anyhow::anyhow!("store {store} has no webhook secret: set one (PUT /api/v1/stores/{store}/connection/webhook-secret) or run `bursar webhooks setup --store {store}`"),
                        None => anyhow::anyhow!("store {store} has no Stripe connection"),
                    });
                }
            };
            (format!("{base}/webhooks/stripe/stores/{store}"), secret)
        }
        (None, Some(_)) => (
            format!("{base}/webhooks/stripe/connect"),
            first(
                &config.stripe.connect_webhook_secrets,
                "STRIPE_CONNECT_WEBHOOK_SECRET",
            )?,
        ),
        (None, None) => (
            format!("{base}/webhooks/stripe"),
            first(&config.stripe.webhook_secrets, "STRIPE_WEBHOOK_SECRET")?,
        ),
    };
    let body = serde_json::to_vec(&event)?;
    let header = signature::sign(&body, secret.expose_secret(), crate::clock::now_ms() / 1000);
    let response = reqwest::Client::new()
        .post(&url)
        .header("Content-Type", "application/json")
        .header("Stripe-Signature", header)
        .body(body)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {url}: {e}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    println!(
        "{} {} -> {url}: {status} {text}",
        event["type"].as_str().unwrap_or_default(),
        event["id"].as_str().unwrap_or_default()
    );
    anyhow::ensure!(status.is_success(), "Bursar refused the event");
    Ok(())
}

fn first(secrets: &[SecretString], var: &str) -> anyhow::Result<SecretString> {
    secrets
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("{var} is not set, so the event cannot be signed"))
}

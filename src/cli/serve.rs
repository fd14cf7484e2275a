use std::net::SocketAddr;
use std::path::Path;

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::{self, Config};
use crate::local_stripe::{self, LocalStripe};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Run a local Stripe in this process (needs --dev) and point Bursar at it, to try Bursar
    /// with no Stripe account. It listens on BURSAR_LOCAL_STRIPE_LISTEN (127.0.0.1:12111) and
    /// keeps its state in bursar-local-stripe.json.
    #[arg(long)]
    pub local_stripe: bool,
}

pub async fn run(dev: bool, args: ServeArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        signal.cancel();
    });
    if !args.local_stripe {
        let config = Config::from_env(dev).map_err(|e| anyhow::anyhow!("{e}"))?;
        return App::build(config).await?.run(shutdown).await;
    }
    if !dev {
        anyhow::bail!("--local-stripe is for trying Bursar, never production: add --dev (`bursar serve --dev --local-stripe`)");
    }
    config::load_dotenv().map_err(|e| anyhow::anyhow!("{e}"))?;
    let listen = config::env_var("BURSAR_LOCAL_STRIPE_LISTEN")
        .unwrap_or_else(|| local_stripe::DEFAULT_LISTEN.into());
    let listen: SocketAddr = config::parse_listen(&listen)
        .map_err(|e| anyhow::anyhow!("BURSAR_LOCAL_STRIPE_LISTEN: {e}"))?;
    let local =
        LocalStripe::start(listen, Path::new(local_stripe::STATE_FILE), config::env_var).await?;
    let mut config = Config::from_env_with(dev, |name| local.variable(name))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    config.allow_local_return_urls = true;
    let app = App::build(config).await?;
    let public_url = app.services().config.public_url.clone();
    local.register_endpoints(&public_url);
    println!("{}", local.try_it(&public_url));
    let saver = tokio::spawn(local.keep_saved(shutdown.clone()));
    let served = app.run(shutdown).await;
    let _ = saver.await;
    served
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

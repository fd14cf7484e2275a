//! `stripe-sim`: the local Stripe as a process, for running Bursar against it by hand.
//! It prints the `.env` lines that point Bursar at it, then serves until Ctrl-C.

use std::net::SocketAddr;

use clap::Parser;
use stripe_sim::{Options, StripeSim};

#[derive(Parser)]
#[command(
    version,
    about = "A local Stripe API (Connect, OAuth, Accounts v2) for Bursar"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:12111")]
    listen: SocketAddr,
    /// The platform's secret key (default: a random sk_test_ key).
    #[arg(long)]
    platform_key: Option<String>,
    /// The platform's publishable key, for Stripe.js (default: a random pk_ key in the
    /// platform key's mode).
    #[arg(long)]
    publishable_key: Option<String>,
    /// The platform's Connect client id (default: a random ca_ id).
    #[arg(long)]
    client_id: Option<String>,
    /// Deliver platform events (and Accounts v2 thin events) to URL, signed with SECRET
    /// (default: the printed STRIPE_WEBHOOK_SECRET). Repeatable.
    #[arg(long, value_name = "URL[=SECRET]")]
    endpoint: Vec<String>,
    /// Deliver events of connected accounts to URL, signed with SECRET (default: the printed
    /// STRIPE_CONNECT_WEBHOOK_SECRET). Repeatable.
    #[arg(long, value_name = "URL[=SECRET]")]
    connect_endpoint: Vec<String>,
    /// Print each request on stderr.
    #[arg(long, short)]
    verbose: bool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Some(key) = &args.platform_key {
        if !(key.starts_with("sk_test_") || key.starts_with("sk_live_")) {
            eprintln!("stripe-sim: --platform-key must start with sk_test_ or sk_live_");
            std::process::exit(2);
        }
    }
    if let Some(key) = &args.publishable_key {
        if !(key.starts_with("pk_test_") || key.starts_with("pk_live_")) {
            eprintln!("stripe-sim: --publishable-key must start with pk_test_ or pk_live_");
            std::process::exit(2);
        }
    }
    let options = Options {
        listen: Some(args.listen),
        platform_key: args.platform_key,
        platform_publishable_key: args.publishable_key,
        client_id: args.client_id,
        log_requests: args.verbose,
        open_keys: true,
        ..Options::default()
    };
    let sim = match StripeSim::start_with(options).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("stripe-sim: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    for (specs, connect, default_secret) in [
        (&args.endpoint, false, &sim.webhook_secret),
        (&args.connect_endpoint, true, &sim.connect_webhook_secret),
    ] {
        for spec in specs {
            let (url, secret) = split_endpoint(spec, default_secret);
            sim.register_endpoint(url, secret, connect);
        }
    }
    println!("STRIPE_API_BASE={}", sim.url);
    println!("STRIPE_CONNECT_BASE={}", sim.url);
    println!("STRIPE_SECRET_KEY={}", sim.platform_key);
    println!("STRIPE_PUBLISHABLE_KEY={}", sim.platform_publishable_key);
    println!("STRIPE_JS_URL={}", sim.js_url());
    println!("STRIPE_CLIENT_ID={}", sim.client_id);
    println!("STRIPE_WEBHOOK_SECRET={}", sim.webhook_secret);
    println!(
        "STRIPE_CONNECT_WEBHOOK_SECRET={}",
        sim.connect_webhook_secret
    );
    eprintln!("stripe-sim: listening on {}; Ctrl-C to stop", sim.url);
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("stripe-sim: cannot wait for Ctrl-C: {e}");
    }
}

/// `URL=SECRET`, or a bare URL signed with `default_secret`. The secret follows the last `=`;
/// in a URL with a query string, that `=` may be the query's, so there the secret must look
/// like one (`whsec_…`).
fn split_endpoint<'a>(spec: &'a str, default_secret: &'a str) -> (&'a str, &'a str) {
    match spec.rsplit_once('=') {
        Some((url, secret)) if !url.contains('?') || secret.starts_with("whsec_") => (url, secret),
        _ => (spec, default_secret),
    }
}

use clap::Subcommand;
use secrecy::ExposeSecret;

use crate::config::Config;
use crate::service::api_keys;

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a platform API key; it is printed once and stored only as a hash.
    Create {
        #[arg(long)]
        name: String,
    },
}

pub async fn run(config: Config, cmd: ApiKeyCommand) -> anyhow::Result<()> {
    let db = super::open_db(&config).await?;
    match cmd {
        ApiKeyCommand::Create { name } => {
            let (id, key) = api_keys::create(&db, &name)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("created API key {id} ({name}); it is shown once, store it now:");
            println!("{}", key.expose_secret());
        }
    }
    Ok(())
}

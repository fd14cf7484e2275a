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
    /// List API keys (never the keys themselves): id, name, first characters, created, revoked.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key by id (key_…); requests with it get 401 from then on.
    Revoke { id: String },
}

pub async fn run(config: Config, cmd: ApiKeyCommand) -> anyhow::Result<()> {
    let db = super::open_db(&config).await?;
    match cmd {
        ApiKeyCommand::Create { name } => {
            let (id, key) = api_keys::create(&db, &name).await?;
            eprintln!("created API key {id} ({name}); it is shown once, store it now:");
            println!("{}", key.expose_secret());
        }
        ApiKeyCommand::List { json } => {
            let keys = api_keys::list(&db).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
                return Ok(());
            }
            println!(
                "{:<30} {:<9} {:<21} {:<21} NAME",
                "ID", "PREFIX", "CREATED", "REVOKED"
            );
            for k in keys {
                let day = super::date;
                println!(
                    "{:<30} {:<9} {:<21} {:<21} {}",
                    k.id,
                    k.prefix,
                    day(k.created),
                    k.revoked.map(day).unwrap_or_else(|| "-".into()),
                    k.name
                );
            }
        }
        ApiKeyCommand::Revoke { id } => {
            let key = api_keys::revoke(&db, &id).await?;
            eprintln!("revoked API key {} ({})", key.id, key.name);
        }
    }
    Ok(())
}

use crate::config::Config;

pub async fn run(config: Config) -> anyhow::Result<()> {
    super::open_db(&config).await?;
    println!("database is up to date");
    Ok(())
}

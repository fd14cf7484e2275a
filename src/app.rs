//! Builds the whole gateway from a `Config`: database (migrated), services, the inbox writer,
//! the worker and the HTTP server on a bound listener. Tests and `bursar serve` share this.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db::Db;
use crate::http::{self, AppState};
use crate::service::Services;
use crate::webhooks::ingest::Ingest;

pub struct App {
    listener: TcpListener,
    services: Services,
}

impl App {
    /// Connects and migrates the database and binds the listener; nothing is served yet.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let db = Db::connect(&config.database_url)
            .await
            .map_err(|e| anyhow::anyhow!("BURSAR_DATABASE_URL: cannot open the database: {e:#}"))?;
        db.migrate()
            .await
            .map_err(|e| anyhow::anyhow!("database migration failed: {e:#}"))?;
        let listener = TcpListener::bind(config.listen).await.map_err(|e| {
            anyhow::anyhow!("BURSAR_LISTEN: cannot listen on {}: {e}", config.listen)
        })?;
        Ok(Self {
            listener,
            services: Services::new(Arc::new(config), db),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn services(&self) -> Services {
        self.services.clone()
    }

    /// Serves until `shutdown`, then lets in-flight requests finish, drains the inbox writer
    /// and stops the worker.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let stored = Arc::new(Notify::new());
        let (ingest, writer) = Ingest::start(self.services.db.clone(), stored.clone());
        let worker_stop = CancellationToken::new();
        let worker = tokio::spawn(crate::worker::run(
            self.services.clone(),
            stored.clone(),
            worker_stop.clone(),
        ));
        let state = AppState {
            services: self.services.clone(),
            ingest,
            stored,
        };
        tracing::info!(addr = %self.local_addr(), "listening on {}", self.local_addr());
        let router = http::router(state);
        let served = axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        // The router (and every Ingest handle) is gone: the writer drains its queue and ends.
        if let Err(e) = writer.await {
            tracing::error!(error = %e, "inbox writer ended abnormally");
        }
        worker_stop.cancel();
        let _ = worker.await;
        self.services.db.close().await;
        tracing::info!("stopped");
        served.map_err(Into::into)
    }
}

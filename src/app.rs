//! Builds the whole gateway from a `Config`: database (migrated), services, the inbox writer,
//! the worker and the HTTP server on a bound listener. Tests and `bursar serve` share this.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db::inbox::Handoff;
use crate::db::Db;
use crate::http::{self, AppParts, AppState};
use crate::service::Services;
use crate::supervise::{supervise, Backoff, Liveness};

pub struct App {
    listener: TcpListener,
    services: Services,
}

impl App {
    /// Connects and migrates the database, checks that the master keys open every stored
    /// secret, and binds the listener; nothing is served yet.
    pub async fn build(mut config: Config) -> anyhow::Result<Self> {
        let listen = config.listen;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("BURSAR_LISTEN: cannot listen on {listen}: {e}"))?;
        // On port 0 the default public URL (derived from BURSAR_LISTEN) names the port bound.
        if listen.port() == 0 && config.public_url == format!("http://{listen}") {
            config.public_url = format!("http://{}", listener.local_addr()?);
        }
        let db = Db::open(&config.database_url).await?;
        check_stripe_kind(&db, &config).await?;
        let services = Services::new(Arc::new(config), db);
        let report = crate::service::secrets::check_master_keys(&services)
            .await
            .map_err(|e| anyhow::anyhow!("cannot read stored secrets: {e}"))?;
        if !report.is_ok() {
            anyhow::bail!("BURSAR_MASTER_KEYS: {}", report.describe());
        }
        Ok(Self { listener, services })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn services(&self) -> Services {
        self.services.clone()
    }

    /// Serves until `shutdown`; then in-flight requests get the grace period, the inbox writer
    /// drains, and the worker hands back whatever it had claimed but not applied.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let stored = Arc::new(Notify::new());
        // Room for a few worker batches: past it, new events wait in the table instead.
        let handoff = Handoff::new(
            4 * self.services.config.worker.batch_size as usize,
            self.services.config.worker.lease,
            stored.clone(),
        );
        let (deliveries, writer) = self.services.db.inbox().deliveries(handoff.clone());
        let worker_stop = CancellationToken::new();
        let live = Arc::new(Liveness::default());
        let worker = tokio::spawn({
            let (s, handoff, stored, live, stop) = (
                self.services.clone(),
                handoff,
                stored.clone(),
                live.clone(),
                worker_stop.clone(),
            );
            async move {
                supervise("worker", &live, stop.clone(), Backoff::default(), || {
                    crate::worker::run(
                        s.clone(),
                        handoff.clone(),
                        stored.clone(),
                        live.clone(),
                        stop.clone(),
                    )
                })
                .await
            }
        });
        let sweeper = tokio::spawn({
            let (s, stop) = (self.services.clone(), worker_stop.clone());
            let live = Liveness::default();
            async move {
                supervise(
                    "order sweep",
                    &live,
                    stop.clone(),
                    Backoff::default(),
                    || crate::service::sweeper::run(s.clone(), stop.clone()),
                )
                .await
            }
        });
        let pruner = tokio::spawn({
            let (s, stop) = (self.services.clone(), worker_stop.clone());
            let live = Liveness::default();
            async move {
                supervise("pruning", &live, stop.clone(), Backoff::default(), || {
                    crate::service::retention::run(s.clone(), stop.clone())
                })
                .await
            }
        });
        let transfers = tokio::spawn({
            let (s, stop) = (self.services.clone(), worker_stop.clone());
            let live = Liveness::default();
            async move {
                supervise("transfers", &live, stop.clone(), Backoff::default(), || {
                    crate::service::transfers::run(s.clone(), stop.clone())
                })
                .await
            }
        });
        let notifier_live = Arc::new(Liveness::default());
        let notifier = tokio::spawn({
            let (s, stop, live) = (
                self.services.clone(),
                worker_stop.clone(),
                notifier_live.clone(),
            );
            async move {
                supervise("notifier", &live, stop.clone(), Backoff::default(), || {
                    crate::worker::notify::run(s.clone(), live.clone(), stop.clone())
                })
                .await
            }
        });
        let reconciler = self.services.config.reconcile_every.map(|every| {
            let (s, stop, stored) = (self.services.clone(), worker_stop.clone(), stored.clone());
            tokio::spawn(async move {
                let live = Liveness::default();
                supervise("reconcile", &live, stop.clone(), Backoff::default(), || {
                    crate::service::reconcile::run_periodic(
                        s.clone(),
                        every,
                        stored.clone(),
                        stop.clone(),
                    )
                })
                .await
            })
        });
        let state = AppState::new(AppParts {
            services: self.services.clone(),
            deliveries,
            stored,
            worker: live,
            notifier: notifier_live,
            doors: Default::default(),
            openapi: Default::default(),
            logins: Default::default(),
        });
        tracing::info!(addr = %self.local_addr(), "listening on {}", self.local_addr());
        let limits = self.services.config.http.clone();
        let began = http::server::serve(self.listener, http::app(state), &limits, shutdown).await;
        // One deadline for all of shutdown; each later step still gets a moment when the server
        // used it all (handing back claims takes milliseconds).
        let deadline = began + limits.shutdown_grace;
        let until =
            || deadline.max(tokio::time::Instant::now() + std::time::Duration::from_millis(500));
        // The router (and every `Deliveries` handle) is gone once the connections are: the writer
        // drains its queue and ends. Abandoned connections may still hold a handle.
        match tokio::time::timeout_at(until(), writer).await {
            Ok(Err(e)) => tracing::error!(error = %e, "inbox writer ended abnormally"),
            Err(_) => tracing::warn!("inbox writer still busy at the shutdown deadline"),
            Ok(Ok(())) => {}
        }
        worker_stop.cancel();
        let _ = tokio::time::timeout_at(until(), sweeper).await;
        let _ = tokio::time::timeout_at(until(), pruner).await;
        let _ = tokio::time::timeout_at(until(), transfers).await;
        let _ = tokio::time::timeout_at(until(), notifier).await;
        if let Some(r) = reconciler {
            let _ = tokio::time::timeout_at(until(), r).await;
        }
        if tokio::time::timeout_at(until(), worker).await.is_err() {
            tracing::warn!(
                "worker still busy at the shutdown deadline; its claims expire with their lease"
            );
        }
        if tokio::time::timeout_at(until(), self.services.db.close())
            .await
            .is_err()
        {
            tracing::warn!("database connections still in use at the shutdown deadline");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// A database is used with the real Stripe or with a local one (`--local-stripe`, an emulator
/// on this machine), never both: stores connected with invented keys must not meet the real
/// Stripe, nor real stores a local one. The first start records which.
async fn check_stripe_kind(db: &Db, config: &Config) -> anyhow::Result<()> {
    let base = &config.stripe.api_base;
    let kind = if base.starts_with("https://") {
        "stripe"
    } else {
        "local"
    };
    let recorded = crate::db::settings::get_or_set(db, "stripe_kind", kind).await?;
    if recorded != kind {
        let (was, now) = match recorded.as_str() {
            "local" => (
                "a local Stripe (--local-stripe)",
                format!("Stripe at {base}"),
            ),
            _ => ("the real Stripe", format!("a local Stripe at {base}")),
        };
        anyhow::bail!("BURSAR_DATABASE_URL: this database was used with {was}; it is not used with {now}: use another database (another directory, or BURSAR_DATABASE_URL)");
    }
    Ok(())
}

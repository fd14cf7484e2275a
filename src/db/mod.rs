//! Persistence: one pool over SQLite (embedded default) or PostgreSQL, through sqlx's `Any`
//! driver so that queries are written once. Engine differences live in small named functions.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedMutexGuard};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Executor, Transaction};

pub mod api_keys;
pub mod connections;
pub mod console_sessions;
pub mod customers;
pub mod grants;
pub mod idempotency;
pub mod inbox;
pub mod jobs;
pub mod notifications;
pub mod operator;
pub mod orders;
pub mod payouts;
pub mod secrets;
pub mod settings;
pub mod sqlite_checkpoint;
pub mod storage;
pub mod stores;
pub mod transfers;
pub mod vendor_subscriptions;
pub mod watermarks;

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A unique constraint refused the write; the name says which.
    #[error("conflict on {0}")]
    Conflict(String),
    #[error("database error")]
    Sqlx(#[source] sqlx::Error),
    #[error("database error")]
    Sqlite(#[source] rusqlite::Error),
    /// The database could not be opened; the text says what failed, in an operator's words.
    #[error("{0}")]
    Connect(String),
    /// The operation did not finish (it panicked); nothing of it was committed.
    #[error("database operation aborted: {0}")]
    Aborted(String),
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                return DbError::Conflict(
                    db.constraint()
                        .map(str::to_owned)
                        .unwrap_or_else(|| db.message().to_owned()),
                );
            }
        }
        DbError::Sqlx(e)
    }
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    /// The worker's connections, committing without waiting for the disk (see `connect`).
    apply_pool: AnyPool,
    engine: Engine,
    /// SQLite has one writer. Queueing writers here, in order, replaces SQLite's busy handler,
    /// which polls with sleeps of up to 100 ms and so turns lock contention into latency.
    write_lock: Arc<Mutex<()>>,
    /// The webhook inbox's writer for this engine.
    inbox: inbox::Inbox,
    /// SQLite's WAL checkpoints, on their own thread (with a file; none on PostgreSQL).
    _checkpointer: Option<Arc<sqlite_checkpoint::Checkpointer>>,
}

/// A write transaction; on SQLite it also holds the process-wide write lock until it ends.
pub struct WriteTx {
    tx: Transaction<'static, Any>,
    _lock: Option<OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub async fn commit(self) -> Result<()> {
        Ok(self.tx.commit().await?)
    }

    pub async fn rollback(self) -> Result<()> {
        Ok(self.tx.rollback().await?)
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

impl Db {
    /// Connects (creating a SQLite file if needed) without migrating.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else {
            Engine::Postgres
        };
        // The inbox acknowledges an event once it is on disk: an in-memory database would
        // lose every acknowledged event with the process.
        let file = sqlite_path(url).filter(|_| engine == Engine::Sqlite);
        if engine == Engine::Sqlite && file.is_none() {
            return Err(DbError::Connect(
                "a SQLite database must be a file (sqlite://path/to/bursar.db): \
                 Bursar keeps acknowledged events on disk"
                    .into(),
            ));
        }
        if engine == Engine::Sqlite {
            create_private_sqlite_file(url)?;
        }
        let url = match engine {
            Engine::Sqlite if !url.contains("mode=") => {
                format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
            }
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|e| DbError::Connect(format!("invalid URL: {e}")))?;
        let apply_pool;
        let mut pg = None;
        let pool = match engine {
            Engine::Sqlite => {
                // WAL lets readers run beside the one writer; FULL fsyncs every commit, which is
                // what "durable before the 2xx" needs for everything acknowledged to a client.
                let pool = sqlite_pool(options.clone(), 8, "FULL")
                    .await
                    .map_err(|e| DbError::Connect(describe_connect_error(&e, &url)))?;
                // The worker's transactions need to be atomic, not durable the moment they
                // commit: one lost to a power failure takes its effects with it, so its events
                // are simply applied again; and the next FULL commit (the inbox commits under
                // any load) syncs the WAL, theirs included. So they skip the fsync, and the
                // inbox writer does not queue behind two fsyncs per worker batch.
                apply_pool = sqlite_pool(options, 2, "NORMAL")
                    .await
                    .map_err(|e| DbError::Connect(describe_connect_error(&e, &url)))?;
                pool
            }
            Engine::Postgres => {
                // One direct connection first: the pool retries refused connections until its
                // timeout and then reports only that; this reports the cause, at once.
                use sqlx::Connection;
                sqlx::AnyConnection::connect_with(&options)
                    .await
                    .map_err(|e| DbError::Connect(describe_connect_error(&e, &url)))?
                    .close()
                    .await?;
                pg = Some(
                    sqlx::postgres::PgConnectOptions::from_str(&url)
                        .map_err(|e| DbError::Connect(format!("invalid URL: {e}")))?,
                );
                // The worker's transactions commit without waiting for their WAL flush, for the
                // reason given for SQLite above: a commit lost to a crash leaves its events
                // claimed, so they are applied again once the lease runs out, and the next
                // synchronous commit (the inbox's) flushes the WAL theirs is in.
                apply_pool = AnyPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(10))
                    // No ping per transaction: one on a broken connection fails its batch,
                    // which is retried, and the pool drops the connection.
                    .test_before_acquire(false)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute("SET synchronous_commit = off").await?;
                            Ok(())
                        })
                    })
                    .connect_with(options.clone())
                    .await
                    .map_err(|e| DbError::Connect(describe_connect_error(&e, &url)))?;
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await
                    .map_err(|e| DbError::Connect(describe_connect_error(&e, &url)))?
            }
        };
        let write_lock = Arc::new(Mutex::new(()));
        let (inbox, checkpointer) = match (file, pg) {
            (Some(path), _) => (
                inbox::Inbox::sqlite(&path, write_lock.clone())?,
                Some(Arc::new(sqlite_checkpoint::Checkpointer::start(
                    &path,
                    write_lock.clone(),
                )?)),
            ),
            (None, Some(pg)) => (
                inbox::Inbox::postgres(pg, apply_pool.clone(), pool.clone()).await?,
                None,
            ),
            (None, None) => unreachable!("a SQLite URL without a file was refused above"),
        };
        Ok(Self {
            pool,
            apply_pool,
            engine,
            write_lock,
            inbox,
            _checkpointer: checkpointer,
        })
    }

    /// Connects and brings the schema up to date: what every command that uses the database does.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        use anyhow::Context;
        let db = Self::connect(url)
            .await
            .context("BURSAR_DATABASE_URL: cannot open the database")?;
        db.migrate().await.context("database migration failed")?;
        Ok(db)
    }

    pub async fn migrate(&self) -> Result<()> {
        match self.engine {
            Engine::Sqlite => SQLITE_MIGRATOR.run(&self.pool).await?,
            Engine::Postgres => POSTGRES_MIGRATOR.run(&self.pool).await?,
        }
        Ok(())
    }

    /// Runs a trivial query: the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The webhook inbox's writer: deliveries, claims and effect-free finishes.
    pub fn inbox(&self) -> &inbox::Inbox {
        &self.inbox
    }

    /// On SQLite, the process's turn to write, for a single-statement write on the shared pool:
    /// queued in order with the inbox thread and the worker instead of polling SQLite's busy
    /// handler, which a steady stream of lock holders can starve past its timeout. None (no
    /// waiting) on PostgreSQL. Never hold it across `begin_write`: the lock is not reentrant.
    pub async fn write_turn(&self) -> Option<OwnedMutexGuard<()>> {
        match self.engine {
            Engine::Sqlite => Some(self.write_lock.clone().lock_owned().await),
            Engine::Postgres => None,
        }
    }

    /// A write transaction. On SQLite it waits its turn for the process's write lock, then takes
    /// SQLite's at once (`BEGIN IMMEDIATE`), so it cannot fail with SQLITE_BUSY mid-way.
    pub async fn begin_write(&self) -> Result<WriteTx> {
        Ok(match self.engine {
            Engine::Sqlite => {
                let lock = self.write_lock.clone().lock_owned().await;
                WriteTx {
                    tx: self.pool.begin_with("BEGIN IMMEDIATE").await?,
                    _lock: Some(lock),
                }
            }
            Engine::Postgres => WriteTx {
                tx: self.pool.begin().await?,
                _lock: None,
            },
        })
    }

    /// A write transaction for the worker's claims and applies, on a connection that commits
    /// without waiting for the disk (atomic, made durable by the next synchronous commit).
    pub async fn begin_unsynced(&self) -> Result<WriteTx> {
        match self.engine {
            Engine::Postgres => Ok(WriteTx {
                tx: self.apply_pool.begin().await?,
                _lock: None,
            }),
            Engine::Sqlite => {
                let lock = self.write_lock.clone().lock_owned().await;
                Ok(WriteTx {
                    tx: self.apply_pool.begin_with("BEGIN IMMEDIATE").await?,
                    _lock: Some(lock),
                })
            }
        }
    }

    pub async fn close(&self) {
        self.apply_pool.close().await;
        self.inbox.close().await;
        self.pool.close().await;
    }
}

/// A SQLite pool in WAL mode whose connections commit with `synchronous` (FULL or NORMAL).
async fn sqlite_pool(
    options: AnyConnectOptions,
    max: u32,
    synchronous: &'static str,
) -> std::result::Result<AnyPool, sqlx::Error> {
    AnyPoolOptions::new()
        .max_connections(max)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                conn.execute(sqlite_pragmas(synchronous).as_str()).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
}

/// Every SQLite connection's settings: WAL, commits with `synchronous` (FULL or NORMAL), no
/// checkpoints (they are the checkpoint thread's job, not any committer's). 16 KB pages (a new database only; an existing
/// one keeps its size): a commit of N 3 KB webhook payloads writes N/5 WAL frames, not N, each a
/// page and a header written apart, so ingestion makes fewer writes per event.
pub(crate) fn sqlite_pragmas(synchronous: &str) -> String {
    format!(
        "PRAGMA page_size = 16384; PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA temp_store = MEMORY; \
         PRAGMA wal_autocheckpoint = 0;"
    )
}

/// The file a `sqlite:` URL names, if it names one (not `:memory:`).
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| path.into())
}

/// Creates a new SQLite database file readable by its owner only (it holds sealed secrets and
/// every event); SQLite gives its -wal and -shm files the same mode. Says clearly when the
/// directory is missing, instead of SQLite's "unable to open database file".
fn create_private_sqlite_file(url: &str) -> Result<()> {
    let Some(path) = sqlite_path(url) else {
        return Ok(());
    };
    if path.exists() {
        return Ok(());
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(DbError::Connect(format!(
            "directory {} does not exist (create it, or point the sqlite:// URL elsewhere)",
            dir.display()
        )));
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(DbError::Connect(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

/// An operator's account of why connecting failed: what was tried and what to check. Never
/// includes the password.
fn describe_connect_error(e: &sqlx::Error, url: &str) -> String {
    let target = match sqlite_path(url) {
        Some(path) => path.display().to_string(),
        None => url::Url::parse(url)
            .ok()
            .and_then(|u| {
                u.host_str()
                    .map(|h| format!("{h}:{}", u.port().unwrap_or(5432)))
            })
            .unwrap_or_else(|| "the database".to_owned()),
    };
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("connection refused by {target} (is the server running and listening there?)")
        }
        sqlx::Error::Io(io) => format!("cannot reach {target}: {io}"),
        sqlx::Error::Tls(tls) => format!(
            "TLS with {target} failed: {tls} (check sslmode, sslrootcert and the server's certificate)"
        ),
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            let message = db.message();
            match code.as_ref() {
                "28P01" => format!("authentication failed at {target}: {message} (check the user and password)"),
                "28000" if message.contains("no encryption") => format!(
                    "{target} refuses connections without TLS: {message} (add sslmode=require to the URL)"
                ),
                "28000" => format!("{target} refused the connection: {message}"),
                "3D000" => format!("{message} at {target} (create it, or fix the URL's database name)"),
                _ => format!("{target} answered: {message}"),
            }
        }
        sqlx::Error::PoolTimedOut => format!("timed out connecting to {target}"),
        sqlx::Error::Configuration(c) => format!("invalid URL: {c}"),
        other => format!("cannot open the database: {other}"),
    }
}

pub use crate::clock::now_ms;

pub(crate) fn flag(b: bool) -> i64 {
    i64::from(b)
}

/// A row-lock clause, on PostgreSQL only: SQLite has no row locks and needs none (a write
/// transaction there holds the whole database from its `BEGIN IMMEDIATE`).
fn on_postgres(conn: &sqlx::AnyConnection, clause: &'static str) -> &'static str {
    if conn.backend_name().eq_ignore_ascii_case("postgresql") {
        clause
    } else {
        ""
    }
}

/// For a read that a write in the same transaction depends on: the row stays locked until the
/// transaction ends.
pub(crate) fn for_update(conn: &sqlx::AnyConnection) -> &'static str {
    on_postgres(conn, " FOR UPDATE")
}

/// For writers that must not race a row's exclusive change (a store being deleted): they wait
/// while it is being changed.
pub(crate) fn for_share(conn: &sqlx::AnyConnection) -> &'static str {
    on_postgres(conn, " FOR SHARE")
}

/// For claims several processes make at once: each takes rows the others have not locked.
pub(crate) fn skip_locked(conn: &sqlx::AnyConnection, of: &'static str) -> String {
    match on_postgres(conn, " FOR UPDATE OF ") {
        "" => String::new(),
        clause => format!("{clause}{of} SKIP LOCKED"),
    }
}

/// Fresh databases for unit tests, of the engine under test.
#[cfg(test)]
pub(crate) mod testing {
    use super::Db;

    /// A migrated database and its URL: a new one on the PostgreSQL run's server when
    /// `BURSAR_TEST_DATABASE_URL` names one, else a SQLite file in a temporary directory (kept
    /// alive by the returned guard). Opening the URL again is what a second process does.
    pub async fn fresh() -> (Db, String, Option<tempfile::TempDir>) {
        let (url, dir) = match std::env::var("BURSAR_TEST_DATABASE_URL") {
            Ok(url) if url.starts_with("postgres") => (fresh_postgres(&url).await, None),
            _ => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("unit.db").display());
                (url, Some(dir))
            }
        };
        (Db::open(&url).await.unwrap(), url, dir)
    }

    /// The URL of a new, empty database on the server `url` names.
    pub async fn fresh_postgres(url: &str) -> String {
        use sqlx::{Connection, Executor};
        let name = format!("bursar_unit_{:016x}", rand::random::<u64>());
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        let mut fresh = url::Url::parse(url).unwrap();
        fresh.set_path(&name);
        fresh.to_string()
    }
}

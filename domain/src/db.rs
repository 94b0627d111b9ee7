//! Connecting to the database and bringing its schema up to date.

use std::time::Duration;

use postern_config::Settings;
use postern_entity::migration::Migrator;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use sea_orm_migration::MigratorTrait;

use crate::Result;

/// Opens the configured database. SQLite runs in WAL mode with `synchronous=FULL`, so a
/// committed queue entry survives a crash or power loss: that is what our `250` promises.
pub async fn connect(settings: &Settings) -> Result<DatabaseConnection> {
    connect_url(&settings.database.url).await
}

pub async fn connect_url(url: &str) -> Result<DatabaseConnection> {
    let sqlite = url.starts_with("sqlite:");
    if sqlite
        && let Some(path) = sqlite_path(url)
        && let Some(parent) = std::path::Path::new(&path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            crate::DomainError::Invalid(format!(
                "cannot create the database directory {}: {e}",
                parent.display()
            ))
        })?;
    }
    if sqlite {
        // The switch to WAL needs the file to itself, and the pool's connections opening together
        // on a new file would race for it ("database is locked"). WAL is a property of the
        // file: set it once from one connection, and the pool's later `journal_mode=WAL` is a
        // no-op.
        Database::connect(sqlite_options(url, 1))
            .await?
            .close()
            .await?;
    }
    let db = Database::connect(if sqlite {
        sqlite_options(url, SQLITE_CONNECTIONS)
    } else {
        let mut options = ConnectOptions::new(url.to_string());
        options
            .max_connections(20)
            .min_connections(1)
            .connect_timeout(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(10))
            .sqlx_logging(false);
        options
    })
    .await?;
    Ok(db)
}

/// The connection the group-commit writer ([`crate::pipeline::commit::Writer`]) writes
/// through. On SQLite it is a connection of its own, which nothing else writes through: a
/// connection drops its whole page cache whenever another one has committed since its last
/// transaction, so a writer that took the pool's connections in turn re-read every page it
/// touched, each transaction. On PostgreSQL the cache is the server's: the pool serves.
pub async fn writer_connection(
    settings: &Settings,
    pool: &DatabaseConnection,
) -> Result<DatabaseConnection> {
    let url = &settings.database.url;
    if url.starts_with("sqlite:") && sqlite_path(url).is_some() {
        Ok(Database::connect(sqlite_options(url, 1)).await?)
    } else {
        Ok(pool.clone())
    }
}

/// A pool of `connections` SQLite connections, all opened at start and kept.
fn sqlite_options(url: &str, connections: u32) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.to_string());
    options
        .max_connections(connections)
        .min_connections(connections)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        // All opened at start and kept: each costs about 0.6 MiB (a thread, the schema, its
        // cache), and a pool that grew with bursts and recycled them would make the process's
        // memory creep for hours instead of being what it is after the first minute.
        .idle_timeout(None)
        .max_lifetime(None);
    options.map_sqlx_sqlite_opts(|o| {
        o.journal_mode(sqlx_sqlite_journal_wal())
            .synchronous(sqlx_sqlite_sync_full())
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"))
    });
    options
}

/// SQLite connections besides the writer's ([`writer_connection`]): reads, and the writes
/// that do not go through the group-commit writer (the API's, housekeeping's). Each one kept
/// costs memory: its thread, its schema and its page cache.
const SQLITE_CONNECTIONS: u32 = 3;

/// Page cache per SQLite connection, in KiB (SQLite's default is 2,000). Mail is written once
/// and read once, mostly from memory on its way through, so a larger cache would only hold
/// old messages; the housekeeping's scans would fill each connection's in turn, and memory
/// would creep for hours. The OS caches the file as well: a page missing here is a read from
/// memory.
const SQLITE_CACHE_KIB: u32 = 512;

fn sqlx_sqlite_journal_wal() -> sea_orm::sqlx::sqlite::SqliteJournalMode {
    sea_orm::sqlx::sqlite::SqliteJournalMode::Wal
}

fn sqlx_sqlite_sync_full() -> sea_orm::sqlx::sqlite::SqliteSynchronous {
    sea_orm::sqlx::sqlite::SqliteSynchronous::Full
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        None
    } else {
        Some(path.to_string())
    }
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<()> {
    Migrator::up(db, None).await?;
    Ok(())
}

/// True when the connection is PostgreSQL (used for `FOR UPDATE SKIP LOCKED`).
pub fn is_postgres(db: &impl ConnectionTrait) -> bool {
    matches!(
        db.get_database_backend(),
        sea_orm::DatabaseBackend::Postgres
    )
}

/// Starts a transaction that will write. On SQLite it takes the write lock up front
/// (`BEGIN IMMEDIATE`), so it waits for other writers instead of failing when its read
/// snapshot turns stale (SQLITE_BUSY_SNAPSHOT).
pub async fn begin_write(db: &DatabaseConnection) -> Result<sea_orm::DatabaseTransaction> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    Ok(db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await?)
}

//! Opening a role's SQLite database: WAL, `synchronous=FULL`, a busy timeout, and write
//! transactions that take the write lock up front (`BEGIN IMMEDIATE`).

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use std::str::FromStr;
use std::time::Duration;

/// Opens (creating if missing) the SQLite database at `url` (`sqlite://path` or a plain path).
pub async fn open_sqlite(url: &str) -> anyhow::Result<SqlitePool> {
    let url = if url.starts_with("sqlite:") {
        url.to_owned()
    } else {
        format!("sqlite://{url}")
    };
    if let Some(path) = url.strip_prefix("sqlite://") {
        if let Some(parent) = std::path::Path::new(path).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
        }
    }
    let options = SqliteConnectOptions::from_str(&url)
        .with_context(|| format!("bad database url {url}"))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // Every commit an acknowledgement depends on is on disk before we answer.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);
    SqlitePoolOptions::new()
        .max_connections(8)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .with_context(|| format!("opening {url}"))
}

/// Begins a write transaction holding the write lock from its first statement, so a
/// read-then-write transaction can never fail on a stale snapshot.
pub async fn begin_write(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

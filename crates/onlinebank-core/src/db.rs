//! Opening a role's SQLite database: WAL, `synchronous=FULL`, a busy timeout, and write
//! transactions that take the write lock up front (`BEGIN IMMEDIATE`).
//!
//! A [`Db`] has two pools on the same file: readers (several connections, WAL lets them run
//! beside a writer) and ONE writer connection. SQLite admits one writer at a time anyway; queueing
//! writers on the pool's fair async queue instead of SQLite's sleeping busy handler keeps write
//! latency flat under concurrency.

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use std::str::FromStr;
use std::time::Duration;

/// A service's database: a reader pool and a single-connection writer pool.
#[derive(Debug, Clone)]
pub struct Db {
    pub read: SqlitePool,
    pub write: SqlitePool,
}

impl Db {
    /// Opens (creating if missing) the SQLite database at `url` (`sqlite://path` or a path).
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let write = open_sqlite(url, 1).await?;
        let read = open_sqlite(url, 8).await?;
        Ok(Self { read, write })
    }

    /// Begins a write transaction (see [`begin_write`]).
    pub async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        begin_write(&self.write).await
    }
}

/// Opens (creating if missing) the SQLite database at `url` (`sqlite://path` or a plain path).
pub async fn open_sqlite(url: &str, connections: u32) -> anyhow::Result<SqlitePool> {
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
        .max_connections(connections)
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

//! SQLite: the file behind a URL, the connection settings every connection shares, and the pool
//! its migrations run on.

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The file behind a SQLite URL (`sqlite://path`, `sqlite:path` or a plain path), its folder
/// created if missing.
pub(crate) fn sqlite_path(url: &str) -> anyhow::Result<PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url)
        .split('?')
        .next()
        .unwrap_or_default();
    let path = PathBuf::from(path);
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
    }
    Ok(path)
}

/// Opens a SQLite connection with the settings every connection shares: WAL,
/// `synchronous=FULL` (every commit an acknowledgement depends on is on disk before we answer),
/// a busy timeout and foreign keys. A reader refuses writes and waits less.
pub(crate) fn open_rusqlite(
    path: &std::path::Path,
    reader: bool,
) -> anyhow::Result<rusqlite::Connection> {
    let conn =
        rusqlite::Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "{} refused WAL mode ({mode})",
        path.display()
    );
    conn.pragma_update(None, "synchronous", "FULL")?;
    // After a checkpoint the WAL is cut back to this size: it does not keep its peak for ever.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(Duration::from_millis(if reader { 1000 } else { 5000 }))?;
    conn.set_prepared_statement_cache_capacity(64);
    if reader {
        conn.pragma_update(None, "query_only", "ON")?;
    }
    Ok(conn)
}

/// Opens a one-connection sqlx pool on the SQLite database at `url`, for its migrations.
pub(crate) async fn sqlite_migration_pool(url: &str) -> anyhow::Result<AnyPool> {
    sqlx::any::install_default_drivers();
    let path = sqlite_path(url)?;
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let options =
        AnyConnectOptions::from_str(&url).with_context(|| format!("bad database url {url}"))?;
    AnyPoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                )
                .await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .with_context(|| format!("opening {url}"))
}

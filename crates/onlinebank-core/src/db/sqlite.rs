//! SQLite: the file behind a URL, the connection settings every connection shares, WAL
//! truncation, and the copy kept before an upgrade migrates a file.

use super::storage::Checkpoint;
use anyhow::Context;
use std::path::PathBuf;
use std::time::Duration;

/// How long the writer waits for another process's write lock.
const WRITER_BUSY_TIMEOUT: Duration = Duration::from_millis(5000);
/// How long a reader waits for a lock.
const READER_BUSY_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long a WAL truncation waits for readers to leave the WAL before it answers busy (the
/// writer waits with it, so briefly; it is retried later).
const CHECKPOINT_BUSY_TIMEOUT: Duration = Duration::from_millis(100);

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
    conn.busy_timeout(if reader {
        READER_BUSY_TIMEOUT
    } else {
        WRITER_BUSY_TIMEOUT
    })?;
    conn.set_prepared_statement_cache_capacity(64);
    if reader {
        conn.pragma_update(None, "query_only", "ON")?;
    }
    Ok(conn)
}

/// Copies every page of the WAL into the database and cuts the WAL file to nothing
/// (`PRAGMA wal_checkpoint(TRUNCATE)`) on the writer's connection, between its transactions.
/// Waits at most [`CHECKPOINT_BUSY_TIMEOUT`] for readers to leave the WAL.
pub(crate) fn truncate_wal(conn: &rusqlite::Connection) -> Checkpoint {
    if let Err(error) = conn.busy_timeout(CHECKPOINT_BUSY_TIMEOUT) {
        return Checkpoint::Failed(error.into());
    }
    let checkpoint = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
        row.get::<_, i64>(0)
    });
    if let Err(error) = conn.busy_timeout(WRITER_BUSY_TIMEOUT) {
        return Checkpoint::Failed(error.into());
    }
    match checkpoint.map_err(super::Error::from) {
        Ok(0) => Checkpoint::Truncated,
        Ok(_) => Checkpoint::Busy,
        Err(error) if error.is_busy() => Checkpoint::Busy,
        Err(error) => Checkpoint::Failed(error),
    }
}

/// Copies the database at `path` (a consistent snapshot, through `VACUUM INTO` on a read-only
/// connection) into `<its folder>/pre-upgrade-<release>/`, then deletes all but the newest
/// `keep` such folders. Returns the copy's path.
pub(crate) fn copy_before_upgrade(
    path: &std::path::Path,
    release: &str,
    keep: usize,
) -> anyhow::Result<PathBuf> {
    let data_dir = path.parent().unwrap_or(std::path::Path::new("."));
    let folder = data_dir.join(format!("pre-upgrade-{release}"));
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    let name = path.file_name().map_or_else(
        || "database.db".into(),
        |name| name.to_string_lossy().into_owned(),
    );
    let mut copy = folder.join(&name);
    if copy.exists() {
        copy = folder.join(format!("{}-{name}", crate::time::now_ms()));
    }
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("opening {}", path.display()))?;
    conn.execute("VACUUM INTO ?1", [copy.display().to_string()])
        .with_context(|| format!("copying {} to {}", path.display(), copy.display()))?;
    prune_pre_upgrade_copies(data_dir, keep)?;
    Ok(copy)
}

/// Deletes all but the newest `keep` `pre-upgrade-*` folders of `data_dir` (by change time).
fn prune_pre_upgrade_copies(data_dir: &std::path::Path, keep: usize) -> anyhow::Result<()> {
    let mut folders = Vec::new();
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("pre-upgrade-")
            && entry.path().is_dir()
        {
            let changed = entry.metadata()?.modified()?;
            folders.push((changed, entry.path()));
        }
    }
    folders.sort();
    let extra = folders.len().saturating_sub(keep);
    for (_, folder) in folders.into_iter().take(extra) {
        std::fs::remove_dir_all(&folder)
            .with_context(|| format!("deleting the old copy {}", folder.display()))?;
    }
    Ok(())
}

/// Runs a transaction-control statement (prepared once per connection).
pub(super) fn control(conn: &rusqlite::Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.raw_execute().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SQLite version as numbers: `"3.51.3"` is `[3, 51, 3]` (a missing part counts as 0).
    fn version_numbers(version: &str) -> [u32; 3] {
        let mut parts = version.split('.').map(|part| part.parse::<u32>().unwrap());
        [0; 3].map(|_| parts.next().unwrap_or(0))
    }

    /// SQLite before 3.51.3 can corrupt a WAL database when a checkpoint resets the WAL while
    /// another connection writes (the WAL-reset bug), which the bank's writer and readers do.
    #[test]
    fn the_linked_sqlite_has_the_wal_reset_fix() {
        assert_eq!(version_numbers("3.9"), [3, 9, 0]);
        assert!(version_numbers("3.51.10") > version_numbers("3.51.3"));
        let linked = rusqlite::version();
        assert!(
            version_numbers(linked) >= [3, 51, 3],
            "SQLite {linked} lacks the WAL-reset fix of 3.51.3"
        );
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let running: String = conn
            .query_row("SELECT sqlite_version()", [], |row| row.get(0))
            .unwrap();
        assert_eq!(running, linked, "sqlite_version() is the linked library's");
    }

    fn wal_size(path: &std::path::Path) -> u64 {
        let wal = path.with_extension("db-wal");
        std::fs::metadata(wal).map_or(0, |meta| meta.len())
    }

    #[test]
    fn truncating_the_wal_cuts_its_file_to_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let writer = open_rusqlite(&path, false).unwrap();
        writer
            .execute_batch("CREATE TABLE t (a BLOB); INSERT INTO t VALUES (zeroblob(200000))")
            .unwrap();
        assert!(wal_size(&path) > 200_000, "the WAL holds the write");
        assert!(matches!(truncate_wal(&writer), Checkpoint::Truncated));
        assert_eq!(wal_size(&path), 0);
        writer.execute_batch("INSERT INTO t VALUES (1)").unwrap();
    }

    #[test]
    fn a_reader_inside_the_wal_makes_the_truncation_busy_until_it_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let writer = open_rusqlite(&path, false).unwrap();
        writer
            .execute_batch("CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1)")
            .unwrap();
        let reader = open_rusqlite(&path, true).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0))
            .unwrap();
        writer.execute_batch("INSERT INTO t VALUES (2)").unwrap();
        assert!(matches!(truncate_wal(&writer), Checkpoint::Busy));
        reader.execute_batch("COMMIT").unwrap();
        assert!(matches!(truncate_wal(&writer), Checkpoint::Truncated));
        assert_eq!(wal_size(&path), 0);
    }
}

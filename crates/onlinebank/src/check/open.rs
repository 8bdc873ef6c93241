//! Opening a database of the data directory strictly read-only, without changing or creating
//! a single file there.
//!
//! A plain read-only open of a WAL database is not enough: SQLite creates the `-wal` and `-shm`
//! files when they are missing, and writes its read marks into an existing `-shm`. So:
//!
//! - no WAL content (a bank that stopped cleanly, whose last connection folded the WAL in and
//!   removed it): the file is opened `immutable`, which reads the database file alone, with no
//!   locks and no side files;
//! - a WAL with content (a bank that was killed, or a partial copy): the database and its WAL are
//!   copied into a private temporary directory and read there, where SQLite rebuilds the WAL's
//!   index from the `-wal` file. Every committed transaction in the WAL is seen. (Reading in
//!   place with `readonly_shm` over a killed bank's `-shm` failed now and then with
//!   SQLITE_PROTOCOL after long retries: a stale index that a read-only connection may not
//!   rebuild.)

use anyhow::Context;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// What a path may keep as it is in a `file:` URI; everything else is percent-encoded.
const URI_PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// How a database was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// The database file alone: there was no WAL content.
    FileAlone,
    /// A private copy of the database file and its WAL.
    CopyWithWal,
}

impl Reading {
    /// How a person reads it in the report.
    pub fn describe(self) -> &'static str {
        match self {
            Reading::FileAlone => "no WAL",
            Reading::CopyWithWal => "read with its WAL, from a private copy",
        }
    }
}

/// A database opened read-only.
pub struct Opened {
    /// The connection (declared first: it closes before the copy below is removed).
    pub conn: Connection,
    /// How it was read.
    pub reading: Reading,
    /// The private copy's directory, when there was one.
    _copy: Option<tempfile::TempDir>,
}

/// Opens `path` read-only as the module's documentation says.
pub fn open_read_only(path: &Path) -> anyhow::Result<Opened> {
    let wal = side_file(path, "-wal");
    let wal_has_content = std::fs::metadata(&wal).is_ok_and(|meta| meta.len() > 0);
    if !wal_has_content {
        let conn = open_uri(path, "mode=ro&immutable=1")?;
        return Ok(Opened {
            conn,
            reading: Reading::FileAlone,
            _copy: None,
        });
    }
    let copy = tempfile::tempdir().context("making a private directory for a copy")?;
    let name = path.file_name().unwrap_or(path.as_os_str());
    let copied = copy.path().join(name);
    std::fs::copy(path, &copied).with_context(|| format!("copying {}", path.display()))?;
    std::fs::copy(&wal, side_file(&copied, "-wal"))
        .with_context(|| format!("copying {}", wal.display()))?;
    let conn = open_uri(&copied, "mode=ro")?;
    Ok(Opened {
        conn,
        reading: Reading::CopyWithWal,
        _copy: Some(copy),
    })
}

/// `path` with `suffix` appended to its file name (`bus.db` -> `bus.db-wal`).
fn side_file(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// Opens `path` through a `file:` URI with `query`, read-only.
fn open_uri(path: &Path, query: &str) -> anyhow::Result<Connection> {
    let absolute =
        std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?;
    let text = absolute
        .to_str()
        .with_context(|| format!("{} is not UTF-8", absolute.display()))?;
    let uri = format!("file:{}?{query}", utf8_percent_encode(text, URI_PATH));
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(&uri, flags)
        .with_context(|| format!("opening {} read-only", path.display()))?;
    // Belt and braces: this connection refuses every write, whatever the flags above allow.
    conn.pragma_update(None, "query_only", "ON")
        .with_context(|| format!("opening {} read-only", path.display()))?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAL database whose last transactions are still in its WAL, as a killed process leaves
    /// it: copied, with its `-wal` and `-shm`, while its writer is open (and then closed), so no
    /// live connection stands behind the copy.
    fn killed_database(dir: &Path) -> std::path::PathBuf {
        let live = tempfile::tempdir().unwrap();
        let name = "x?#%.db";
        let conn = Connection::open(live.path().join(name)).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2);")
            .unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{name}{suffix}");
            std::fs::copy(live.path().join(&file), dir.join(&file)).unwrap();
        }
        dir.join(name)
    }

    fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let name = entry.file_name().to_string_lossy().into_owned();
                (name, std::fs::read(entry.path()).unwrap())
            })
            .collect();
        files.sort();
        files
    }

    fn rows(opened: &Opened) -> i64 {
        opened
            .conn
            .query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn a_killed_database_is_read_with_its_wal_and_no_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = killed_database(dir.path());
        let before = files(dir.path());
        assert!(before.iter().any(|(name, _)| name.ends_with("-shm")));
        let opened = open_read_only(&path).unwrap();
        assert_eq!(opened.reading, Reading::CopyWithWal);
        assert_eq!(rows(&opened), 2);
        assert!(opened.conn.execute("INSERT INTO t VALUES (3)", []).is_err());
        drop(opened);
        assert!(
            files(dir.path()) == before,
            "a file in the directory changed"
        );
    }

    #[test]
    fn a_wal_without_its_shm_is_read_from_a_private_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = killed_database(dir.path());
        std::fs::remove_file(side_file(&path, "-shm")).unwrap();
        let before = files(dir.path());
        let opened = open_read_only(&path).unwrap();
        assert_eq!(opened.reading, Reading::CopyWithWal);
        assert_eq!(rows(&opened), 2);
        drop(opened);
        assert!(
            files(dir.path()) == before,
            "a file in the directory changed"
        );
    }

    #[test]
    fn a_cleanly_closed_database_is_read_alone_and_no_side_file_appears() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clean.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
            .unwrap();
        drop(conn);
        let before = files(dir.path());
        assert_eq!(before.len(), 1, "the WAL outlived its last connection");
        let opened = open_read_only(&path).unwrap();
        assert_eq!(opened.reading, Reading::FileAlone);
        assert_eq!(rows(&opened), 1);
        drop(opened);
        assert!(
            files(dir.path()) == before,
            "a file in the directory changed"
        );
    }
}

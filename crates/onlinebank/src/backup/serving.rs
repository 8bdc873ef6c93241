//! Which processes serve a data dir right now, and where their admin listeners are.
//!
//! Every `up` and `serve` process on the embedded data dir writes `DIR/serving/<pid>.json` before
//! it opens any database, and holds an exclusive `flock` on that file while it runs; once its
//! admin listener is bound, the record names its address. The kernel drops the lock when the
//! process ends, however it ends (kill -9 too), so a record whose lock can be taken is stale:
//! `onlinebank backup` removes it and never asks its address. Because the record comes before
//! the first write, a backup that lists the records again after its cut knows whether a process
//! it did not pause could have written (see [`ensure_only`]).

use anyhow::Context;
use onlinebank_core::{Role, Settings};
use rustix::fs::{flock, FlockOperation};
use serde::{Deserialize, Serialize};
use std::io::{Seek, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The folder of the records under the data dir.
const FOLDER: &str = "serving";

/// What a serving process records about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Serving {
    /// Its process id.
    pub pid: u32,
    /// Its admin listener, as a client reaches it (`http://127.0.0.1:port`); None while the
    /// process starts.
    pub admin_url: Option<String>,
    /// The roles it serves.
    pub roles: Vec<String>,
}

/// This process's record, locked while it lives; dropping it removes the record.
#[derive(Debug)]
pub struct ServingRecord {
    /// The record's file.
    path: PathBuf,
    /// The open file whose lock says "alive".
    locked: std::fs::File,
    /// What it says.
    serving: Serving,
}

/// Embedded mode (no `--database`): records that this process serves `roles` of the data dir,
/// before it opens any database (see the module docs).
pub fn announce(settings: &Settings, roles: &[Role]) -> anyhow::Result<Option<ServingRecord>> {
    if settings.database.is_some() {
        return Ok(None);
    }
    let roles = roles.iter().map(|role| role.as_str().to_owned()).collect();
    ServingRecord::starting(&settings.data_dir, roles).map(Some)
}

impl ServingRecord {
    /// Writes and locks the record of this process, starting to serve `roles`.
    pub fn starting(data_dir: &Path, roles: Vec<String>) -> anyhow::Result<Self> {
        // Records left by processes that were killed go first (nothing else removes them
        // until a backup lists the folder).
        live(data_dir)?;
        let folder = data_dir.join(FOLDER);
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("creating {}", folder.display()))?;
        let pid = std::process::id();
        let serving = Serving {
            pid,
            admin_url: None,
            roles,
        };
        // Written and locked under a temporary name, then renamed: a reader never finds the
        // record unlocked.
        let temporary = folder.join(format!("{pid}.json.partial"));
        let path = folder.join(format!("{pid}.json"));
        let locked = std::fs::File::create(&temporary)
            .with_context(|| format!("creating {}", temporary.display()))?;
        flock(&locked, FlockOperation::NonBlockingLockExclusive)
            .with_context(|| format!("locking {}", temporary.display()))?;
        let mut record = Self {
            path: temporary.clone(),
            locked,
            serving,
        };
        record.rewrite()?;
        std::fs::rename(&temporary, &path)
            .with_context(|| format!("renaming {}", temporary.display()))?;
        record.path = path;
        Ok(record)
    }

    /// Records the admin listener's address, `admin` (an unspecified address as loopback).
    pub fn serving_at(&mut self, admin: SocketAddr) -> anyhow::Result<()> {
        let mut reachable = admin;
        if reachable.ip().is_unspecified() {
            reachable.set_ip(match admin {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        self.serving.admin_url = Some(format!("http://{reachable}"));
        self.rewrite()
    }

    /// Writes the record into its locked file (a reader that meets it half written takes the
    /// process for one that is starting).
    fn rewrite(&mut self) -> anyhow::Result<()> {
        let text = serde_json::to_vec(&self.serving)?;
        self.locked.set_len(0)?;
        self.locked.rewind()?;
        self.locked
            .write_all(&text)
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

impl Drop for ServingRecord {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The processes serving `data_dir` now; stale records (their process ended) are removed.
pub fn live(data_dir: &Path) -> anyhow::Result<Vec<Serving>> {
    let folder = data_dir.join(FOLDER);
    let entries = match std::fs::read_dir(&folder) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("reading {}", folder.display())),
    };
    let mut live = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|extension| extension != "json") {
            continue;
        }
        if let Some(serving) = alive(&path)? {
            live.push(serving);
        }
    }
    live.sort_by_key(|serving| serving.pid);
    Ok(live)
}

/// The record at `path` when its process still holds the lock; else removes it.
fn alive(path: &Path) -> anyhow::Result<Option<Serving>> {
    let Ok(file) = std::fs::File::open(path) else {
        return Ok(None);
    };
    if flock(&file, FlockOperation::NonBlockingLockShared).is_ok() {
        tracing::info!(record = %path.display(), "removing the record of a process that ended");
        let _ = std::fs::remove_file(path);
        return Ok(None);
    }
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let serving = serde_json::from_slice(&text).unwrap_or_else(|_| Serving {
        // Being written: a process that is starting.
        pid: path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .and_then(|stem| stem.parse().ok())
            .unwrap_or_default(),
        admin_url: None,
        roles: Vec::new(),
    });
    Ok(Some(serving))
}

/// What [`ensure_only`] says when a process it was not told of serves the data dir.
pub const OTHERS_STARTED: &str = "another process started on the data dir during the backup";

/// Fails unless the processes serving `data_dir` are among `expected` (their pids): run after a
/// cut's snapshots are fixed, it tells whether a process the cut did not pause could have
/// written before them.
pub fn ensure_only(data_dir: &Path, expected: &[u32]) -> anyhow::Result<()> {
    let others: Vec<u32> = live(data_dir)?
        .iter()
        .map(|serving| serving.pid)
        .filter(|pid| !expected.contains(pid))
        .collect();
    anyhow::ensure!(others.is_empty(), "{OTHERS_STARTED} (pid {others:?})");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_record_is_live_while_held_and_gone_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let admin: SocketAddr = "0.0.0.0:9100".parse().unwrap();
        let mut record = ServingRecord::starting(dir.path(), vec!["account".into()]).unwrap();
        let found = live(dir.path()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].admin_url, None, "starting");
        assert!(
            ensure_only(dir.path(), &[]).is_err(),
            "a process nobody paused"
        );
        record.serving_at(admin).unwrap();
        let found = live(dir.path()).unwrap();
        assert_eq!(found[0].admin_url.as_deref(), Some("http://127.0.0.1:9100"));
        assert_eq!(found[0].pid, std::process::id());
        ensure_only(dir.path(), &[std::process::id()]).unwrap();
        drop(record);
        assert!(live(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_record_nobody_holds_is_stale_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join(FOLDER);
        std::fs::create_dir_all(&folder).unwrap();
        let stale = folder.join("999999.json");
        std::fs::write(
            &stale,
            r#"{"pid":999999,"adminUrl":"http://127.0.0.1:1","roles":[]}"#,
        )
        .unwrap();
        assert!(live(dir.path()).unwrap().is_empty());
        assert!(!stale.exists(), "the stale record was removed");
    }
}

//! Which processes serve a data dir right now, and where their admin listeners are.
//!
//! Every `up` and `serve` process on the embedded data dir writes `DIR/serving/<pid>.json` with
//! its admin listener's address, and holds an exclusive `flock` on that file while it runs. The
//! kernel drops the lock when the process ends, however it ends (kill -9 too), so a record whose
//! lock can be taken is stale: `onlinebank backup` removes it and never asks its address.

use anyhow::Context;
use rustix::fs::{flock, FlockOperation};
use serde::{Deserialize, Serialize};
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
    /// Its admin listener, as a client reaches it (`http://127.0.0.1:port`).
    pub admin_url: String,
    /// The roles it serves.
    pub roles: Vec<String>,
}

/// This process's record, locked while it lives; dropping it removes the record.
#[derive(Debug)]
pub struct ServingRecord {
    /// The record's file.
    path: PathBuf,
    /// The open file whose lock says "alive".
    _locked: std::fs::File,
}

impl ServingRecord {
    /// Writes and locks the record of this process, serving `roles` with its admin listener at
    /// `admin` (an unspecified address is recorded as loopback).
    pub fn write(data_dir: &Path, admin: SocketAddr, roles: Vec<String>) -> anyhow::Result<Self> {
        let folder = data_dir.join(FOLDER);
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("creating {}", folder.display()))?;
        let mut reachable = admin;
        if reachable.ip().is_unspecified() {
            reachable.set_ip(match admin {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let pid = std::process::id();
        let record = Serving {
            pid,
            admin_url: format!("http://{reachable}"),
            roles,
        };
        // Written and locked under a temporary name, then renamed: a reader never finds the
        // record unlocked or half written.
        let temporary = folder.join(format!("{pid}.json.partial"));
        let path = folder.join(format!("{pid}.json"));
        let file = std::fs::File::create(&temporary)
            .with_context(|| format!("creating {}", temporary.display()))?;
        flock(&file, FlockOperation::NonBlockingLockExclusive)
            .with_context(|| format!("locking {}", temporary.display()))?;
        std::fs::write(&temporary, serde_json::to_vec(&record)?)
            .with_context(|| format!("writing {}", temporary.display()))?;
        std::fs::rename(&temporary, &path)
            .with_context(|| format!("renaming {}", temporary.display()))?;
        Ok(Self {
            path,
            _locked: file,
        })
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
    let serving = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a serving record", path.display()))?;
    Ok(Some(serving))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_record_is_live_while_held_and_gone_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let admin: SocketAddr = "0.0.0.0:9100".parse().unwrap();
        let record = ServingRecord::write(dir.path(), admin, vec!["account".into()]).unwrap();
        let found = live(dir.path()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].admin_url, "http://127.0.0.1:9100");
        assert_eq!(found[0].pid, std::process::id());
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

//! Whether a database can write: the answer to "the disk is full".
//!
//! A write that fails because storage is full or failing (SQLite's `SQLITE_FULL` or an I/O error,
//! PostgreSQL's class 53 `insufficient_resources`) marks its database unavailable; a later
//! successful commit clears the mark. On SQLite the free space of the database's filesystem is
//! also watched: below [`MIN_FREE_BYTES`] a batch is rolled back instead of committed (SQLite can
//! otherwise reuse its WAL's space for a while and fail later, half way through a checkpoint),
//! so every write answers `storage_unavailable` until space returns. Readiness is false while a
//! database is unavailable, so a balancer routes around the role, and it recovers by itself:
//! readiness retries a small probe write while marked.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// Below this much free space on a SQLite database's filesystem, writes are refused.
pub const MIN_FREE_BYTES: u64 = 1024 * 1024;

/// How long a free-space reading is reused.
const SPACE_CHECK_EVERY_MS: u64 = 100;

/// One database's ability to write.
#[derive(Debug)]
pub struct Storage {
    /// What the log calls it (the role's schema name).
    name: String,
    /// The directory of a SQLite database, whose filesystem's free space is watched.
    dir: Option<PathBuf>,
    /// A write failed for want of storage and none has succeeded since.
    failed: AtomicBool,
    /// The last free-space reading was below the floor.
    low: AtomicBool,
    /// When the free space was last read, ms since `epoch` (+1, 0 = never).
    space_read_at_ms: AtomicU64,
    epoch: Instant,
}

impl Storage {
    pub fn new(name: &str, dir: Option<PathBuf>) -> Self {
        Self {
            name: name.to_owned(),
            dir,
            failed: AtomicBool::new(false),
            low: AtomicBool::new(false),
            space_read_at_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Whether writes can be expected to succeed.
    pub fn is_available(&self) -> bool {
        !self.failed.load(Ordering::SeqCst) && !self.low_space()
    }

    /// Whether a write failed for want of storage since the last success.
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// A write failed because storage is full or failing.
    pub fn mark_failed(&self, error: &dyn std::fmt::Display) {
        if !self.failed.swap(true, Ordering::SeqCst) {
            tracing::error!(database = %self.name, %error, "storage unavailable: writes refused, not ready");
            metrics::counter!("storage_unavailable_total", "database" => self.name.clone())
                .increment(1);
        }
    }

    /// A write committed.
    pub fn mark_ok(&self) {
        if self.failed.swap(false, Ordering::SeqCst) {
            tracing::info!(database = %self.name, "storage available again");
        }
    }

    /// Whether the database's filesystem has less than [`MIN_FREE_BYTES`] free (SQLite only;
    /// read at most every 100 ms).
    pub fn low_space(&self) -> bool {
        let Some(dir) = &self.dir else {
            return false;
        };
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX) + 1;
        let read_at = self.space_read_at_ms.load(Ordering::Relaxed);
        if read_at != 0 && now.saturating_sub(read_at) < SPACE_CHECK_EVERY_MS {
            return self.low.load(Ordering::Relaxed);
        }
        self.space_read_at_ms.store(now, Ordering::Relaxed);
        let low = match rustix::fs::statvfs(dir) {
            Ok(stat) => stat.f_bavail.saturating_mul(stat.f_frsize) < MIN_FREE_BYTES,
            Err(_) => false,
        };
        let was = self.low.swap(low, Ordering::Relaxed);
        if low != was {
            if low {
                tracing::error!(database = %self.name, dir = %dir.display(), "less than 1 MiB free: writes refused, not ready");
            } else {
                tracing::info!(database = %self.name, "disk space available again");
            }
        }
        low
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_marks_until_a_commit_succeeds() {
        let storage = Storage::new("t", None);
        assert!(storage.is_available());
        storage.mark_failed(&"disk full");
        assert!(!storage.is_available() && storage.has_failed());
        storage.mark_ok();
        assert!(storage.is_available());
    }

    #[test]
    fn a_filesystem_with_room_is_not_low() {
        let dir = std::env::temp_dir();
        let storage = Storage::new("t", Some(dir));
        // The machine's temporary directory has more than a megabyte free.
        assert!(!storage.low_space());
    }
}

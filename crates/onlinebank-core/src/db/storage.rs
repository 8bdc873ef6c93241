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
//!
//! A SQLite database that ran out of space (or came within [`MIN_FREE_BYTES`] of it) owes a
//! checkpoint: once it can write again, its writer runs `PRAGMA wal_checkpoint(TRUNCATE)` once,
//! so the WAL file gives the space it grew to back to the filesystem (SQLite keeps a WAL at its
//! peak size otherwise, and on a small volume its regrowth ate the space that had just returned).
//! Readers holding the WAL make the checkpoint busy; it is retried a few times with a growing
//! pause, never blocking the writer for long, and its outcome is logged once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Below this much free space on a SQLite database's filesystem, writes are refused.
pub const MIN_FREE_BYTES: u64 = 1024 * 1024;

/// How long a free-space reading is reused.
const SPACE_CHECK_EVERY_MS: u64 = 100;

/// How many times a checkpoint that readers kept busy is tried in all.
pub const CHECKPOINT_ATTEMPTS: u32 = 5;

/// The pause after the first busy checkpoint; it doubles after each.
const CHECKPOINT_FIRST_PAUSE: Duration = Duration::from_millis(200);

/// How a `wal_checkpoint(TRUNCATE)` went.
#[derive(Debug)]
pub(crate) enum Checkpoint {
    /// Every page was copied into the database and the WAL file cut to nothing.
    Truncated,
    /// Readers (or another writer) held the WAL: nothing was truncated.
    Busy,
    /// It failed.
    Failed(super::Error),
}

/// The WAL truncation a SQLite database owes after storage trouble.
#[derive(Debug, Default)]
struct CheckpointDebt {
    /// Busy attempts so far.
    attempts: u32,
    /// No attempt before this (the pause after a busy one).
    not_before: Option<Instant>,
}

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
    /// The instant `space_read_at_ms` counts from.
    epoch: Instant,
    /// SQLite: storage failed or ran low since the WAL was last truncated (the fast check
    /// before `debt`).
    owes_checkpoint: AtomicBool,
    /// SQLite: the retries of the owed checkpoint.
    debt: Mutex<CheckpointDebt>,
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
            owes_checkpoint: AtomicBool::new(false),
            debt: Mutex::default(),
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
        self.owe_checkpoint();
        if !self.failed.swap(true, Ordering::SeqCst) {
            tracing::error!(database = %self.name, %error, "storage unavailable: writes refused, not ready");
            metrics::counter!("onlinebank_storage_unavailable_total", "database" => self.name.clone())
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
        if low {
            self.owe_checkpoint();
        }
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

impl Storage {
    /// Storage failed or ran low: the WAL is to be truncated once it can write again (SQLite
    /// only; PostgreSQL needs nothing).
    fn owe_checkpoint(&self) {
        if self.dir.is_none() {
            return;
        }
        if !self.owes_checkpoint.swap(true, Ordering::SeqCst) {
            *self.debt.lock().unwrap_or_else(|e| e.into_inner()) = CheckpointDebt::default();
        }
    }

    /// Whether the WAL is owed a truncation now: storage had trouble, can write again, and no
    /// pause after a busy attempt is running.
    pub(crate) fn checkpoint_due(&self) -> bool {
        self.checkpoint_due_at(Instant::now())
    }

    fn checkpoint_due_at(&self, now: Instant) -> bool {
        if !self.owes_checkpoint.load(Ordering::SeqCst) {
            return false;
        }
        let debt = self.debt.lock().unwrap_or_else(|e| e.into_inner());
        let paused = debt.not_before.is_some_and(|at| now < at);
        drop(debt);
        !paused && self.is_available()
    }

    /// Notes how the owed checkpoint went and logs its outcome once: truncated, given up after
    /// [`CHECKPOINT_ATTEMPTS`] busy attempts, or failed (owed again if for want of storage).
    pub(crate) fn checkpoint_done(&self, outcome: Checkpoint) {
        self.checkpoint_done_at(outcome, Instant::now());
    }

    fn checkpoint_done_at(&self, outcome: Checkpoint, now: Instant) {
        let mut debt = self.debt.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Checkpoint::Truncated => {
                tracing::info!(database = %self.name, attempts = debt.attempts + 1, "wal truncated now that storage is back");
            }
            Checkpoint::Busy if debt.attempts + 1 < CHECKPOINT_ATTEMPTS => {
                let pause = CHECKPOINT_FIRST_PAUSE.saturating_mul(1 << debt.attempts);
                debt.attempts += 1;
                debt.not_before = Some(now + pause);
                return;
            }
            Checkpoint::Busy => {
                tracing::warn!(database = %self.name, attempts = CHECKPOINT_ATTEMPTS, "wal not truncated: readers kept it busy; it is reused from its start instead");
            }
            Checkpoint::Failed(error) if error.is_storage_full() => {
                drop(debt);
                self.mark_failed(&error);
                return;
            }
            Checkpoint::Failed(error) => {
                tracing::warn!(database = %self.name, %error, "truncating the wal failed");
            }
        }
        *debt = CheckpointDebt::default();
        self.owes_checkpoint.store(false, Ordering::SeqCst);
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

    /// A SQLite database's storage health, on a filesystem with room.
    fn sqlite_storage() -> Storage {
        Storage::new("t", Some(std::env::temp_dir()))
    }

    #[test]
    fn a_checkpoint_is_owed_only_after_trouble_and_only_once_writes_work_again() {
        let storage = sqlite_storage();
        assert!(!storage.checkpoint_due(), "no trouble, no checkpoint");
        storage.mark_failed(&"disk full");
        assert!(!storage.checkpoint_due(), "not while writes fail");
        storage.mark_ok();
        assert!(storage.checkpoint_due());
        storage.checkpoint_done(Checkpoint::Truncated);
        assert!(!storage.checkpoint_due(), "once");
    }

    #[test]
    fn a_busy_checkpoint_is_retried_after_growing_pauses_then_given_up() {
        let storage = sqlite_storage();
        storage.mark_failed(&"disk full");
        storage.mark_ok();
        let mut now = Instant::now();
        let mut pauses = Vec::new();
        for _ in 1..CHECKPOINT_ATTEMPTS {
            assert!(storage.checkpoint_due_at(now));
            storage.checkpoint_done_at(Checkpoint::Busy, now);
            let mut waited = Duration::ZERO;
            while !storage.checkpoint_due_at(now + waited) {
                waited += Duration::from_millis(100);
            }
            pauses.push(waited);
            now += waited;
        }
        assert_eq!(
            pauses,
            [200, 400, 800, 1600].map(Duration::from_millis),
            "the pause doubles"
        );
        storage.checkpoint_done_at(Checkpoint::Busy, now);
        assert!(
            !storage.checkpoint_due_at(now + Duration::from_secs(60)),
            "given up after {CHECKPOINT_ATTEMPTS} attempts"
        );
    }

    #[test]
    fn a_checkpoint_that_runs_out_of_space_is_owed_again_once_space_returns() {
        let storage = sqlite_storage();
        storage.mark_failed(&"disk full");
        storage.mark_ok();
        storage.checkpoint_done(Checkpoint::Failed(super::super::Error::StorageFull));
        assert!(storage.has_failed() && !storage.checkpoint_due());
        storage.mark_ok();
        assert!(storage.checkpoint_due());
    }

    #[test]
    fn postgres_owes_no_checkpoint() {
        let storage = Storage::new("t", None);
        storage.mark_failed(&"disk full");
        storage.mark_ok();
        assert!(!storage.checkpoint_due());
    }

    #[test]
    fn a_filesystem_with_room_is_not_low() {
        let dir = std::env::temp_dir();
        let storage = Storage::new("t", Some(dir));
        // The machine's temporary directory has more than a megabyte free.
        assert!(!storage.low_space());
    }
}

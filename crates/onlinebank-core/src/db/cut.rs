//! One cut of several SQLite databases at the same instant: what a backup copies.
//!
//! Every SQLite database of a process is written by ONE writer thread (see [`super::group`]),
//! and each such writer is recorded here, by file, when it starts. A cut asks every writer of
//! the files at hand to pause between two batches ([`pause_writers`]; the order goes ahead of the
//! jobs already queued, so it waits for the batch at hand only): each acknowledges and then
//! waits for the resume (or for its own deadline, so a lost resume never stalls the bank).
//! Once all of them are paused, no transaction is open on any of the files, so a read
//! transaction begun then on each file ([`Snapshot::begin`]) sees every commit made before the
//! pause and none after: one instant for all the files. The writers resume at once; the
//! snapshots are copied afterwards, while the bank writes on (a WAL reader keeps its snapshot),
//! through SQLite's online backup API from the snapshot's own connection, so the copy is exactly
//! the snapshot. Readers never pause.
//!
//! A pause is short by construction: the snapshots' connections are opened before it, and under
//! it each file only gets `BEGIN` and one read of its schema. When the writers do not all pause
//! within [`MAX_SPREAD`] of the first one (a long batch, another process holding the write
//! lock), every writer is resumed and the cut is tried again, so no writer waits long.

use super::sqlite::open_rusqlite;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The longest the first paused writer waits for the last one before the pause is given up
/// and tried again.
pub const MAX_SPREAD: Duration = Duration::from_millis(50);
/// How many times a cut is tried before it fails.
const ATTEMPTS: u32 = 20;
/// How long a cut waits for one writer to reach its pause (behind the batches queued before it).
const REACH_TIMEOUT: Duration = Duration::from_secs(2);

/// A pause handed to a writer: acknowledge, then wait for the resume or the deadline.
pub(super) struct PauseOrder {
    /// Told the instant the writer paused.
    paused: oneshot::Sender<Instant>,
    /// Closed (dropped) or sent to when the writer may go on.
    resume: std::sync::mpsc::Receiver<()>,
    /// The longest the writer waits for the resume once paused.
    hold: Duration,
}

impl PauseOrder {
    /// Runs on the writer thread, between two batches.
    pub(super) fn hold(self) {
        if self.paused.send(Instant::now()).is_err() {
            // The cut gave up before this writer paused: nothing to wait for.
            return;
        }
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = self.resume.recv_timeout(self.hold)
        {
            tracing::warn!(
                hold_ms = self.hold.as_millis() as u64,
                "a backup's pause was not lifted in time; writes go on"
            );
        }
    }
}

/// How a writer is reached to pause it: its file and a way to queue an order on it.
pub(super) struct WriterEntry {
    /// The database file (canonical).
    pub(super) file: PathBuf,
    /// Hands a pause to the writer (ahead of its queued jobs); false when the writer is gone.
    pub(super) pause: Box<dyn Fn(PauseOrder) -> bool + Send + Sync>,
    /// Whether the writer is gone.
    pub(super) closed: Box<dyn Fn() -> bool + Send + Sync>,
}

/// Every SQLite writer this process started.
static WRITERS: Mutex<Vec<WriterEntry>> = Mutex::new(Vec::new());

fn writers() -> std::sync::MutexGuard<'static, Vec<WriterEntry>> {
    WRITERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records a writer (see the module docs); writers that ended are forgotten on the way.
pub(super) fn register(entry: WriterEntry) {
    let mut writers = writers();
    writers.retain(|writer| !(writer.closed)());
    writers.push(entry);
}

/// The canonical form of `path` (itself when it cannot be resolved).
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Writers of this process paused together (see [`pause_writers`]); dropping it resumes them.
pub struct PausedWriters {
    /// One per paused writer: dropping it resumes that writer.
    resumes: Vec<std::sync::mpsc::Sender<()>>,
    /// When the first writer paused (None when there was no writer to pause).
    first_paused: Option<Instant>,
}

impl PausedWriters {
    /// How many writers are paused.
    pub fn count(&self) -> usize {
        self.resumes.len()
    }

    /// Resumes every writer; returns how long the first one was paused.
    pub fn resume(self) -> Duration {
        let paused = self.first_paused.map(|at| at.elapsed()).unwrap_or_default();
        drop(self);
        paused
    }
}

/// Pauses every writer of this process whose file is one of `files` (all of them when `files`
/// is None), each for at most `hold`; tries again (up to a few times) when they do not all
/// pause within [`MAX_SPREAD`] of each other.
pub async fn pause_writers(
    files: Option<&[PathBuf]>,
    hold: Duration,
) -> anyhow::Result<PausedWriters> {
    let wanted: Option<Vec<PathBuf>> =
        files.map(|files| files.iter().map(|f| canonical(f)).collect());
    for attempt in 0..ATTEMPTS {
        if let Some(paused) = try_pause(wanted.as_deref(), hold).await? {
            return Ok(paused);
        }
        tracing::debug!(attempt, "the writers did not pause together; trying again");
        tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt + 1))).await;
    }
    anyhow::bail!(
        "the database writers could not be paused together within {} ms, {ATTEMPTS} times",
        MAX_SPREAD.as_millis()
    )
}

/// One attempt of [`pause_writers`]: None when the writers did not pause close enough together.
async fn try_pause(
    wanted: Option<&[PathBuf]>,
    hold: Duration,
) -> anyhow::Result<Option<PausedWriters>> {
    let mut resumes = Vec::new();
    let mut acks = Vec::new();
    let mut sends = Vec::new();
    {
        let writers = writers();
        for writer in writers.iter() {
            if (writer.closed)() || wanted.is_some_and(|files| !files.contains(&writer.file)) {
                continue;
            }
            let (resume, resumed) = std::sync::mpsc::channel();
            let (paused, ack) = oneshot::channel();
            sends.push((writer.pause)(PauseOrder {
                paused,
                resume: resumed,
                hold,
            }));
            resumes.push(resume);
            acks.push(ack);
        }
    }
    for sent in sends {
        anyhow::ensure!(sent, "a database writer stopped during the backup");
    }
    // The acknowledgements as they come: the first one starts the clock for the others.
    let mut acks: futures::stream::FuturesUnordered<_> = acks.into_iter().collect();
    let mut first: Option<Instant> = None;
    loop {
        let deadline = match first {
            Some(at) => (at + MAX_SPREAD).saturating_duration_since(Instant::now()),
            None => REACH_TIMEOUT,
        };
        match tokio::time::timeout(deadline, futures::StreamExt::next(&mut acks)).await {
            Ok(Some(Ok(at))) => first = Some(first.map_or(at, |first| first.min(at))),
            Ok(Some(Err(_))) => anyhow::bail!("a database writer stopped during the backup"),
            Ok(None) => break,
            Err(_) => return Ok(None),
        }
    }
    if first.is_some_and(|at| at.elapsed() > MAX_SPREAD) {
        return Ok(None);
    }
    Ok(Some(PausedWriters {
        resumes,
        first_paused: first,
    }))
}

/// A read transaction on one database file: a fixed view of it, to copy.
pub struct Snapshot {
    /// The database file.
    pub file: PathBuf,
    /// A reader connection of its own; inside its read transaction once begun.
    conn: rusqlite::Connection,
}

impl Snapshot {
    /// Opens a reader connection on `file` (which must exist: opening creates a missing one).
    pub fn open(file: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(file.is_file(), "{} is not a file", file.display());
        Ok(Self {
            file: file.to_path_buf(),
            conn: open_rusqlite(file, true)?,
        })
    }

    /// Begins the read transaction: from now on it sees the database as it is at this instant.
    pub fn begin(&self) -> anyhow::Result<()> {
        self.conn.execute_batch("BEGIN")?;
        // The first read fixes the transaction's snapshot.
        let _: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM sqlite_schema", [], |row| row.get(0))
            .with_context(|| format!("reading {}", self.file.display()))?;
        Ok(())
    }

    /// Copies the snapshot into a new database file at `target`, through SQLite's online
    /// backup API (inside the open read transaction: the copy is the snapshot, whatever is
    /// written meanwhile).
    pub fn copy_to(&self, target: &Path) -> anyhow::Result<()> {
        anyhow::ensure!(
            !target.exists(),
            "{} exists already: a backup never overwrites a file",
            target.display()
        );
        let mut copy = rusqlite::Connection::open(target)
            .with_context(|| format!("creating {}", target.display()))?;
        {
            let backup = rusqlite::backup::Backup::new(&self.conn, &mut copy)?;
            loop {
                match backup.step(-1)? {
                    rusqlite::backup::StepResult::Done => break,
                    rusqlite::backup::StepResult::More => {}
                    _ => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }
        copy.close()
            .map_err(|(_, error)| error)
            .with_context(|| format!("closing {}", target.display()))?;
        Ok(())
    }
}

/// Snapshots of `files` taken at one instant of this process's writers (see the module docs).
pub struct Cut {
    /// One per file, in the order given.
    pub snapshots: Vec<Snapshot>,
    /// How long the writers were paused (from the first one's pause to the resume).
    pub pause: Duration,
    /// How many writers were paused.
    pub writers: usize,
    /// The instant of the cut (when the snapshots were begun).
    pub at: std::time::SystemTime,
}

/// Takes a [`Cut`] of `files`: this process's writers of those files pause for it, each for at
/// most `hold`.
pub async fn take_cut(files: &[PathBuf], hold: Duration) -> anyhow::Result<Cut> {
    let snapshots = files
        .iter()
        .map(|file| Snapshot::open(file))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let paused = pause_writers(Some(files), hold).await?;
    let writers = paused.count();
    let begun = snapshots.iter().try_for_each(Snapshot::begin);
    let at = std::time::SystemTime::now();
    let pause = paused.resume();
    begun?;
    Ok(Cut {
        snapshots,
        pause,
        writers,
        at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Db, Error};
    use std::sync::Arc;

    async fn open(dir: &Path, name: &str) -> (Db, PathBuf) {
        let path = dir.join(name);
        let db = Db::open(&path.display().to_string(), "cut").await.unwrap();
        db.write(|conn| Box::pin(async move { conn.batch("CREATE TABLE t (n INTEGER)").await }))
            .await
            .unwrap();
        (db, path)
    }

    async fn insert(db: &Db, n: i64) -> Result<(), crate::db::GroupError<Error>> {
        db.write(move |conn| {
            Box::pin(async move {
                conn.execute("INSERT INTO t (n) VALUES ($1)", crate::args![n])
                    .await
                    .map(|_| ())
            })
        })
        .await
    }

    fn rows(path: &Path) -> Vec<i64> {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut statement = conn.prepare("SELECT n FROM t ORDER BY n").unwrap();
        let rows = statement.query_map([], |row| row.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// A writes its row n, then B its row n (the effect): a copy of B never holds a row
    /// whose cause the copy of A lacks, although A's snapshot is begun before B's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cut_never_holds_an_effect_without_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let (a, a_file) = open(dir.path(), "a.db").await;
        let (b, b_file) = open(dir.path(), "b.db").await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    insert(&a, n).await.unwrap();
                    insert(&b, n).await.unwrap();
                    n += 1;
                }
                n
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        for round in 0..5 {
            let cut = take_cut(&[a_file.clone(), b_file.clone()], Duration::from_secs(1))
                .await
                .unwrap();
            assert_eq!(cut.writers, 2, "both writers paused");
            let copies = [
                dir.path().join(format!("a{round}")),
                dir.path().join(format!("b{round}")),
            ];
            for (snapshot, copy) in cut.snapshots.iter().zip(&copies) {
                snapshot.copy_to(copy).unwrap();
            }
            let (in_a, in_b) = (rows(&copies[0]), rows(&copies[1]));
            assert!(!in_b.is_empty(), "the copy holds the writes before the cut");
            assert!(
                in_b.len() <= in_a.len() && in_a.len() <= in_b.len() + 1,
                "A holds every cause of B's rows: {} in A, {} in B",
                in_a.len(),
                in_b.len()
            );
            println!("cut {round}: paused {:?}", cut.pause);
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let written = writer.await.unwrap();
        assert!(
            rows(&b_file).len() as i64 == written,
            "the writers went on after the cuts"
        );
    }

    #[tokio::test]
    async fn paused_writers_wait_for_the_resume_or_their_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let (db, file) = open(dir.path(), "p.db").await;
        let paused = pause_writers(Some(std::slice::from_ref(&file)), Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(paused.count(), 1);
        let write = tokio::spawn({
            let db = db.clone();
            async move { insert(&db, 1).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!write.is_finished(), "no write while paused");
        assert!(db.ping().await, "reads never pause");
        paused.resume();
        write.await.unwrap().unwrap();

        let forgotten = pause_writers(Some(&[file]), Duration::from_millis(300))
            .await
            .unwrap();
        // Never resumed: the writer goes on after its deadline.
        insert(&db, 2).await.unwrap();
        drop(forgotten);
        assert_eq!(rows(&dir.path().join("p.db")), vec![1, 2]);
    }
}

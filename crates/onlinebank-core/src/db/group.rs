//! Group commit: callers hand small write transactions to one writer, which runs every job
//! waiting at that moment in ONE transaction (each inside its own savepoint, so a failing job
//! rolls back alone) and commits once. One fsync then makes many callers' work durable; each
//! caller hears back only after that commit.
//!
//! On SQLite the writer is a thread of its own that owns the database's one write connection:
//! a batch of N jobs costs one hand-off in and N answers out, and its statements run back to back
//! without leaving the thread (the jobs' futures complete without waiting: every statement on a
//! SQLite [`Conn`] is synchronous). On PostgreSQL each job is its own transaction on a pooled
//! connection (the server groups the flushes of concurrent commits).
//!
//! The SQLite writer also truncates the WAL once after storage trouble (see [`super::storage`]):
//! after a batch, or woken by a small watcher task that also keeps the free-space reading fresh
//! while the database is idle, so the checkpoint never races the writer's own transactions.
//!
//! A backup's cut pauses the SQLite writer between two batches (see [`super::cut`]): the pause
//! comes on a channel of its own, read before each batch, ahead of the jobs already queued.

use super::conn::{Conn, Error};
use super::cut::{PauseOrder, WriterEntry};
use super::sqlite::{control, truncate_wal};
use super::storage::Storage;
use super::BoxFuture;
use sqlx::PgPool;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Called with the outcome of the batch's COMMIT.
type Finish = Box<dyn FnOnce(Result<(), Arc<Error>>) + Send>;
/// One caller's work: runs inside the shared transaction on the lent connection, hands it back
/// and says whether it succeeded.
type Job = Box<dyn FnOnce(Conn) -> BoxFuture<'static, (Conn, bool, Finish)> + Send>;

/// What the writer is handed.
enum Work {
    /// A caller's job.
    Job(Job),
    /// Nothing to run: look whether the WAL is owed a truncation (see the module docs).
    Wake,
}

/// How often a SQLite database's free space is read, and its WAL looked at for an owed
/// truncation, when it is idle.
const STORAGE_WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// The handle callers queue their jobs on (see the module docs).
#[derive(Clone)]
pub struct GroupCommit {
    jobs: mpsc::Sender<Work>,
}

/// Tells `storage` how a commit went.
fn note_commit(storage: &Storage, commit: &Result<(), Error>) {
    match commit {
        Ok(()) => storage.mark_ok(),
        Err(error) if error.is_storage_full() => storage.mark_failed(error),
        Err(_) => {}
    }
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupCommit")
    }
}

/// Why a group-committed job did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum GroupError<E> {
    /// The job itself failed (its savepoint was rolled back).
    #[error(transparent)]
    Job(E),
    /// The batch's transaction failed; nothing of the job is durable.
    #[error("group commit failed: {0}")]
    Commit(Arc<Error>),
    /// The writer is gone (shutting down) or the batch could not start.
    #[error("the database writer is unavailable")]
    Closed,
}

impl From<GroupError<Error>> for Error {
    fn from(error: GroupError<Error>) -> Self {
        match error {
            GroupError::Job(error) => error,
            GroupError::Commit(error) => Error::Commit(error),
            GroupError::Closed => Error::Closed,
        }
    }
}

impl GroupCommit {
    /// Starts the writer thread that owns SQLite's write connection.
    pub(crate) fn start_sqlite(
        conn: rusqlite::Connection,
        name: &str,
        max_batch: usize,
        storage: Arc<Storage>,
    ) -> anyhow::Result<Self> {
        let (jobs, receiver) = mpsc::channel(max_batch * 4);
        let writer_storage = storage.clone();
        let writer_file = conn.path().unwrap_or_default().to_owned();
        let (pause, pauses) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("db-{name}"))
            .spawn(move || {
                sqlite_writer(Box::new(conn), receiver, pauses, max_batch, writer_storage)
            })?;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(watch_storage(jobs.downgrade(), storage));
        }
        let group = Self { jobs };
        group.register_for_cuts(&writer_file, pause);
        Ok(group)
    }

    /// Records this writer so a backup's cut can pause it (see [`super::cut`]): a pause goes
    /// on `pause`, which the writer reads before each batch, ahead of the jobs already queued,
    /// and a wake-up on the job queue rouses an idle writer (a full queue means it is busy and
    /// looks after its batch).
    fn register_for_cuts(&self, file: &str, pause: std::sync::mpsc::Sender<PauseOrder>) {
        if file.is_empty() {
            return;
        }
        let to_wake = self.jobs.downgrade();
        let to_watch = self.jobs.downgrade();
        super::cut::register(WriterEntry {
            file: std::fs::canonicalize(file).unwrap_or_else(|_| file.into()),
            pause: Box::new(move |order| {
                let Some(jobs) = to_wake.upgrade() else {
                    return false;
                };
                let sent = pause.send(order).is_ok();
                let _ = jobs.try_send(Work::Wake);
                sent
            }),
            closed: Box::new(move || to_watch.upgrade().is_none_or(|jobs| jobs.is_closed())),
        });
    }

    /// Starts the task that runs each job in its own PostgreSQL transaction.
    pub(crate) fn start_postgres(writer: PgPool, max_batch: usize, storage: Arc<Storage>) -> Self {
        let (jobs, receiver) = mpsc::channel(max_batch * 4);
        tokio::spawn(postgres_writer(writer, receiver, storage));
        Self { jobs }
    }

    /// Whether the writer is gone (its thread or task ended): no write can succeed any more.
    pub fn is_closed(&self) -> bool {
        self.jobs.is_closed()
    }

    /// Runs `work` inside the next group transaction; returns its result once committed.
    ///
    /// A job must not turn a failed statement into success: on PostgreSQL that failure has
    /// already aborted the job's transaction, and the COMMIT would quietly roll back. On SQLite
    /// the job runs on the writer thread: it must only await statements on its connection.
    ///
    /// `work` gets the writer's connection and hands it back with its result ([`super::Db::write`]
    /// lends it instead).
    pub async fn run<T, E, F, Fut>(&self, work: F) -> Result<T, GroupError<E>>
    where
        F: FnOnce(Conn) -> Fut + Send + 'static,
        Fut: Future<Output = (Conn, Result<T, E>)> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let (done, outcome) = oneshot::channel::<Result<T, GroupError<E>>>();
        let job: Job = Box::new(move |conn| {
            Box::pin(async move {
                let (conn, result) = work(conn).await;
                let ok = result.is_ok();
                let finish: Finish = Box::new(move |commit| {
                    let answer = match (commit, result) {
                        (Ok(()), Ok(value)) => Ok(value),
                        (_, Err(error)) => Err(GroupError::Job(error)),
                        (Err(error), Ok(_)) => Err(GroupError::Commit(error)),
                    };
                    let _ = done.send(answer);
                });
                (conn, ok, finish)
            })
        });
        self.jobs
            .send(Work::Job(job))
            .await
            .map_err(|_| GroupError::Closed)?;
        outcome.await.map_err(|_| GroupError::Closed)?
    }
}

/// Until the database is dropped: reads the free space every [`STORAGE_WATCH_EVERY`], so an
/// idle database too learns that its filesystem ran low (and owes its WAL a truncation), and
/// wakes the idle writer once that truncation is due (a busy writer finds out after its next
/// batch anyway).
async fn watch_storage(jobs: mpsc::WeakSender<Work>, storage: Arc<Storage>) {
    loop {
        tokio::time::sleep(STORAGE_WATCH_EVERY).await;
        let Some(jobs) = jobs.upgrade() else {
            return;
        };
        storage.low_space();
        if storage.checkpoint_due() {
            // A full queue means the writer is busy and will look after its batch.
            let _ = jobs.try_send(Work::Wake);
        }
    }
}

fn sqlite_writer(
    mut conn: Box<rusqlite::Connection>,
    mut receiver: mpsc::Receiver<Work>,
    pauses: std::sync::mpsc::Receiver<PauseOrder>,
    max_batch: usize,
    storage: Arc<Storage>,
) {
    while let Some(work) = receiver.blocking_recv() {
        // A backup's pause comes first, between two batches (see [`super::cut`]).
        while let Ok(order) = pauses.try_recv() {
            order.hold();
        }
        if let Work::Job(first) = work {
            let batch = gather_batch(first, &mut receiver, max_batch);
            let (returned, finishers, commit) = sqlite_batch(conn, batch, &storage);
            let commit = commit.map_err(Arc::new);
            for finish in finishers {
                finish(commit.clone());
            }
            match returned {
                Some(returned) => conn = returned,
                None => {
                    tracing::error!("a job kept the database's write connection; the writer stops");
                    return;
                }
            }
        }
        if storage.checkpoint_due() {
            storage.checkpoint_done(truncate_wal(&conn));
        }
    }
}

/// `first` and every job waiting behind it, up to `max_batch`.
fn gather_batch(first: Job, receiver: &mut mpsc::Receiver<Work>, max_batch: usize) -> Vec<Job> {
    let mut batch = vec![first];
    while batch.len() < max_batch {
        match receiver.try_recv() {
            Ok(Work::Job(job)) => batch.push(job),
            // The writer looks at the WAL after this batch anyway.
            Ok(Work::Wake) => {}
            Err(_) => break,
        }
    }
    batch
}

/// Runs one job on the writer thread; its future completes without waiting (see the module
/// docs).
fn run_job(
    conn: Box<rusqlite::Connection>,
    job: Job,
    storage: &Arc<Storage>,
) -> (Option<Box<rusqlite::Connection>>, bool, Finish) {
    let conn = Conn::sqlite(conn).with_storage(storage.clone());
    let (returned, ok, finish) = futures::executor::block_on(job(conn));
    (returned.into_sqlite(), ok, finish)
}

/// Runs a batch in one transaction. Jobs that never ran are dropped, which closes their reply
/// channels: their callers see [`GroupError::Closed`].
fn sqlite_batch(
    conn: Box<rusqlite::Connection>,
    batch: Vec<Job>,
    storage: &Arc<Storage>,
) -> (
    Option<Box<rusqlite::Connection>>,
    Vec<Finish>,
    Result<(), Error>,
) {
    if let Err(error) = control(&conn, "BEGIN IMMEDIATE") {
        return (Some(conn), Vec::new(), Err(error.into()));
    }
    let mut finishers = Vec::with_capacity(batch.len());
    let alone = batch.len() == 1;
    let mut conn = conn;
    for job in batch {
        if !alone {
            if let Err(error) = control(&conn, "SAVEPOINT job") {
                let _ = control(&conn, "ROLLBACK");
                return (Some(conn), finishers, Err(error.into()));
            }
        }
        let (returned, ok, finish) = run_job(conn, job, storage);
        finishers.push(finish);
        let Some(returned) = returned else {
            return (None, finishers, Err(Error::Closed));
        };
        conn = returned;
        if alone {
            // Alone in its batch, a job needs no savepoint: its failure rolls back the whole.
            if ok && storage.low_space() {
                let _ = control(&conn, "ROLLBACK");
                return (Some(conn), finishers, Err(Error::StorageFull));
            }
            let end = if ok { "COMMIT" } else { "ROLLBACK" };
            let ended = control(&conn, end).map_err(Error::from);
            if ok {
                note_commit(storage, &ended);
            }
            if ended.is_err() && ok {
                let _ = control(&conn, "ROLLBACK");
            }
            return (Some(conn), finishers, ended);
        }
        let released = if ok {
            control(&conn, "RELEASE job")
        } else {
            control(&conn, "ROLLBACK TO job").and_then(|()| control(&conn, "RELEASE job"))
        };
        if let Err(error) = released {
            let _ = control(&conn, "ROLLBACK");
            return (Some(conn), finishers, Err(error.into()));
        }
    }
    if storage.low_space() {
        // Too little room to be sure the commit and its checkpoint can be written: nothing of
        // the batch is kept, every caller hears `storage_unavailable`.
        let _ = control(&conn, "ROLLBACK");
        return (Some(conn), finishers, Err(Error::StorageFull));
    }
    let commit = control(&conn, "COMMIT").map_err(Error::from);
    note_commit(storage, &commit);
    if commit.is_err() {
        let _ = control(&conn, "ROLLBACK");
    }
    (Some(conn), finishers, commit)
}

/// PostgreSQL takes concurrent writers and batches their WAL flushes itself; one shared
/// transaction would only hold every job's row locks for the whole batch and let two replicas'
/// batches deadlock. So each job runs in its own transaction, up to the pool's size at once.
async fn postgres_writer(
    writer: PgPool,
    mut receiver: mpsc::Receiver<Work>,
    storage: Arc<Storage>,
) {
    while let Some(work) = receiver.recv().await {
        let Work::Job(job) = work else {
            continue;
        };
        let writer = writer.clone();
        let storage = storage.clone();
        tokio::spawn(async move {
            let (finish, commit) = postgres_job(&writer, job, &storage).await;
            if let Some(finish) = finish {
                finish(commit.map_err(Arc::new));
            }
        });
    }
}

async fn postgres_job(
    writer: &PgPool,
    job: Job,
    storage: &Arc<Storage>,
) -> (Option<Finish>, Result<(), Error>) {
    let conn = match writer.acquire().await {
        Ok(conn) => conn,
        Err(error) => return (None, Err(error.into())),
    };
    let mut conn = Conn::postgres(conn).with_storage(storage.clone());
    if let Err(error) = conn.batch("BEGIN").await {
        return (None, Err(error));
    }
    let (mut conn, ok, finish) = job(conn).await;
    let end = if ok { "COMMIT" } else { "ROLLBACK" };
    let ended = conn.batch(end).await;
    if ok {
        note_commit(storage, &ended);
    }
    if ended.is_err() && ok {
        let _ = conn.batch("ROLLBACK").await;
    }
    (Some(finish), ended)
}

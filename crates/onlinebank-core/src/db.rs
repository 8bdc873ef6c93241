//! Opening a role's SQLite database: WAL, `synchronous=FULL`, a busy timeout, and write
//! transactions that take the write lock up front (`BEGIN IMMEDIATE`).
//!
//! A [`Db`] has two pools on the same file: readers (several connections, WAL lets them run
//! beside a writer) and ONE writer connection. SQLite admits one writer at a time anyway; queueing
//! writers on the pool's fair async queue instead of SQLite's sleeping busy handler keeps write
//! latency flat under concurrency.

use anyhow::Context;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// A boxed future borrowing from `'a`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A service's database: a reader pool, a single-connection writer pool, and group commit.
#[derive(Debug, Clone)]
pub struct Db {
    pub read: SqlitePool,
    pub write: SqlitePool,
    /// Runs many callers' small write transactions as one (see [`GroupCommit`]).
    pub group: GroupCommit,
}

impl Db {
    /// Opens (creating if missing) the SQLite database at `url` (`sqlite://path` or a path).
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let write = open_sqlite(url, 1).await?;
        let read = open_sqlite(url, 8).await?;
        let group = GroupCommit::start(write.clone(), 256);
        Ok(Self { read, write, group })
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

/// Called with the outcome of the batch's COMMIT.
type Finish = Box<dyn FnOnce(Result<(), Arc<sqlx::Error>>) + Send>;
/// The writer's connection, lent to one job at a time.
pub type WriterConnection = PoolConnection<Sqlite>;
/// One caller's work: runs inside the shared transaction on the lent connection, hands it back
/// and says whether it succeeded.
type Job = Box<
    dyn FnOnce(WriterConnection) -> BoxFuture<'static, (WriterConnection, bool, Finish)> + Send,
>;

/// Group commit: callers hand small write transactions to one writer task, which runs every job
/// waiting at that moment in ONE transaction (each inside its own savepoint, so a failing job
/// rolls back alone) and commits once. One fsync then makes many callers' work durable; each
/// caller hears back only after that commit.
#[derive(Clone)]
pub struct GroupCommit {
    jobs: mpsc::Sender<Job>,
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
    Commit(Arc<sqlx::Error>),
    /// The writer is gone (shutting down) or the batch could not start.
    #[error("the database writer is unavailable")]
    Closed,
}

impl GroupCommit {
    /// Starts the writer task on `writer` (a pool of one connection).
    pub fn start(writer: SqlitePool, max_batch: usize) -> Self {
        let (jobs, receiver) = mpsc::channel(max_batch * 4);
        tokio::spawn(write_loop(writer, receiver, max_batch));
        Self { jobs }
    }

    /// Runs `work` inside the next group transaction; returns its result once committed.
    ///
    /// `work` gets the writer's connection and must hand it back with its result:
    /// `db.group.run(|mut conn| async move { let r = f(&mut conn).await; (conn, r) })`.
    pub async fn run<T, E, F, Fut>(&self, work: F) -> Result<T, GroupError<E>>
    where
        F: FnOnce(WriterConnection) -> Fut + Send + 'static,
        Fut: Future<Output = (WriterConnection, Result<T, E>)> + Send + 'static,
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
        self.jobs.send(job).await.map_err(|_| GroupError::Closed)?;
        outcome.await.map_err(|_| GroupError::Closed)?
    }
}

async fn write_loop(writer: SqlitePool, mut receiver: mpsc::Receiver<Job>, max_batch: usize) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (finishers, commit) = run_batch(&writer, batch).await;
        let commit = commit.map_err(Arc::new);
        for finish in finishers {
            finish(commit.clone());
        }
    }
}

/// Runs a batch in one transaction. Jobs that never ran are dropped, which closes their reply
/// channels: their callers see [`GroupError::Closed`].
async fn run_batch(writer: &SqlitePool, batch: Vec<Job>) -> (Vec<Finish>, Result<(), sqlx::Error>) {
    let mut conn = match writer.acquire().await {
        Ok(conn) => conn,
        Err(error) => return (Vec::new(), Err(error)),
    };
    if let Err(error) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
        return (Vec::new(), Err(error));
    }
    let mut finishers = Vec::with_capacity(batch.len());
    let mut jobs = batch.into_iter();
    if jobs.len() == 1 {
        // Alone in its batch, a job needs no savepoint: its failure rolls back the transaction.
        if let Some(job) = jobs.next() {
            let (returned, ok, finish) = job(conn).await;
            conn = returned;
            finishers.push(finish);
            let end = if ok { "COMMIT" } else { "ROLLBACK" };
            let ended = sqlx::query(end).execute(&mut *conn).await.map(|_| ());
            if ended.is_err() && ok {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            }
            return (finishers, ended);
        }
    }
    for job in jobs {
        if let Err(error) = sqlx::query("SAVEPOINT job").execute(&mut *conn).await {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            return (finishers, Err(error));
        }
        let (returned, ok, finish) = job(conn).await;
        conn = returned;
        finishers.push(finish);
        let rolled_back = if ok {
            Ok(())
        } else {
            sqlx::query("ROLLBACK TO job")
                .execute(&mut *conn)
                .await
                .map(|_| ())
        };
        let released = match rolled_back {
            Ok(()) => sqlx::query("RELEASE job")
                .execute(&mut *conn)
                .await
                .map(|_| ()),
            Err(error) => Err(error),
        };
        if let Err(error) = released {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            return (finishers, Err(error));
        }
    }
    let commit = sqlx::query("COMMIT").execute(&mut *conn).await.map(|_| ());
    if commit.is_err() {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    }
    (finishers, commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_jobs_commit_together_and_a_failing_one_rolls_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("g.db").display().to_string())
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (k INTEGER PRIMARY KEY)")
            .execute(&db.write)
            .await
            .unwrap();
        let mut handles = Vec::new();
        for k in 0..50i64 {
            let group = db.group.clone();
            handles.push(tokio::spawn(async move {
                group
                    .run(move |mut conn| async move {
                        let result = sqlx::query("INSERT INTO t (k) VALUES (?)")
                            .bind(k % 40)
                            .execute(&mut *conn)
                            .await
                            .map(|_| k);
                        (conn, result)
                    })
                    .await
            }));
        }
        let mut ok = 0;
        let mut failed = 0;
        for handle in handles {
            match handle.await.unwrap() {
                Ok(_) => ok += 1,
                Err(GroupError::Job(_)) => failed += 1,
                Err(other) => panic!("unexpected {other}"),
            }
        }
        assert_eq!((ok, failed), (40, 10), "duplicates fail alone");
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&db.read)
            .await
            .unwrap();
        assert_eq!(count, 40);
    }
}

//! A role's database: SQLite (the embedded default) or PostgreSQL (distributed mode), behind
//! sqlx's `Any` driver so each store is written once in portable SQL (`$1` placeholders, which
//! both engines accept). Where the engines differ (DDL, locking, a few functions) a store asks
//! [`Engine::of`] its connection.
//!
//! A [`Db`] has a reader pool, a writer pool and group commit. On SQLite the writer pool is ONE
//! connection in WAL mode with `synchronous=FULL`, and write transactions take the lock up front
//! (`BEGIN IMMEDIATE`): SQLite admits one writer at a time anyway, and queueing writers on the
//! pool's fair async queue keeps write latency flat. On PostgreSQL each role lives in its own
//! schema (named after the role) of the given database; the writer pool has several connections
//! and replicas of a role write concurrently, guarded by row versions and unique keys.

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor, Transaction};
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub use sqlx::AnyConnection as Conn;

/// A boxed future borrowing from `'a`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The database engine behind a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// The engine named by a database URL.
    pub fn of_url(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Engine::Postgres
        } else {
            Engine::Sqlite
        }
    }

    /// The engine a connection talks to.
    pub fn of(conn: &AnyConnection) -> Self {
        if conn.backend_name() == "PostgreSQL" {
            Engine::Postgres
        } else {
            Engine::Sqlite
        }
    }

    /// `GREATEST` on PostgreSQL, the two-argument `MAX` on SQLite.
    pub fn greatest(self) -> &'static str {
        match self {
            Engine::Sqlite => "MAX",
            Engine::Postgres => "GREATEST",
        }
    }

    /// An auto-incrementing 64-bit primary key column type.
    pub fn serial_key(self) -> &'static str {
        match self {
            Engine::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
            Engine::Postgres => "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        }
    }
}

/// A service's database: a reader pool, a writer pool, and group commit.
#[derive(Debug, Clone)]
pub struct Db {
    pub read: AnyPool,
    pub write: AnyPool,
    /// Runs many callers' small write transactions as one (see [`GroupCommit`]).
    pub group: GroupCommit,
    pub engine: Engine,
    /// Where it lives (for PostgreSQL's LISTEN connections) and the role's schema there.
    pub url: String,
    pub schema: String,
}

impl Db {
    /// Opens (creating if missing) the database at `url`: `sqlite://path`, a plain path, or
    /// `postgres://...` (then the role's tables live in schema `schema`, created if missing).
    pub async fn open(url: &str, schema: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let engine = Engine::of_url(url);
        let (write, read) = match engine {
            Engine::Sqlite => (open_sqlite(url, 1).await?, open_sqlite(url, 8).await?),
            Engine::Postgres => (
                open_postgres(url, schema, 8).await?,
                open_postgres(url, schema, 8).await?,
            ),
        };
        let group = GroupCommit::start(write.clone(), engine, 256);
        Ok(Self {
            read,
            write,
            group,
            engine,
            url: url.to_owned(),
            schema: schema.to_owned(),
        })
    }

    /// Applies the role's migrations for this engine.
    pub async fn migrate(&self, sqlite: &Migrator, postgres: &Migrator) -> anyhow::Result<()> {
        let migrator = match self.engine {
            Engine::Sqlite => sqlite,
            Engine::Postgres => postgres,
        };
        migrator
            .run(&self.write)
            .await
            .context("migrating the database")?;
        Ok(())
    }

    /// Begins a write transaction (see [`begin_write`]).
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        begin_write(&self.write, self.engine).await
    }
}

/// Opens (creating if missing) the SQLite database at `url` (`sqlite://path` or a plain path):
/// WAL, `synchronous=FULL` (every commit an acknowledgement depends on is on disk before we
/// answer), a busy timeout and foreign keys.
pub async fn open_sqlite(url: &str, connections: u32) -> anyhow::Result<AnyPool> {
    sqlx::any::install_default_drivers();
    let url = if url.starts_with("sqlite:") {
        url.to_owned()
    } else {
        format!("sqlite://{url}")
    };
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or_default()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    if let Some(parent) = std::path::Path::new(&path).parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
    }
    let url = if url.contains('?') {
        url
    } else {
        format!("{url}?mode=rwc")
    };
    let options =
        AnyConnectOptions::from_str(&url).with_context(|| format!("bad database url {url}"))?;
    AnyPoolOptions::new()
        .max_connections(connections)
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

/// Opens a pool on PostgreSQL whose connections work in `schema` (created if missing).
pub async fn open_postgres(url: &str, schema: &str, connections: u32) -> anyhow::Result<AnyPool> {
    sqlx::any::install_default_drivers();
    anyhow::ensure!(
        !schema.is_empty() && schema.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
        "bad schema name {schema:?}"
    );
    let options =
        AnyConnectOptions::from_str(url).with_context(|| "bad database url (postgres)")?;
    // Two replicas may create the schema at once; the loser's error is harmless.
    let mut conn = AnyConnection::connect_with(&options)
        .await
        .context("connecting to PostgreSQL")?;
    let created = conn
        .execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str())
        .await;
    if let Err(error) = created {
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1::BIGINT FROM pg_namespace WHERE nspname = $1")
                .bind(schema)
                .fetch_optional(&mut conn)
                .await?;
        anyhow::ensure!(exists.is_some(), "creating schema {schema}: {error}");
    }
    let _ = conn.close().await;
    let set_path: Arc<str> = format!("SET search_path TO {schema}").into();
    AnyPoolOptions::new()
        .max_connections(connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(move |conn, _| {
            let set_path = set_path.clone();
            Box::pin(async move {
                conn.execute(&*set_path).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .context("opening the PostgreSQL pool")
}

/// Begins a write transaction. On SQLite it holds the write lock from its first statement, so
/// a read-then-write transaction can never fail on a stale snapshot.
pub async fn begin_write(
    pool: &AnyPool,
    engine: Engine,
) -> Result<Transaction<'static, Any>, sqlx::Error> {
    match engine {
        Engine::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        Engine::Postgres => pool.begin().await,
    }
}

/// Called with the outcome of the batch's COMMIT.
type Finish = Box<dyn FnOnce(Result<(), Arc<sqlx::Error>>) + Send>;
/// The writer's connection, lent to one job at a time.
pub type WriterConnection = PoolConnection<Any>;
/// One caller's work: runs inside the shared transaction on the lent connection, hands it back
/// and says whether it succeeded.
type Job = Box<
    dyn FnOnce(WriterConnection) -> BoxFuture<'static, (WriterConnection, bool, Finish)> + Send,
>;

/// Group commit: callers hand small write transactions to one writer task, which runs every job
/// waiting at that moment in ONE transaction (each inside its own savepoint, so a failing job
/// rolls back alone) and commits once. One fsync then makes many callers' work durable; each
/// caller hears back only after that commit. On PostgreSQL each job is its own transaction
/// (the server groups the flushes of concurrent commits).
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
    pub fn start(writer: AnyPool, engine: Engine, max_batch: usize) -> Self {
        let (jobs, receiver) = mpsc::channel(max_batch * 4);
        tokio::spawn(write_loop(writer, engine, receiver, max_batch));
        Self { jobs }
    }

    /// Runs `work` inside the next group transaction; returns its result once committed.
    ///
    /// A job must not turn a failed statement into success: on PostgreSQL that failure has
    /// already aborted the job's transaction, and the COMMIT would quietly roll back.
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

async fn write_loop(
    writer: AnyPool,
    engine: Engine,
    mut receiver: mpsc::Receiver<Job>,
    max_batch: usize,
) {
    if engine == Engine::Postgres {
        // PostgreSQL takes concurrent writers and batches their WAL flushes itself; one shared
        // transaction would only hold every job's row locks for the whole batch and let two
        // replicas' batches deadlock. So each job runs in its own transaction, up to the pool's
        // size at once.
        while let Some(job) = receiver.recv().await {
            let writer = writer.clone();
            tokio::spawn(async move {
                let (finishers, commit) = run_batch(&writer, engine, vec![job]).await;
                let commit = commit.map_err(Arc::new);
                for finish in finishers {
                    finish(commit.clone());
                }
            });
        }
        return;
    }
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (finishers, commit) = run_batch(&writer, engine, batch).await;
        let commit = commit.map_err(Arc::new);
        for finish in finishers {
            finish(commit.clone());
        }
    }
}

/// Runs a batch in one transaction. Jobs that never ran are dropped, which closes their reply
/// channels: their callers see [`GroupError::Closed`].
async fn run_batch(
    writer: &AnyPool,
    engine: Engine,
    batch: Vec<Job>,
) -> (Vec<Finish>, Result<(), sqlx::Error>) {
    let mut conn = match writer.acquire().await {
        Ok(conn) => conn,
        Err(error) => return (Vec::new(), Err(error)),
    };
    let begin = match engine {
        Engine::Sqlite => "BEGIN IMMEDIATE",
        Engine::Postgres => "BEGIN",
    };
    if let Err(error) = sqlx::query(begin).execute(&mut *conn).await {
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

/// Listens on PostgreSQL channel `channel` of the database at `url` until `shutdown`: calls
/// `on_listening(true)` once subscribed (notifications sent before then were missed) and
/// `on_listening(false)` when the connection is lost, `on_payload` for every notification, and
/// reconnects after a second. Callers poll as a fallback while not listening.
pub async fn listen(
    url: &str,
    channel: &str,
    shutdown: &tokio_util::sync::CancellationToken,
    mut on_listening: impl FnMut(bool),
    mut on_payload: impl FnMut(&str),
) {
    loop {
        let listening = async {
            let mut listener = sqlx::postgres::PgListener::connect(url).await?;
            listener.listen(channel).await?;
            on_listening(true);
            loop {
                let notification = listener.recv().await?;
                on_payload(notification.payload());
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            result = listening => {
                if let Err(error) = result {
                    tracing::warn!(%error, channel, "notifications lost; polling until they are back");
                }
            }
            _ = shutdown.cancelled() => return,
        }
        on_listening(false);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Support for the workspace's tests that run against a real PostgreSQL.
pub mod testing {
    use sqlx::Connection;

    /// Creates a fresh, uniquely named database on the server named by the environment variable
    /// `ONLINEBANK_TEST_POSTGRES` (which `.ci/run` sets) and returns its URL. Fails with
    /// instructions when the variable is missing.
    pub async fn fresh_postgres(prefix: &str) -> anyhow::Result<String> {
        let server = std::env::var("ONLINEBANK_TEST_POSTGRES").map_err(|_| {
            anyhow::anyhow!(
                "this test needs a real PostgreSQL: run ./.ci/run, or dev/postgres.sh start and \
                 export ONLINEBANK_TEST_POSTGRES=$(dev/postgres.sh url)"
            )
        })?;
        let name = format!(
            "{prefix}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        // Concurrent CREATE DATABASEs can collide on the template ("being accessed by other
        // users"): try a few times.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut conn = sqlx::PgConnection::connect(&server).await?;
            let created = sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
            match created {
                Ok(_) => break,
                Err(error) if attempt < 10 => {
                    tracing::debug!(%error, "creating a test database, retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
        let base = server
            .rsplit_once('/')
            .map_or(server.as_str(), |(base, _)| base);
        Ok(format!("{base}/{name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_jobs_commit_together_and_a_failing_one_rolls_back_alone_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("g.db").display().to_string(), "test")
            .await
            .unwrap();
        group_commit_behaviour(db).await;
    }

    #[tokio::test]
    async fn concurrent_jobs_commit_together_and_a_failing_one_rolls_back_alone_on_postgres() {
        let url = testing::fresh_postgres("group").await.unwrap();
        let db = Db::open(&url, "test").await.unwrap();
        assert_eq!(db.engine, Engine::Postgres);
        group_commit_behaviour(db).await;
    }

    async fn group_commit_behaviour(db: Db) {
        sqlx::query("CREATE TABLE t (k BIGINT PRIMARY KEY)")
            .execute(&db.write)
            .await
            .unwrap();
        let mut handles = Vec::new();
        for k in 0..50i64 {
            let group = db.group.clone();
            handles.push(tokio::spawn(async move {
                group
                    .run(move |mut conn| async move {
                        let result = sqlx::query("INSERT INTO t (k) VALUES ($1)")
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

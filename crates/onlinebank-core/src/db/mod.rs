//! A role's database: SQLite (the embedded default) or PostgreSQL (distributed mode), with each
//! store written once in portable SQL (`$1` placeholders) against [`Conn`]. Where the engines
//! differ (DDL, locking, a few functions) a store asks [`Conn::engine`].
//!
//! A [`Db`] reads through [`Db::read`] and writes through [`Db::write`] (group commit).
//! - SQLite: WAL with `synchronous=FULL`; ONE write connection owned by a writer thread that runs
//!   whole batches of write transactions (`BEGIN IMMEDIATE`, so a read-then-write can never act
//!   on a stale snapshot), and a few reader connections used inline for short reads (WAL readers
//!   never wait for the writer). Migrations run at start-up (see [`migrate`]).
//! - PostgreSQL: each role lives in its own schema (named after the role) of the given database;
//!   reader and writer pools through sqlx's native driver (`PgPool`), one transaction per write job, and
//!   replicas of a role write concurrently, guarded by row versions and unique keys.

pub mod batch;
mod conn;
pub mod cut;
mod group;
pub mod migrate;
mod postgres;
mod sqlite;
mod storage;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use conn::{Arg, Column, Conn, Error, FromRow, Row};
pub use group::{GroupCommit, GroupError};
pub use migrate::{Compatibility, Migration, Migrations};
pub use postgres::{listen, open_postgres, with_ca_file};
use sqlite::{open_rusqlite, sqlite_path};
pub use storage::Storage;

use sqlx::PgPool;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A boxed future borrowing from `'a`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Jobs committed together at most.
const MAX_BATCH: usize = 256;
/// SQLite reader connections per database.
const SQLITE_READERS: usize = 4;
/// Pre-upgrade copies kept per data dir (the newest).
const PRE_UPGRADE_KEPT: usize = 3;

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

    /// The FROM item that turns ONE JSON array parameter (`param`, e.g. `$1`) into rows, so a
    /// batch of any size is one statement with one text (prepared once) and, on PostgreSQL, one
    /// round trip: each row's `value` is one element of the array (a JSON object, one
    /// [`batch::BatchRow`]; read its fields by name with [`batch::Field::read`], e.g.
    /// `CAST(rows.value ->> 'amount' AS BIGINT)`) and `key` its position (`ORDER BY key` keeps
    /// the array's order); the FROM item is named `rows`. Build the parameter with [`json_rows`].
    pub fn json_rows(self, param: &str) -> String {
        match self {
            Engine::Sqlite => format!("json_each({param}) AS rows"),
            Engine::Postgres => {
                format!("json_array_elements({param}::json) WITH ORDINALITY AS rows(value, key)")
            }
        }
    }

    /// The condition "`column` is one of the values of the field `field` of the rows of the
    /// [`json_rows`] parameter `param`".
    pub fn json_key_in(self, column: &str, param: &str, field: batch::Field) -> String {
        match self {
            Engine::Sqlite => format!(
                "{column} IN (SELECT {} FROM json_each({param}))",
                field.read_in("value")
            ),
            Engine::Postgres => format!(
                "{column} = ANY(ARRAY(SELECT {}
                                      FROM json_array_elements({param}::json) AS keys(value)))",
                field.read_in("keys.value")
            ),
        }
    }

    /// What a statement that joins a table on [`Engine::json_rows`] (`column` = the rows' field
    /// `field`) adds to its WHERE so each row is looked up by the column's index. PostgreSQL
    /// estimates a function's rows at 100 and may scan the whole table instead: the key list
    /// ([`Engine::json_key_in`]) turns that into an index scan. SQLite's plan already walks the
    /// rows and looks each up by index; the same list would make it re-read the rows for every
    /// match, so it gets nothing.
    pub fn json_join_by_index(self, column: &str, param: &str, field: batch::Field) -> String {
        match self {
            Engine::Sqlite => String::new(),
            Engine::Postgres => format!("AND {}", self.json_key_in(column, param, field)),
        }
    }

    /// `GREATEST` on PostgreSQL, the two-argument `MAX` on SQLite.
    pub fn greatest(self) -> &'static str {
        match self {
            Engine::Sqlite => "MAX",
            Engine::Postgres => "GREATEST",
        }
    }
}

/// The parameter of [`Engine::json_rows`]: one JSON array holding each row as a JSON object
/// keyed by its fields' names (see [`batch`]).
pub fn json_rows<T: batch::BatchRow>(rows: &[T]) -> Result<String, Error> {
    serde_json::to_string(rows).map_err(|error| Error::Encode(error.to_string()))
}

/// Where reads go.
#[derive(Clone)]
enum Readers {
    /// A few SQLite connections, each lent for one short read.
    Sqlite {
        conns: Arc<Vec<Arc<tokio::sync::Mutex<rusqlite::Connection>>>>,
        next: Arc<AtomicUsize>,
    },
    Postgres(PgPool),
}

/// A service's database (see the module docs).
#[derive(Clone)]
pub struct Db {
    readers: Readers,
    /// Runs many callers' small write transactions as one (see [`GroupCommit`]).
    pub group: GroupCommit,
    /// PostgreSQL: the writer pool, for engine-specific work (the outbox relay).
    postgres_writer: Option<PgPool>,
    pub engine: Engine,
    /// Where it lives (for migrations and PostgreSQL's LISTEN connections) and the role's
    /// schema there.
    pub url: Arc<str>,
    pub schema: Arc<str>,
    /// Whether it can write (see [`storage`]).
    storage: Arc<Storage>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("engine", &self.engine)
            .field("schema", &self.schema)
            .finish()
    }
}

impl Db {
    /// Opens (creating if missing) the database at `url`: `sqlite://path`, a plain path, or
    /// `postgres://...` (then the role's tables live in schema `schema`, created if missing).
    pub async fn open(url: &str, schema: &str) -> anyhow::Result<Self> {
        let engine = Engine::of_url(url);
        match engine {
            Engine::Sqlite => {
                let path = sqlite_path(url)?;
                let writer = open_rusqlite(&path, false)?;
                let storage = Arc::new(Storage::new(
                    schema,
                    path.parent().map(std::path::Path::to_path_buf),
                ));
                let group = GroupCommit::start_sqlite(writer, schema, MAX_BATCH, storage.clone())?;
                let conns = (0..SQLITE_READERS)
                    .map(|_| {
                        Ok(Arc::new(tokio::sync::Mutex::new(open_rusqlite(
                            &path, true,
                        )?)))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Ok(Self {
                    readers: Readers::Sqlite {
                        conns: Arc::new(conns),
                        next: Arc::default(),
                    },
                    group,
                    postgres_writer: None,
                    engine,
                    url: url.into(),
                    schema: schema.into(),
                    storage,
                })
            }
            Engine::Postgres => {
                let write = open_postgres(url, schema, 8).await?;
                let read = open_postgres(url, schema, 8).await?;
                let storage = Arc::new(Storage::new(schema, None));
                Ok(Self {
                    readers: Readers::Postgres(read),
                    group: GroupCommit::start_postgres(write.clone(), MAX_BATCH, storage.clone()),
                    postgres_writer: Some(write),
                    engine,
                    url: url.into(),
                    schema: schema.into(),
                    storage,
                })
            }
        }
    }

    /// Applies the migrations of `migrations` this database lacks (see [`migrate`]), after
    /// refusing a schema this binary cannot run on and, on SQLite, keeping a copy of a database
    /// it is about to change (see [`Db::keep_pre_upgrade_copy`]).
    pub async fn migrate(&self, migrations: &Migrations) -> anyhow::Result<()> {
        let known = migrations.for_engine(self.engine).to_vec();
        let before = {
            let mut conn = self.read().await?;
            migrate::plan(&migrate::applied(&mut conn).await?, &known)?
        };
        if self.engine == Engine::Sqlite && before.applied > 0 && !before.pending.is_empty() {
            self.keep_pre_upgrade_copy()?;
        }
        let schema = self.schema.to_string();
        let plan = self
            .write(move |conn| Box::pin(async move { migrate::run(conn, &schema, &known).await }))
            .await
            .map_err(|error| anyhow::anyhow!("migrating the {} database: {error}", self.schema))?;
        for migration in &plan.pending {
            tracing::info!(
                database = %self.schema,
                version = migration.version,
                migration = migration.description,
                "applied a migration"
            );
        }
        for newer in &plan.tolerated {
            tracing::warn!(
                database = %self.schema,
                version = newer.version,
                applied_by = newer.applied_by.as_deref().unwrap_or("unknown"),
                "running on a schema a newer release extended (marked compatible)"
            );
        }
        Ok(())
    }

    /// SQLite: copies the database into `<its folder>/pre-upgrade-<release>/` before
    /// migrations change it, and keeps the last [`PRE_UPGRADE_KEPT`] such folders.
    fn keep_pre_upgrade_copy(&self) -> anyhow::Result<()> {
        let Some(path) = self.sqlite_file() else {
            return Ok(());
        };
        let copy = sqlite::copy_before_upgrade(&path, migrate::RELEASE, PRE_UPGRADE_KEPT)?;
        tracing::info!(
            database = %self.schema,
            copy = %copy.display(),
            "took a copy of the database before migrating it"
        );
        Ok(())
    }

    /// A connection for reading: on SQLite one of the reader connections (keep it only for the
    /// statements at hand: it is used inline, without leaving the calling thread), on
    /// PostgreSQL one from the reader pool.
    pub async fn read(&self) -> Result<Conn, Error> {
        match &self.readers {
            Readers::Sqlite { conns, next } => {
                Ok(Conn::sqlite_reader(Self::reader(conns, next).await?))
            }
            Readers::Postgres(pool) => Ok(Conn::postgres(pool.acquire().await?)),
        }
    }

    /// A connection for several reads that belong together: on SQLite they share one read
    /// transaction (one snapshot, and one read lock instead of one per statement), ended when
    /// the connection is dropped; on PostgreSQL, as [`Self::read`].
    pub async fn read_together(&self) -> Result<Conn, Error> {
        match &self.readers {
            Readers::Sqlite { conns, next } => {
                Conn::sqlite_snapshot(Self::reader(conns, next).await?)
            }
            Readers::Postgres(pool) => Ok(Conn::postgres(pool.acquire().await?)),
        }
    }

    /// A free SQLite reader, or else the next one in turn once it is free.
    async fn reader(
        conns: &Arc<Vec<Arc<tokio::sync::Mutex<rusqlite::Connection>>>>,
        next: &AtomicUsize,
    ) -> Result<tokio::sync::OwnedMutexGuard<rusqlite::Connection>, Error> {
        for conn in conns.iter() {
            if let Ok(guard) = conn.clone().try_lock_owned() {
                return Ok(guard);
            }
        }
        let index = next.fetch_add(1, Ordering::Relaxed) % conns.len().max(1);
        match conns.get(index) {
            Some(conn) => Ok(conn.clone().lock_owned().await),
            None => Err(Error::Closed),
        }
    }

    /// Runs a write job through group commit (see [`GroupCommit::run`]): `work` borrows the
    /// writer's connection for the job's statements, in the shape of sqlx's
    /// `Connection::transaction`: `db.write(|conn| Box::pin(async move { f(conn).await }))`.
    pub async fn write<T, E, F>(&self, work: F) -> Result<T, GroupError<E>>
    where
        F: for<'c> FnOnce(&'c mut Conn) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        self.group
            .run(move |mut conn| async move {
                let result = work(&mut conn).await;
                (conn, result)
            })
            .await
    }

    /// Runs `delete` (a DELETE of at most `$2` rows older than `$1`) with `cutoff` and `batch`, one
    /// transaction at a time, until a run deletes fewer than `batch`: a long purge never holds
    /// the writer for long. Returns how many rows went.
    pub async fn delete_in_batches(
        &self,
        delete: &'static str,
        cutoff: i64,
        batch: i64,
    ) -> Result<u64, Error> {
        let mut deleted = 0u64;
        loop {
            let count = self
                .write(move |conn| {
                    Box::pin(async move { conn.execute(delete, crate::args![cutoff, batch]).await })
                })
                .await?;
            deleted += count;
            if count < u64::try_from(batch).unwrap_or(u64::MAX) {
                return Ok(deleted);
            }
        }
    }

    /// SQLite: the database file's absolute path (None on PostgreSQL), so another process can
    /// open the same file.
    pub fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        if self.engine != Engine::Sqlite {
            return None;
        }
        let path = sqlite_path(&self.url).ok()?;
        Some(std::fs::canonicalize(&path).unwrap_or(path))
    }

    /// PostgreSQL's writer pool (None on SQLite), for engine-specific work.
    pub fn postgres_writer(&self) -> Option<&PgPool> {
        self.postgres_writer.as_ref()
    }

    /// Whether the database answers and its writer still runs (for readiness).
    pub async fn ping(&self) -> bool {
        if self.group.is_closed() || self.storage.low_space() {
            return false;
        }
        if self.storage.has_failed() && !self.probe_write().await {
            return false;
        }
        match self.read().await {
            Ok(mut conn) => conn
                .scalar::<i64>("SELECT CAST(1 AS BIGINT)", &[])
                .await
                .is_ok(),
            Err(_) => false,
        }
    }
}

impl Db {
    /// Whether this database can write (see [`storage`]).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// A small real write, committed and undone, to learn whether storage is back.
    async fn probe_write(&self) -> bool {
        let probe = self
            .write(|conn| {
                Box::pin(async move {
                    conn.batch(
                        "CREATE TABLE IF NOT EXISTS onlinebank_storage_probe (at BIGINT NOT NULL)",
                    )
                    .await?;
                    conn.execute(
                        "INSERT INTO onlinebank_storage_probe (at) VALUES ($1)",
                        &[Arg::Int(crate::time::now_ms())],
                    )
                    .await?;
                    conn.execute("DELETE FROM onlinebank_storage_probe", &[])
                        .await?;
                    Ok::<(), Error>(())
                })
            })
            .await;
        probe.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_ca_file_goes_into_postgres_urls_that_name_none() {
        let ca = std::path::Path::new("/etc/onlinebank/pg ca.pem");
        assert_eq!(
            with_ca_file("postgres://u:p@db:5432/bank", ca),
            "postgres://u:p@db:5432/bank?sslmode=verify-full&sslrootcert=%2Fetc%2Fonlinebank%2Fpg%20ca%2Epem"
        );
        assert_eq!(
            with_ca_file("postgres://db/bank?sslmode=require", ca),
            "postgres://db/bank?sslmode=require&sslrootcert=%2Fetc%2Fonlinebank%2Fpg%20ca%2Epem"
        );
        let own = "postgres://db/bank?sslmode=verify-ca&sslrootcert=/own.pem";
        assert_eq!(with_ca_file(own, ca), own);
        assert_eq!(with_ca_file("sqlite:///d/a.db", ca), "sqlite:///d/a.db");
    }

    #[tokio::test]
    async fn concurrent_jobs_commit_together_and_a_failing_one_rolls_back_alone_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("g.db").display().to_string(), "test")
            .await
            .unwrap();
        group_commit_behaviour(db).await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (ONLINEBANK_TEST_POSTGRES): ./.ci/run runs it"]
    async fn concurrent_jobs_commit_together_and_a_failing_one_rolls_back_alone_on_postgres() {
        let db = crate::db::testing::postgres_db("group", "test").await;
        assert_eq!(db.engine, Engine::Postgres);
        group_commit_behaviour(db).await;
    }

    async fn group_commit_behaviour(db: Db) {
        db.write(|conn| {
            Box::pin(async move { conn.batch("CREATE TABLE t (k BIGINT PRIMARY KEY)").await })
        })
        .await
        .unwrap();
        let mut handles = Vec::new();
        for k in 0..50i64 {
            let db = db.clone();
            handles.push(tokio::spawn(async move {
                db.write(move |conn| {
                    Box::pin(async move {
                        conn.execute("INSERT INTO t (k) VALUES ($1)", crate::args![k % 40])
                            .await
                            .map(|_| k)
                    })
                })
                .await
            }));
        }
        let mut ok = 0;
        let mut failed = 0;
        for handle in handles {
            match handle.await.unwrap() {
                Ok(_) => ok += 1,
                Err(GroupError::Job(error)) => {
                    assert!(error.is_unique_violation(), "{error}");
                    failed += 1
                }
                Err(other) => panic!("unexpected {other}"),
            }
        }
        assert_eq!((ok, failed), (40, 10), "duplicates fail alone");
        let mut conn = db.read().await.unwrap();
        let count: Option<i64> = conn.scalar("SELECT COUNT(*) FROM t", &[]).await.unwrap();
        assert_eq!(count, Some(40));
        let rows: Vec<(i64, Option<String>)> = conn
            .fetch_all(
                "SELECT k, CAST(NULL AS TEXT) FROM t WHERE k < $1 ORDER BY k",
                crate::args![3],
            )
            .await
            .unwrap();
        assert_eq!(rows, vec![(0, None), (1, None), (2, None)]);
    }

    #[tokio::test]
    async fn parameters_bind_by_number_in_any_order_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("p.db").display().to_string(), "test")
            .await
            .unwrap();
        let mut conn = db.read().await.unwrap();
        let value: Option<i64> = conn
            .scalar("SELECT $2 - $1 + $2 * 0 + $3", crate::args![1, 10, 100])
            .await
            .unwrap();
        assert_eq!(value, Some(109));
        let text: Option<String> = conn
            .scalar("SELECT '$1' || $1", crate::args!["x"])
            .await
            .unwrap();
        assert_eq!(text.as_deref(), Some("$1x"));
    }

    #[tokio::test]
    async fn sqlite_writes_are_durable_at_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("d.db").display().to_string(), "test")
            .await
            .unwrap();
        let (synchronous, journal) = db
            .write(|conn| {
                Box::pin(async move {
                    let synchronous: Option<i64> = conn.scalar("PRAGMA synchronous", &[]).await?;
                    let journal: Option<String> = conn.scalar("PRAGMA journal_mode", &[]).await?;
                    Ok::<_, Error>((synchronous, journal))
                })
            })
            .await
            .unwrap();
        assert_eq!(
            synchronous,
            Some(2),
            "synchronous=FULL: fsync at every commit"
        );
        assert_eq!(journal.as_deref(), Some("wal"));
    }

    #[tokio::test]
    async fn a_database_whose_writer_died_is_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("w.db").display().to_string(), "test")
            .await
            .unwrap();
        assert!(db.ping().await);
        let broken = db
            .write(|_conn| {
                Box::pin(async move {
                    let bug = true;
                    if bug {
                        panic!("a job with a bug (expected in this test)");
                    }
                    Ok::<(), Error>(())
                })
            })
            .await;
        assert!(matches!(broken, Err(GroupError::Closed)));
        let mut ready = true;
        for _ in 0..200 {
            ready = db.ping().await;
            if !ready {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!ready, "readiness reports the dead writer");
    }

    #[tokio::test]
    async fn sqlite_readers_refuse_writes() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("r.db").display().to_string(), "test")
            .await
            .unwrap();
        assert!(db.ping().await, "a reader answers");
        let mut conn = db.read().await.unwrap();
        assert!(conn.batch("CREATE TABLE x (a INTEGER)").await.is_err());
    }

    /// The size of the WAL file of the SQLite database at `path`.
    fn wal_size(path: &std::path::Path) -> u64 {
        std::fs::metadata(path.with_extension("db-wal")).map_or(0, |meta| meta.len())
    }

    /// After storage trouble the writer truncates the WAL once writes work again: after its next
    /// batch, or woken by the watcher when the database stays idle.
    #[tokio::test]
    async fn the_wal_is_truncated_once_storage_works_again_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let db = Db::open(&path.display().to_string(), "test").await.unwrap();
        db.write(|conn| {
            Box::pin(async move {
                conn.batch("CREATE TABLE t (a BLOB); INSERT INTO t VALUES (zeroblob(300000))")
                    .await
            })
        })
        .await
        .unwrap();
        assert!(wal_size(&path) > 300_000);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            wal_size(&path) > 300_000,
            "no trouble: the WAL is left alone"
        );
        db.storage().mark_failed(&"disk full");
        db.storage().mark_ok();
        let mut size = wal_size(&path);
        for _ in 0..100 {
            if size == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            size = wal_size(&path);
        }
        assert_eq!(size, 0, "the idle database's WAL was truncated");
        let mut conn = db.read().await.unwrap();
        let rows: Option<i64> = conn.scalar("SELECT COUNT(*) FROM t", &[]).await.unwrap();
        assert_eq!(rows, Some(1), "nothing was lost");
    }

    async fn count(conn: &mut Conn) -> Option<i64> {
        conn.scalar("SELECT COUNT(*) FROM t", &[]).await.unwrap()
    }

    /// Reads taken together see one snapshot: a write committed between them is not seen until
    /// the reader is given back, and the reader ends its transaction then (readers stay usable).
    #[tokio::test]
    async fn reads_taken_together_see_one_snapshot_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("s.db").display().to_string(), "test")
            .await
            .unwrap();
        let insert = |n: i64| {
            db.write(move |conn| {
                Box::pin(async move {
                    conn.execute("INSERT INTO t (a) VALUES ($1)", crate::args![n])
                        .await
                })
            })
        };
        db.write(|conn| Box::pin(async move { conn.batch("CREATE TABLE t (a INTEGER)").await }))
            .await
            .unwrap();
        insert(1).await.unwrap();
        let mut together = db.read_together().await.unwrap();
        assert_eq!(count(&mut together).await, Some(1));
        insert(2).await.unwrap();
        assert_eq!(count(&mut together).await, Some(1), "the same snapshot");
        assert_eq!(count(&mut db.read().await.unwrap()).await, Some(2));
        drop(together);
        for _ in 0..SQLITE_READERS * 2 {
            let mut conn = db.read().await.unwrap();
            assert_eq!(
                count(&mut conn).await,
                Some(2),
                "no reader kept an old snapshot"
            );
        }
    }
}

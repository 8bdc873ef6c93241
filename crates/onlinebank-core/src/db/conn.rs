//! One connection type for both engines, so every store is written once.
//!
//! A [`Conn`] is either a SQLite connection (rusqlite, used synchronously on the thread that
//! owns it: the database's writer thread, or inline for a short read) or a PostgreSQL connection
//! from a sqlx `PgPool` (the native driver: rows decode straight from PostgreSQL's binary
//! format, with no `Any` layer converting every value and argument in between; it is also
//! strict about types, so an `INT4` value does not decode as `i64`: the SQL casts, e.g.
//! `CAST(1 AS BIGINT)`). Statements are the same portable SQL with `$1` placeholders (both
//! engines read them; SQLite as named parameters); parameters are [`Arg`]s and rows decode
//! through [`FromRow`].
//!
//! Why not sqlx for SQLite too: its driver runs every statement on the connection's own worker
//! thread, two thread hand-offs per statement. A deposit touches ~50 statements; with rusqlite a
//! whole group-commit batch is one hand-off (docs/performance.md).

use super::{BoxFuture, Engine};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgConnection, PgRow, Postgres};
use sqlx::{AssertSqlSafe, Row as _};

/// Why a database call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// A query that must return a row returned none.
    #[error("no rows returned")]
    RowNotFound,
    /// A stored value that does not decode into its domain type.
    #[error("bad stored value: {0}")]
    Decode(String),
    /// A statement's rows could not be encoded as its JSON parameter.
    #[error("encoding a statement's rows: {0}")]
    Encode(String),
    /// A row changed under a guarded update (another replica won): retry the batch.
    #[error("{0}")]
    Conflict(String),
    /// The database's writer is gone (shutting down).
    #[error("the database writer is unavailable")]
    Closed,
    /// The shared transaction a write job ran in failed to commit.
    #[error("group commit failed: {0}")]
    Commit(std::sync::Arc<Error>),
    /// Too little free space to write: the batch was rolled back instead of committed.
    #[error("storage is full")]
    StorageFull,
}

impl Error {
    /// A lock timeout (try again) rather than a fault.
    pub fn is_busy(&self) -> bool {
        match self {
            Error::Sqlx(sqlx::Error::PoolTimedOut) => true,
            Error::Sqlx(sqlx::Error::Database(db)) => {
                let message = db.message();
                message.contains("database is locked") || message.contains("busy")
            }
            Error::Sqlite(rusqlite::Error::SqliteFailure(code, _)) => matches!(
                code.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            Error::Commit(error) => error.is_busy(),
            _ => false,
        }
    }

    /// Storage is full or failing: SQLite's `SQLITE_FULL` or an I/O error, PostgreSQL's class 53
    /// (`insufficient_resources`, e.g. 53100 `disk_full`) or an I/O error talking to it.
    pub fn is_storage_full(&self) -> bool {
        match self {
            Error::StorageFull => true,
            Error::Sqlite(rusqlite::Error::SqliteFailure(code, _)) => matches!(
                code.code,
                rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::SystemIoFailure
            ),
            Error::Sqlx(sqlx::Error::Database(db)) => {
                db.code().is_some_and(|code| code.starts_with("53"))
            }
            Error::Commit(error) => error.is_storage_full(),
            _ => false,
        }
    }

    /// A unique-constraint violation.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Error::Sqlx(sqlx::Error::Database(db)) => db.is_unique_violation(),
            Error::Sqlite(rusqlite::Error::SqliteFailure(code, _)) => {
                code.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || code.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            }
            _ => false,
        }
    }
}

/// A value bound to a statement parameter (`$1` is the first).
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
    /// NULL in a BIGINT parameter.
    Null,
    /// NULL in a TEXT parameter. PostgreSQL types a prepared statement's parameters by the first
    /// values bound to it, and sqlx keeps the statement: a NULL typed BIGINT in a TEXT parameter
    /// would make a later text value there unreadable to the server.
    NullText,
}

impl From<i64> for Arg<'_> {
    fn from(value: i64) -> Self {
        Arg::Int(value)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(value: &'a str) -> Self {
        Arg::Text(value)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(value: &'a String) -> Self {
        Arg::Text(value)
    }
}

impl<'a> From<&'a crate::ids::AccountNo> for Arg<'a> {
    fn from(value: &'a crate::ids::AccountNo) -> Self {
        Arg::Text(value.as_str())
    }
}

impl<'a> From<&'a crate::ids::CustomerId> for Arg<'a> {
    fn from(value: &'a crate::ids::CustomerId) -> Self {
        Arg::Text(value.as_str())
    }
}

impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(value: &'a [u8]) -> Self {
        Arg::Blob(value)
    }
}

impl<'a> From<&'a Vec<u8>> for Arg<'a> {
    fn from(value: &'a Vec<u8>) -> Self {
        Arg::Blob(value)
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(value: Option<i64>) -> Self {
        value.map_or(Arg::Null, Arg::Int)
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(value: Option<&'a str>) -> Self {
        value.map_or(Arg::NullText, Arg::Text)
    }
}

/// `args![a, b, c]`: a statement's parameters, each converted with `Arg::from`.
#[macro_export]
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$($crate::db::Arg::from($value)),*][..]
    };
}

/// A column type both engines decode.
pub trait Column: Sized {
    fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> Result<Self, Error>;
    fn from_postgres(row: &PgRow, index: usize) -> Result<Self, Error>;
}

impl<T> Column for T
where
    T: rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> Result<Self, Error> {
        Ok(row.get(index)?)
    }

    fn from_postgres(row: &PgRow, index: usize) -> Result<Self, Error> {
        Ok(row.try_get(index)?)
    }
}

/// One result row, of either engine.
pub enum Row<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r PgRow),
}

impl Row<'_> {
    /// The value of column `index` (from 0).
    pub fn get<T: Column>(&self, index: usize) -> Result<T, Error> {
        match self {
            Row::Sqlite(row) => T::from_sqlite(row, index),
            Row::Postgres(row) => T::from_postgres(row, index),
        }
    }

    /// A text column as a domain type (`what` names it in the error): a stored value that does
    /// not parse is an error, never a default.
    pub fn parsed<T>(
        &self,
        index: usize,
        what: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, Error> {
        let raw: String = self.get(index)?;
        decode(&raw, what, parse)
    }

    /// A balance column: a negative stored balance is an error, never shown or used.
    pub fn balance(&self, index: usize) -> Result<crate::money::Balance, Error> {
        let raw: i64 = self.get(index)?;
        crate::money::Balance::from_stored(raw)
            .map_err(|_| Error::Decode(format!("stored balance {raw}")))
    }

    /// [`Row::parsed`] for a nullable column: NULL is `None`.
    pub fn parsed_opt<T>(
        &self,
        index: usize,
        what: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, Error> {
        let raw: Option<String> = self.get(index)?;
        raw.map(|raw| decode(&raw, what, parse)).transpose()
    }
}

/// A stored text as a domain type, or a `Decode` error naming `what` and the text.
fn decode<T>(raw: &str, what: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<T, Error> {
    parse(raw).ok_or_else(|| Error::Decode(format!("stored {what} {raw:?}")))
}

/// A type built from a result row.
pub trait FromRow: Sized {
    fn from_row(row: &Row<'_>) -> Result<Self, Error>;
}

macro_rules! tuple_from_row {
    ($($name:ident $index:tt),+) => {
        impl<$($name: Column),+> FromRow for ($($name,)+) {
            fn from_row(row: &Row<'_>) -> Result<Self, Error> {
                Ok(($(row.get::<$name>($index)?,)+))
            }
        }
    };
}

tuple_from_row!(A 0);
tuple_from_row!(A 0, B 1);
tuple_from_row!(A 0, B 1, C 2);
tuple_from_row!(A 0, B 1, C 2, D 3);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

/// The SQLite connection a [`Conn`] holds.
enum Lite {
    /// Owned (lent by the writer thread to one job at a time).
    Owned(Box<rusqlite::Connection>),
    /// A reader, borrowed from the database's small set for one short read.
    Reader(tokio::sync::OwnedMutexGuard<rusqlite::Connection>),
    /// A reader inside one read transaction.
    Snapshot(Snapshot),
}

impl Lite {
    fn conn(&self) -> &rusqlite::Connection {
        match self {
            Lite::Owned(conn) => conn,
            Lite::Reader(guard) => guard,
            Lite::Snapshot(snapshot) => &snapshot.0,
        }
    }
}

/// A SQLite reader whose statements share one read transaction: one snapshot of the database,
/// and one acquisition of its read lock instead of one per statement. The transaction ends
/// when the reader goes back to the set.
struct Snapshot(tokio::sync::OwnedMutexGuard<rusqlite::Connection>);

impl Drop for Snapshot {
    fn drop(&mut self) {
        if self.0.is_autocommit() {
            return;
        }
        if let Err(error) = super::sqlite::control(&self.0, "COMMIT") {
            tracing::warn!(%error, "ending a read transaction failed");
        }
    }
}

enum Inner {
    Sqlite(Lite),
    Postgres(PoolConnection<Postgres>),
}

/// A connection of either engine (see the module docs).
pub struct Conn {
    inner: Inner,
    /// The database's storage health, told of writes that fail for want of storage.
    storage: Option<std::sync::Arc<super::storage::Storage>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conn({:?})", self.engine())
    }
}

/// Binds `args` to a SQLite statement. The portable SQL names its parameters `$1`, `$2`, ...;
/// SQLite numbers named parameters in order of first appearance, so each of the statement's
/// parameters is bound by its name (`$n` takes `args[n - 1]`).
fn bind_sqlite(statement: &mut rusqlite::Statement<'_>, args: &[Arg<'_>]) -> Result<(), Error> {
    for position in 1..=statement.parameter_count() {
        let wanted = statement
            .parameter_name(position)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|number| number.parse::<usize>().ok())
            .unwrap_or(position);
        let arg = wanted
            .checked_sub(1)
            .and_then(|index| args.get(index))
            .ok_or(rusqlite::Error::InvalidParameterCount(
                args.len(),
                statement.parameter_count(),
            ))?;
        match arg {
            Arg::Int(value) => statement.raw_bind_parameter(position, value)?,
            Arg::Text(value) => statement.raw_bind_parameter(position, value)?,
            Arg::Blob(value) => statement.raw_bind_parameter(position, value)?,
            Arg::Null | Arg::NullText => {
                statement.raw_bind_parameter(position, rusqlite::types::Null)?
            }
        }
    }
    Ok(())
}

/// A SQLite statement, prepared once per connection, with `args` bound.
fn prepare<'c>(
    conn: &'c rusqlite::Connection,
    sql: &str,
    args: &[Arg<'_>],
) -> Result<rusqlite::CachedStatement<'c>, Error> {
    let mut statement = conn.prepare_cached(sql)?;
    bind_sqlite(&mut statement, args)?;
    Ok(statement)
}

/// A PostgreSQL statement with `args` bound. The SQL is the stores' own text (never user
/// input: values always travel as parameters), hence `AssertSqlSafe`.
fn postgres_query<'q>(
    sql: &str,
    args: &[Arg<'_>],
) -> sqlx::query::Query<'q, Postgres, PgArguments> {
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for arg in args {
        query = match *arg {
            Arg::Int(value) => query.bind(value),
            Arg::Text(value) => query.bind(value),
            Arg::Blob(value) => query.bind(value),
            // Typed BIGINT, as the Any driver sent it.
            Arg::Null => query.bind(None::<i64>),
            Arg::NullText => query.bind(None::<&str>),
        };
    }
    query
}

// The sqlx calls are boxed: their futures are `Send` only for the concrete lifetimes at hand,
// which the compiler cannot prove through an `async fn` spawned elsewhere.

fn postgres_batch<'a>(
    conn: &'a mut PgConnection,
    sql: &'a str,
) -> BoxFuture<'a, Result<(), Error>> {
    Box::pin(async move {
        sqlx::Executor::execute(conn, sqlx::raw_sql(AssertSqlSafe(sql))).await?;
        Ok(())
    })
}

fn postgres_execute<'a>(
    conn: &'a mut PgConnection,
    sql: &'a str,
    args: &'a [Arg<'a>],
) -> BoxFuture<'a, Result<u64, Error>> {
    Box::pin(async move {
        Ok(postgres_query(sql, args)
            .execute(conn)
            .await?
            .rows_affected())
    })
}

fn postgres_fetch_all<'a>(
    conn: &'a mut PgConnection,
    sql: &'a str,
    args: &'a [Arg<'a>],
) -> BoxFuture<'a, Result<Vec<PgRow>, Error>> {
    Box::pin(async move { Ok(postgres_query(sql, args).fetch_all(conn).await?) })
}

fn postgres_fetch_optional<'a>(
    conn: &'a mut PgConnection,
    sql: &'a str,
    args: &'a [Arg<'a>],
) -> BoxFuture<'a, Result<Option<PgRow>, Error>> {
    Box::pin(async move { Ok(postgres_query(sql, args).fetch_optional(conn).await?) })
}

impl Conn {
    pub(crate) fn sqlite(conn: Box<rusqlite::Connection>) -> Self {
        Self {
            inner: Inner::Sqlite(Lite::Owned(conn)),
            storage: None,
        }
    }

    /// A private in-memory SQLite database with the settings of the bank's connections that
    /// apply in memory (foreign keys, the statement cache): the deterministic simulator's
    /// stores. Transactions are the caller's (`BEGIN IMMEDIATE` ... `COMMIT` through
    /// [`Conn::batch`]).
    pub fn sqlite_memory() -> Result<Self, Error> {
        let conn = rusqlite::Connection::open_in_memory()?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(Self::sqlite(Box::new(conn)))
    }

    /// A new in-memory SQLite database holding a copy of this one (SQLite's online backup API):
    /// the simulator migrates a role's database once and copies it for every run. Fails on
    /// PostgreSQL.
    pub fn sqlite_memory_copy(&self) -> Result<Self, Error> {
        let Inner::Sqlite(source) = &self.inner else {
            return Err(Error::Decode("only a SQLite database can be copied".into()));
        };
        let mut copy = Self::sqlite_memory()?;
        let Inner::Sqlite(Lite::Owned(target)) = &mut copy.inner else {
            return Err(Error::Closed);
        };
        rusqlite::backup::Backup::new(source.conn(), target)?.run_to_completion(
            i32::MAX,
            std::time::Duration::ZERO,
            None,
        )?;
        Ok(copy)
    }

    pub(crate) fn sqlite_reader(guard: tokio::sync::OwnedMutexGuard<rusqlite::Connection>) -> Self {
        Self {
            inner: Inner::Sqlite(Lite::Reader(guard)),
            storage: None,
        }
    }

    /// A reader whose statements see one snapshot (see [`Snapshot`]).
    pub(crate) fn sqlite_snapshot(
        guard: tokio::sync::OwnedMutexGuard<rusqlite::Connection>,
    ) -> Result<Self, Error> {
        super::sqlite::control(&guard, "BEGIN")?;
        Ok(Self {
            inner: Inner::Sqlite(Lite::Snapshot(Snapshot(guard))),
            storage: None,
        })
    }

    pub(crate) fn postgres(conn: PoolConnection<Postgres>) -> Self {
        Self {
            inner: Inner::Postgres(conn),
            storage: None,
        }
    }

    /// Tells `storage` of every statement that fails for want of storage.
    pub(crate) fn with_storage(mut self, storage: std::sync::Arc<super::storage::Storage>) -> Self {
        self.storage = Some(storage);
        self
    }

    /// Passes a statement's result on, telling the storage health of a storage failure.
    fn noted<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        if let (Err(error), Some(storage)) = (&result, &self.storage) {
            if error.is_storage_full() {
                storage.mark_failed(error);
            }
        }
        result
    }

    /// Gives back the owned SQLite connection (the writer thread's).
    pub(crate) fn into_sqlite(self) -> Option<Box<rusqlite::Connection>> {
        match self.inner {
            Inner::Sqlite(Lite::Owned(conn)) => Some(conn),
            _ => None,
        }
    }

    /// The engine behind this connection.
    pub fn engine(&self) -> Engine {
        match self.inner {
            Inner::Sqlite(_) => Engine::Sqlite,
            Inner::Postgres(_) => Engine::Postgres,
        }
    }

    /// Runs statements without parameters (transaction control, DDL); several may be given,
    /// separated by `;`.
    pub async fn batch(&mut self, sql: &str) -> Result<(), Error> {
        let result = match &mut self.inner {
            Inner::Sqlite(lite) => lite.conn().execute_batch(sql).map_err(Error::from),
            Inner::Postgres(conn) => postgres_batch(conn, sql).await,
        };
        self.noted(result)
    }

    /// Runs one statement; returns how many rows it changed.
    pub async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, Error> {
        let result = self.execute_unnoted(sql, args).await;
        self.noted(result)
    }

    async fn execute_unnoted(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, Error> {
        match &mut self.inner {
            Inner::Sqlite(lite) => {
                let conn = lite.conn();
                let mut statement = prepare(conn, sql, args)?;
                // Stepped to the end, so a statement that also returns rows runs whole.
                let mut rows = statement.raw_query();
                while rows.next()?.is_some() {}
                Ok(conn.changes())
            }
            Inner::Postgres(conn) => postgres_execute(conn, sql, args).await,
        }
    }

    /// Every row of a query.
    pub async fn fetch_all<T: FromRow>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<T>, Error> {
        let result = self.fetch_all_unnoted(sql, args).await;
        self.noted(result)
    }

    async fn fetch_all_unnoted<T: FromRow>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<T>, Error> {
        match &mut self.inner {
            Inner::Sqlite(lite) => {
                let mut statement = prepare(lite.conn(), sql, args)?;
                let mut rows = statement.raw_query();
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    out.push(T::from_row(&Row::Sqlite(row))?);
                }
                Ok(out)
            }
            Inner::Postgres(conn) => {
                let rows = postgres_fetch_all(conn, sql, args).await?;
                rows.iter()
                    .map(|row| T::from_row(&Row::Postgres(row)))
                    .collect()
            }
        }
    }

    /// The first row of a query, if any.
    pub async fn fetch_optional<T: FromRow>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Option<T>, Error> {
        let result = self.fetch_optional_unnoted(sql, args).await;
        self.noted(result)
    }

    async fn fetch_optional_unnoted<T: FromRow>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Option<T>, Error> {
        match &mut self.inner {
            Inner::Sqlite(lite) => {
                let mut statement = prepare(lite.conn(), sql, args)?;
                let mut rows = statement.raw_query();
                match rows.next()? {
                    Some(row) => Ok(Some(T::from_row(&Row::Sqlite(row))?)),
                    None => Ok(None),
                }
            }
            Inner::Postgres(conn) => {
                let row = postgres_fetch_optional(conn, sql, args).await?;
                row.as_ref()
                    .map(|row| T::from_row(&Row::Postgres(row)))
                    .transpose()
            }
        }
    }

    /// The first row of a query, which must exist.
    pub async fn fetch_one<T: FromRow>(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<T, Error> {
        self.fetch_optional(sql, args)
            .await?
            .ok_or(Error::RowNotFound)
    }

    /// The first column of the first row, if any.
    pub async fn scalar<T: Column>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Option<T>, Error> {
        Ok(self.fetch_optional::<(T,)>(sql, args).await?.map(|(v,)| v))
    }
}

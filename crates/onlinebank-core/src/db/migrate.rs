//! The schema's migrations, run by onlinebank itself on both engines, so that upgrades can be
//! rolled back (expand/contract).
//!
//! A role lists its migrations in Rust ([`Migration`]: a version, the SQL file's text, and
//! whether the release before the one that adds it still runs on the schema with it applied).
//! A release's migrations only add (tables, nullable columns, indexes) and are marked
//! [`Compatibility::PreviousReleaseRuns`]; a later release removes what an earlier one stopped
//! using, in a migration marked [`Compatibility::PreviousReleaseRefuses`].
//!
//! Applied migrations are recorded in the table `_sqlx_migrations`, the one sqlx's migrator kept
//! before this runner replaced it (same columns, same SHA-384 checksums, so a data dir of an
//! earlier release needs nothing), plus two columns of ours: the release that applied each one
//! and its compatibility mark. A binary then starts on a schema whose newest migrations it does
//! not know when every one of them is marked compatible, and refuses, naming both versions, when
//! one is not: `kubectl rollout undo` after an expand-only upgrade works.
//!
//! Each engine's runs are serialised: SQLite's writer takes the write lock (`BEGIN IMMEDIATE`,
//! across processes), PostgreSQL's transaction takes an advisory lock per schema first. The
//! pending migrations and their records commit in one transaction: all or nothing.

use super::conn::{Conn, Error, FromRow, Row};
use super::Engine;
use sha2::{Digest, Sha384};

/// The release of this binary, recorded with every migration it applies.
pub const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// Whether the release before the one that adds a migration can run on a schema with it applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compatibility {
    /// Expand: it only adds (a table, a nullable column, an index): the previous release runs.
    PreviousReleaseRuns,
    /// Contract, or a change the previous release cannot read: it must refuse to start.
    PreviousReleaseRefuses,
}

/// One migration: a SQL file for one engine.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number, unique per database (the bus's tables are numbered from 1001).
    pub version: i64,
    /// Its name (the file's, after the number).
    pub description: &'static str,
    /// The statements, run as one batch inside the run's transaction.
    pub sql: &'static str,
    /// Whether the previous release still runs on it.
    pub compatibility: Compatibility,
}

impl Migration {
    /// An expand migration (it only adds: the previous release runs on it).
    pub const fn expand(version: i64, description: &'static str, sql: &'static str) -> Self {
        Self {
            version,
            description,
            sql,
            compatibility: Compatibility::PreviousReleaseRuns,
        }
    }

    /// The SHA-384 of the SQL text, as sqlx's migrator recorded it.
    pub fn checksum(&self) -> Vec<u8> {
        Sha384::digest(self.sql.as_bytes()).to_vec()
    }
}

/// A database's migrations for each engine.
#[derive(Debug, Clone, Default)]
pub struct Migrations {
    pub sqlite: Vec<Migration>,
    pub postgres: Vec<Migration>,
}

impl Migrations {
    /// The set of a role (one list per engine).
    pub fn new(sqlite: &[Migration], postgres: &[Migration]) -> Self {
        Self {
            sqlite: sqlite.to_vec(),
            postgres: postgres.to_vec(),
        }
    }

    /// This set and `other` as one, each engine's list in version order; a version used twice
    /// is refused.
    pub fn joined(&self, other: &Migrations) -> anyhow::Result<Migrations> {
        Ok(Migrations {
            sqlite: joined_list(&self.sqlite, &other.sqlite)?,
            postgres: joined_list(&self.postgres, &other.postgres)?,
        })
    }

    /// The list for `engine`.
    pub fn for_engine(&self, engine: Engine) -> &[Migration] {
        match engine {
            Engine::Sqlite => &self.sqlite,
            Engine::Postgres => &self.postgres,
        }
    }
}

fn joined_list(a: &[Migration], b: &[Migration]) -> anyhow::Result<Vec<Migration>> {
    let mut all: Vec<Migration> = a.iter().chain(b).copied().collect();
    all.sort_by_key(|migration| migration.version);
    if let Some(pair) = all
        .windows(2)
        .find(|pair| pair[0].version == pair[1].version)
    {
        anyhow::bail!("two migrations numbered {}", pair[0].version);
    }
    Ok(all)
}

/// A migration the database records as applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: i64,
    pub checksum: Vec<u8>,
    /// False when a run failed half-way (only sqlx's migrator could leave that).
    pub success: bool,
    /// The release that applied it (None: applied before this runner existed).
    pub applied_by: Option<String>,
    /// Its compatibility mark as the applying release knew it (None: never marked).
    pub previous_release_runs: Option<bool>,
}

/// Why a database's schema cannot be used by this binary.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemaError {
    #[error(
        "the schema has migration {version} (applied by onlinebank {applied_by}), which this \
         onlinebank {RELEASE} does not know and which is not marked as one the previous release \
         runs on: run onlinebank {applied_by} or newer, or restore the backup taken before that \
         upgrade"
    )]
    TooNew { version: i64, applied_by: String },
    #[error("migration {version} was changed after it was applied (checksum differs)")]
    Changed { version: i64 },
    #[error("migration {version} failed half-way in an earlier run: repair it by hand")]
    Dirty { version: i64 },
}

/// What a database needs: the migrations to apply, and the newer ones it tolerates.
#[derive(Debug, Default)]
pub struct Plan {
    /// Migrations of this binary the database has not applied yet, in order.
    pub pending: Vec<Migration>,
    /// Applied migrations this binary does not know, all marked compatible.
    pub tolerated: Vec<Applied>,
    /// How many migrations the database had applied.
    pub applied: usize,
}

/// Compares what the database applied with what this binary knows.
pub fn plan(applied: &[Applied], known: &[Migration]) -> Result<Plan, SchemaError> {
    let mut plan = Plan {
        applied: applied.len(),
        ..Plan::default()
    };
    for record in applied {
        if !record.success {
            return Err(SchemaError::Dirty {
                version: record.version,
            });
        }
        match known.iter().find(|m| m.version == record.version) {
            Some(migration) if migration.checksum() != record.checksum => {
                return Err(SchemaError::Changed {
                    version: record.version,
                })
            }
            Some(_) => {}
            None if record.previous_release_runs == Some(true) => {
                plan.tolerated.push(record.clone())
            }
            None => {
                return Err(SchemaError::TooNew {
                    version: record.version,
                    applied_by: record
                        .applied_by
                        .clone()
                        .unwrap_or_else(|| "unknown".into()),
                })
            }
        }
    }
    plan.pending = known
        .iter()
        .filter(|m| !applied.iter().any(|a| a.version == m.version))
        .copied()
        .collect();
    Ok(plan)
}

/// The migrations the database records, or none when it has no record table yet.
pub async fn applied(conn: &mut Conn) -> Result<Vec<Applied>, Error> {
    let engine = conn.engine();
    let has_table: Option<i64> = conn.scalar(table_exists_sql(engine), &[]).await?;
    if has_table.unwrap_or(0) == 0 {
        return Ok(Vec::new());
    }
    let has_marks: Option<i64> = conn.scalar(marks_exist_sql(engine), &[]).await?;
    let sql = if has_marks.unwrap_or(0) > 0 {
        "SELECT version, checksum, CAST(CASE WHEN success THEN 1 ELSE 0 END AS BIGINT),
                applied_by,
                CAST(CASE WHEN compatible_with_previous IS NULL THEN NULL
                          WHEN compatible_with_previous THEN 1 ELSE 0 END AS BIGINT)
         FROM _sqlx_migrations ORDER BY version"
    } else {
        "SELECT version, checksum, CAST(CASE WHEN success THEN 1 ELSE 0 END AS BIGINT),
                CAST(NULL AS TEXT),
                CAST(NULL AS BIGINT)
         FROM _sqlx_migrations ORDER BY version"
    };
    conn.fetch_all(sql, &[]).await
}

impl FromRow for Applied {
    fn from_row(row: &Row<'_>) -> Result<Self, Error> {
        let success: i64 = row.get(2)?;
        let compatible: Option<i64> = row.get(4)?;
        Ok(Applied {
            version: row.get(0)?,
            checksum: row.get(1)?,
            success: success != 0,
            applied_by: row.get(3)?,
            previous_release_runs: compatible.map(|mark| mark != 0),
        })
    }
}

fn table_exists_sql(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
        }
        Engine::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
        }
    }
}

fn marks_exist_sql(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => {
            "SELECT COUNT(*) FROM pragma_table_info('_sqlx_migrations')
             WHERE name = 'compatible_with_previous'"
        }
        Engine::Postgres => {
            "SELECT COUNT(*) FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'
               AND column_name = 'compatible_with_previous'"
        }
    }
}

/// Why a run stopped: the schema is not for this binary, or the database failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("migration {version}: {error}")]
    Migration { version: i64, error: Error },
    #[error(transparent)]
    Db(#[from] Error),
}

/// Inside the caller's write transaction: takes the engine's migration lock, makes the record
/// table (with our columns), plans again (another process may have migrated meanwhile) and
/// applies every pending migration with its record. Returns what was applied.
pub async fn run(conn: &mut Conn, schema: &str, known: &[Migration]) -> Result<Plan, RunError> {
    if conn.engine() == Engine::Postgres {
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            crate::args![format!("onlinebank migrations {schema}").as_str()],
        )
        .await?;
    }
    ensure_record_table(conn).await?;
    let plan = plan(&applied(conn).await?, known)?;
    for migration in &plan.pending {
        apply(conn, migration)
            .await
            .map_err(|error| RunError::Migration {
                version: migration.version,
                error,
            })?;
    }
    Ok(plan)
}

async fn ensure_record_table(conn: &mut Conn) -> Result<(), Error> {
    let (checksum, installed_on) = match conn.engine() {
        Engine::Sqlite => ("BLOB", "TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP"),
        Engine::Postgres => ("BYTEA", "TIMESTAMPTZ NOT NULL DEFAULT now()"),
    };
    conn.batch(&format!(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
            version BIGINT PRIMARY KEY,
            description TEXT NOT NULL,
            installed_on {installed_on},
            success BOOLEAN NOT NULL,
            checksum {checksum} NOT NULL,
            execution_time BIGINT NOT NULL
        )"
    ))
    .await?;
    let marks: Option<i64> = conn.scalar(marks_exist_sql(conn.engine()), &[]).await?;
    if marks.unwrap_or(0) == 0 {
        conn.batch(
            "ALTER TABLE _sqlx_migrations ADD COLUMN applied_by TEXT;
             ALTER TABLE _sqlx_migrations ADD COLUMN compatible_with_previous BOOLEAN",
        )
        .await?;
    }
    Ok(())
}

async fn apply(conn: &mut Conn, migration: &Migration) -> Result<(), Error> {
    let started = std::time::Instant::now();
    conn.batch(migration.sql).await?;
    let runs = migration.compatibility == Compatibility::PreviousReleaseRuns;
    let nanos = i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX);
    conn.execute(
        "INSERT INTO _sqlx_migrations
            (version, description, success, checksum, execution_time, applied_by,
             compatible_with_previous)
         VALUES ($1, $2, TRUE, $3, $4, $5, $6 = 1)",
        crate::args![
            migration.version,
            migration.description,
            &migration.checksum(),
            nanos,
            RELEASE,
            i64::from(runs)
        ],
    )
    .await?;
    Ok(())
}

/// Before a process changes anything: whether the SQLite database at `path` (if it exists)
/// has a schema this binary can run on, read through a read-only connection. A process checks
/// every database it will open first, so that a refusal leaves the whole data dir untouched.
pub async fn check_sqlite_file(path: &std::path::Path, known: &[Migration]) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let flags =
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let opened = rusqlite::Connection::open_with_flags(path, flags)
        .map_err(|error| anyhow::anyhow!("opening {}: {error}", path.display()))?;
    let mut conn = Conn::sqlite(Box::new(opened));
    let records = applied(&mut conn)
        .await
        .map_err(|error| anyhow::anyhow!("reading {}'s migrations: {error}", path.display()))?;
    plan(&records, known).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    Ok(())
}

/// A crate's migrations from its `migrations/{sqlite,postgres}/` folders, each given once as
/// `(version, description, file name)` and marked [`Migration::expand`] (the previous release
/// still runs on it): the same file name in both folders, so the engines cannot drift apart.
#[macro_export]
macro_rules! expand_migrations {
    ($(($version:literal, $description:literal, $file:literal)),+ $(,)?) => {{
        const SQLITE: &[$crate::db::Migration] = &[$($crate::db::Migration::expand(
            $version,
            $description,
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite/", $file)),
        )),+];
        const POSTGRES: &[$crate::db::Migration] = &[$($crate::db::Migration::expand(
            $version,
            $description,
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/", $file)),
        )),+];
        $crate::db::Migrations::new(SQLITE, POSTGRES)
    }};
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Db, Engine};

    const ONE: Migration = Migration {
        version: 1,
        description: "init",
        sql: "CREATE TABLE t (a BIGINT NOT NULL)",
        compatibility: Compatibility::PreviousReleaseRuns,
    };
    const TWO: Migration = Migration {
        version: 2,
        description: "a nullable column",
        sql: "ALTER TABLE t ADD COLUMN b TEXT",
        compatibility: Compatibility::PreviousReleaseRuns,
    };

    fn record(migration: &Migration, runs: Option<bool>) -> Applied {
        Applied {
            version: migration.version,
            checksum: migration.checksum(),
            success: true,
            applied_by: Some("9.9.9".into()),
            previous_release_runs: runs,
        }
    }

    fn set(list: &[Migration]) -> Migrations {
        Migrations::new(list, list)
    }

    #[test]
    fn the_checksum_is_sqlx_s_sha384_of_the_text() {
        let hex: String = ONE.checksum().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex.len(), 96);
        assert_eq!(
            &hex[..16],
            "5fee5de264738623",
            "sha384(\"CREATE TABLE t (a BIGINT NOT NULL)\")"
        );
    }

    #[test]
    fn a_plan_lists_what_is_missing_and_tolerates_newer_compatible_migrations() {
        let plan = plan(&[record(&ONE, None)], &[ONE, TWO]).unwrap();
        assert_eq!(plan.pending.len(), 1);
        assert_eq!(plan.pending[0].version, 2);
        let newer = plan_of_newer(Some(true)).unwrap();
        assert!(newer.pending.is_empty());
        assert_eq!(newer.tolerated.len(), 1);
    }

    fn plan_of_newer(runs: Option<bool>) -> Result<Plan, SchemaError> {
        plan(&[record(&ONE, None), record(&TWO, runs)], &[ONE])
    }

    #[test]
    fn a_newer_migration_not_marked_compatible_is_refused_naming_both_releases() {
        for mark in [Some(false), None] {
            let refused = plan_of_newer(mark).unwrap_err();
            assert_eq!(
                refused,
                SchemaError::TooNew {
                    version: 2,
                    applied_by: "9.9.9".into()
                }
            );
            let message = refused.to_string();
            assert!(message.contains("onlinebank 9.9.9"), "{message}");
            assert!(
                message.contains(&format!("onlinebank {RELEASE}")),
                "{message}"
            );
        }
    }

    #[test]
    fn a_changed_or_half_applied_migration_is_refused() {
        let mut changed = record(&ONE, None);
        changed.checksum[0] ^= 1;
        assert_eq!(
            plan(&[changed], &[ONE]).unwrap_err(),
            SchemaError::Changed { version: 1 }
        );
        let mut dirty = record(&ONE, None);
        dirty.success = false;
        assert_eq!(
            plan(&[dirty], &[ONE]).unwrap_err(),
            SchemaError::Dirty { version: 1 }
        );
    }

    async fn sqlite(dir: &tempfile::TempDir) -> Db {
        let url = dir.path().join("m.db").display().to_string();
        Db::open(&url, "m").await.unwrap()
    }

    async fn applied_of(db: &Db) -> Vec<Applied> {
        applied(&mut db.read().await.unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn migrations_apply_once_with_their_marks_and_an_upgrade_keeps_a_copy_first() {
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite(&dir).await;
        db.migrate(&set(&[ONE])).await.unwrap();
        assert!(!dir.path().join(format!("pre-upgrade-{RELEASE}")).exists());
        db.migrate(&set(&[ONE, TWO])).await.unwrap();
        db.migrate(&set(&[ONE, TWO])).await.unwrap();
        let applied = applied_of(&db).await;
        assert_eq!(applied.len(), 2);
        assert_eq!(applied[1].applied_by.as_deref(), Some(RELEASE));
        assert_eq!(applied[1].previous_release_runs, Some(true));
        let copy = dir.path().join(format!("pre-upgrade-{RELEASE}/m.db"));
        let conn = rusqlite::Connection::open(&copy).unwrap();
        let versions: i64 = conn
            .query_row("SELECT COUNT(*) FROM _sqlx_migrations", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(versions, 1, "the copy is the database before the upgrade");
    }

    #[tokio::test]
    async fn an_older_binary_runs_on_a_compatible_newer_schema_and_refuses_an_incompatible_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite(&dir).await;
        db.migrate(&set(&[ONE, TWO])).await.unwrap();
        db.migrate(&set(&[ONE])).await.unwrap();
        db.write(|conn| {
            Box::pin(async move {
                conn.execute(
                    "UPDATE _sqlx_migrations SET compatible_with_previous = FALSE
                     WHERE version = 2",
                    &[],
                )
                .await
            })
        })
        .await
        .unwrap();
        let refused = db.migrate(&set(&[ONE])).await.unwrap_err().to_string();
        assert!(refused.contains("migration 2"), "{refused}");
        assert!(
            refused.contains(&format!("onlinebank {RELEASE}")),
            "{refused}"
        );
    }

    #[tokio::test]
    async fn pruning_keeps_the_newest_copies() {
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite(&dir).await;
        db.migrate(&set(&[ONE])).await.unwrap();
        let path = db.sqlite_file().unwrap();
        for release in ["0.0.1", "0.0.2", "0.0.3", "0.0.4"] {
            crate::db::sqlite::copy_before_upgrade(&path, release, 3).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let mut kept: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("pre-upgrade-"))
            .collect();
        kept.sort();
        assert_eq!(
            kept,
            [
                "pre-upgrade-0.0.2",
                "pre-upgrade-0.0.3",
                "pre-upgrade-0.0.4"
            ]
        );
        assert_eq!(db.engine, Engine::Sqlite);
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (ONLINEBANK_TEST_POSTGRES): ./.ci/run runs it"]
    async fn replicas_migrating_at_once_apply_each_migration_once_on_postgres() {
        let url = crate::db::testing::fresh_postgres("migrate").await.unwrap();
        let mut replicas = Vec::new();
        for _ in 0..3 {
            replicas.push(Db::open(&url, "m").await.unwrap());
        }
        let both = set(&[ONE, TWO]);
        let runs = replicas.iter().map(|db| db.migrate(&both));
        for outcome in futures::future::join_all(runs).await {
            outcome.unwrap();
        }
        let applied = applied_of(&replicas[0]).await;
        assert_eq!(applied.len(), 2);
        assert_eq!(applied[0].applied_by.as_deref(), Some(RELEASE));
        replicas[0].migrate(&set(&[ONE])).await.unwrap();
    }
}

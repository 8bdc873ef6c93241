//! The bus's tables in each role's own database (the outbox, the per-aggregate sequences, the
//! inbox and, on PostgreSQL, the outbox's NOTIFY trigger), kept as migrations in
//! `migrations/{sqlite,postgres}` and applied together with the role's own: one ordered set, so
//! sqlx records both in the role's migration table and finds no version it does not know.

use onlinebank_core::db::Db;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, Migrator};

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// Applies a role's migrations (for each engine) and the bus's after them.
pub async fn migrate(db: &Db, sqlite: &Migrator, postgres: &Migrator) -> anyhow::Result<()> {
    let sqlite = joined(sqlite, &SQLITE).await?;
    let postgres = joined(postgres, &POSTGRES).await?;
    db.migrate(&sqlite, &postgres).await
}

/// The bus's tables alone (for the bus's own tests).
#[cfg(test)]
pub async fn bus_only(db: &Db) -> anyhow::Result<()> {
    let none = Migrator::new(Listed(Vec::new())).await?;
    migrate(db, &none, &none).await
}

/// Two sets of migrations as one, in version order (the bus's are numbered from 1001).
async fn joined(role: &Migrator, bus: &Migrator) -> anyhow::Result<Migrator> {
    let mut all: Vec<Migration> = role.iter().chain(bus.iter()).cloned().collect();
    all.sort_by_key(|migration| migration.version);
    if let Some(pair) = all
        .windows(2)
        .find(|pair| pair[0].version == pair[1].version)
    {
        anyhow::bail!("two migrations numbered {}", pair[0].version);
    }
    Ok(Migrator::new(Listed(all)).await?)
}

/// Migrations already in memory, as a source for [`Migrator::new`].
#[derive(Debug)]
struct Listed(Vec<Migration>);

impl<'s> MigrationSource<'s> for Listed {
    fn resolve(self) -> futures::future::BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move { Ok(self.0) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database whose bus tables were made at start-up before they were migrations (the same
    /// statements, IF NOT EXISTS) migrates, and a second start finds nothing to do.
    #[tokio::test]
    async fn migrating_twice_and_over_tables_made_at_start_up_is_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("r.db").display().to_string();
        let db = Db::open(&url, "r").await.unwrap();
        db.write(|conn| {
            Box::pin(async move {
                conn.batch(
                    "CREATE TABLE inbox (event_id TEXT PRIMARY KEY, processed_at BIGINT NOT NULL)",
                )
                .await
            })
        })
        .await
        .unwrap();
        bus_only(&db).await.unwrap();
        bus_only(&db).await.unwrap();
        let mut conn = db.read().await.unwrap();
        let tables: Option<i64> = conn
            .scalar(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'
                 AND name IN ('outbox', 'aggregate_sequences', 'inbox')",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(tables, Some(3));
    }

    #[tokio::test]
    async fn a_version_used_twice_is_refused() {
        let twice = joined(&SQLITE, &SQLITE).await;
        assert!(twice.is_err());
    }
}

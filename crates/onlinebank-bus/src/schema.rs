//! The bus's tables in each role's own database (the outbox, the per-aggregate sequences, the
//! inbox and, on PostgreSQL, the outbox's NOTIFY trigger), kept as migrations in
//! `migrations/{sqlite,postgres}` and applied together with the role's own: one ordered set, so
//! the role's migration record holds both and finds no version it does not know.

use onlinebank_core::db::{Db, Migrations};

/// The bus's migrations alone.
pub fn migrations() -> Migrations {
    onlinebank_core::expand_migrations![(1001, "outbox inbox", "1001_outbox_inbox.sql")]
}

/// A role's migrations and the bus's with them (the bus's are numbered from 1001).
pub fn with_bus(role: &Migrations) -> anyhow::Result<Migrations> {
    role.joined(&migrations())
}

/// Applies a role's migrations and the bus's with them.
pub async fn migrate(db: &Db, role: &Migrations) -> anyhow::Result<()> {
    db.migrate(&with_bus(role)?).await
}

/// The bus's tables alone (for the bus's own tests).
#[cfg(test)]
pub async fn bus_only(db: &Db) -> anyhow::Result<()> {
    migrate(db, &Migrations::default()).await
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
        let twice = migrations().joined(&migrations());
        assert!(twice.is_err());
    }
}

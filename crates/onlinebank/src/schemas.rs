//! Each role's database schema, checked before a process starts anything: a data dir whose
//! schema this binary cannot run on (a newer release's migration not marked compatible) is
//! refused with both releases named, and nothing in it changes (see
//! [`onlinebank_core::db::migrate`]).

use onlinebank_core::db::{Engine, Migrations};
use onlinebank_core::{Role, Settings};

/// The migrations of `role`'s database (with the bus's tables where it publishes or consumes),
/// or None for a role without a database.
fn migrations_of(role: Role) -> anyhow::Result<Option<Migrations>> {
    let with_bus = onlinebank_bus::schema::with_bus;
    Ok(match role {
        Role::Gateway => None,
        Role::Auth => Some(onlinebank_auth::migrations()),
        Role::Account => Some(with_bus(&onlinebank_account::migrations())?),
        Role::History => Some(with_bus(&onlinebank_history::migrations())?),
        Role::Mypage => Some(with_bus(&onlinebank_mypage::migrations())?),
        Role::Request => Some(with_bus(&onlinebank_request::migrations())?),
    })
}

/// Refuses to start when one of `roles`' SQLite databases has a schema this binary cannot run
/// on. PostgreSQL schemas are checked by each role inside its migration transaction.
pub async fn check_before_start(settings: &Settings, roles: &[Role]) -> anyhow::Result<()> {
    if settings.database.is_some() {
        return Ok(());
    }
    for &role in roles {
        let Some(migrations) = migrations_of(role)? else {
            continue;
        };
        let path = settings.data_dir.join(format!("{role}.db"));
        let known = migrations.for_engine(Engine::Sqlite);
        onlinebank_core::db::migrate::check_sqlite_file(&path, known).await?;
    }
    Ok(())
}

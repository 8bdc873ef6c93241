//! What every role gets when it is built (settings, background tasks, shutdown, the roles in the
//! same process) and what it gives back.

use crate::db::{Db, Migrations};
use crate::role::{Role, RoleMap};
use crate::settings::Settings;
use anyhow::Context as _;
use std::fmt;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What building a role gives back: its routes and its database (for readiness).
#[derive(Debug)]
pub struct RoleParts {
    pub router: axum::Router,
    pub db: Option<crate::db::Db>,
}

/// What every role gets when it is built, in `up` and in `serve` alike.
#[derive(Debug, Clone)]
pub struct RoleContext {
    pub settings: Arc<Settings>,
    /// Background work (relays, consumers); the process waits for it on shutdown.
    pub tasks: TaskTracker,
    /// Fires once when the process starts shutting down.
    pub shutdown: CancellationToken,
    /// The roles running in this process (`up`): calls to them skip the socket.
    pub local: LocalRoles,
}

/// The routers of the roles that run in this process, so that a call from one role to another
/// in the same process (`up`) is handed to the peer's router directly: the same HTTP request
/// and answer, the same handlers, middleware, load shedding and timeouts, without a loopback
/// connection. Empty in `serve`, where every peer is another process.
#[derive(Clone, Default)]
pub struct LocalRoles {
    routers: Arc<RoleMap<std::sync::OnceLock<axum::Router>>>,
}

impl fmt::Debug for LocalRoles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local: Vec<&str> = Role::ALL
            .into_iter()
            .filter(|role| self.get(*role).is_some())
            .map(Role::as_str)
            .collect();
        write!(f, "LocalRoles({local:?})")
    }
}

impl LocalRoles {
    /// Registers `role`'s router (once; later registrations are ignored).
    pub fn register(&self, role: Role, router: axum::Router) {
        let _ = self.routers.get(role).set(router);
    }

    /// The router of `role`, if it runs in this process.
    pub fn get(&self, role: Role) -> Option<axum::Router> {
        self.routers.get(role).get().cloned()
    }
}

impl RoleContext {
    /// Opens `role`'s database (its own file, or its own schema of the shared PostgreSQL
    /// database) and applies `migrations` to it.
    pub async fn open_db(&self, role: Role, migrations: &Migrations) -> anyhow::Result<Db> {
        let db = Db::open(&self.settings.database_url(role), role.as_str()).await?;
        db.migrate(migrations)
            .await
            .with_context(|| format!("migrating the {role} database"))?;
        Ok(db)
    }

    /// `routes` behind the internal token: only the bank's own roles may call them.
    pub fn internal<S: Clone + Send + Sync + 'static>(
        &self,
        routes: axum::Router<S>,
    ) -> axum::Router<S> {
        routes.route_layer(axum::middleware::from_fn_with_state(
            Arc::<str>::from(self.settings.internal_token()),
            crate::http::require_internal,
        ))
    }
}

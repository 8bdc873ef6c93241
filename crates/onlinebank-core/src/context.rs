//! What every role gets when it is built (settings, background tasks, shutdown, the roles in the
//! same process) and what it gives back.

use crate::db::{Db, Migrations};
use crate::peer::{LocalRoles, PeerClient};
use crate::role::Role;
use crate::settings::Settings;
use anyhow::Context as _;
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

    /// A client for calls to other roles, each call bounded by `timeout`, with the readiness of
    /// roles with several instances watched in the background.
    pub fn peers(&self, timeout: std::time::Duration) -> anyhow::Result<Arc<PeerClient>> {
        let http = crate::http::peer_client(timeout)?;
        let peers = Arc::new(PeerClient::new(
            http,
            &self.settings.peers,
            self.local.clone(),
        ));
        self.tasks
            .spawn(peers.clone().watch_readiness(self.shutdown.clone()));
        Ok(peers)
    }
}

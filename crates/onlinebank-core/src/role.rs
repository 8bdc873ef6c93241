//! The six roles one `onlinebank` executable can run.

use crate::peer::RoleMap;
use crate::settings::Settings;
use std::fmt;
use std::str::FromStr;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Gateway,
    Request,
    Auth,
    Account,
    History,
    Mypage,
}

impl Role {
    /// Every role, in start-up order: the ones others call come first.
    pub const ALL: [Role; 6] = [
        Role::Auth,
        Role::Account,
        Role::History,
        Role::Mypage,
        Role::Request,
        Role::Gateway,
    ];

    /// The role's position in [`Role::ALL`].
    pub fn index(self) -> usize {
        match self {
            Role::Auth => 0,
            Role::Account => 1,
            Role::History => 2,
            Role::Mypage => 3,
            Role::Request => 4,
            Role::Gateway => 5,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Request => "request",
            Role::Auth => "auth",
            Role::Account => "account",
            Role::History => "history",
            Role::Mypage => "mypage",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == raw)
            .ok_or_else(|| {
                format!("unknown role {raw:?}: expected gateway, request, auth, account, history or mypage")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_from_their_names() {
        for (index, role) in Role::ALL.into_iter().enumerate() {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(role.index(), index);
        }
        assert!("bank".parse::<Role>().is_err());
    }
}

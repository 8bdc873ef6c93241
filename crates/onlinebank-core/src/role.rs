//! The six roles one `onlinebank` executable can run.

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
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("bank".parse::<Role>().is_err());
    }
}

//! The six roles one `onlinebank` executable can run.

use std::fmt;
use std::str::FromStr;

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

/// One value per role.
#[derive(Debug, Clone, Default)]
pub struct RoleMap<T>([T; 6]);

impl<T> RoleMap<T> {
    pub fn from_fn(mut make: impl FnMut(Role) -> T) -> Self {
        Self(std::array::from_fn(|index| make(Role::ALL[index])))
    }

    pub fn get(&self, role: Role) -> &T {
        &self.0[role.index()]
    }

    pub fn get_mut(&mut self, role: Role) -> &mut T {
        &mut self.0[role.index()]
    }

    pub fn iter(&self) -> impl Iterator<Item = (Role, &T)> {
        Role::ALL.into_iter().zip(self.0.iter())
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

    #[test]
    fn a_role_map_holds_one_value_per_role() {
        let map = RoleMap::from_fn(|role| role.as_str().len());
        for role in Role::ALL {
            assert_eq!(*map.get(role), role.as_str().len());
        }
        assert_eq!(map.iter().count(), 6);
    }
}

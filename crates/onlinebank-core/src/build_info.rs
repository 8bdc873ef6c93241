//! What runs: the build (version, git commit, linked SQLite, cargo profile) and the process (its
//! roles, when it started). One struct holds the build's facts, so `onlinebank --version`, the
//! admin listener's `GET /info` and the `onlinebank_build_info` gauge of `/metrics` cannot disagree.
//!
//! The commit and the profile are known only to the binary crate's build script, which hands
//! them to the compiler as environment variables; [`this_build!`](crate::this_build) reads them where it is expanded,
//! in the binary crate, the way `clap::crate_version!` reads the package version.

use crate::role::Role;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

/// The facts of one build of the executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BuildInfo {
    /// The package version (the workspace's `Cargo.toml`).
    pub version: &'static str,
    /// The full git commit the binary was built from, or `unknown` outside a checkout.
    pub commit: &'static str,
    /// The version of the SQLite linked into the binary.
    pub sqlite: &'static str,
    /// The cargo profile it was built with: `release` or `debug`.
    pub profile: &'static str,
}

impl BuildInfo {
    /// The build of `version` from `commit` with `profile`, and the SQLite linked into it.
    pub fn new(version: &'static str, commit: &'static str, profile: &'static str) -> Self {
        Self {
            version,
            commit,
            sqlite: rusqlite::version(),
            profile,
        }
    }

    /// What `onlinebank --version` prints after the program's name.
    pub fn version_line(&self) -> String {
        format!(
            "{} (commit {}, sqlite {}, {})",
            self.version, self.commit, self.sqlite, self.profile
        )
    }
}

/// The [`BuildInfo`] of the crate this is expanded in, which must have a build script that sets
/// `ONLINEBANK_COMMIT` and `ONLINEBANK_PROFILE` (the `onlinebank` binary's does).
#[macro_export]
macro_rules! this_build {
    () => {
        $crate::build_info::BuildInfo::new(
            env!("CARGO_PKG_VERSION"),
            env!("ONLINEBANK_COMMIT"),
            env!("ONLINEBANK_PROFILE"),
        )
    };
}

/// What one process runs: the body of the admin listener's `GET /info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessInfo {
    /// The build the process runs.
    #[serde(flatten)]
    pub build: BuildInfo,
    /// The roles this process serves: all six in `up`, one in `serve`.
    #[serde(serialize_with = "role_names")]
    pub roles: Vec<Role>,
    /// When the process started.
    #[serde(serialize_with = "rfc3339")]
    pub started_at: DateTime<Utc>,
}

impl ProcessInfo {
    /// A process of `build` serving `roles`, starting now.
    pub fn starting_now(build: BuildInfo, roles: &[Role]) -> Self {
        Self {
            build,
            roles: roles.to_vec(),
            started_at: Utc::now(),
        }
    }

    /// The roles as one label value: `auth,account,...`.
    pub fn roles_label(&self) -> String {
        let names: Vec<&str> = self.roles.iter().map(|role| role.as_str()).collect();
        names.join(",")
    }
}

/// `GET /info`: what the process runs, as JSON.
pub fn router(info: ProcessInfo) -> Router {
    Router::new().route(
        "/info",
        get(move || {
            let info = info.clone();
            async move { Json(info) }
        }),
    )
}

fn role_names<S: Serializer>(roles: &[Role], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(roles.iter().map(|role| role.as_str()))
}

/// The wire's instants: RFC 3339 UTC with milliseconds, as [`crate::time`] writes them.
fn rfc3339<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&crate::time::ms_to_rfc3339(at.timestamp_millis()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use chrono::TimeZone;

    fn a_build() -> BuildInfo {
        BuildInfo::new(
            "1.2.3",
            "6af278e1f2c3b4a5d6e7f8091a2b3c4d5e6f7081",
            "release",
        )
    }

    #[test]
    fn a_build_names_the_linked_sqlite() {
        let build = a_build();
        assert_eq!(build.sqlite, rusqlite::version());
        assert!(build.sqlite.starts_with("3."), "{}", build.sqlite);
    }

    #[test]
    fn the_version_line_names_version_commit_sqlite_and_profile() {
        let build = a_build();
        assert_eq!(
            build.version_line(),
            format!(
                "1.2.3 (commit 6af278e1f2c3b4a5d6e7f8091a2b3c4d5e6f7081, sqlite {}, release)",
                build.sqlite
            )
        );
    }

    #[test]
    fn process_info_is_the_json_of_get_info() {
        let info = ProcessInfo {
            build: a_build(),
            roles: vec![Role::Auth, Role::Gateway],
            started_at: Utc.timestamp_millis_opt(1_500).single().unwrap(),
        };
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "version": "1.2.3",
                "commit": "6af278e1f2c3b4a5d6e7f8091a2b3c4d5e6f7081",
                "sqlite": rusqlite::version(),
                "profile": "release",
                "roles": ["auth", "gateway"],
                "startedAt": "1970-01-01T00:00:01.500Z",
            })
        );
        assert_eq!(info.roles_label(), "auth,gateway");
    }

    #[test]
    fn a_process_starting_now_serves_the_roles_it_was_given() {
        let before = Utc::now();
        let info = ProcessInfo::starting_now(a_build(), &[Role::Account]);
        assert_eq!(info.roles, vec![Role::Account]);
        assert!(info.started_at >= before && info.started_at <= Utc::now());
    }
}

//! The whole bank in one process: `onlinebank up` on free ports with its own data directory.

use super::*;
use std::collections::HashMap;
use std::path::Path;

/// `onlinebank up` on free ports with its own data directory.
pub struct TestBank {
    pub api: Api,
    pub ops: Ops,
    proc: Proc,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    // Declared last: the directory goes after the process is dead.
    pub dir: tempfile::TempDir,
}

impl std::ops::Deref for TestBank {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl TestBank {
    pub async fn start() -> TestBank {
        Self::start_with(&[]).await
    }

    /// Starts with extra flags, e.g. `["--lockout-secs", "2"]`.
    pub async fn start_with(extra: &[&str]) -> TestBank {
        Self::start_with_env(extra, &[]).await
    }

    /// Starts with extra flags and environment variables (e.g. `ONLINEBANK_MAX_AMOUNT`).
    pub async fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> TestBank {
        Self::start_in(tempfile::tempdir().expect("tempdir"), extra, env).await
    }

    /// Starts with its data directory at `dir` (e.g. on a filesystem of the test's own).
    pub async fn start_in(
        dir: tempfile::TempDir,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> TestBank {
        let extra = strings(extra);
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let (proc, gateway, roles) = Self::launch(dir.path(), &extra, &env).await;
        let admin = Self::admin_of(&roles);
        let ops = Ops::new(roles, admin, internal_token(dir.path()));
        TestBank {
            api: Api::new(&gateway),
            ops,
            proc,
            extra,
            env,
            dir,
        }
    }

    async fn launch(
        dir: &Path,
        extra: &[String],
        env: &[(String, String)],
    ) -> (Proc, String, HashMap<String, String>) {
        let data_dir = dir.display().to_string();
        let mut args = strings(&["up", "--data-dir", &data_dir, "--port", "0"]);
        args.extend_from_slice(extra);
        let mut roles = HashMap::new();
        let mut gateway = None;
        let proc = Proc::start("up", args, env, |line| {
            if let Some((role, url)) = listening_line(line) {
                roles.insert(role, url);
            }
            if let Some(url) = ready_line(line) {
                gateway = Some(url);
                return true;
            }
            false
        })
        .await
        .unwrap_or_else(|error| panic!("{error}"));
        let gateway = gateway.expect("ready line");
        roles
            .entry("gateway".to_owned())
            .or_insert_with(|| gateway.clone());
        for role in ROLES.into_iter().chain(["admin"]) {
            assert!(
                roles.contains_key(role),
                "`up` did not print where {role} listens: {roles:?}"
            );
        }
        (proc, gateway, roles)
    }

    /// `up` has one admin listener for every role.
    fn admin_of(roles: &HashMap<String, String>) -> HashMap<String, String> {
        ROLES
            .iter()
            .map(|role| ((*role).to_owned(), roles["admin"].clone()))
            .collect()
    }

    /// SIGKILLs the bank and starts it again on the same data directory (new ports).
    pub async fn restart(&mut self) {
        self.proc.kill();
        let (proc, gateway, roles) = Self::launch(self.dir.path(), &self.extra, &self.env).await;
        self.proc = proc;
        self.api.base = gateway;
        self.ops.admin = Self::admin_of(&roles);
        self.ops.urls = roles;
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// The bank's resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.proc.rss_kib()
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

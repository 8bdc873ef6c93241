//! One process per role (`onlinebank serve <role>`), several instances of a role if asked,
//! each restartable on its port.

use super::*;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

/// `onlinebank serve <role>` once per role, sharing one data directory.
pub struct Cluster {
    pub api: Api,
    pub ops: Ops,
    procs: BTreeMap<String, Proc>,
    // Declared last: the directory goes after the processes are dead.
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Cluster {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Cluster {
    pub async fn start() -> Cluster {
        Self::start_with(&[]).await
    }

    /// Starts every role with the same extra flags (the common knobs).
    pub async fn start_with(knobs: &[&str]) -> Cluster {
        Self::start_scaled(knobs, 1).await
    }

    /// Like `start_with`, with `requests` instances of the request role sharing the data
    /// directory, named `request`, `request#2`, ...; the gateway fronts all of them
    /// (`--request-url A,B,...`).
    pub async fn start_scaled(knobs: &[&str], requests: usize) -> Cluster {
        Self::start_layout(knobs, |role| if role == "request" { requests } else { 1 }).await
    }

    /// Starts `instances(role)` processes of every role (at least one), named `role`,
    /// `role#2`, ...; peers and the gateway get every instance of the roles they call.
    pub async fn start_layout(knobs: &[&str], instances: impl Fn(&str) -> usize) -> Cluster {
        let knobs = strings(knobs);
        Self::start_mixed(|_| knobs.clone(), instances).await
    }

    /// Like `start_layout`, with each role's own knobs (e.g. a database per role).
    pub async fn start_mixed(
        knobs_of: impl Fn(&str) -> Vec<String>,
        instances: impl Fn(&str) -> usize,
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut urls: HashMap<String, String> = HashMap::new();
        let mut admin: HashMap<String, String> = HashMap::new();
        let mut procs = BTreeMap::new();
        for role in ROLES {
            let instances = instances(role).max(1);
            for instance in 1..=instances {
                let name = if instance == 1 {
                    role.to_owned()
                } else {
                    format!("{role}#{instance}")
                };
                let mut args = vec!["serve".to_owned(), role.to_owned()];
                args.extend(strings(&["--listen", "127.0.0.1:0", "--data-dir"]));
                args.push(dir.path().display().to_string());
                let peers: &[&str] = match role {
                    "request" => &["auth"],
                    "gateway" => &["request", "auth", "mypage", "history", "account"],
                    _ => &[],
                };
                for peer in peers {
                    let mut of_peer: Vec<(&String, &String)> = urls
                        .iter()
                        .filter(|(name, _)| role_of(name) == *peer)
                        .collect();
                    of_peer.sort();
                    args.push(format!("--{peer}-url"));
                    args.push(
                        of_peer
                            .iter()
                            .map(|(_, url)| url.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                    );
                }
                args.extend(knobs_of(role));
                let (proc, url, admin_url) = Self::launch(&name, args).await;
                urls.insert(name.clone(), url);
                admin.insert(name.clone(), admin_url);
                procs.insert(name, proc);
            }
        }
        let ops = Ops::new(urls.clone(), admin, internal_token(dir.path()));
        Cluster {
            api: Api::new(&urls["gateway"]),
            ops,
            procs,
            _dir: dir,
        }
    }

    async fn launch(name: &str, mut args: Vec<String>) -> (Proc, String, String) {
        let role = role_of(name);
        let (mut url, mut admin) = (None, None);
        let proc = Proc::start(name, args.clone(), &[], |line| {
            started_urls(line, role, &mut url, &mut admin)
        })
        .await
        .unwrap_or_else(|error| panic!("{error}"));
        let (url, admin) = (url.expect("listening line"), admin.expect("admin line"));
        // Pin the port so a restart comes back where its peers expect it.
        if let Some(at) = args.iter().position(|arg| arg == "--listen") {
            args[at + 1] = format!("127.0.0.1:{}", port_of(&url));
        }
        let mut proc = proc;
        proc.args = args;
        (proc, url, admin)
    }

    /// The data directory every process shares (SQLite files, the embedded log, the secret).
    pub fn data_dir(&self) -> &Path {
        self._dir.path()
    }

    /// The names of every process (`request`, `request#2`, ...).
    pub fn names(&self) -> Vec<String> {
        self.procs.keys().cloned().collect()
    }

    /// The URL of every instance of `role`.
    pub fn urls_of(&self, role: &str) -> Vec<String> {
        let mut urls: Vec<String> = self
            .ops
            .urls
            .iter()
            .filter(|(name, _)| role_of(name) == role)
            .map(|(_, url)| url.clone())
            .collect();
        urls.sort();
        urls
    }

    fn proc(&self, role: &str) -> &Proc {
        self.procs
            .get(role)
            .unwrap_or_else(|| panic!("no role {role}"))
    }

    fn proc_mut(&mut self, role: &str) -> &mut Proc {
        self.procs
            .get_mut(role)
            .unwrap_or_else(|| panic!("no role {role}"))
    }

    /// `kill -9` one role's process.
    pub fn kill(&mut self, role: &str) {
        self.proc_mut(role).kill();
    }

    /// Sends a signal (`STOP`, `CONT`) to one role's process.
    pub fn signal(&self, role: &str, signal: &str) {
        self.proc(role).signal(signal);
    }

    /// SIGTERM to one role's process; waits (at most `timeout`) for it to exit and returns how
    /// it exited (`None`: still running at the deadline).
    pub async fn terminate(
        &mut self,
        role: &str,
        timeout: Duration,
    ) -> Option<std::process::ExitStatus> {
        self.proc_mut(role).terminate(timeout).await
    }

    /// Waits (at most `timeout`) for one role's process to exit (after a `signal("TERM")`).
    pub async fn wait_exit(
        &mut self,
        role: &str,
        timeout: Duration,
    ) -> Option<std::process::ExitStatus> {
        self.proc_mut(role).wait_exit(timeout).await
    }

    /// Everything one role's process logged so far.
    pub fn log(&self, role: &str) -> String {
        self.proc(role).log()
    }

    /// Starts a killed (or terminated) role again on its previous port (retrying while the port
    /// is still held). A role started by `start_scaled` is named `request#2` and so on.
    pub async fn restart(&mut self, role: &str) {
        let old = self.proc_mut(role);
        old.kill();
        let args = old.args.clone();
        let name = role;
        let role = role_of(name);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (mut url, mut admin) = (None, None);
            let started = Proc::start(name, args.clone(), &[], |line| {
                started_urls(line, role, &mut url, &mut admin)
            })
            .await;
            match started {
                Ok(mut proc) => {
                    proc.args = args;
                    let url = url.expect("listening line");
                    assert_eq!(
                        url, self.ops.urls[name],
                        "{name} came back on another address"
                    );
                    self.ops
                        .admin
                        .insert(name.to_owned(), admin.expect("admin line"));
                    self.procs.insert(name.to_owned(), proc);
                    return;
                }
                Err(error) if Instant::now() < deadline && error.contains("in use") => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => panic!("restarting {name}: {error}"),
            }
        }
    }
}

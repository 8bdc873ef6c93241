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
            for instance in 1..=instances(role).max(1) {
                let name = if instance == 1 {
                    role.to_owned()
                } else {
                    format!("{role}#{instance}")
                };
                let mut args = strings(&["serve", role, "--listen", "127.0.0.1:0", "--data-dir"]);
                args.push(dir.path().display().to_string());
                let peers: &[&str] = match role {
                    "request" => &["auth"],
                    "gateway" => &["request", "auth", "mypage", "history", "account"],
                    _ => &[],
                };
                for peer in peers {
                    args.push(format!("--{peer}-url"));
                    args.push(urls_of_role(&urls, peer).join(","));
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
        let (mut proc, url, admin) = Self::spawn(name, &args)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        // Pin the port so a restart comes back where its peers expect it.
        if let Some(at) = args.iter().position(|arg| arg == "--listen") {
            args[at + 1] = format!("127.0.0.1:{}", port_of(&url));
        }
        proc.args = args;
        (proc, url, admin)
    }

    /// Starts process `name` and reads where it listens: the process, its URL, its admin URL.
    async fn spawn(name: &str, args: &[String]) -> Result<(Proc, String, String), String> {
        let role = role_of(name);
        let (mut url, mut admin) = (None, None);
        let proc = Proc::start(name, args.to_vec(), &[], |line| {
            started_urls(line, role, &mut url, &mut admin)
        })
        .await?;
        Ok((
            proc,
            url.expect("listening line"),
            admin.expect("admin line"),
        ))
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
        urls_of_role(&self.ops.urls, role)
    }

    /// Starts a killed (or terminated) role again on its previous port (retrying while the port
    /// is still held). A role started by `start_scaled` is named `request#2` and so on.
    pub async fn restart(&mut self, name: &str) {
        let old = &mut self[name];
        old.kill();
        let args = old.args.clone();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match Self::spawn(name, &args).await {
                Ok((proc, url, admin)) => {
                    assert_eq!(
                        url, self.ops.urls[name],
                        "{name} came back on another address"
                    );
                    self.ops.admin.insert(name.to_owned(), admin);
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

/// A process by name (`request`, `request#2`, ...): `cluster["auth"].kill()`,
/// `cluster["auth"].signal("STOP")`, `cluster["request"].log()`.
impl std::ops::Index<&str> for Cluster {
    type Output = Proc;
    fn index(&self, name: &str) -> &Proc {
        self.procs
            .get(name)
            .unwrap_or_else(|| panic!("no process {name}"))
    }
}

impl std::ops::IndexMut<&str> for Cluster {
    fn index_mut(&mut self, name: &str) -> &mut Proc {
        self.procs
            .get_mut(name)
            .unwrap_or_else(|| panic!("no process {name}"))
    }
}

/// The URLs of every instance of `role` in `urls` (by process name), in name order.
fn urls_of_role(urls: &HashMap<String, String>, role: &str) -> Vec<String> {
    let mut of_role: Vec<(&String, &String)> = urls
        .iter()
        .filter(|(name, _)| role_of(name) == role)
        .collect();
    of_role.sort();
    of_role.into_iter().map(|(_, url)| url.clone()).collect()
}

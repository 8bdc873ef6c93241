//! What every end-to-end test stands on: the real `onlinebank` binary started on free ports with a
//! fresh data directory (`TestBank` for `up`, `Cluster` for one process per role), an HTTP client
//! with one helper per flow, and poll-with-deadline helpers for eventually consistent reads.
//!
//! Every child process is killed when its owner drops, also when the test panics; a panicking
//! test prints the tail of each process's log.

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_onlinebank");
/// How long a process may take to print its ready line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Default deadline for eventually consistent reads.
pub const SETTLE: Duration = Duration::from_secs(20);
/// How much of a process's log is kept in memory.
const LOG_CAP: usize = 8 * 1024 * 1024;

/// The default per-role start order for a cluster.
pub const ROLES: [&str; 6] = ["auth", "account", "history", "mypage", "request", "gateway"];

// ---------------------------------------------------------------------------------------------
// processes

/// A running child process with its captured output.
pub struct Proc {
    pub name: String,
    /// Arguments that start it again (with its first port pinned).
    pub args: Vec<String>,
    child: Option<Child>,
    log: Arc<Mutex<Vec<u8>>>,
}

impl Proc {
    /// Starts the binary and waits until `ready` has seen every line it needs (it returns true
    /// when done). Fails with the process's log if it exits or stays silent too long.
    pub async fn start(
        name: &str,
        args: Vec<String>,
        env: &[(String, String)],
        mut ready: impl FnMut(&str) -> bool,
    ) -> Result<Proc, String> {
        // `NOFILE=<n>` in `env` starts the binary under `prlimit --nofile=n:n` (the binary itself
        // never reads it): how the doors' tests give a process a small open-files limit.
        let nofile = env
            .iter()
            .find(|(name, _)| name == "NOFILE")
            .map(|(_, value)| value.clone());
        let mut command = match &nofile {
            Some(limit) => {
                let mut command = Command::new("prlimit");
                command.arg(format!("--nofile={limit}:{limit}")).arg(BIN);
                command
            }
            None => Command::new(BIN),
        };
        let mut child = command
            .args(&args)
            // Functional tests run many banks at once on a small machine: a generous step-up
            // timeout keeps a slow scheduler from turning into `service_busy`. Tests of the
            // timeout itself pass `--step-up-timeout-ms` (flags win over the environment).
            .env("ONLINEBANK_STEP_UP_TIMEOUT_MS", "3000")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "RUST_LOG",
                std::env::var("ONLINEBANK_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("spawning {BIN} {args:?}: {error}"))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (lines_tx, mut lines) = mpsc::unbounded_channel::<String>();
        if let Some(stdout) = child.stdout.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    append_log(&log, format!("[stdout] {line}\n").as_bytes());
                    let _ = lines_tx.send(line);
                }
            });
        }
        if let Some(mut stderr) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut buffer = [0u8; 16 * 1024];
                loop {
                    match stderr.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(read) => append_log(&log, &buffer[..read]),
                    }
                }
            });
        }
        let mut proc = Proc {
            name: name.to_owned(),
            args,
            child: Some(child),
            log,
        };
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, lines.recv()).await {
                Ok(Some(line)) => {
                    if ready(line.trim()) {
                        return Ok(proc);
                    }
                }
                Ok(None) => {
                    // stdout closed: the process exited (or is about to).
                    let status = proc.child.as_mut().and_then(|c| c.wait().ok());
                    // Give the stderr thread a moment to copy the last words.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    return Err(format!(
                        "{name} exited before it was ready ({status:?}); args {:?}\n--- log ---\n{}",
                        proc.args,
                        proc.log_tail(20_000)
                    ));
                }
                Err(_) => {
                    let log = proc.log_tail(20_000);
                    proc.kill();
                    return Err(format!(
                        "{name} not ready within {START_TIMEOUT:?}; args {:?}\n--- log ---\n{log}",
                        proc.args
                    ));
                }
            }
        }
    }

    /// Sends a signal by name (`STOP`, `CONT`) with the system's `kill`.
    pub fn signal(&self, signal: &str) {
        let pid = self
            .child
            .as_ref()
            .map(Child::id)
            .expect("a running process");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Sends SIGTERM and waits (at most `timeout`) for the process to exit; `None` if it is
    /// still running then (it is left running: the caller decides).
    pub async fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.signal("TERM");
        self.wait_exit(timeout).await
    }

    /// Waits (at most `timeout`) for the process to exit and reaps it; `None` if it is still
    /// running then.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().expect("a running process");
            if let Some(status) = child.try_wait().expect("waiting for the process") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Everything the process wrote (stdout lines are tagged `[stdout]`).
    pub fn log(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&log).into_owned()
    }

    pub fn log_tail(&self, max: usize) -> String {
        let log = self.log();
        if log.len() <= max {
            return log;
        }
        let mut start = log.len() - max;
        while !log.is_char_boundary(start) {
            start += 1;
        }
        format!("...{}", &log[start..])
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "===== log of {} (tail) =====\n{}",
                self.name,
                self.log_tail(6_000)
            );
        }
    }
}

fn append_log(log: &Arc<Mutex<Vec<u8>>>, bytes: &[u8]) {
    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
    log.extend_from_slice(bytes);
    if log.len() > LOG_CAP {
        let cut = log.len() - LOG_CAP / 2;
        log.drain(..cut);
    }
}

/// Parses `onlinebank <role> listening on <url>`.
fn listening_line(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("onlinebank ")?;
    let (role, url) = rest.split_once(" listening on ")?;
    Some((
        role.trim().to_owned(),
        url.trim().trim_end_matches('/').to_owned(),
    ))
}

/// Takes a `serve` process's role and admin listening lines; true once both were seen.
fn started_urls(
    line: &str,
    role: &str,
    url: &mut Option<String>,
    admin: &mut Option<String>,
) -> bool {
    match listening_line(line) {
        Some((printed, printed_url)) if printed == role => *url = Some(printed_url),
        Some((printed, printed_url)) if printed == "admin" => *admin = Some(printed_url),
        _ => {}
    }
    url.is_some() && admin.is_some()
}

/// Parses `onlinebank ready at <url>`.
fn ready_line(line: &str) -> Option<String> {
    let url = line.strip_prefix("onlinebank ready at ")?;
    Some(url.trim().trim_end_matches('/').to_owned())
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|port| port.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

/// The role of a cluster process name: `request#2` is an instance of `request`.
fn role_of(name: &str) -> &str {
    name.split('#').next().unwrap_or(name)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// The value of the `x-onlinebank-internal` header for a data directory.
pub fn internal_token(data_dir: &Path) -> String {
    let secret = onlinebank_core::secret::MasterSecret::load_or_create(data_dir)
        .expect("reading the bank's secret.key");
    secret
        .derive("onlinebank internal v1")
        .0
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// the whole bank in one process

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
        let mut args = strings(&["up", "--data-dir"]);
        args.push(dir.display().to_string());
        args.extend(strings(&["--port", "0"]));
        args.extend(extra.iter().cloned());
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

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

// ---------------------------------------------------------------------------------------------
// one process per role

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

    /// `kill -9` one role's process.
    pub fn kill(&mut self, role: &str) {
        self.procs
            .get_mut(role)
            .unwrap_or_else(|| panic!("no role {role}"))
            .kill();
    }

    /// Sends a signal (`STOP`, `CONT`) to one role's process.
    pub fn signal(&self, role: &str, signal: &str) {
        self.procs
            .get(role)
            .unwrap_or_else(|| panic!("no role {role}"))
            .signal(signal);
    }

    /// SIGTERM to one role's process; waits (at most `timeout`) for it to exit and returns how
    /// it exited (`None`: still running at the deadline).
    pub async fn terminate(
        &mut self,
        role: &str,
        timeout: Duration,
    ) -> Option<std::process::ExitStatus> {
        self.procs
            .get_mut(role)
            .unwrap_or_else(|| panic!("no role {role}"))
            .terminate(timeout)
            .await
    }

    /// Waits (at most `timeout`) for one role's process to exit (after a `signal("TERM")`).
    pub async fn wait_exit(
        &mut self,
        role: &str,
        timeout: Duration,
    ) -> Option<std::process::ExitStatus> {
        self.procs
            .get_mut(role)
            .unwrap_or_else(|| panic!("no role {role}"))
            .wait_exit(timeout)
            .await
    }

    /// Everything one role's process logged so far.
    pub fn log(&self, role: &str) -> String {
        self.procs
            .get(role)
            .unwrap_or_else(|| panic!("no role {role}"))
            .log()
    }

    /// Starts a killed (or terminated) role again on its previous port (retrying while the port
    /// is still held). A role started by `start_scaled` is named `request#2` and so on.
    pub async fn restart(&mut self, role: &str) {
        let old = self
            .procs
            .get_mut(role)
            .unwrap_or_else(|| panic!("no role {role}"));
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

// ---------------------------------------------------------------------------------------------
// write operations whose outcome a client must learn, also across crashes

/// How long a client waits for one answer.
pub const OP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub enum Answer {
    /// 200 completed: acknowledged.
    Completed { id: String, balance: i64 },
    /// A definitive refusal (4xx) with its code; nothing applied.
    Refused { code: String, id: Option<String> },
    /// 202: the request exists, outcome later.
    Pending { id: String },
    /// 5xx, transport error or timeout: the outcome is unknown.
    Unknown(String),
}

/// What an answer to `POST /api/v1/requests` tells the client about its operation.
pub fn classify(result: Result<Reply, String>) -> Answer {
    let reply = match result {
        Ok(reply) => reply,
        Err(error) => return Answer::Unknown(error),
    };
    let id = reply.body["requestId"].as_str().map(str::to_owned);
    match reply.status {
        200 if reply.body["status"] == "completed" => Answer::Completed {
            id: id.unwrap_or_else(|| panic!("completed without requestId: {}", reply.text)),
            balance: reply.body["balance"]
                .as_i64()
                .unwrap_or_else(|| panic!("completed without balance: {}", reply.text)),
        },
        202 => Answer::Pending {
            id: id.unwrap_or_else(|| panic!("202 without requestId: {}", reply.text)),
        },
        // "In flight" is not an outcome: resolve it later like an unknown one.
        409 if reply.body["error"]["code"] == "idempotency_key_in_flight" => {
            Answer::Unknown("idempotency_key_in_flight".into())
        }
        400..=499 => Answer::Refused {
            code: reply.body["error"]["code"]
                .as_str()
                .unwrap_or("?")
                .to_owned(),
            id,
        },
        status => Answer::Unknown(format!("{status} {}", reply.text)),
    }
}

/// Sends a write with its Idempotency-Key and classifies the answer (a timeout is unknown).
pub async fn send(api: &Api, token: &str, key: &str, body: Value) -> Answer {
    let sent = api
        .post_req("/api/v1/requests")
        .bearer(token)
        .header("Idempotency-Key", key)
        .json(body)
        .try_send();
    match tokio::time::timeout(OP_TIMEOUT, sent).await {
        Ok(result) => classify(result),
        Err(_) => Answer::Unknown("client timeout".into()),
    }
}

// ---------------------------------------------------------------------------------------------
// distributed mode: the real PostgreSQL and Kafka that .ci/run (or dev/*.sh) started

/// A fresh PostgreSQL database and a Kafka namespace of their own for one test.
pub struct Distributed {
    pub database: String,
    pub bus: String,
}

impl Distributed {
    /// Reads `ONLINEBANK_TEST_POSTGRES` (a server URL) and `ONLINEBANK_TEST_KAFKA` (brokers),
    /// creates a database named after `name` plus a random suffix, and a bus URL with a
    /// namespace of the same name. Panics with instructions when the services are not given.
    pub async fn create(name: &str, partitions: u32) -> Distributed {
        let (Ok(server), Ok(kafka)) = (
            std::env::var("ONLINEBANK_TEST_POSTGRES"),
            std::env::var("ONLINEBANK_TEST_KAFKA"),
        ) else {
            panic!(
                "distributed-mode tests need a real PostgreSQL and Kafka: run ./.ci/run, or start \
                 them with dev/postgres.sh start and dev/kafka.sh start and set \
                 ONLINEBANK_TEST_POSTGRES=$(dev/postgres.sh url) ONLINEBANK_TEST_KAFKA=127.0.0.1:9092"
            )
        };
        let database = onlinebank_core::db::testing::fresh_postgres(name)
            .await
            .unwrap_or_else(|error| panic!("creating a database on {server}: {error:#}"));
        let unique = database.rsplit('/').next().unwrap_or(name).to_owned();
        Distributed {
            database,
            bus: format!("kafka://{kafka}?partitions={partitions}&namespace={unique}"),
        }
    }

    /// The knobs that put a role on these services.
    pub fn knobs(&self) -> Vec<String> {
        vec![
            "--database".into(),
            self.database.clone(),
            "--bus".into(),
            self.bus.clone(),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// operator view: the internal endpoints on each role's own port

/// One account as the account role, history and mypage see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub customer_id: String,
    pub balance: i64,
    pub status: String,
    pub version: i64,
}

/// Every store's view at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub accounts: BTreeMap<String, AccountRow>,
    pub ledger: BTreeMap<String, i64>,
    pub mypage: BTreeMap<String, AccountRow>,
    pub pending: i64,
}

impl Snapshot {
    /// Why this snapshot is not drained and consistent, if it is not.
    pub fn inconsistency(&self) -> Option<String> {
        if self.pending != 0 {
            return Some(format!("{} requests still pending", self.pending));
        }
        for (no, account) in &self.accounts {
            let ledger = self.ledger.get(no).copied().unwrap_or(0);
            if ledger != account.balance {
                return Some(format!(
                    "account {no}: balance {} but history ledger sum {ledger}",
                    account.balance
                ));
            }
            match self.mypage.get(no) {
                None => return Some(format!("account {no} missing from mypage")),
                Some(row) if row.balance != account.balance || row.version != account.version => {
                    return Some(format!(
                        "account {no}: account says {account:?}, mypage says {row:?}"
                    ))
                }
                Some(_) => {}
            }
        }
        for no in self.mypage.keys() {
            if !self.accounts.contains_key(no) {
                return Some(format!("mypage has {no} which the account role does not"));
            }
        }
        None
    }
}

/// The internal endpoints of each role, with the shared internal token.
#[derive(Clone)]
pub struct Ops {
    pub urls: HashMap<String, String>,
    /// Each process's admin listener (`/metrics`), by role or process name.
    pub admin: HashMap<String, String>,
    pub token: String,
    http: reqwest::Client,
}

impl Ops {
    fn new(urls: HashMap<String, String>, admin: HashMap<String, String>, token: String) -> Ops {
        Ops {
            urls,
            admin,
            token,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
        }
    }

    /// `GET` on a role's own port with the internal header.
    pub async fn internal(&self, role: &str, path: &str) -> Result<(u16, Value), String> {
        let url = format!("{}{}", self.urls[role], path);
        let response = self
            .http
            .get(&url)
            .header("x-onlinebank-internal", &self.token)
            .send()
            .await
            .map_err(|error| format!("GET {url}: {error}"))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// A role's own-port `GET` without the internal header.
    pub async fn plain(&self, role: &str, path: &str) -> Result<(u16, Value), String> {
        let url = format!("{}{}", self.urls[role], path);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// `GET /metrics` on the admin listener of a role's process: the Prometheus text and its
    /// content type.
    pub async fn metrics(&self, role: &str) -> Result<(String, String), String> {
        let url = format!("{}/metrics", self.admin[role]);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if response.status().as_u16() != 200 {
            return Err(format!("GET {url}: {}", response.status()));
        }
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response
            .text()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        Ok((text, content_type))
    }

    /// The sum of every series of `name` on a role whose labels include all of `labels`
    /// (`None`: no such series).
    pub async fn metric(
        &self,
        role: &str,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Result<Option<f64>, String> {
        let (text, _) = self.metrics(role).await?;
        Ok(metric_value(&text, name, labels))
    }

    async fn items(&self, role: &str, path: &str) -> Result<Vec<Value>, String> {
        let (status, body) = self.internal(role, path).await?;
        if status != 200 {
            return Err(format!("{role} {path}: {status} {body}"));
        }
        body["items"]
            .as_array()
            .cloned()
            .ok_or_else(|| format!("{role} {path}: no items in {body}"))
    }

    pub async fn snapshot(&self) -> Result<Snapshot, String> {
        let rows = |items: Vec<Value>| -> Result<BTreeMap<String, AccountRow>, String> {
            items
                .iter()
                .map(|item| {
                    let no = item["accountNo"]
                        .as_str()
                        .ok_or(format!("no accountNo: {item}"))?;
                    Ok((
                        no.to_owned(),
                        AccountRow {
                            customer_id: item["customerId"].as_str().unwrap_or_default().to_owned(),
                            balance: item["balance"]
                                .as_i64()
                                .ok_or(format!("no balance: {item}"))?,
                            status: item["status"].as_str().unwrap_or_default().to_owned(),
                            version: item["version"].as_i64().unwrap_or(-1),
                        },
                    ))
                })
                .collect()
        };
        let accounts = rows(self.items("account", "/internal/v1/accounts").await?)?;
        let mypage = rows(self.items("mypage", "/internal/v1/accounts").await?)?;
        let mut ledger = BTreeMap::new();
        for item in self.items("history", "/internal/v1/ledger").await? {
            let no = item["accountNo"]
                .as_str()
                .ok_or(format!("no accountNo: {item}"))?;
            let sum = item["sum"].as_i64().ok_or(format!("no sum: {item}"))?;
            ledger.insert(no.to_owned(), sum);
        }
        let (status, body) = self
            .internal("request", "/internal/v1/requests/pending")
            .await?;
        if status != 200 {
            return Err(format!("request pending: {status} {body}"));
        }
        let pending = body["count"].as_i64().ok_or(format!("no count: {body}"))?;
        Ok(Snapshot {
            accounts,
            ledger,
            mypage,
            pending,
        })
    }

    /// Polls until nothing is pending and account == history == mypage for every account.
    pub async fn drained(&self, timeout: Duration) -> Snapshot {
        eventually(
            "every store to agree and nothing pending",
            timeout,
            || async {
                let snapshot = self.snapshot().await?;
                match snapshot.inconsistency() {
                    None => Ok(snapshot),
                    Some(why) => Err(why),
                }
            },
        )
        .await
    }
}

/// In Prometheus text, the sum of the samples of `name` whose labels include all of `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(rest) => match rest.split_once('}') {
                Some((labels, value)) => (labels, value),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        let matches = labels
            .iter()
            .all(|(key, want)| label_text.contains(&format!("{key}=\"{want}\"")));
        if !matches {
            continue;
        }
        if let Some(value) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *total.get_or_insert(0.0) += value;
        }
    }
    total
}

// ---------------------------------------------------------------------------------------------
// the client

/// An answer: status, headers and the body (parsed when it is JSON, else a JSON string).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn pair(&self) -> (u16, Value) {
        (self.status, self.body.clone())
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// A registered and logged-in customer.
#[derive(Debug, Clone)]
pub struct Customer {
    pub user: String,
    pub name: String,
    pub pw: String,
    pub token: String,
}

/// The gateway's HTTP API, recording every answer body (for the never-echo checks).
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    seen: Arc<Mutex<Vec<String>>>,
}

/// One HTTP request being built.
pub struct Req<'a> {
    api: &'a Api,
    method: reqwest::Method,
    path: String,
    bearer: Option<String>,
    basic: Option<(String, String)>,
    json: Option<Value>,
    raw: Option<(Option<String>, Vec<u8>)>,
    headers: Vec<(String, String)>,
}

impl<'a> Req<'a> {
    pub fn bearer(mut self, token: &str) -> Self {
        self.bearer = Some(token.to_owned());
        self
    }

    pub fn basic(mut self, user: &str, pw: &str) -> Self {
        self.basic = Some((user.to_owned(), pw.to_owned()));
        self
    }

    pub fn json(mut self, body: Value) -> Self {
        self.json = Some(body);
        self
    }

    /// A raw body with the given content type (`None`: no content-type header).
    pub fn raw(mut self, content_type: Option<&str>, bytes: Vec<u8>) -> Self {
        self.raw = Some((content_type.map(str::to_owned), bytes));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sends; transport errors are returned (the crash test expects some).
    pub async fn try_send(self) -> Result<Reply, String> {
        let url = format!("{}{}", self.api.base, self.path);
        let mut builder = self.api.http.request(self.method.clone(), &url);
        if let Some(token) = &self.bearer {
            builder = builder.bearer_auth(token);
        }
        if let Some((user, pw)) = &self.basic {
            builder = builder.basic_auth(user, Some(pw));
        }
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(body) = &self.json {
            builder = builder.json(body);
        }
        if let Some((content_type, bytes)) = self.raw {
            if let Some(content_type) = content_type {
                builder = builder.header("content-type", content_type);
            }
            builder = builder.body(bytes);
        }
        let response = builder
            .send()
            .await
            .map_err(|error| format!("{} {url}: {}", self.method, chain(&error)))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .map_err(|error| format!("{} {url} (body): {error}", self.method))?;
        self.api.record(&text);
        let body = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
        Ok(Reply {
            status,
            headers,
            body,
            text,
        })
    }

    /// Sends; a transport error fails the test.
    pub async fn send(self) -> Reply {
        let what = format!("{} {}", self.method, self.path);
        self.try_send()
            .await
            .unwrap_or_else(|error| panic!("{what} failed: {error}"))
    }

    pub async fn pair(self) -> (u16, Value) {
        self.send().await.pair()
    }
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(256)
                .build()
                .expect("http client"),
            seen: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The same API through a client that never reuses a connection.
    pub fn unpooled(&self) -> Api {
        self.with_http(
            reqwest::Client::builder()
                .timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(0)
                .build()
                .expect("http client"),
        )
    }

    /// The same API through another HTTP client.
    pub fn with_http(&self, http: reqwest::Client) -> Api {
        Api {
            base: self.base.clone(),
            http,
            seen: self.seen.clone(),
        }
    }

    fn record(&self, text: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() < 100_000 {
            seen.push(text.to_owned());
        }
    }

    /// Every answer body this client has received so far.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fails if any answer so far contained `secret`.
    #[track_caller]
    pub fn assert_never_answered(&self, secret: &str) {
        let seen = self.seen();
        assert!(!seen.is_empty(), "no answers recorded");
        for body in &seen {
            assert!(
                !body.contains(secret),
                "an answer echoed the password {secret:?}: {body}"
            );
        }
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> Req<'_> {
        Req {
            api: self,
            method,
            path: path.to_owned(),
            bearer: None,
            basic: None,
            json: None,
            raw: None,
            headers: Vec::new(),
        }
    }

    pub fn get_req(&self, path: &str) -> Req<'_> {
        self.req(reqwest::Method::GET, path)
    }

    pub fn post_req(&self, path: &str) -> Req<'_> {
        self.req(reqwest::Method::POST, path)
    }

    /// `GET path` with a bearer token (or none).
    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.get_req(path);
        if let Some(token) = token {
            req = req.bearer(token);
        }
        req.pair().await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.post_req(path).json(body);
        if let Some(token) = token {
            req = req.bearer(token);
        }
        req.pair().await
    }

    // --- customers and sessions

    pub async fn register(&self, user: &str, name: &str, pw: &str) -> (u16, Value) {
        self.post(
            "/api/v1/customers",
            None,
            json!({"userId": user, "name": name, "password": pw}),
        )
        .await
    }

    pub async fn login(&self, user: &str, pw: &str) -> (u16, Value) {
        self.post(
            "/api/v1/sessions",
            None,
            json!({"userId": user, "password": pw}),
        )
        .await
    }

    /// Logs in and returns the token; fails the test otherwise.
    pub async fn token(&self, user: &str, pw: &str) -> String {
        let (status, body) = self.login(user, pw).await;
        assert_eq!(status, 200, "login {user}: {body}");
        body["token"]
            .as_str()
            .unwrap_or_else(|| panic!("login answer without token: {body}"))
            .to_owned()
    }

    /// Registers `user` with a distinctive password and logs in.
    pub async fn customer(&self, user: &str) -> Customer {
        let name = format!("Name of {}", user.split('@').next().unwrap_or(user));
        let pw = format!("pw-{}-Zq7#x", user.replace('@', "-at-"));
        let (status, body) = self.register(user, &name, &pw).await;
        assert_eq!(status, 201, "register {user}: {body}");
        let token = self.token(user, &pw).await;
        Customer {
            user: user.to_owned(),
            name,
            pw,
            token,
        }
    }

    // --- requests

    pub async fn request(&self, token: &str, body: Value) -> (u16, Value) {
        self.post("/api/v1/requests", Some(token), body).await
    }

    pub async fn request_with_key(&self, token: &str, key: &str, body: Value) -> (u16, Value) {
        self.post_req("/api/v1/requests")
            .bearer(token)
            .header("Idempotency-Key", key)
            .json(body)
            .pair()
            .await
    }

    pub async fn open(
        &self,
        token: &str,
        pw: &str,
        account_no: Option<&str>,
        amount: Option<i64>,
    ) -> (u16, Value) {
        let mut body = json!({"type": "open", "password": pw});
        if let Some(no) = account_no {
            body["accountNo"] = json!(no);
        }
        if let Some(amount) = amount {
            body["amount"] = json!(amount);
        }
        self.request(token, body).await
    }

    /// Opens an account and fails the test unless it completed.
    pub async fn open_ok(&self, c: &Customer, no: &str, amount: i64) -> Value {
        let (status, body) = self.open(&c.token, &c.pw, Some(no), Some(amount)).await;
        assert_eq!(status, 200, "open {no} for {}: {body}", c.user);
        assert_eq!(body["status"], "completed", "open {no}: {body}");
        body
    }

    pub async fn deposit(&self, token: &str, pw: &str, no: &str, amount: i64) -> (u16, Value) {
        self.request(token, money("deposit", no, amount, pw)).await
    }

    pub async fn withdraw(&self, token: &str, pw: &str, no: &str, amount: i64) -> (u16, Value) {
        self.request(token, money("withdraw", no, amount, pw)).await
    }

    pub async fn close(&self, token: &str, pw: &str, no: &str) -> (u16, Value) {
        self.request(
            token,
            json!({"type": "close", "accountNo": no, "password": pw}),
        )
        .await
    }

    /// `POST /api/v1/requests` type balance.
    pub async fn balance(&self, token: &str, no: &str) -> (u16, Value) {
        self.request(token, json!({"type": "balance", "accountNo": no}))
            .await
    }

    /// `POST /api/v1/requests` type history.
    pub async fn history(&self, token: &str, no: &str) -> (u16, Value) {
        self.request(token, json!({"type": "history", "accountNo": no}))
            .await
    }

    pub async fn get_request(&self, token: &str, id: &str) -> (u16, Value) {
        self.get(&format!("/api/v1/requests/{id}"), Some(token))
            .await
    }

    /// `GET /api/v1/accounts/{no}`.
    pub async fn account(&self, token: &str, no: &str) -> (u16, Value) {
        self.get(&format!("/api/v1/accounts/{no}"), Some(token))
            .await
    }

    pub async fn accounts(&self, token: &str) -> (u16, Value) {
        self.get("/api/v1/accounts", Some(token)).await
    }

    /// `GET /api/v1/accounts/{no}/transactions?{query}`.
    pub async fn transactions(&self, token: &str, no: &str, query: &str) -> (u16, Value) {
        let path = if query.is_empty() {
            format!("/api/v1/accounts/{no}/transactions")
        } else {
            format!("/api/v1/accounts/{no}/transactions?{query}")
        };
        self.get(&path, Some(token)).await
    }

    /// Every transaction of an account, newest first, following `next` (pages of 100).
    pub async fn all_transactions(&self, token: &str, no: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut query = "limit=100".to_owned();
        for _ in 0..1000 {
            let (status, body) = self.transactions(token, no, &query).await;
            assert_eq!(status, 200, "transactions of {no}: {body}");
            items.extend(body["items"].as_array().cloned().unwrap_or_default());
            match body["next"].as_str() {
                Some(next) => query = format!("limit=100&before={}", encode(next)),
                None => {
                    assert!(
                        body["next"].is_null(),
                        "next is neither a cursor nor null: {body}"
                    );
                    return items;
                }
            }
        }
        panic!("transactions of {no} never ended");
    }

    /// Polls `GET /api/v1/accounts/{no}` until `done` accepts it.
    pub async fn account_when(
        &self,
        token: &str,
        no: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(what, SETTLE, || async {
            let (status, body) = self.account(token, no).await;
            if status == 200 && done(&body) {
                Ok(body)
            } else {
                Err(format!("{status} {body}"))
            }
        })
        .await
    }

    /// Polls the read model until the account shows `balance`.
    pub async fn wait_balance(&self, token: &str, no: &str, balance: i64) -> Value {
        self.account_when(
            token,
            no,
            &format!("account {no} to show balance {balance}"),
            |b| b["balance"].as_i64() == Some(balance),
        )
        .await
    }

    /// Turns a 202 into the final answer by polling the request: `(200, completed request)` or
    /// `(404, request_cancelled with reason)`; other answers are returned as they are.
    pub async fn settle(&self, token: &str, reply: (u16, Value)) -> (u16, Value) {
        if reply.0 != 202 {
            return reply;
        }
        let id = reply.1["requestId"]
            .as_str()
            .unwrap_or_else(|| panic!("202 without requestId: {}", reply.1))
            .to_owned();
        eventually(
            &format!("request {id} to finish"),
            Duration::from_secs(60),
            || async {
                let (status, body) = self.get_request(token, &id).await;
                match (
                    status,
                    body["status"].as_str(),
                    body["error"]["code"].as_str(),
                ) {
                    (200, Some("completed"), _) => Ok((status, body)),
                    (404, _, Some("request_cancelled")) => Ok((status, body)),
                    _ => Err(format!("{status} {body}")),
                }
            },
        )
        .await
    }
}

/// An error with its causes, `a: b: c`.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// A deposit or withdraw body.
pub fn money(kind: &str, no: &str, amount: i64, pw: &str) -> Value {
    json!({"type": kind, "accountNo": no, "amount": amount, "password": pw})
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// What a settled answer amounts to: `"completed"` or the failure's code/reason.
pub fn outcome(reply: &(u16, Value)) -> String {
    let body = &reply.1;
    if reply.0 == 200 && body["status"] == "completed" {
        return "completed".into();
    }
    if body["error"]["code"] == "request_cancelled" {
        if let Some(reason) = body["reason"].as_str() {
            return reason.to_owned();
        }
    }
    body["error"]["code"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("status {}: {body}", reply.0))
}

// ---------------------------------------------------------------------------------------------
// assertions and polling

/// Asserts a success status and returns the body.
#[track_caller]
pub fn expect_ok(reply: &(u16, Value), status: u16) -> &Value {
    assert_eq!(
        reply.0, status,
        "expected {status}, got {} {}",
        reply.0, reply.1
    );
    &reply.1
}

/// Asserts the error shape `{"error":{"code","message"}}` with this status and code.
#[track_caller]
pub fn expect_error(reply: &(u16, Value), status: u16, code: &str) {
    let (got, body) = reply;
    assert_eq!(
        (*got, body["error"]["code"].as_str()),
        (status, Some(code)),
        "expected {status} {code}, got {got} {body}"
    );
    assert!(
        body["error"]["message"].is_string(),
        "error without message: {body}"
    );
}

/// Asserts a compensated request: the error with `requestId` beside it, and that
/// `GET /api/v1/requests/{id}` answers 404 `request_cancelled` with the reason.
pub async fn expect_compensated(
    api: &Api,
    token: &str,
    reply: &(u16, Value),
    status: u16,
    reason: &str,
) -> String {
    expect_error(reply, status, reason);
    let id = reply.1["requestId"]
        .as_str()
        .unwrap_or_else(|| {
            panic!(
                "a compensated request's error must carry requestId: {}",
                reply.1
            )
        })
        .to_owned();
    let (got, body) = api.get_request(token, &id).await;
    assert_eq!(got, 404, "GET /api/v1/requests/{id} after {reason}: {body}");
    assert_eq!(
        body["error"]["code"], "request_cancelled",
        "GET request {id}: {body}"
    );
    assert_eq!(body["reason"], reason, "GET request {id}: {body}");
    assert_eq!(body["requestId"], id.as_str(), "GET request {id}: {body}");
    id
}

/// Polls `probe` until it answers `Ok`, at most `timeout`; fails with the last `Err`.
/// Waits until `counter` has grown by `n` from now: a stream of operations is making progress.
pub async fn wait_for_progress(
    counter: &std::sync::atomic::AtomicUsize,
    n: usize,
    what: &str,
    timeout: Duration,
) {
    use std::sync::atomic::Ordering;
    let target = counter.load(Ordering::SeqCst) + n;
    eventually(what, timeout, || async {
        let now = counter.load(Ordering::SeqCst);
        if now >= target {
            Ok(())
        } else {
            Err(format!("{now} completed, want {target}"))
        }
    })
    .await
}

pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(20);
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) => {
                if Instant::now() >= deadline {
                    panic!("timed out after {timeout:?} waiting for {what}; last: {last}");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(250));
            }
        }
    }
}

/// Every file under a directory, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// A small deterministic random source (no rand dev-dependency).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
            | 1)
    }

    pub fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545F4914F6CDD1D)
    }

    /// Uniform in `low..=high`.
    pub fn range(&mut self, low: i64, high: i64) -> i64 {
        low + (self.next() % ((high - low + 1) as u64)) as i64
    }
}

/// The items of a list answer.
#[track_caller]
pub fn items(body: &Value) -> Vec<Value> {
    body["items"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("expected {{items:[...]}}, got {body}"))
}

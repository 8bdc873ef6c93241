//! Child processes: the binary started with captured output, killed when its owner drops (a
//! panicking test prints the tail of each process's log), and the lines it prints when ready.

use super::*;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How much of a process's log is kept in memory.
const LOG_CAP: usize = 8 * 1024 * 1024;

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
            .env(
                "RUST_LOG",
                std::env::var("ONLINEBANK_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            // After the defaults: a test's own environment wins (RUST_LOG included).
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
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
                    let _ = lines_tx.send(startup_message(line));
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

    /// The process id, while it runs.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("a running process")
    }

    /// Its resident memory now, in KiB (`VmRSS` of /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("reading /proc/PID/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmRSS line")
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

pub(crate) fn append_log(log: &Arc<Mutex<Vec<u8>>>, bytes: &[u8]) {
    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
    log.extend_from_slice(bytes);
    if log.len() > LOG_CAP {
        let cut = log.len() - LOG_CAP / 2;
        log.drain(..cut);
    }
}

/// A start-up line's text: the line itself, or the `message` of a JSON one (`--log-format json`).
fn startup_message(line: String) -> String {
    if !line.starts_with('{') {
        return line;
    }
    serde_json::from_str::<serde_json::Value>(&line)
        .ok()
        .and_then(|object| object["message"].as_str().map(str::to_owned))
        .unwrap_or(line)
}

/// Parses `onlinebank <role> listening on <url>`.
pub(crate) fn listening_line(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("onlinebank ")?;
    let (role, url) = rest.split_once(" listening on ")?;
    Some((
        role.trim().to_owned(),
        url.trim().trim_end_matches('/').to_owned(),
    ))
}

/// Takes a `serve` process's role and admin listening lines; true once both were seen.
pub(crate) fn started_urls(
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
pub(crate) fn ready_line(line: &str) -> Option<String> {
    let url = line.strip_prefix("onlinebank ready at ")?;
    Some(url.trim().trim_end_matches('/').to_owned())
}

pub(crate) fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|port| port.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

/// The role of a cluster process name: `request#2` is an instance of `request`.
pub(crate) fn role_of(name: &str) -> &str {
    name.split('#').next().unwrap_or(name)
}

pub(crate) fn strings(args: &[&str]) -> Vec<String> {
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

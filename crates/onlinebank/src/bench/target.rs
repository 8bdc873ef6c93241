//! The bank under test: either a running one (`--url`), or one the bench starts itself from the
//! same executable (`up --port 0` in a temporary data directory), so that a single command
//! measures the real product, including its time to ready and its memory.
//!
//! A self-started bank is killed when the bench ends, also on error or panic (`kill_on_drop`),
//! and its data directory is removed.

use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;

/// How long a self-started bank may take to print its ready line.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the resident set of a self-started bank is sampled.
const RSS_EVERY: Duration = Duration::from_millis(100);

/// The bank the bench talks to.
pub struct Target {
    pub url: String,
    pub started: Option<Started>,
}

/// VmRSS samples (when, kB), shared with the task taking them.
type RssSamples = Arc<Mutex<Vec<(Instant, u64)>>>;

/// A bank this bench started.
pub struct Started {
    child: Child,
    pid: u32,
    log: PathBuf,
    /// From spawning the process to its `onlinebank ready at` line.
    pub ready_in: Duration,
    /// VmRSS shortly after ready, before any load (kB).
    pub idle_rss_kb: Option<u64>,
    samples: RssSamples,
    sampler: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// Reads one `VmXXX:   1234 kB` line of `/proc/<pid>/status`.
pub fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// CPU time (user + system, seconds) a process has used so far, from `/proc/<pid>/stat`
/// (`None`: this process). Linux reports it in USER_HZ ticks, 100 per second.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces): state is the first; utime and
    // stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

impl Target {
    /// A running bank at `url`.
    pub fn external(url: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            started: None,
        }
    }

    /// Starts `onlinebank up --port 0 --data-dir <tempdir>` and waits for its ready line.
    pub async fn start() -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding the onlinebank executable")?;
        let dir = tempfile::Builder::new()
            .prefix("onlinebank-bench-")
            .tempdir()
            .context("creating a data directory")?;
        let log = dir.path().join("bank.log");
        let log_file = std::fs::File::create(&log).context("creating the bank's log file")?;
        let began = Instant::now();
        let mut child = Command::new(&exe)
            .arg("up")
            .arg("--port")
            .arg("0")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} up", exe.display()))?;
        let pid = child.id().context("the bank exited at once")?;
        let stdout = child.stdout.take().context("the bank's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = ready_line(&mut child, &mut lines, &log, began).await?;
        let ready_in = began.elapsed();
        // Keep reading stdout so the bank never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        // Idle: let the freshly started roles settle a moment first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let idle_rss_kb = proc_status_kb(pid, "VmRSS");
        let (samples, sampler) = sample_rss(pid);
        Ok(Self {
            url,
            started: Some(Started {
                child,
                pid,
                log,
                ready_in,
                idle_rss_kb,
                samples,
                sampler,
                _dir: dir,
            }),
        })
    }
}

/// The URL of the bank's `onlinebank ready at` line, read from its stdout `lines`; an error
/// with the log's tail when it exits or is not ready within `START_TIMEOUT` of `began`.
async fn ready_line(
    child: &mut Child,
    lines: &mut Lines<BufReader<ChildStdout>>,
    log: &PathBuf,
    began: Instant,
) -> anyhow::Result<String> {
    loop {
        let line = match tokio::time::timeout_at(
            tokio::time::Instant::from_std(began + START_TIMEOUT),
            lines.next_line(),
        )
        .await
        {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None) | Err(_)) => {
                let status = child.wait().await.ok();
                bail!(
                    "the bank exited before it was ready ({status:?})\n{}",
                    log_tail(log)
                );
            }
            Err(_) => bail!(
                "the bank was not ready within {START_TIMEOUT:?}\n{}",
                log_tail(log)
            ),
        };
        if let Some(url) = line.trim().strip_prefix("onlinebank ready at ") {
            return Ok(url.trim().to_owned());
        }
    }
}

/// Samples process `pid`'s VmRSS every `RSS_EVERY` until it is gone: the samples, and the task.
fn sample_rss(pid: u32) -> (RssSamples, JoinHandle<()>) {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let samples = samples.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RSS_EVERY);
            loop {
                tick.tick().await;
                let Some(kb) = proc_status_kb(pid, "VmRSS") else {
                    break;
                };
                samples
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push((Instant::now(), kb));
            }
        })
    };
    (samples, sampler)
}

/// Memory of a self-started bank over the run.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    /// Highest sampled VmRSS (kB) over the whole run (setup included).
    pub peak_sampled_kb: Option<u64>,
    /// Highest sampled VmRSS (kB) since `since` (the mixed workload and the check).
    pub peak_workload_kb: Option<u64>,
    /// The kernel's high-water mark VmHWM (kB): the true peak, including start-up.
    pub high_water_kb: Option<u64>,
    /// (seconds since `since`, kB) for the charts.
    pub samples: Vec<(f64, u64)>,
}

impl Started {
    /// The process is still running (it did not crash during the run).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "the bank exited during the run ({status})\n{}",
                log_tail(&self.log)
            ),
            Err(error) => bail!("checking on the bank: {error}"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The size of every file in the bank's data directory (SQLite files with their WAL), by name.
    pub fn file_sizes(&self) -> Vec<(String, u64)> {
        let mut sizes: Vec<(String, u64)> = std::fs::read_dir(self._dir.path().join("data"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|entry| {
                        let metadata = entry.metadata().ok()?;
                        metadata.is_file().then(|| {
                            (
                                entry.file_name().to_string_lossy().into_owned(),
                                metadata.len(),
                            )
                        })
                    })
                    .filter(|(name, _)| name.contains(".db"))
                    .collect()
            })
            .unwrap_or_default();
        sizes.sort();
        sizes
    }

    /// Memory so far; sample times are counted from `since`.
    pub fn memory(&self, since: Instant) -> Memory {
        let samples = self
            .samples
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Memory {
            peak_sampled_kb: samples.iter().map(|(_, kb)| *kb).max(),
            peak_workload_kb: samples
                .iter()
                .filter(|(at, _)| *at >= since)
                .map(|(_, kb)| *kb)
                .max(),
            high_water_kb: proc_status_kb(self.pid, "VmHWM"),
            samples: samples
                .iter()
                .filter(|(at, _)| *at >= since)
                .map(|(at, kb)| (at.duration_since(since).as_secs_f64(), *kb))
                .collect(),
        }
    }

    /// Kills the bank and waits for it (bounded).
    pub async fn stop(mut self) {
        self.sampler.abort();
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// The last lines of the bank's log, for error messages.
fn log_tail(path: &PathBuf) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(30);
    format!("--- bank log (tail) ---\n{}", lines[start..].join("\n"))
}

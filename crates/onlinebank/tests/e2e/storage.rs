//! A full disk: writes answer 503 `storage_unavailable` with `Retry-After` (never 500), readiness
//! turns false so a balancer routes around the bank, and once space returns everything recovers
//! by itself with nothing lost: balance == history == read model.
//!
//! Runs the bank on a small tmpfs of its own (needs root to mount, as in CI; elsewhere the test
//! says why and returns).

use crate::support::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A tmpfs mounted for one test, unmounted when dropped (also when the test panics).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .map_err(|e| format!("running mount: {e}"))?;
        if !status.success() {
            return Err(format!("mount -t tmpfs failed ({status}); not root?"));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes a file until the filesystem is full; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("creating the filler");
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    path
}

/// Waits until the bank's public `/health/ready` answers `status`.
async fn readiness_becomes(bank: &TestBank, status: u16, within: Duration) {
    eventually(&format!("readiness to answer {status}"), within, || async {
        match bank.get("/health/ready", None).await {
            (got, _) if got == status => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test]
async fn a_full_disk_answers_503_storage_unavailable_turns_readiness_false_and_recovers_by_itself()
{
    let mount = match Tmpfs::mount("48m") {
        Ok(mount) => mount,
        Err(why) => {
            eprintln!("skipping the full-disk test: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir_in(mount.path()).expect("a data directory on the tmpfs");
    let bank = TestBank::start_in(dir, &[], &[]).await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 1_000).await;
    expect_ok(
        &bank.deposit(&alice.token, &alice.pw, "1001", 100).await,
        200,
    );
    bank.wait_balance(&alice.token, "1001", 1_100).await;

    let filler = fill(mount.path());
    // Every write now answers storage_unavailable (never 500), and nothing moves.
    let mut refused = 0;
    for _ in 0..5 {
        let reply = bank
            .post_req("/api/v1/requests")
            .bearer(&alice.token)
            .json(money("deposit", "1001", 7, &alice.pw))
            .send()
            .await;
        assert_ne!(
            reply.status, 500,
            "a full disk answered 500: {}",
            reply.text
        );
        assert_ne!(
            reply.status, 200,
            "a deposit was acknowledged on a full disk: {}",
            reply.text
        );
        if reply.status == 503 && reply.body["error"]["code"] == "storage_unavailable" {
            assert!(reply.header("retry-after").is_some(), "{:?}", reply.headers);
            refused += 1;
        }
    }
    assert!(refused > 0, "no write answered storage_unavailable");
    // Readiness turns false: a balancer routes around the bank.
    readiness_becomes(&bank, 503, Duration::from_secs(10)).await;
    // Reads keep answering.
    assert_eq!(bank.account(&alice.token, "1001").await.0, 200);

    // Space returns: ready again by itself, writes succeed, nothing was lost or half-applied.
    std::fs::remove_file(&filler).expect("removing the filler");
    readiness_becomes(&bank, 200, Duration::from_secs(20)).await;
    let reply = bank.deposit(&alice.token, &alice.pw, "1001", 50).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 1_150, "{}", reply.1);
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, 1_150, "{snapshot:?}");
    drop(bank);
}

/// How long the disk stays full in the test of the outage's log.
const OUTAGE: Duration = Duration::from_secs(25);
/// How often a loop may log the same failure at most.
const LOG_PERIOD: Duration = Duration::from_secs(10);
/// A WAL at most this big after a truncation (a few commits may follow it at once).
const SMALL_WAL: u64 = 64 * 1024;

/// How many lines of `log` carry `message`, per loop (their `source` or `group` field).
fn lines_per_loop(log: &str, message: &str) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for line in log.lines().filter(|line| line.contains(message)) {
        let source = line
            .split_whitespace()
            .find_map(|field| {
                field
                    .strip_prefix("source=")
                    .or_else(|| field.strip_prefix("group="))
            })
            .unwrap_or("?")
            .trim_matches('"')
            .to_owned();
        *counts.entry(source).or_insert(0) += 1;
    }
    counts
}

/// The last `max` bytes of `log` (or so: cut at a character boundary).
fn tail(log: &str, max: usize) -> &str {
    let mut start = log.len().saturating_sub(max);
    while !log.is_char_boundary(start) {
        start += 1;
    }
    &log[start..]
}

/// Every SQLite WAL file under `dir` with its size.
fn wal_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(wal_files(&path));
        } else if path.to_string_lossy().ends_with("-wal") {
            let size = entry.metadata().map_or(0, |meta| meta.len());
            found.push((path, size));
        }
    }
    found
}

/// Deposits into `no`, four at a time, until `stop` is set; returns how many answered 200.
async fn deposits_until(bank: &TestBank, who: &Customer, no: &str, stop: &AtomicBool) -> usize {
    let depositor = || async {
        let mut acknowledged = 0;
        while !stop.load(Ordering::SeqCst) {
            if bank.deposit(&who.token, &who.pw, no, 1).await.0 == 200 {
                acknowledged += 1;
            }
        }
        acknowledged
    };
    let (a, b, c, d) = tokio::join!(depositor(), depositor(), depositor(), depositor());
    a + b + c + d
}

#[tokio::test]
async fn a_full_disk_logs_each_failing_loop_once_per_period_and_truncates_the_wal_once_space_returns(
) {
    let mount = match Tmpfs::mount("48m") {
        Ok(mount) => mount,
        Err(why) => {
            eprintln!("skipping the full-disk log test: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir_in(mount.path()).expect("a data directory on the tmpfs");
    let bank = TestBank::start_in(dir, &[], &[]).await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 1_000).await;

    // Deposits keep events flowing while the disk fills, as in the attack run: consumers hold
    // applied events whose positions they cannot commit (most runs: which ones is a race), and
    // every loop retries its write.
    let stop = AtomicBool::new(false);
    let outage = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let began = bank.log().len();
        let filler = fill(mount.path());
        readiness_becomes(&bank, 503, Duration::from_secs(10)).await;
        tokio::time::sleep(OUTAGE.saturating_sub(Duration::from_secs(2))).await;
        stop.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let log = bank.log()[began..].to_owned();
        (filler, log)
    };
    let (acknowledged, (filler, outage_log)) =
        tokio::join!(deposits_until(&bank, &alice, "1001", &stop), outage);
    assert!(
        acknowledged > 0,
        "no deposit went through before the disk filled"
    );

    // At most the first line and one per period, per loop, for each repeating failure.
    let most = usize::try_from(OUTAGE.as_secs() / LOG_PERIOD.as_secs()).unwrap() + 2;
    for message in [
        "committing the position failed",
        "consumer batch failed",
        "outbox relay failed",
        "sweeping stale requests failed",
    ] {
        let counts = lines_per_loop(&outage_log, message);
        eprintln!("{message}: {counts:?} lines over the outage");
        for (source, lines) in &counts {
            assert!(
                *lines <= most,
                "{source} logged {message:?} {lines} times in {OUTAGE:?} (at most {most}):\n{}",
                tail(&outage_log, 4000)
            );
        }
    }

    // Space returns: each database's WAL is truncated and gives its space back, and writes go
    // on succeeding.
    std::fs::remove_file(&filler).expect("removing the filler");
    readiness_becomes(&bank, 200, Duration::from_secs(20)).await;
    eventually("every WAL truncated", Duration::from_secs(15), || async {
        let wals = wal_files(bank.data_dir());
        if wals.is_empty() {
            return Err("no WAL file found".to_owned());
        }
        match wals.iter().filter(|(_, size)| *size >= SMALL_WAL).count() {
            0 => Ok(()),
            _ => Err(format!("{wals:?}")),
        }
    })
    .await;
    let mut balance = None;
    for _ in 0..5 {
        let reply = bank.deposit(&alice.token, &alice.pw, "1001", 10).await;
        balance = expect_ok(&reply, 200)["balance"].as_i64();
    }
    eprintln!(
        "after recovery: balance {balance:?}, WALs {:?}",
        wal_files(bank.data_dir())
    );
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(
        Some(snapshot.accounts["1001"].balance),
        balance,
        "{snapshot:?}"
    );
    drop(bank);
}

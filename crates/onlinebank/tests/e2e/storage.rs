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

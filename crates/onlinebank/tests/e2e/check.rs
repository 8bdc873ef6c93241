//! `onlinebank check`: a killed bank's data directory holds every check and is left exactly as it
//! was; each broken invariant, made in a copy of it one at a time, fails the check and is named.

use crate::support::*;
use rusqlite::Connection;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Account changes the bank below makes (opens, deposits, withdrawals, a close).
const CHANGES: i64 = 9;

/// What `onlinebank check` answered.
struct Checked {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Checked {
    /// The report's lines that fail (marked ✗).
    fn failing(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|line| line.trim_start().starts_with('✗'))
            .collect()
    }
}

fn check(dir: &Path, extra: &[&str]) -> Checked {
    let output = Command::new(BIN)
        .args(["check", "--data-dir"])
        .arg(dir)
        .args(extra)
        .env_remove("ONLINEBANK_STEP_UP_TIMEOUT_MS")
        .output()
        .expect("running onlinebank check");
    Checked {
        code: output.status.code().expect("an exit code"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Every file under `dir` (by its path relative to `dir`) with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    files_under(dir)
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path.strip_prefix(dir).unwrap().to_owned(), bytes)
        })
        .collect()
}

fn copy_of(dir: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for (name, bytes) in snapshot(dir) {
        let path = copy.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    copy
}

/// Rows of `table` in a live database of `dir`, read without writing.
fn rows(dir: &Path, file: &str, table: &str) -> i64 {
    let conn =
        Connection::open_with_flags(dir.join(file), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
        row.get(0)
    })
    .unwrap()
}

/// A bank with two customers, deposits, withdrawals and a closed account, every change applied
/// by history and mypage, then killed: its data directory, WAL files and all.
async fn killed_bank() -> tempfile::TempDir {
    let mut bank = TestBank::start().await;
    let alice = bank.customer("alice@check.test").await;
    let bob = bank.customer("bob@check.test").await;
    bank.open_ok(&alice, "1001", 1_000).await;
    bank.open_ok(&alice, "1002", 0).await;
    bank.open_ok(&bob, "2001", 50).await;
    for (who, no, kind, amount) in [
        (&alice, "1001", "deposit", 500),
        (&alice, "1001", "withdraw", 200),
        (&alice, "1002", "deposit", 300),
        (&alice, "1002", "withdraw", 300),
        (&bob, "2001", "deposit", 25),
    ] {
        let reply = bank
            .request(&who.token, money(kind, no, amount, &who.pw))
            .await;
        expect_ok(&reply, 200);
    }
    expect_ok(&bank.close(&alice.token, &alice.pw, "1002").await, 200);
    let dir = bank.data_dir().to_owned();
    eventually(
        "history and mypage apply every change",
        Duration::from_secs(20),
        || {
            let dir = dir.clone();
            async move {
                let ledger = rows(&dir, "history.db", "ledger");
                let transactions = rows(&dir, "mypage.db", "transactions_view");
                if ledger == CHANGES && transactions == CHANGES {
                    Ok(())
                } else {
                    Err(format!(
                        "ledger {ledger}, transactions {transactions} of {CHANGES}"
                    ))
                }
            }
        },
    )
    .await;
    let dir = std::mem::replace(&mut bank.dir, tempfile::tempdir().unwrap());
    // SIGKILL: no checkpoint, the WAL files stay as they were.
    drop(bank);
    dir
}

#[tokio::test]
async fn a_killed_bank_holds_every_check_and_check_leaves_its_files_as_they_were() {
    let dir = killed_bank().await;
    let before = snapshot(dir.path());
    assert!(
        before
            .keys()
            .any(|name| name.to_string_lossy().ends_with(".db-wal")),
        "the killed bank left no WAL: {:?}",
        before.keys()
    );
    let checked = check(dir.path(), &[]);
    println!("{}", checked.stdout);
    assert_eq!(checked.code, 0, "{}", checked.stdout);
    assert!(checked.failing().is_empty(), "{}", checked.stdout);
    assert!(
        checked.stdout.contains("all 4 checks hold"),
        "{}",
        checked.stdout
    );
    assert!(
        checked.stdout.contains("3 accounts (1 closed)"),
        "{}",
        checked.stdout
    );
    assert!(
        checked.stdout.contains("read with its WAL"),
        "{}",
        checked.stdout
    );
    let json = check(dir.path(), &["--json"]);
    let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["holds"], true, "{}", json.stdout);
    assert_eq!(report["sections"].as_array().map(Vec::len), Some(4));
    // Not a byte changed, and no file appeared: not even SQLite's -shm read marks.
    assert!(
        snapshot(dir.path()) == before,
        "check changed the data directory"
    );
}

/// Folds `file`'s WAL into it (in a copy) so that its bytes on disk are what is read.
fn checkpointed(dir: &Path, file: &str) -> Connection {
    let conn = Connection::open(dir.join(file)).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    conn
}

/// Overwrites the start of every page but the first (the schema) with junk.
fn damage_pages(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let page = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    let pages = bytes.len() / page;
    assert!(pages > 2, "{} has only {pages} pages", path.display());
    for index in 1..pages {
        bytes[index * page..index * page + 64].fill(0x5a);
    }
    std::fs::write(path, bytes).unwrap();
}

/// Breaks one thing in a copy of `dir` and checks the copy.
fn broken(dir: &Path, file: &str, sql: &str) -> Checked {
    let copy = copy_of(dir);
    checkpointed(copy.path(), file).execute_batch(sql).unwrap();
    check(copy.path(), &[])
}

fn assert_named(checked: &Checked, what: &str, subject: &str) {
    println!("{what}:\n{}", checked.stdout);
    assert_eq!(checked.code, 1, "{what}: {}", checked.stdout);
    let failing = checked.failing();
    assert!(
        failing.iter().any(|line| line.contains(subject)),
        "{what}: no failing line names {subject}:\n{}",
        checked.stdout
    );
}

#[tokio::test]
async fn each_broken_invariant_fails_the_check_and_is_named() {
    let dir = killed_bank().await;
    let dir = dir.path();

    let checked = broken(
        dir,
        "mypage.db",
        "UPDATE accounts_view SET balance = balance + 1000 WHERE account_no = '1001'",
    );
    assert_named(&checked, "a read model's balance changed", "account 1001");
    assert!(
        checked.stdout.contains("read model 2300 != balance"),
        "{}",
        checked.stdout
    );

    let checked = broken(
        dir,
        "history.db",
        "DROP TRIGGER ledger_is_append_only_delete;
         DELETE FROM ledger WHERE entry_id =
             (SELECT MIN(entry_id) FROM ledger WHERE account_no = '2001' AND kind = 'deposit')",
    );
    assert_named(&checked, "a ledger entry deleted", "account 2001");
    assert!(
        checked.stdout.contains("ledger 50 != balance"),
        "{}",
        checked.stdout
    );

    let checked = broken(
        dir,
        "mypage.db",
        "DELETE FROM transactions_view WHERE account_no = '1002' AND kind = 'deposit'",
    );
    assert_named(
        &checked,
        "a transaction of the read model deleted",
        "account 1002",
    );

    let checked = broken(
        dir,
        "bus.db",
        "UPDATE consumer_positions SET position = position + 1000 WHERE group_name = 'history'",
    );
    assert_named(
        &checked,
        "a consumer past its log's end",
        "consumer history",
    );

    let hour_ago = onlinebank_core::time::now_ms() - 3_600_000;
    let checked = broken(
        dir,
        "request.db",
        &format!(
            "INSERT INTO requests (id, customer_id, kind, account_no, amount, status, created_at)
             VALUES ('0190aaaa-stuck', 'alice@check.test', 'deposit', '1001', 100, 'PENDING',
                     {hour_ago})"
        ),
    );
    assert_named(
        &checked,
        "a request PENDING for an hour",
        "request 0190aaaa-stuck",
    );

    let copy = copy_of(dir);
    drop(checkpointed(copy.path(), "history.db"));
    damage_pages(&copy.path().join("history.db"));
    assert_named(&check(copy.path(), &[]), "damaged pages", "history.db");

    let copy = copy_of(dir);
    std::fs::remove_file(copy.path().join("mypage.db")).unwrap();
    for side in ["mypage.db-wal", "mypage.db-shm"] {
        let _ = std::fs::remove_file(copy.path().join(side));
    }
    assert_named(&check(copy.path(), &[]), "a missing database", "mypage.db");
}

#[test]
fn a_directory_that_is_not_there_is_a_usage_error_and_an_empty_one_has_nothing_to_check() {
    let empty = tempfile::tempdir().unwrap();
    let checked = check(&empty.path().join("nowhere"), &[]);
    assert_eq!(checked.code, 2, "{}", checked.stdout);
    assert!(
        checked.stderr.contains("is not a directory"),
        "{}",
        checked.stderr
    );
    let checked = check(empty.path(), &[]);
    assert_eq!(checked.code, 0, "{}", checked.stdout);
    assert!(
        checked.stdout.contains("nothing to check"),
        "{}",
        checked.stdout
    );
    assert!(snapshot(empty.path()).is_empty(), "check made files");
}

#[tokio::test]
async fn a_bank_that_serves_the_directory_is_not_checked() {
    let bank = TestBank::start().await;
    let checked = check(bank.data_dir(), &[]);
    assert_eq!(checked.code, 2, "{}", checked.stdout);
    assert!(
        checked.stderr.contains("is served right now"),
        "{}",
        checked.stderr
    );
    assert!(checked.stdout.is_empty(), "{}", checked.stdout);
}

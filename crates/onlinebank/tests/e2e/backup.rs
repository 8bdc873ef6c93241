//! `onlinebank backup` and `onlinebank restore` (issue 24, section 3): a backup taken while
//! deposits run is one cut (every deposit acknowledged before it began, none sent after it
//! ended, every store agreeing), the restored bank serves its sessions and idempotency keys, a
//! stopped data dir backs up too, several `serve` processes give one cut, and a restore refuses
//! a non-empty target, a damaged file or a missing manifest, writing nothing.

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Customers depositing at once, and accounts each.
const CLIENTS: usize = 4;
const ACCOUNTS_EACH: usize = 4;
/// What each account is opened with.
const OPENING: i64 = 1_000;

/// Kills the bank (SIGKILL) and keeps its data dir.
fn killed(bank: TestBank) -> tempfile::TempDir {
    let TestBank { dir, .. } = bank;
    dir
}

/// Stops the bank as an operator does (SIGTERM, found through its serving record) and keeps its
/// data dir once it has exited (its record is gone).
async fn terminated(bank: TestBank) -> tempfile::TempDir {
    let serving = bank.data_dir().join("serving");
    let record = std::fs::read_dir(&serving)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            path.extension()
                .is_some_and(|extension| extension == "json")
        })
        .expect("the bank's serving record");
    let pid = record.file_stem().unwrap().to_string_lossy().into_owned();
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success(), "kill -TERM {pid}");
    eventually("the bank to exit", SETTLE, || async {
        if record.exists() {
            Err(format!("{} still there", record.display()))
        } else {
            Ok(())
        }
    })
    .await;
    killed(bank)
}

/// Runs `onlinebank <args>`; returns its exit code, stdout and stderr.
async fn onlinebank(args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(BIN)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("running onlinebank");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `onlinebank backup --json` of `dir` into `to`: its last line, parsed (the test fails unless
/// it succeeded).
async fn backup(dir: &Path, to: &Path) -> Value {
    let (code, out, err) = onlinebank(&[
        "backup",
        "--data-dir",
        &dir.display().to_string(),
        "--to",
        &to.display().to_string(),
        "--json",
    ])
    .await;
    assert_eq!(code, 0, "backup failed: {out}{err}");
    let last = out.lines().last().unwrap_or_default();
    let report: Value = serde_json::from_str(last).unwrap_or_else(|_| panic!("last line: {out}"));
    for field in ["path", "bytes", "pauseMs", "tookMs"] {
        assert!(!report[field].is_null(), "{field} missing: {report}");
    }
    report
}

/// `onlinebank restore` of `from` into `to`.
async fn restore(from: &Path, to: &Path) -> (i32, String) {
    let (code, out, err) = onlinebank(&[
        "restore",
        "--from",
        &from.display().to_string(),
        "--data-dir",
        &to.display().to_string(),
    ])
    .await;
    (code, format!("{out}{err}"))
}

/// Customers with their accounts, opened.
async fn customers(api: &Api) -> Vec<(Customer, Vec<String>)> {
    api.savers("saver", 5000, (CLIENTS, ACCOUNTS_EACH), OPENING)
        .await
}

/// Deposits from every customer at once, round the customer's accounts, each with its own
/// Idempotency-Key and an amount no other deposit has, until `stop`.
fn deposit_until(
    api: &Api,
    savers: &[(Customer, Vec<String>)],
    stop: &Arc<AtomicBool>,
) -> (
    Vec<tokio::task::JoinHandle<()>>,
    Arc<Mutex<Vec<SentDeposit>>>,
) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let next_amount = Arc::new(AtomicI64::new(1));
    let mut tasks = Vec::new();
    for (client, (customer, accounts)) in savers.iter().cloned().enumerate() {
        let (api, stop, sent, next_amount) =
            (api.clone(), stop.clone(), sent.clone(), next_amount.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let account = accounts[round % accounts.len()].clone();
                let amount = next_amount.fetch_add(1, Ordering::SeqCst);
                let key = format!("{}-{round}", customer.user);
                let sent_at = Instant::now();
                let reply = api
                    .post_req("/api/v1/requests")
                    .bearer(&customer.token)
                    .header("Idempotency-Key", &key)
                    .json(money("deposit", &account, amount, &customer.pw))
                    .send()
                    .await;
                let deposit =
                    SentDeposit::answered(client, account, amount, key, sent_at, Ok(reply));
                sent.lock().unwrap().push(deposit);
            }
        }));
    }
    (tasks, sent)
}

/// How many requests of the request database at `file` are not COMPLETED.
fn in_flight(file: &Path) -> i64 {
    let conn = rusqlite::Connection::open(file).unwrap();
    conn.query_row(
        "SELECT COUNT(*) FROM requests WHERE status <> 'COMPLETED'",
        [],
        |row| row.get(0),
    )
    .unwrap()
}

/// Every deposit amount in the restored account's history (the opening excluded).
async fn restored_deposits(api: &Api, token: &str, no: &str) -> BTreeSet<i64> {
    api.all_transactions(token, no)
        .await
        .iter()
        .filter(|item| item.kind.as_deref() == Some("deposit"))
        .filter_map(|item| item.amount)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_while_deposits_run_restores_every_acknowledged_deposit_and_none_sent_after()
{
    let bank = TestBank::start().await;
    let savers = customers(&bank.api).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (tasks, sent) = deposit_until(&bank.api, &savers, &stop);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let target = tempfile::tempdir().unwrap();
    let dest = target.path().join("cut");
    let began = Instant::now();
    let report = backup(bank.data_dir(), &dest).await;
    let ended = Instant::now();
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    let sent = sent.lock().unwrap().clone();
    let acked_before = sent.iter().filter(|s| s.acked_before(began)).count();
    let after = sent.iter().filter(|s| s.sent_at > ended).count();
    println!(
        "backup while depositing: {report}; {} deposits sent, {acked_before} acknowledged before it began, {after} sent after it ended",
        sent.len()
    );
    assert!(
        acked_before > 0 && after > 0,
        "deposits ran around the backup"
    );
    assert!(dest.join("manifest.json").is_file());

    let new = tempfile::tempdir().unwrap();
    let (code, said) = restore(&dest, new.path()).await;
    assert_eq!(code, 0, "restore failed: {said}");
    println!(
        "requests in flight at the cut (not COMPLETED in the backup): {}",
        in_flight(&dest.join("request.db"))
    );
    let restored = TestBank::start_in(new, &[], &[]).await;
    // Every store agrees and nothing is pending: what was in flight completed or was compensated.
    let snapshot = restored.ops.drained(SETTLE).await;
    check_the_cut(&restored.api, &savers, &sent, began, ended, &snapshot).await;
    replay_after_restore(&restored, &savers, &sent, began).await;

    let dir = terminated(restored).await;
    let (code, out, err) =
        onlinebank(&["check", "--data-dir", &dir.path().display().to_string()]).await;
    assert_eq!(code, 0, "check of the restored data dir: {out}{err}");
}

/// Per account: every deposit acknowledged before the backup began is there, none sent after
/// it ended, nothing else; balance == opening + those deposits == the stores' snapshot.
async fn check_the_cut(
    api: &Api,
    savers: &[(Customer, Vec<String>)],
    sent: &[SentDeposit],
    began: Instant,
    ended: Instant,
    snapshot: &Snapshot,
) {
    let mut by_account = SentDeposit::by_account(sent);
    for (customer, accounts) in savers {
        for no in accounts {
            let mine = by_account.remove(no.as_str()).unwrap_or_default();
            let restored = restored_deposits(api, &customer.token, no).await;
            for deposit in &mine {
                let here = restored.contains(&deposit.amount);
                if deposit.acked_before(began) {
                    assert!(
                        here,
                        "{no}: acknowledged before the backup, missing: {deposit:?}"
                    );
                }
                if deposit.sent_at > ended {
                    assert!(!here, "{no}: sent after the backup, restored: {deposit:?}");
                }
            }
            let known: BTreeSet<i64> = mine.iter().map(|deposit| deposit.amount).collect();
            let amounts = (OPENING, &restored, &known);
            assert_restored_account(api, &customer.token, no, amounts, snapshot).await;
        }
    }
}

/// A deposit acknowledged before the cut, re-sent with its Idempotency-Key (and the session
/// issued before the cut) to the restored bank: the same answer, applied once.
async fn replay_after_restore(
    restored: &TestBank,
    savers: &[(Customer, Vec<String>)],
    sent: &[SentDeposit],
    began: Instant,
) {
    let first = sent
        .iter()
        .find(|s| s.acked_before(began))
        .expect("a deposit acknowledged before the backup");
    let customer = &savers[first.customer].0;
    let before = restored.ops.drained(SETTLE).await.accounts[&first.account].balance;
    let body = money("deposit", &first.account, first.amount, &customer.pw);
    let again = restored
        .request_with_key(&customer.token, &first.key, body)
        .await;
    assert_eq!(
        Some(again),
        first.reply(),
        "the replay answers as before the backup"
    );
    let after = restored.ops.drained(SETTLE).await.accounts[&first.account].balance;
    assert_eq!(after, before, "the replay applied nothing");
}

#[tokio::test]
async fn a_stopped_data_dir_backs_up_and_restores_and_the_restored_bank_serves_it() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 7_000).await;
    bank.ops.drained(SETTLE).await;
    let dir = killed(bank);
    let target = tempfile::tempdir().unwrap();
    let dest = target.path().join("stopped");
    let report = backup(dir.path(), &dest).await;
    println!("backup of a stopped data dir: {report}");
    assert_eq!(report["pauseMs"].as_f64(), Some(0.0), "nothing to pause");
    let new = tempfile::tempdir().unwrap();
    let (code, said) = restore(&dest, new.path()).await;
    assert_eq!(code, 0, "{said}");
    let restored = TestBank::start_in(new, &[], &[]).await;
    let (status, body) = restored.balance(&alice.token, "1001").await;
    let read: wire::ReadAnswer = wire::decode(&body);
    assert_eq!((status, read.balance), (200, Some(7_000)), "{body}");
    let (status, body) = restored.login("alice@test", &alice.pw).await;
    assert_eq!(status, 200, "the customer logs in: {body}");
}

#[tokio::test]
async fn restore_refuses_a_non_empty_target_a_damaged_file_and_a_missing_manifest_writing_nothing()
{
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 1_000).await;
    let target = tempfile::tempdir().unwrap();
    let dest = target.path().join("b");
    // The admin listener's backup routes want the internal token.
    for route in ["/backup", "/backup/pause", "/backup/resume"] {
        let url = format!("{}{route}", bank.ops.admin["account"]);
        let status = reqwest::Client::new()
            .post(&url)
            .json(&serde_json::json!({"to": dest, "holdMs": 1000}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 403, "{route} without the internal token");
    }
    assert!(!dest.exists());
    backup(bank.data_dir(), &dest).await;
    let places = tempfile::tempdir().unwrap();

    let busy = places.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("keep.txt"), "mine").unwrap();
    let (code, said) = restore(&dest, &busy).await;
    assert_ne!(code, 0);
    assert!(said.contains("not empty"), "{said}");
    assert_eq!(
        files_under(&busy),
        vec![busy.join("keep.txt")],
        "NEW untouched"
    );

    let (code, said) = onlinebank(&[
        "backup",
        "--data-dir",
        &bank.data_dir().display().to_string(),
        "--to",
        &busy.display().to_string(),
    ])
    .await
    .into_parts();
    assert_ne!(code, 0, "a backup into a non-empty directory is refused");
    assert!(said.contains("not empty"), "{said}");

    let mut damaged = std::fs::read(dest.join("account.db")).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x01;
    std::fs::write(dest.join("account.db"), &damaged).unwrap();
    let fresh = places.path().join("fresh");
    let (code, said) = restore(&dest, &fresh).await;
    assert_ne!(code, 0);
    assert!(
        said.contains("account.db") && said.contains("damaged"),
        "{said}"
    );
    assert!(!fresh.exists(), "nothing written for a damaged backup");

    std::fs::remove_file(dest.join("manifest.json")).unwrap();
    let (code, said) = restore(&dest, &fresh).await;
    assert_ne!(code, 0);
    assert!(said.contains("manifest"), "{said}");
    assert!(!fresh.exists(), "nothing written without a manifest");
    assert_eq!(
        std::fs::read_dir(places.path()).unwrap().count(),
        1,
        "no working directory left beside the targets"
    );
}

/// Exit code and everything a command printed.
trait IntoParts {
    fn into_parts(self) -> (i32, String);
}

impl IntoParts for (i32, String, String) {
    fn into_parts(self) -> (i32, String) {
        (self.0, format!("{}{}", self.1, self.2))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_serve_processes_on_one_data_dir_give_one_cut() {
    let cluster = Cluster::start().await;
    let savers = customers(&cluster.api).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (tasks, sent) = deposit_until(&cluster.api, &savers, &stop);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let target = tempfile::tempdir().unwrap();
    let dest = target.path().join("cluster");
    let began = Instant::now();
    let report = backup(cluster.data_dir(), &dest).await;
    let ended = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    println!("backup of six serve processes: {report}");
    let sent = sent.lock().unwrap().clone();
    let new = tempfile::tempdir().unwrap();
    let (code, said) = restore(&dest, new.path()).await;
    assert_eq!(code, 0, "{said}");
    let restored = TestBank::start_in(new, &[], &[]).await;
    let snapshot = restored.ops.drained(SETTLE).await;
    check_the_cut(&restored.api, &savers, &sent, began, ended, &snapshot).await;
}

#[tokio::test]
async fn a_backup_waits_for_a_process_starting_on_the_data_dir_and_names_it() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 1_000).await;
    // A process that has announced itself but has no admin listener yet (this test's own
    // process, holding its record's lock as a starting `serve` would).
    let pid = std::process::id();
    let record = bank.data_dir().join("serving").join(format!("{pid}.json"));
    std::fs::write(
        &record,
        format!(r#"{{"pid":{pid},"adminUrl":null,"roles":["request"]}}"#),
    )
    .unwrap();
    let held = std::fs::File::open(&record).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let target = tempfile::tempdir().unwrap();
    let dest = target.path().join("b");
    let (code, said) = onlinebank(&[
        "backup",
        "--data-dir",
        &bank.data_dir().display().to_string(),
        "--to",
        &dest.display().to_string(),
    ])
    .await
    .into_parts();
    assert_ne!(code, 0, "no cut while a process starts: {said}");
    assert!(
        said.contains(&format!("process {pid} is starting")),
        "{said}"
    );
    assert!(!dest.exists(), "nothing written");
    drop(held);
    std::fs::remove_file(&record).unwrap();
    let report = backup(bank.data_dir(), &dest).await;
    assert!(report["bytes"].as_u64() > Some(0), "{report}");
}

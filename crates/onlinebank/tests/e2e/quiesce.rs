//! A quiesced backup in distributed mode (issue 24, section 4): the gateways pause new writes
//! (`POST /quiesce` on their admin listeners) until no outbox, consumer group or request holds
//! anything in flight; one `pg_dump` is then a complete cut. Restored into a fresh database with
//! a fresh Kafka namespace, every store agrees at once (nothing was left on Kafka), every deposit
//! acknowledged before the pause is there, none refused or sent after it, and the bank serves.
//! `up` serves the same routes on its one admin listener.

use crate::support::*;
use onlinebank_core::quiet;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Customers depositing at once (half through each gateway), and accounts each.
const CLIENTS: usize = 4;
const ACCOUNTS_EACH: usize = 3;
/// What each account is opened with.
const OPENING: i64 = 1_000;
/// The secret both clusters share, as a deployment's Secret would: sessions outlive the restore.
const SECRET: &str = "quiesce-test-secret-0123456789";

/// The cluster's knobs on `services`, with the shared secret.
fn knobs(services: &Distributed) -> Vec<String> {
    let mut knobs = services.knobs();
    knobs.extend(["--token-secret".into(), SECRET.into()]);
    knobs
}

/// One process per role, `gateways` gateways, on `services`; the internal token from `SECRET`.
async fn cluster_on(services: &Distributed, gateways: usize) -> Cluster {
    let knobs = knobs(services);
    let knobs: Vec<&str> = knobs.iter().map(String::as_str).collect();
    let mut cluster =
        Cluster::start_layout(&knobs, |role| if role == "gateway" { gateways } else { 1 }).await;
    let secret = onlinebank_core::secret::MasterSecret::from_bytes(SECRET.as_bytes().to_vec())
        .expect("secret");
    cluster.ops.token = secret
        .derive("onlinebank internal v1")
        .0
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    cluster
}

/// Customers with their accounts, opened.
async fn customers(api: &Api) -> Vec<(Customer, Vec<String>)> {
    api.savers("quiet", 7000, (CLIENTS, ACCOUNTS_EACH), OPENING)
        .await
}

/// Deposits from every customer at once through `gateways` in turn, each with an amount no other
/// deposit has, until `stop`; a refused one is waited out briefly and not sent again.
fn deposit_until(
    gateways: &[Api],
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
        let api = gateways[client % gateways.len()].clone();
        let (stop, sent, next_amount) = (stop.clone(), sent.clone(), next_amount.clone());
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
                let paused = deposit.paused();
                sent.lock().unwrap().push(deposit);
                if paused {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }));
    }
    (tasks, sent)
}

/// `POST {admin}{path}` on a gateway's admin listener.
async fn admin_post(admin: &str, path: &str) -> (u16, Value) {
    let reply = reqwest::Client::new()
        .post(format!("{admin}{path}"))
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("admin call");
    let status = reply.status().as_u16();
    let text = reply.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The directory of the PostgreSQL client programs: `PG_BINDIR`, else the newest server
/// installation dev/postgres.sh would use, else whatever `PATH` has.
fn pg_bindir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BINDIR") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("pg_dump").is_file())
        .collect();
    found.sort_by_key(|bin| {
        bin.parent()
            .and_then(|version| version.file_name())
            .and_then(|name| name.to_str()?.parse::<u32>().ok())
    });
    found.pop()
}

/// Runs a PostgreSQL client program; the test fails unless it succeeds.
async fn pg_tool(program: &str, args: &[&str]) {
    let path = pg_bindir().map_or_else(|| PathBuf::from(program), |dir| dir.join(program));
    let output = tokio::process::Command::new(&path)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|error| panic!("running {}: {error}", path.display()));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and Kafka (ONLINEBANK_TEST_POSTGRES, ONLINEBANK_TEST_KAFKA): ./.ci/run runs it"]
async fn a_quiesced_pg_dump_under_load_restores_onto_a_fresh_database_and_kafka_namespace() {
    let services = Distributed::create("quiesce", 4).await;
    let cluster = cluster_on(&services, 2).await;
    let gateways = [
        cluster.api.clone(),
        Api::new(&cluster.ops.urls["gateway#2"]),
    ];
    let admins = [
        cluster.ops.admin["gateway"].clone(),
        cluster.ops.admin["gateway#2"].clone(),
    ];
    let savers = customers(&cluster.api).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (tasks, sent) = deposit_until(&gateways, &savers, &stop);
    tokio::time::sleep(Duration::from_millis(2000)).await;

    // Pause every gateway first (answers at once), then wait for quiet on each.
    let asked = Instant::now();
    for admin in &admins {
        let (status, body) = admin_post(admin, "/quiesce?timeoutMs=0").await;
        assert!(status == 200 || status == 503, "{status} {body}");
    }
    let mut ready = Vec::new();
    for admin in &admins {
        let (status, body) = admin_post(admin, "/quiesce").await;
        assert_eq!(
            (status, &body["ready"]),
            (200, &Value::Bool(true)),
            "{body}"
        );
        ready.push(body);
    }
    let quiet_at = Instant::now();
    let pause = quiet_at - asked;
    let snapshot = cluster
        .ops
        .snapshot()
        .await
        .expect("a snapshot while quiet");
    assert_eq!(
        snapshot.inconsistency(),
        None,
        "quiet means every store agrees"
    );

    let (saver, accounts) = &savers[0];
    for api in &gateways {
        let reply = api
            .post_req("/api/v1/requests")
            .bearer(&saver.token)
            .json(money("deposit", &accounts[0], 1, &saver.pw))
            .send()
            .await;
        assert_eq!(reply.status, 503, "a write while paused: {}", reply.text);
        assert_eq!(
            reply.body["error"]["code"], "service_busy",
            "{}",
            reply.text
        );
        assert!(reply.header("retry-after").is_some(), "Retry-After");
        let (status, body) = api.balance(&saver.token, &accounts[0]).await;
        assert_eq!(status, 200, "reads go on while paused: {body}");
        let (status, body) = api.login(&saver.user, &saver.pw).await;
        assert_eq!(status, 200, "logins go on while paused: {body}");
    }

    let dump = tempfile::tempdir().unwrap();
    let file = dump.path().join("bank.dump");
    let file_arg = file.display().to_string();
    let dump_began = Instant::now();
    pg_tool("pg_dump", &["-Fc", "-f", &file_arg, &services.database]).await;
    let dumped_in = dump_began.elapsed();
    let resumed_at = Instant::now();
    let mut refused_for = Duration::ZERO;
    for admin in &admins {
        let (status, body) = admin_post(admin, "/resume").await;
        assert_eq!(
            (status, &body["resumed"]),
            (200, &Value::Bool(true)),
            "{body}"
        );
        let paused_ms = body["pausedMs"].as_u64().unwrap_or(0);
        refused_for = refused_for.max(Duration::from_millis(paused_ms));
    }

    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    let sent = sent.lock().unwrap().clone();
    let after_resume = sent
        .iter()
        .filter(|s| s.sent_at > resumed_at && s.completed())
        .count();
    let refused: Vec<&SentDeposit> = sent.iter().filter(|s| s.paused()).collect();
    println!(
        "quiesced backup: {} deposits sent, {} refused while paused, {after_resume} completed after \
         resume; quiesce call -> ready {} ms ({ready:?}); pg_dump {} ms; writes refused for {} ms",
        sent.len(),
        refused.len(),
        pause.as_millis(),
        dumped_in.as_millis(),
        refused_for.as_millis()
    );
    assert!(after_resume > 0, "the load went on after resume");
    assert!(
        refused.iter().all(|s| s
            .answer
            .as_ref()
            .is_ok_and(|reply| reply.header("retry-after").is_some())),
        "every refusal says when to come back"
    );
    cluster.ops.drained(SETTLE).await;
    drop(cluster);

    let fresh = Distributed::create("quiesce_restored", 4).await;
    pg_tool(
        "pg_restore",
        &["--no-owner", "-d", &fresh.database, &file_arg],
    )
    .await;
    let restored = cluster_on(&fresh, 1).await;
    let at_start = restored.ops.snapshot().await.expect("a snapshot");
    assert_eq!(
        at_start.inconsistency(),
        None,
        "the cut needs nothing from Kafka: every store agrees from the start"
    );
    check_the_cut(&restored, &savers, &sent, quiet_at, resumed_at, &at_start).await;

    let reply = restored
        .deposit(&saver.token, &saver.pw, &accounts[0], 5)
        .await;
    let before = at_start.accounts[accounts[0].as_str()].balance;
    assert_eq!(expect_ok(&reply, 200)["balance"], before + 5, "{}", reply.1);
    restored.ops.drained(SETTLE).await;
}

/// Per account on the restored bank: every deposit acknowledged before the bank was quiet is
/// there, none refused while paused nor sent after the resume, nothing nobody sent; balance ==
/// opening + those deposits == history == the stores' snapshot.
async fn check_the_cut(
    restored: &Cluster,
    savers: &[(Customer, Vec<String>)],
    sent: &[SentDeposit],
    quiet_at: Instant,
    resumed_at: Instant,
    snapshot: &Snapshot,
) {
    let mut by_account = SentDeposit::by_account(sent);
    for (customer, accounts) in savers {
        for no in accounts {
            let mine = by_account.remove(no.as_str()).unwrap_or_default();
            let restored_amounts: BTreeSet<i64> = restored
                .all_transactions(&customer.token, no)
                .await
                .iter()
                .filter(|item| item.kind.as_deref() == Some("deposit"))
                .filter_map(|item| item.amount)
                .collect();
            for deposit in &mine {
                let here = restored_amounts.contains(&deposit.amount);
                if deposit.acked_before(quiet_at) {
                    assert!(
                        here,
                        "{no}: acknowledged before quiet, missing: {deposit:?}"
                    );
                }
                if deposit.paused() || deposit.sent_at > resumed_at {
                    assert!(
                        !here,
                        "{no}: refused or sent after resume, restored: {deposit:?}"
                    );
                }
            }
            let known: BTreeSet<i64> = mine.iter().map(|deposit| deposit.amount).collect();
            let amounts = (OPENING, &restored_amounts, &known);
            assert_restored_account(restored, &customer.token, no, amounts, snapshot).await;
        }
    }
}

/// A legacy `POST /requests` deposit (code 01), credentials in the body.
async fn legacy_deposit(api: &Api, customer: &Customer, no: &str, amount: i64) -> Reply {
    api.post_req("/requests")
        .json(json!({
            "accountNo": no, "requestId": "01", "requestName": "Deposit", "amountOfMoney": amount,
            "userId": customer.user, "userName": customer.name, "userPassword": customer.pw,
        }))
        .send()
        .await
}

#[tokio::test]
async fn up_quiesces_on_its_admin_listener_refusing_v1_and_legacy_writes_until_resumed() {
    let bank = TestBank::start().await;
    let admin = bank.ops.admin["gateway"].clone();
    let kim = bank.customer("kim@quiet").await;
    bank.open_ok(&kim, "8001", 100).await;

    let (status, body) = admin_post(&admin, "/quiesce?timeoutMs=10000").await;
    assert_eq!(
        (status, &body["ready"]),
        (200, &Value::Bool(true)),
        "{body}"
    );
    let (status, body) = bank.ops.internal("request", quiet::PATH).await.unwrap();
    assert_eq!(
        (status, body),
        (
            200,
            json!({"unsentEvents": 0, "lag": 0, "pendingRequests": 0})
        )
    );
    let v1 = bank
        .post_req("/api/v1/requests")
        .bearer(&kim.token)
        .json(money("deposit", "8001", 5, &kim.pw))
        .send()
        .await;
    let legacy = legacy_deposit(&bank.api, &kim, "8001", 5).await;
    for reply in [&v1, &legacy] {
        assert_eq!(reply.status, 503, "{}", reply.text);
        assert_eq!(
            reply.body["error"]["code"], "service_busy",
            "{}",
            reply.text
        );
        assert!(reply.header("retry-after").is_some(), "Retry-After");
    }
    let (status, body) = bank.balance(&kim.token, "8001").await;
    assert_eq!((status, &body["balance"]), (200, &json!(100)), "{body}");
    let (status, _) = bank.register("lee@quiet", "Lee", "lee-pw-123").await;
    assert!(status < 300, "sign-ups go on while paused: {status}");
    let (status, body) = admin_post(&admin, "/quiesce?timeoutMs=soon").await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = admin_post(&admin, "/resume").await;
    assert_eq!(
        (status, &body["resumed"]),
        (200, &Value::Bool(true)),
        "{body}"
    );
    assert!(body["pausedMs"].is_u64(), "{body}");
    let reply = bank.deposit(&kim.token, &kim.pw, "8001", 5).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 105, "{}", reply.1);
    assert_eq!(legacy_deposit(&bank.api, &kim, "8001", 5).await.status, 201);
    let (status, body) = admin_post(&admin, "/resume").await;
    assert_eq!((status, body), (200, json!({"resumed": false})));
}

#[tokio::test]
async fn the_quiet_endpoint_is_internal() {
    let bank = TestBank::start().await;
    let (status, body) = bank.ops.plain("request", quiet::PATH).await.unwrap();
    assert_eq!(status, 403, "{body}");
    let (status, body) = bank.get(quiet::PATH, None).await;
    assert_eq!(
        status, 404,
        "the gateway never forwards internal paths: {body}"
    );
}

//! The crash test: one process per role, a stream of deposits, withdrawals and transfers between
//! customers from several concurrent clients, `kill -9` of the account process and then of the request process
//! mid-stream, each restarted on its port. Once drained: every store agrees on every account,
//! nothing is pending, and the ledger holds exactly the operations that completed (acknowledged
//! ones included; operations whose answer was lost are resolved by their request id or by
//! retrying with their Idempotency-Key, which must not apply them twice). What an answer means,
//! how a lost one is resolved and how an account is checked is `onlinebank_client`'s, as for the
//! bench and the chaos test.

use crate::support::*;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const OPENING: i64 = 50_000;

/// The tests' client, asserting on the way that a request which answered 202 is then found
/// completed (with its balance), still pending, or cancelled: nothing else.
struct Strict<'a> {
    api: &'a Api,
    after_202: Option<String>,
}

impl Transport for Strict<'_> {
    async fn write<B: Serialize + Sync + ?Sized>(
        &self,
        token: &str,
        key: &str,
        body: &B,
    ) -> Result<(u16, Value), String> {
        Transport::write(self.api, token, key, body).await
    }

    async fn request(&self, token: &str, id: &str) -> Result<(u16, Value), String> {
        if self.after_202.as_deref() != Some(id) {
            return Transport::request(self.api, token, id).await;
        }
        let (status, body) = self.api.get_request(token, id).await;
        match (
            status,
            body["status"].as_str(),
            body["error"]["code"].as_str(),
        ) {
            (200, Some("completed"), _) => assert!(body["balance"].is_i64(), "{body}"),
            (200, Some("pending"), _) | (404, _, Some("request_cancelled")) => {}
            _ => panic!("request {id} answered 202 earlier, now: {status} {body}"),
        }
        Ok((status, body))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_account_and_request_mid_stream_loses_no_money_and_leaves_nothing_pending() {
    crash_stream(&["account", "request"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_history_mypage_and_auth_mid_stream_loses_no_money_and_leaves_nothing_pending() {
    crash_stream(&["history", "mypage", "auth"]).await;
}

/// The customers of the stream, their accounts, and the opens (operations like the others).
struct Savers {
    customers: Vec<Customer>,
    accounts: Vec<Vec<String>>,
    opens: Vec<Op>,
}

/// Three customers with two accounts each.
async fn open_savers(cluster: &Cluster) -> Savers {
    let mut savers = Savers {
        customers: Vec::new(),
        accounts: Vec::new(),
        opens: Vec::new(),
    };
    for c in 0..3 {
        let customer = cluster.customer(&format!("c{c}@crash")).await;
        let mut mine = Vec::new();
        for a in 0..2 {
            let no = format!("{}0{}", c + 1, a + 1);
            let opened = cluster.open_ok(&customer, &no, OPENING).await;
            let outcome = onlinebank_client::classify_write(200, &opened);
            assert!(
                matches!(outcome, Outcome::Completed { id: Some(_), .. }),
                "{opened}"
            );
            let open = Op::completed(c, &no, WriteKind::Open, OPENING, outcome);
            savers.opens.push(open);
            mine.push(no);
        }
        savers.customers.push(customer);
        savers.accounts.push(mine);
    }
    savers
}

/// The stream: two clients per customer, each sending deposits, withdrawals and transfers to
/// any other account (often another customer's) until `stop`.
fn stream(
    api: &Api,
    savers: &Savers,
    ops: &Arc<Mutex<Vec<Op>>>,
    completed: &Arc<AtomicUsize>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut clients = Vec::new();
    let everyone: Vec<String> = savers.accounts.iter().flatten().cloned().collect();
    for client in 0..6 {
        let c = client % 3;
        let api = api.clone();
        let customer = savers.customers[c].clone();
        let mine = savers.accounts[c].clone();
        let (ops, completed, stop) = (ops.clone(), completed.clone(), stop.clone());
        let everyone = everyone.clone();
        clients.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(client as u64 + 1);
            while !stop.load(Ordering::SeqCst) {
                let account = &mine[rng.random_range(0..mine.len())];
                let amount = rng.random_range(1..=3_000);
                let mut op = match rng.random_range(0..=99) {
                    0..45 => Op::new(c, account, WriteKind::Deposit, amount),
                    45..80 => Op::new(c, account, WriteKind::Withdraw, amount),
                    _ => {
                        let others: Vec<&String> =
                            everyone.iter().filter(|no| *no != account).collect();
                        let to = others[rng.random_range(0..others.len())];
                        Op::transfer(c, account, to, amount)
                    }
                };
                op.send(&api, &customer).await;
                let failed = matches!(op.first, Outcome::Unknown { .. } | Outcome::Busy);
                if matches!(op.first, Outcome::Completed { .. }) {
                    completed.fetch_add(1, Ordering::SeqCst);
                }
                ops.lock().unwrap().push(op);
                if failed {
                    // Pace the retries of a client that sees the bank down.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    clients
}

/// Runs the stream, `kill -9` and restarts each role in turn, then checks everything.
async fn crash_stream(kills: &[&str]) {
    let mut cluster = Cluster::start_with(&["--request-wait-ms", "1000"]).await;
    let savers = open_savers(&cluster).await;
    cluster.ops.drained(SETTLE).await;

    let ops: Arc<Mutex<Vec<Op>>> = Arc::new(Mutex::new(Vec::new()));
    let completed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients = stream(&cluster.api, &savers, &ops, &completed, &stop);
    wait_for_progress(
        &completed,
        20,
        "the stream to get going",
        Duration::from_secs(60),
    )
    .await;
    for role in kills {
        cluster[role].kill();
        let at = rfc3339_ms(std::time::SystemTime::now());
        eprintln!("crash timeline: {at} kill {role}");
        // Long enough for requests to outlive their wait (202) while a role is down.
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        cluster.restart(role).await;
        let at = rfc3339_ms(std::time::SystemTime::now());
        eprintln!("crash timeline: {at} restart {role}");
        wait_for_progress(
            &completed,
            15,
            &format!("completions after the {role} restart"),
            Duration::from_secs(60),
        )
        .await;
    }

    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.expect("a client task panicked");
    }
    let mut ops = ops.lock().unwrap().clone();
    cluster.ops.drained(Duration::from_secs(60)).await;
    resolve_all(&cluster, &savers, &mut ops).await;
    let snapshot = cluster.ops.drained(Duration::from_secs(60)).await;
    let acknowledged = summarise(&ops);
    check_accounts(&cluster, &savers, &ops, &snapshot).await;
    assert!(
        acknowledged >= 50,
        "the stream hardly ran: {acknowledged} acknowledged"
    );

    // The bank works normally afterwards.
    let c = &savers.customers[0];
    let first = &savers.accounts[0][0];
    let before = snapshot.accounts[first].balance;
    let reply = cluster.deposit(&c.token, &c.pw, first, 1).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], before + 1, "{}", reply.1);
    assert_busy_never_applied(&cluster, &savers, &ops).await;
}

/// Resolves every operation whose outcome the client did not see (a busy one is sent again:
/// nothing happened, so the retry is what decides it).
async fn resolve_all(cluster: &Cluster, savers: &Savers, ops: &mut [Op]) {
    for op in ops.iter_mut() {
        let customer = &savers.customers[op.customer];
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let strict = Strict {
            api: &cluster.api,
            after_202: match &op.last {
                Outcome::Pending { id } => Some(id.clone()),
                _ => None,
            },
        };
        op.settle(&strict, customer, deadline).await;
        assert!(op.last.is_definitive(), "could not resolve {op:?}");
    }
}

/// Prints what the client learnt, checks the refusals' reasons; the number acknowledged.
fn summarise(ops: &[Op]) -> usize {
    let count = |f: &dyn Fn(&Op) -> bool| ops.iter().filter(|op| f(op)).count();
    let acknowledged = count(&|op| matches!(op.first, Outcome::Completed { .. }));
    let pending = count(&|op| matches!(op.first, Outcome::Pending { .. }));
    let busy = count(&|op| matches!(op.first, Outcome::Busy));
    let unknown = count(&|op| matches!(op.first, Outcome::Unknown { .. }));
    eprintln!(
        "crash stream: {} operations, {acknowledged} acknowledged, {pending} answered 202, {busy} busy, {unknown} unknown",
        ops.len()
    );
    let reasons: BTreeSet<&str> = ops
        .iter()
        .filter_map(|op| match &op.first {
            Outcome::Unknown { label, .. } => Some(label.as_str()),
            _ => None,
        })
        .take(10)
        .collect();
    eprintln!("unknown outcomes (a sample): {reasons:?}");
    for op in ops {
        if let Outcome::Refused { code, .. } = &op.last {
            assert!(
                code == "insufficient_funds" || code == "interrupted" || code == "service_busy",
                "an operation was refused for an unexpected reason: {op:?}"
            );
        }
    }
    acknowledged
}

/// Every account: the stores agree, and the ledger as the customer reads it holds exactly the
/// completed operations, each once, as they were sent, and adds up to the balance.
async fn check_accounts(cluster: &Cluster, savers: &Savers, ops: &[Op], snapshot: &Snapshot) {
    let all_accounts: Vec<(usize, &String)> = savers
        .accounts
        .iter()
        .enumerate()
        .flat_map(|(c, mine)| mine.iter().map(move |no| (c, no)))
        .collect();
    assert_eq!(snapshot.accounts.len(), all_accounts.len(), "{snapshot:?}");
    assert_eq!(snapshot.pending, 0);
    for (c, no) in all_accounts {
        let row = &snapshot.accounts[no];
        let views = Views {
            balance: row.balance,
            history: snapshot.ledger.get(no).copied(),
            mypage: snapshot.mypage.get(no).map(|row| row.balance),
        };
        let ledger = ledger_of(&cluster.api, &savers.customers[c].token, no).await;
        let mine = savers
            .opens
            .iter()
            .chain(ops)
            .filter(|op| &op.account == no)
            .map(Op::sent);
        let received = ops
            .iter()
            .filter_map(Op::sent_in)
            .filter(|(to, _)| to == no)
            .map(|(_, sent)| sent);
        let sent: Vec<Sent> = mine.chain(received).collect();
        let violations = check_account(no, views, &ledger, &sent);
        assert!(violations.is_empty(), "{}", violations.join("\n"));
    }
}

/// "service_busy: nothing happened": an operation answered busy was not applied by that
/// attempt, so if its key's request completed, that request was created by the retry.
async fn assert_busy_never_applied(cluster: &Cluster, savers: &Savers, ops: &[Op]) {
    let mut busy_but_applied = Vec::new();
    for op in ops {
        let busy = matches!(&op.first, Outcome::Busy);
        let Outcome::Completed { id: Some(id), .. } = &op.last else {
            continue;
        };
        if !busy {
            continue;
        }
        let token = &savers.customers[op.customer].token;
        let (status, request) = cluster.get_request(token, id).await;
        assert_eq!(status, 200, "{request}");
        if let Some(created) = request["createdAt"].as_str() {
            if created.len() == op.first_at.len() && created < op.first_at.as_str() {
                busy_but_applied.push(format!(
                    "{} {} on {}: answered service_busy at {}, but request {id} created at {created} completed",
                    op.kind.name(), op.amount, op.account, op.first_at
                ));
            }
        }
    }
    assert!(
        busy_but_applied.is_empty(),
        "503 service_busy means nothing happened, yet {} such operations were applied:\n{}",
        busy_but_applied.len(),
        busy_but_applied.join("\n")
    );
}

#[test]
fn rfc3339_formatting_matches_known_dates() {
    let at = |secs: u64, ms: u64| std::time::UNIX_EPOCH + Duration::from_millis(secs * 1_000 + ms);
    assert_eq!(rfc3339_ms(at(0, 0)), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339_ms(at(951_782_400, 7)), "2000-02-29T00:00:00.007Z");
    assert_eq!(
        rfc3339_ms(at(1_795_609_234, 609)),
        "2026-11-25T12:20:34.609Z"
    );
}

#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The chaos test: distributed mode (PostgreSQL + Kafka) with two processes of every role,
//! 200 concurrent customers opening, depositing, withdrawing, closing and reading for a minute,
//! while a random role process is `kill -9`ed and restarted every few seconds (every role at
//! least twice) and the Kafka broker is restarted once. Then it drains, resolves every operation
//! whose answer was lost, checks, and prints one summary line:
//!
//! `chaos: attempted N, acknowledged N, rejected N, ..., kills N, violations N`
//!
//! Violations: an acknowledged operation not applied exactly once, a rejected one applied, an
//! account whose balance differs between account, history and mypage or from its operations,
//! a negative balance, a request left pending, an event left unconsumed.
//!
//! What an answer means, how a lost one is resolved and how an account is checked is
//! `onlinebank_kit`'s, as for the bench and the crash tests.
//!
//! Knobs: `CHAOS_SECS` (default 60), `CHAOS_CUSTOMERS` (default 200). Run it with
//! `dev/chaos.sh` (which starts PostgreSQL and Kafka) or `./.ci/run`.

#[path = "e2e/support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod support;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

#[derive(Debug, Clone)]
struct Op {
    customer: usize,
    account: String,
    kind: &'static str,
    amount: i64,
    key: String,
    first: Answer,
    last: Answer,
}

impl Op {
    fn body(&self, pw: &str) -> Value {
        match self.kind {
            "open" => {
                json!({"type": "open", "accountNo": self.account, "amount": self.amount, "password": pw})
            }
            "close" => json!({"type": "close", "accountNo": self.account, "password": pw}),
            kind => money(kind, &self.account, self.amount, pw),
        }
    }

    fn sent(&self) -> Sent<'_> {
        Sent {
            kind: self.kind,
            amount: self.amount,
            first: &self.first,
            last: &self.last,
        }
    }
}

#[derive(Default)]
struct Tally {
    reads: AtomicUsize,
    reads_ok: AtomicUsize,
    completed: AtomicUsize,
}

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|raw| raw.parse().ok())
        .unwrap_or(default)
}

/// Asks again (same Idempotency-Key) or looks the request up until the answer is definitive.
async fn settle(api: &Api, customer: &Customer, op: &mut Op, deadline: Instant) {
    let body = op.body(&customer.pw);
    op.last = resolve(
        api,
        &customer.token,
        &op.key,
        &body,
        op.last.clone(),
        deadline,
    )
    .await;
}

/// One customer's session: open an account, move money, read, sometimes empty and close it
/// and open another. Every write carries an Idempotency-Key; an unknown outcome is asked
/// again through the other gateway until it is definitive (or the run ends).
async fn customer_loop(
    c: usize,
    customer: Customer,
    gateways: Vec<Api>,
    ops: Arc<Mutex<Vec<Op>>>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(c as u64 * 7919 + 17);
    let mut account: Option<String> = None;
    let mut opened = 0;
    let mut gw = c % gateways.len();
    let mut closing = false;
    while !stop.load(Ordering::SeqCst) {
        let (kind, no, amount) = match (&account, closing) {
            (None, _) => {
                opened += 1;
                let no = format!("9{c:03}{opened:02}");
                ("open", no, rng.random_range(10_000..=90_000))
            }
            (Some(no), true) => ("close", no.clone(), 0),
            (Some(no), false) => {
                let roll = rng.random_range(0..=99);
                if roll < 25 {
                    let api = &gateways[gw];
                    tally.reads.fetch_add(1, Ordering::SeqCst);
                    let read = if roll < 15 {
                        api.post_req("/api/v1/requests")
                            .bearer(&customer.token)
                            .json(json!({"type": "balance", "accountNo": no}))
                            .try_send()
                            .await
                    } else {
                        api.get_req(&format!("/api/v1/accounts/{no}"))
                            .bearer(&customer.token)
                            .try_send()
                            .await
                    };
                    if read.map(|reply| reply.status) == Ok(200) {
                        tally.reads_ok.fetch_add(1, Ordering::SeqCst);
                    } else {
                        gw = (gw + 1) % gateways.len();
                    }
                    continue;
                }
                if roll < 30 {
                    // Empty the account (at its read-model balance), then close it.
                    let read = gateways[gw]
                        .post_req("/api/v1/requests")
                        .bearer(&customer.token)
                        .json(json!({"type": "balance", "accountNo": no}))
                        .try_send()
                        .await;
                    let (status, body) = match read {
                        Ok(reply) => (reply.status, reply.body),
                        Err(_) => (0, Value::Null),
                    };
                    match body["balance"].as_i64() {
                        Some(balance) if status == 200 && balance > 0 => {
                            closing = true;
                            ("withdraw", no.clone(), balance)
                        }
                        Some(0) if status == 200 => {
                            closing = true;
                            continue;
                        }
                        _ => continue,
                    }
                } else if roll < 70 {
                    ("deposit", no.clone(), rng.random_range(1..=5_000))
                } else {
                    ("withdraw", no.clone(), rng.random_range(1..=8_000))
                }
            }
        };
        let mut op = Op {
            customer: c,
            account: no.clone(),
            kind,
            amount,
            key: uuid::Uuid::new_v4().to_string(),
            first: Answer::lost("not sent"),
            last: Answer::lost("not sent"),
        };
        op.first = send(
            &gateways[gw],
            &customer.token,
            &op.key,
            op.body(&customer.pw),
        )
        .await;
        op.last = op.first.clone();
        if matches!(op.first, Answer::Unknown { .. } | Answer::Busy) {
            gw = (gw + 1) % gateways.len();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The session needs to know how opens and closes ended before it goes on.
        if kind == "open" || kind == "close" {
            let deadline = Instant::now() + Duration::from_secs(20);
            settle(&gateways[gw], &customer, &mut op, deadline).await;
        }
        match (&op.last, kind) {
            (Answer::Completed { .. }, "open") => account = Some(no.clone()),
            (Answer::Completed { .. }, "close") => {
                account = None;
                closing = false;
            }
            // Not empty after all (a deposit still settling): go on using the account.
            (Answer::Refused { .. }, "close") => closing = false,
            (Answer::Refused { code, .. }, "withdraw")
                if closing && code == "insufficient_funds" =>
            {
                closing = false
            }
            (Answer::Unknown { .. } | Answer::Pending { .. } | Answer::Busy, "close") => {
                closing = false;
            }
            _ => {}
        }
        if matches!(op.last, Answer::Completed { .. }) {
            tally.completed.fetch_add(1, Ordering::SeqCst);
        }
        ops.lock().unwrap().push(op);
    }
}

fn kafka_script() -> String {
    format!("{}/../../dev/kafka.sh", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Kafka (ONLINEBANK_TEST_POSTGRES, ONLINEBANK_TEST_KAFKA): ./.ci/run runs it"]
async fn chaos_kills_and_a_broker_restart_lose_no_money_and_leave_nothing_pending() {
    let secs = knob("CHAOS_SECS", 60);
    let customers_n = knob("CHAOS_CUSTOMERS", 200) as usize;
    let services = Distributed::create("chaos", 8).await;
    let knobs = services.knobs();
    let mut knobs: Vec<&str> = knobs.iter().map(String::as_str).collect();
    knobs.extend(["--request-wait-ms", "3000", "--drain-delay-ms", "0"]);
    let mut cluster = Cluster::start_layout(&knobs, |_| 2).await;
    let gateways: Vec<Api> = cluster
        .urls_of("gateway")
        .iter()
        .map(|url| Api::new(url))
        .collect();
    assert_eq!(gateways.len(), 2);

    // Customers, registered a few at a time (argon2id is deliberately slow).
    let mut customers = Vec::new();
    for chunk in (0..customers_n).collect::<Vec<_>>().chunks(16) {
        let made = futures::future::join_all(chunk.iter().map(|c| {
            let api = cluster.api.clone();
            async move { api.customer(&format!("c{c}@chaos")).await }
        }))
        .await;
        customers.extend(made);
    }

    let ops: Arc<Mutex<Vec<Op>>> = Arc::new(Mutex::new(Vec::new()));
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = customers
        .iter()
        .enumerate()
        .map(|(c, customer)| {
            tokio::spawn(customer_loop(
                c,
                customer.clone(),
                gateways.clone(),
                ops.clone(),
                tally.clone(),
                stop.clone(),
            ))
        })
        .collect();

    // The chaos: every role twice in a shuffled order, then random ones, one every few
    // seconds; the broker once, a third of the way in.
    let started = Instant::now();
    let run = Duration::from_secs(secs);
    let mut rng = StdRng::seed_from_u64(2026);
    let mut schedule: Vec<&str> = ROLES.iter().chain(ROLES.iter()).copied().collect();
    for i in (1..schedule.len()).rev() {
        schedule.swap(i, rng.random_range(0..=i));
    }
    let every = run / (schedule.len() as u32 + 3);
    let mut kills: BTreeMap<String, usize> = BTreeMap::new();
    let mut broker: Option<tokio::task::JoinHandle<std::process::ExitStatus>> = None;
    let mut next = 0;
    // Until the time is up AND every role went down twice.
    while started.elapsed() < run || next < schedule.len() {
        tokio::time::sleep(every).await;
        if broker.is_none() && started.elapsed() >= run / 3 {
            eprintln!("chaos: {:?} restarting the Kafka broker", started.elapsed());
            broker = Some(tokio::spawn(async {
                tokio::process::Command::new("bash")
                    .arg(kafka_script())
                    .arg("restart")
                    .status()
                    .await
                    .expect("running dev/kafka.sh restart")
            }));
        }
        let role = if next < schedule.len() {
            schedule[next]
        } else {
            ROLES[rng.random_range(0..ROLES.len())]
        };
        next += 1;
        let name = if rng.random_range(0..=1) == 0 {
            role.to_owned()
        } else {
            format!("{role}#2")
        };
        eprintln!("chaos: {:?} kill -9 {name}", started.elapsed());
        cluster[&name].kill();
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster.restart(&name).await;
        *kills.entry(role.to_owned()).or_default() += 1;
    }
    let broker_restarted = match broker {
        Some(task) => {
            let status = task.await.expect("the broker restart task");
            assert!(status.success(), "dev/kafka.sh restart failed: {status}");
            true
        }
        None => false,
    };
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.expect("a client task panicked");
    }

    // Drain, then resolve every operation the client could not see end.
    cluster.ops.drained(Duration::from_secs(120)).await;
    let mut ops = ops.lock().unwrap().clone();
    let mut violations: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    for op in ops.iter_mut() {
        settle(&cluster.api, &customers[op.customer], op, deadline).await;
        if !op.last.is_definitive() {
            violations.push(format!("never resolved: {op:?}"));
        }
    }
    let snapshot = cluster.ops.drained(Duration::from_secs(120)).await;
    if snapshot.pending != 0 {
        violations.push(format!("{} requests left pending", snapshot.pending));
    }

    // Per account: the stores agree (drained checked it), the ledger holds exactly the
    // completed operations once each, and the balance is what they add up to.
    let mut by_account: BTreeMap<String, Vec<&Op>> = BTreeMap::new();
    for op in &ops {
        by_account.entry(op.account.clone()).or_default().push(op);
    }
    for (no, mine) in &by_account {
        let customer = &customers[mine[0].customer];
        let row = snapshot.accounts.get(no);
        let opened = mine
            .iter()
            .any(|op| op.kind == "open" && matches!(op.last, Answer::Completed { .. }));
        let Some(row) = row else {
            if opened {
                violations.push(format!("{no}: opened but unknown to the account role"));
            }
            continue;
        };
        if !opened {
            violations.push(format!("{no}: exists but no open completed"));
        }
        let views = Views {
            balance: row.balance,
            history: snapshot.ledger.get(no).copied(),
            mypage: snapshot.mypage.get(no).map(|m| m.balance),
        };
        let ledger = ledger_of(&cluster.api, &customer.token, no).await;
        let sent: Vec<Sent> = mine.iter().map(|op| op.sent()).collect();
        violations.extend(check_account(no, views, &ledger, &sent));
    }

    // No event left unconsumed: every consumer group's lag is zero.
    let lag = eventually(
        "every consumer group to catch up",
        Duration::from_secs(60),
        || {
            let ops = &cluster.ops;
            async move {
                let mut total = 0.0;
                for role in ["account", "history", "mypage", "request"] {
                    let (text, _) = ops.metrics(role).await?;
                    total += metric_value(&text, "consumer_lag", &[]).unwrap_or(f64::NAN);
                }
                if total == 0.0 {
                    Ok(total)
                } else {
                    Err(format!("lag {total}"))
                }
            }
        },
    )
    .await;
    if lag != 0.0 {
        violations.push(format!("{lag} events unconsumed"));
    }

    let count = |f: &dyn Fn(&Op) -> bool| ops.iter().filter(|op| f(op)).count();
    let acknowledged = count(&|op| matches!(op.first, Answer::Completed { .. }));
    let rejected = count(&|op| matches!(op.last, Answer::Refused { .. }));
    let late = count(&|op| {
        !matches!(op.first, Answer::Completed { .. }) && matches!(op.last, Answer::Completed { .. })
    });
    let mut refusals: BTreeMap<&str, usize> = BTreeMap::new();
    for op in &ops {
        if let Answer::Refused { code, .. } = &op.last {
            *refusals.entry(code.as_str()).or_default() += 1;
        }
    }
    let kills_total: usize = kills.values().sum();
    // Straight to stderr, past the test harness's capture: the summary belongs in every log.
    let _ = writeln!(
        std::io::stderr(),
        "chaos: attempted {}, acknowledged {acknowledged}, rejected {rejected} {refusals:?}, completed after a lost or late answer {late}, reads {} ({} ok), accounts {}, kills {kills_total} {kills:?}, broker restarts {}, violations {}",
        ops.len(),
        tally.reads.load(Ordering::SeqCst),
        tally.reads_ok.load(Ordering::SeqCst),
        by_account.len(),
        u8::from(broker_restarted),
        violations.len()
    );
    for violation in violations.iter().take(20) {
        eprintln!("violation: {violation}");
    }
    assert!(violations.is_empty(), "{} violations", violations.len());
    for role in ROLES {
        assert!(
            kills.get(role).copied().unwrap_or(0) >= 2,
            "{role} was killed fewer than twice: {kills:?}"
        );
    }
    assert!(broker_restarted, "the broker was not restarted");
    let completed = count(&|op| matches!(op.last, Answer::Completed { .. }));
    assert!(
        completed >= 200,
        "the load hardly ran: {completed} completed"
    );
}

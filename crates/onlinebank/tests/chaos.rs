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
//! `onlinebank_client`'s, as for the bench and the crash tests; `Op` is the crash test's too.
//!
//! Knobs: `CHAOS_SECS` (default 60), `CHAOS_CUSTOMERS` (default 200). Run it with
//! `dev/chaos.sh` (which starts PostgreSQL and Kafka) or `./.ci/run`.

#[path = "e2e/support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod support;

use onlinebank_client::wire::{EntryKind, Read, ReadAnswer};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

#[derive(Default)]
struct Tally {
    reads: AtomicUsize,
    reads_ok: AtomicUsize,
    completed: AtomicUsize,
    /// Each customer's account as last opened (a transfer's target: it may be closing or
    /// closed by the time the money arrives, which is the compensation's case).
    accounts: Mutex<BTreeMap<usize, String>>,
}

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|raw| raw.parse().ok())
        .unwrap_or(default)
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
    let mut session = Session {
        c,
        customer,
        gw: c % gateways.len(),
        gateways,
        rng: StdRng::seed_from_u64(c as u64 * 7919 + 17),
        account: None,
        opened: 0,
        closing: false,
    };
    while !stop.load(Ordering::SeqCst) {
        let Some(mut op) = session.next_write(&tally).await else {
            continue;
        };
        session.send(&mut op, &tally).await;
        if matches!(op.last, Outcome::Completed { .. }) {
            tally.completed.fetch_add(1, Ordering::SeqCst);
        }
        ops.lock().unwrap().push(op);
    }
}

/// One customer's state between writes.
struct Session {
    c: usize,
    customer: Customer,
    gateways: Vec<Api>,
    rng: StdRng,
    /// The open account, if any.
    account: Option<String>,
    opened: usize,
    /// The gateway in use.
    gw: usize,
    /// Emptying the account to close it.
    closing: bool,
}

impl Session {
    /// The next write (an open when there is no account, a close when it is empty, else a
    /// deposit or a withdrawal); `None` after a read.
    async fn next_write(&mut self, tally: &Tally) -> Option<Op> {
        let c = self.c;
        let Some(no) = self.account.clone() else {
            self.opened += 1;
            let no = format!("9{c:03}{:02}", self.opened);
            let amount = self.rng.random_range(10_000..=90_000);
            return Some(Op::new(c, &no, WriteKind::Open, amount));
        };
        if self.closing {
            return Some(Op::new(c, &no, WriteKind::Close, 0));
        }
        let roll = self.rng.random_range(0..=99);
        if roll < 25 {
            self.read(&no, roll < 15, tally).await;
            return None;
        }
        if roll < 30 {
            // Empty the account (at its read-model balance), then close it.
            return match self.balance(&no).await {
                Some(balance) if balance > 0 => {
                    self.closing = true;
                    Some(Op::new(c, &no, WriteKind::Withdraw, balance))
                }
                Some(0) => {
                    self.closing = true;
                    None
                }
                _ => None,
            };
        }
        if roll < 40 {
            if let Some(to) = self.transfer_target(tally) {
                return Some(Op::transfer(c, &no, &to, self.rng.random_range(1..=6_000)));
            }
        }
        Some(if roll < 70 {
            Op::new(c, &no, WriteKind::Deposit, self.rng.random_range(1..=5_000))
        } else {
            Op::new(
                c,
                &no,
                WriteKind::Withdraw,
                self.rng.random_range(1..=8_000),
            )
        })
    }

    /// Another customer's account, picked at random among those opened (None: none yet).
    fn transfer_target(&mut self, tally: &Tally) -> Option<String> {
        let accounts = tally.accounts.lock().unwrap();
        let others: Vec<&String> = accounts
            .iter()
            .filter(|(owner, _)| **owner != self.c)
            .map(|(_, no)| no)
            .collect();
        if others.is_empty() {
            return None;
        }
        Some(others[self.rng.random_range(0..others.len())].clone())
    }

    /// A read of the account: its balance by request (`by_request`) or the account itself; a
    /// failed read moves to the other gateway.
    async fn read(&mut self, no: &str, by_request: bool, tally: &Tally) {
        let api = &self.gateways[self.gw];
        tally.reads.fetch_add(1, Ordering::SeqCst);
        let read = if by_request {
            api.post_req("/api/v1/requests")
                .bearer(&self.customer.token)
                .body(&Read::balance(no))
                .try_send()
                .await
        } else {
            api.get_req(&format!("/api/v1/accounts/{no}"))
                .bearer(&self.customer.token)
                .try_send()
                .await
        };
        if read.map(|reply| reply.status) == Ok(200) {
            tally.reads_ok.fetch_add(1, Ordering::SeqCst);
        } else {
            self.gw = (self.gw + 1) % self.gateways.len();
        }
    }

    /// The account's balance as the read model answers it (`None`: no 200 answer).
    async fn balance(&self, no: &str) -> Option<i64> {
        let read = self.gateways[self.gw]
            .post_req("/api/v1/requests")
            .bearer(&self.customer.token)
            .body(&Read::balance(no))
            .try_send()
            .await;
        let reply = read.ok().filter(|reply| reply.status == 200)?;
        wire::decode::<ReadAnswer>(&reply.body).balance
    }

    /// Sends `op`, settles an open or a close at once (the session needs to know how they
    /// ended before it goes on), and follows what it did to the account.
    async fn send(&mut self, op: &mut Op, tally: &Tally) {
        op.send(&self.gateways[self.gw], &self.customer).await;
        if matches!(op.first, Outcome::Unknown { .. } | Outcome::Busy) {
            self.gw = (self.gw + 1) % self.gateways.len();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if matches!(op.kind, WriteKind::Open | WriteKind::Close) {
            let deadline = Instant::now() + Duration::from_secs(20);
            op.settle(&self.gateways[self.gw], &self.customer, deadline)
                .await;
        }
        match (&op.last, op.kind) {
            (Outcome::Completed { .. }, WriteKind::Open) => {
                self.account = Some(op.account.clone());
                tally
                    .accounts
                    .lock()
                    .unwrap()
                    .insert(self.c, op.account.clone());
            }
            (Outcome::Completed { .. }, WriteKind::Close) => {
                self.account = None;
                self.closing = false;
            }
            // Not empty after all (a deposit still settling): go on using the account.
            (Outcome::Refused { .. }, WriteKind::Close) => self.closing = false,
            (Outcome::Refused { code, .. }, WriteKind::Withdraw)
                if self.closing && code == "insufficient_funds" =>
            {
                self.closing = false
            }
            (
                Outcome::Unknown { .. } | Outcome::Pending { .. } | Outcome::Busy,
                WriteKind::Close,
            ) => {
                self.closing = false;
            }
            _ => {}
        }
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
    let customers = register(&cluster, customers_n).await;

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
    let chaos = wreak(&mut cluster, Duration::from_secs(secs)).await;
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
        op.settle(&cluster.api, &customers[op.customer], deadline)
            .await;
        if !op.last.is_definitive() {
            violations.push(format!("never resolved: {op:?}"));
        }
    }
    let snapshot = cluster.ops.drained(Duration::from_secs(120)).await;
    if snapshot.pending != 0 {
        violations.push(format!("{} requests left pending", snapshot.pending));
    }
    let accounts = check_accounts(&cluster, &customers, &ops, &snapshot, &mut violations).await;
    violations.extend(conservation(&ops, &snapshot));
    violations.extend(lag(&cluster).await);
    summarise(&ops, &tally, accounts, &chaos, &violations);
    assert!(violations.is_empty(), "{} violations", violations.len());
    for role in ROLES {
        assert!(
            chaos.kills.get(role).copied().unwrap_or(0) >= 2,
            "{role} was killed fewer than twice: {:?}",
            chaos.kills
        );
    }
    assert!(chaos.broker_restarted, "the broker was not restarted");
    let completed = ops
        .iter()
        .filter(|op| matches!(op.last, Outcome::Completed { .. }))
        .count();
    assert!(
        completed >= 200,
        "the load hardly ran: {completed} completed"
    );
}

/// `n` customers, registered a few at a time (argon2id is deliberately slow).
async fn register(cluster: &Cluster, n: usize) -> Vec<Customer> {
    let mut customers = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(16) {
        let made = futures::future::join_all(chunk.iter().map(|c| {
            let api = cluster.api.clone();
            async move { api.customer(&format!("c{c}@chaos")).await }
        }))
        .await;
        customers.extend(made);
    }
    customers
}

/// What the chaos did: kills per role, and whether the broker was restarted.
struct Chaos {
    kills: BTreeMap<String, usize>,
    broker_restarted: bool,
}

/// The chaos: every role twice in a shuffled order, then random ones, one every few seconds;
/// the broker once, a third of the way in. Until `run` is over and every role went down twice.
async fn wreak(cluster: &mut Cluster, run: Duration) -> Chaos {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(2026);
    let mut schedule: Vec<&str> = ROLES.iter().chain(ROLES.iter()).copied().collect();
    for i in (1..schedule.len()).rev() {
        schedule.swap(i, rng.random_range(0..=i));
    }
    let every = run / (schedule.len() as u32 + 3);
    let mut kills: BTreeMap<String, usize> = BTreeMap::new();
    let mut broker: Option<tokio::task::JoinHandle<std::process::ExitStatus>> = None;
    let mut next = 0;
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
    Chaos {
        kills,
        broker_restarted,
    }
}

/// Per account: the stores agree (drained checked it), the ledger holds exactly the completed
/// operations once each, and the balance is what they add up to. Returns the accounts touched.
async fn check_accounts(
    cluster: &Cluster,
    customers: &[Customer],
    ops: &[Op],
    snapshot: &Snapshot,
    violations: &mut Vec<String>,
) -> usize {
    // Per account: what was sent that moves it (a transfer on both its accounts), and its owner.
    let mut by_account: BTreeMap<&str, Vec<Sent>> = BTreeMap::new();
    let mut owner: BTreeMap<&str, usize> = BTreeMap::new();
    for op in ops {
        by_account.entry(&op.account).or_default().push(op.sent());
        if let Some((to, sent)) = op.sent_in() {
            by_account.entry(to).or_default().push(sent);
        }
        if op.kind == WriteKind::Open {
            owner.insert(&op.account, op.customer);
        }
    }
    for (no, sent) in &by_account {
        let Some(customer) = owner.get(no).map(|c| &customers[*c]) else {
            // Only ever a transfer's target that was never opened: nothing may exist there.
            if snapshot.accounts.contains_key(*no) {
                violations.push(format!("{no}: exists but was never opened"));
            }
            continue;
        };
        let row = snapshot.accounts.get(*no);
        let opened = sent
            .iter()
            .any(|s| s.kind == EntryKind::Open && matches!(s.last, Outcome::Completed { .. }));
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
            history: snapshot.ledger.get(*no).copied(),
            mypage: snapshot.mypage.get(*no).map(|m| m.balance),
        };
        let ledger = ledger_of(&cluster.api, &customer.token, no).await;
        violations.extend(check_account(no, views, &ledger, sent));
    }
    by_account.len()
}

/// Money is conserved across the bank: the sum of all balances equals the completed opening
/// amounts plus deposits minus withdrawals (a completed transfer moves money between two balances
/// and adds nothing; a returned one moved nothing), and no won is left in flight.
fn conservation(ops: &[Op], snapshot: &Snapshot) -> Option<String> {
    let completed = ops
        .iter()
        .filter(|op| matches!(op.last, Outcome::Completed { .. }));
    let expected: i64 = completed
        .map(|op| match op.kind {
            WriteKind::Open | WriteKind::Deposit => op.amount,
            WriteKind::Withdraw => -op.amount,
            WriteKind::Close | WriteKind::Transfer => 0,
        })
        .sum();
    let held: i64 = snapshot.accounts.values().map(|row| row.balance).sum();
    let in_flight: i64 = snapshot.accounts.values().map(|row| row.in_flight).sum();
    let transfers = ops
        .iter()
        .filter(|op| op.kind == WriteKind::Transfer)
        .count();
    eprintln!(
        "chaos: money: balances {held}, opening + deposits - withdrawals {expected}, in flight \
         {in_flight}; {transfers} transfers sent"
    );
    (held != expected || in_flight != 0).then(|| {
        format!("money not conserved: balances {held} (+{in_flight} in flight) != {expected}")
    })
}

/// No event left unconsumed: every consumer group's lag is zero (else the violation).
async fn lag(cluster: &Cluster) -> Option<String> {
    let lag = eventually(
        "every consumer group to catch up",
        Duration::from_secs(60),
        || {
            let ops = &cluster.ops;
            async move {
                let mut total = 0.0;
                for role in ["account", "history", "mypage", "request"] {
                    let (text, _) = ops.metrics(role).await?;
                    total +=
                        metric_value(&text, "onlinebank_consumer_lag", &[]).unwrap_or(f64::NAN);
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
    (lag != 0.0).then(|| format!("{lag} events unconsumed"))
}

/// The summary line, and the first violations.
fn summarise(ops: &[Op], tally: &Tally, accounts: usize, chaos: &Chaos, violations: &[String]) {
    let count = |f: &dyn Fn(&Op) -> bool| ops.iter().filter(|op| f(op)).count();
    let acknowledged = count(&|op| matches!(op.first, Outcome::Completed { .. }));
    let rejected = count(&|op| matches!(op.last, Outcome::Refused { .. }));
    let late = count(&|op| {
        !matches!(op.first, Outcome::Completed { .. })
            && matches!(op.last, Outcome::Completed { .. })
    });
    let mut refusals: BTreeMap<&str, usize> = BTreeMap::new();
    for op in ops {
        if let Outcome::Refused { code, .. } = &op.last {
            *refusals.entry(code.as_str()).or_default() += 1;
        }
    }
    let kills = &chaos.kills;
    let kills_total: usize = kills.values().sum();
    // Straight to stderr, past the test harness's capture: the summary belongs in every log.
    let _ = writeln!(
        std::io::stderr(),
        "chaos: attempted {}, acknowledged {acknowledged}, rejected {rejected} {refusals:?}, completed after a lost or late answer {late}, reads {} ({} ok), accounts {accounts}, kills {kills_total} {kills:?}, broker restarts {}, violations {}",
        ops.len(),
        tally.reads.load(Ordering::SeqCst),
        tally.reads_ok.load(Ordering::SeqCst),
        u8::from(chaos.broker_restarted),
        violations.len()
    );
    for violation in violations.iter().take(20) {
        eprintln!("violation: {violation}");
    }
}

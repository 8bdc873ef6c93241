//! What the clients do: the setup (customers, sessions, accounts), the ceilings (`/health/live`
//! and `/api/v1/ping` under the same concurrency) and the mixed workload, while keeping the
//! bench's own ledger of every acknowledged deposit and withdrawal.
//!
//! The ledger is what makes the bench check itself: an account's expected balance is its opening
//! amount plus the deposits and minus the withdrawals the bank acknowledged (200 completed); any
//! write whose outcome the client could not know is set aside with its Idempotency-Key, to be
//! resolved before the invariants are judged.

use super::stats::Recorder;
use anyhow::{bail, Context};
use futures::StreamExt;
use onlinebank_client::wire::{LegacyDeposit, Login, NewSession, SignUp, Write, WriteKind};
use onlinebank_client::{send_resolved, Client, Outcome, Reply};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The operations of the mix, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Deposit,
    Withdraw,
    Balance,
    History,
    /// The original system's deposit: `POST /requests` with the credentials in the body.
    LegacyDeposit,
    /// From one of the bench's accounts to another (often another customer's).
    Transfer,
}

impl Op {
    pub const ALL: [Op; 6] = [
        Op::Deposit,
        Op::Withdraw,
        Op::Balance,
        Op::History,
        Op::LegacyDeposit,
        Op::Transfer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Deposit => "deposit",
            Op::Withdraw => "withdraw",
            Op::Balance => "balance",
            Op::History => "history",
            Op::LegacyDeposit => "legacy_deposit",
            Op::Transfer => "transfer",
        }
    }

    /// The write this operation sends (a legacy deposit is resolved as a deposit).
    pub fn write_kind(self) -> WriteKind {
        match self {
            Op::Withdraw => WriteKind::Withdraw,
            Op::Transfer => WriteKind::Transfer,
            _ => WriteKind::Deposit,
        }
    }

    pub fn index(self) -> usize {
        match self {
            Op::Deposit => 0,
            Op::Withdraw => 1,
            Op::Balance => 2,
            Op::History => 3,
            Op::LegacyDeposit => 4,
            Op::Transfer => 5,
        }
    }
}

/// Operation weights, e.g. `deposit=40,withdraw=20,balance=30,history=10`.
#[derive(Debug, Clone)]
pub struct Mix {
    pub weights: [u32; 6],
}

impl Mix {
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        let mut weights = [0u32; 6];
        for part in raw
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            let (name, weight) = part
                .split_once('=')
                .with_context(|| format!("--mix: expected name=weight, got {part:?}"))?;
            let op = Op::ALL
                .into_iter()
                .find(|op| op.name() == name.trim())
                .with_context(|| {
                    format!(
                        "--mix: unknown operation {name:?} (deposit, withdraw, balance, \
                         history, legacy_deposit, transfer)"
                    )
                })?;
            weights[op.index()] = weight
                .trim()
                .parse()
                .with_context(|| format!("--mix: bad weight in {part:?}"))?;
        }
        if weights.iter().all(|weight| *weight == 0) {
            bail!("--mix: at least one operation needs a weight above 0");
        }
        Ok(Self { weights })
    }

    fn pick(&self, rng: &mut StdRng) -> Op {
        let total: u32 = self.weights.iter().sum();
        let mut roll = rng.random_range(0..total);
        for op in Op::ALL {
            let weight = self.weights[op.index()];
            if roll < weight {
                return op;
            }
            roll -= weight;
        }
        Op::Balance
    }

    pub fn describe(&self) -> String {
        Op::ALL
            .iter()
            .map(|op| format!("{}={}", op.name(), self.weights[op.index()]))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A customer the bench registered, with its session token.
pub struct Customer {
    pub user_id: String,
    pub token: String,
}

/// An account the bench opened, with its ledger of acknowledged operations.
pub struct Account {
    pub no: String,
    pub customer: usize,
    pub opening: i64,
    /// Opening + acknowledged deposits - acknowledged withdrawals.
    pub expected: AtomicI64,
    /// Ledger entries the read side should show: the opening plus every acknowledged write.
    pub entries: AtomicU64,
}

impl Account {
    /// One acknowledged item of `delta` won.
    fn record(&self, delta: i64) {
        self.expected.fetch_add(delta, Ordering::SeqCst);
        self.entries.fetch_add(1, Ordering::SeqCst);
    }
}

/// One write the bench sends: `op` (a deposit, a withdrawal, a legacy deposit or a transfer) of
/// `amount` on account `account` (a transfer's source), to account `to` for a transfer.
#[derive(Debug, Clone, Copy)]
pub struct Planned {
    pub op: Op,
    pub account: usize,
    pub to: Option<usize>,
    pub amount: i64,
}

/// A write whose outcome the client did not learn; resolved before the invariants are judged.
#[derive(Debug, Clone)]
pub struct Unknown {
    pub planned: Planned,
    pub key: String,
    /// What the client knew (a request id, when the answer carried one).
    pub outcome: Outcome,
}

/// Everything the clients share.
pub struct Bench {
    pub run_id: String,
    pub password: String,
    pub customers: Vec<Customer>,
    pub accounts: Vec<Account>,
    pub unknowns: Mutex<Vec<Unknown>>,
}

impl Bench {
    /// The v1 body of `planned` (None: it names an account the bench does not have).
    pub fn write_body(&self, planned: &Planned) -> Option<Write<'_>> {
        let account = self.accounts.get(planned.account)?;
        Some(match (planned.op, planned.to) {
            (Op::Transfer, Some(to)) => Write::transfer(
                &account.no,
                &self.accounts.get(to)?.no,
                planned.amount,
                &self.password,
            ),
            (op, _) => Write::money(op.write_kind(), &account.no, planned.amount, &self.password),
        })
    }

    /// Records an acknowledged `planned` in the bench's ledger (a legacy deposit is a deposit; a
    /// transfer moves the amount from its source to its target).
    pub fn apply(&self, planned: &Planned) {
        let amount = planned.amount;
        let (from, to) = match planned.op {
            Op::Withdraw => (-amount, None),
            Op::Transfer => (-amount, planned.to),
            _ => (amount, None),
        };
        if let Some(account) = self.accounts.get(planned.account) {
            account.record(from);
        }
        if let Some(target) = to.and_then(|to| self.accounts.get(to)) {
            target.record(amount);
        }
    }

    /// The original system's deposit body: credentials included.
    pub fn legacy_body<'a>(&'a self, account: &'a Account, amount: i64) -> LegacyDeposit<'a> {
        let user_id = self
            .customers
            .get(account.customer)
            .map(|customer| customer.user_id.as_str())
            .unwrap_or_default();
        LegacyDeposit {
            account_no: &account.no,
            request_id: "01",
            request_name: "Deposit",
            amount_of_money: amount,
            user_id,
            user_name: "bench",
            user_password: &self.password,
        }
    }

    pub fn token_of(&self, account: &Account) -> Option<&str> {
        self.customers
            .get(account.customer)
            .map(|customer| customer.token.as_str())
    }
}

/// How long setup calls keep retrying `service_busy` and resolving unknown outcomes.
const SETUP_PATIENCE: Duration = Duration::from_secs(60);

/// Sizes of the setup.
pub struct SetupPlan {
    pub customers: usize,
    pub accounts: usize,
    pub opening: i64,
    pub parallel: usize,
}

/// Registers the customers, logs them in and opens the accounts (spread round-robin).
pub async fn setup(api: &Client, plan: &SetupPlan) -> anyhow::Result<Bench> {
    let run_id = format!("{:08x}", rand::random::<u32>());
    let password = format!("bench-pw-{run_id}");
    let parallel = plan.parallel.max(1);

    let customers: Vec<anyhow::Result<Customer>> = futures::stream::iter(0..plan.customers.max(1))
        .map(|index| {
            let api = api.clone();
            let user_id = format!("bench-{run_id}-{index}@example.com");
            let password = password.clone();
            async move { register_and_login(&api, user_id, &password).await }
        })
        .buffered(parallel)
        .collect()
        .await;
    let customers = customers.into_iter().collect::<anyhow::Result<Vec<_>>>()?;

    let opened: Vec<anyhow::Result<Account>> = futures::stream::iter(0..plan.accounts.max(1))
        .map(|index| {
            let api = api.clone();
            let customer = index % customers.len();
            let token = customers[customer].token.clone();
            let no = format!("bench-{run_id}-{index}");
            let password = password.clone();
            let key = format!("bench-{run_id}-open-{index}");
            async move {
                let deadline = Instant::now() + SETUP_PATIENCE;
                let body = Write::open(Some(&no), Some(plan.opening), &password);
                match send_resolved(&api, &token, &key, &body, deadline).await {
                    Outcome::Completed { .. } => Ok(Account {
                        no,
                        customer,
                        opening: plan.opening,
                        expected: AtomicI64::new(plan.opening),
                        entries: AtomicU64::new(1),
                    }),
                    Outcome::Refused { code, .. } => bail!("opening account {no}: {code}"),
                    last => bail!("opening account {no}: outcome unknown ({})", last.label()),
                }
            }
        })
        .buffered(parallel)
        .collect()
        .await;
    let accounts = opened.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Bench {
        run_id,
        password,
        customers,
        accounts,
        unknowns: Mutex::new(Vec::new()),
    })
}

/// Retries a setup call while the bank answers busy or cannot be reached; the last answer.
async fn patiently<F, Fut>(mut call: F) -> Reply
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let deadline = Instant::now() + SETUP_PATIENCE;
    loop {
        let reply = call().await;
        let retry = matches!(reply.status(), Some(503) | None);
        if !retry || Instant::now() >= deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn register_and_login(
    api: &Client,
    user_id: String,
    password: &str,
) -> anyhow::Result<Customer> {
    let signup = SignUp {
        user_id: &user_id,
        name: "bench",
        password,
    };
    let reply = patiently(|| api.sign_up(&signup, None)).await;
    // customer_exists: a re-sent sign-up whose first attempt went through.
    if !reply.is_success() && reply.label() != "customer_exists" {
        bail!("registering customer {user_id}: {}", reply.label());
    }
    let login = Login {
        user_id: &user_id,
        password,
    };
    let reply = patiently(|| api.login(&login, None)).await;
    if !reply.is_success() {
        bail!("logging in as {user_id}: {}", reply.label());
    }
    let session: NewSession = reply.decode();
    if session.token.is_empty() {
        bail!("logging in: no token in the answer");
    }
    Ok(Customer {
        user_id,
        token: session.token,
    })
}

/// Runs `clients` loops of `call` until `duration` has passed; each call's answer is recorded as
/// operation `op` (the clients of a ceiling all call the same thing). Returns the wall time.
pub async fn ceiling(
    api: &Client,
    path: &'static str,
    clients: usize,
    duration: Duration,
    recorder: &Arc<Recorder>,
    op: usize,
) -> Duration {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let api = api.clone();
        let recorder = recorder.clone();
        tasks.spawn(async move {
            while Instant::now() < deadline {
                let began = Instant::now();
                let reply = api.get(path, None).await;
                if reply.is_success() {
                    recorder.ok(op, began.elapsed());
                } else {
                    recorder.error(op, &reply.label());
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    started.elapsed()
}

/// After a transport failure (the bank unreachable) a client pauses briefly instead of spinning.
async fn transport_pause(reply: &Reply) {
    if matches!(reply, Reply::Transport(_)) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Amounts: deposits 1..=10,000 won, withdrawals 1..=5,000, so balances drift upwards and most
/// withdrawals succeed.
const MAX_DEPOSIT: i64 = 10_000;
const MAX_WITHDRAW: i64 = 5_000;

/// The mixed workload: `clients` loops until `duration` has passed. Returns the wall time (the
/// last calls finish after the deadline).
pub async fn drive(
    bench: &Arc<Bench>,
    api: &Client,
    mix: &Mix,
    clients: usize,
    duration: Duration,
    recorder: &Arc<Recorder>,
) -> Duration {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients.max(1) {
        let worker = Worker {
            bench: bench.clone(),
            api: api.clone(),
            recorder: recorder.clone(),
            client,
        };
        let mix = mix.clone();
        tasks.spawn(async move { worker.run(&mix, deadline).await });
    }
    while tasks.join_next().await.is_some() {}
    started.elapsed()
}

/// One client of the mixed workload.
struct Worker {
    bench: Arc<Bench>,
    api: Client,
    recorder: Arc<Recorder>,
    client: usize,
}

impl Worker {
    /// Picks and sends operations until `deadline`.
    async fn run(&self, mix: &Mix, deadline: Instant) {
        let mut rng = StdRng::from_os_rng();
        let mut sequence = 0u64;
        while Instant::now() < deadline {
            sequence += 1;
            let op = mix.pick(&mut rng);
            let index = rng.random_range(0..self.bench.accounts.len());
            let Some(token) = self.bench.token_of(&self.bench.accounts[index]) else {
                break;
            };
            let reply = match op {
                Op::Deposit | Op::Withdraw | Op::LegacyDeposit | Op::Transfer => {
                    let max = if op == Op::Deposit || op == Op::LegacyDeposit {
                        MAX_DEPOSIT
                    } else {
                        MAX_WITHDRAW
                    };
                    let accounts = self.bench.accounts.len();
                    let planned = Planned {
                        op,
                        account: index,
                        // Any other account (with one account there is none: refused, counted).
                        to: (op == Op::Transfer)
                            .then(|| (index + rng.random_range(1..accounts.max(2))) % accounts),
                        amount: rng.random_range(1..=max),
                    };
                    self.write(planned, token, sequence).await
                }
                Op::Balance | Op::History => self.read(op, index, token).await,
            };
            transport_pause(&reply).await;
        }
    }

    /// One write, counted and kept in the bench's ledger (or set aside when its outcome is
    /// unknown).
    async fn write(&self, planned: Planned, token: &str, sequence: u64) -> Reply {
        let (bench, api) = (&self.bench, &self.api);
        let (op, amount) = (planned.op, planned.amount);
        let account = &bench.accounts[planned.account];
        let key = format!("bench-{}-{}-{sequence}", bench.run_id, self.client);
        let began = Instant::now();
        // A legacy deposit is a deposit: it counts, and is resolved through the v1 API (the same
        // key, the same request), as one.
        let (reply, outcome, applied) = if op == Op::LegacyDeposit {
            let reply = api
                .legacy_deposit(&key, &bench.legacy_body(account, amount))
                .await;
            let outcome = reply.legacy_write_outcome();
            let applied = Planned {
                op: Op::Deposit,
                ..planned
            };
            (reply, outcome, applied)
        } else {
            let Some(body) = bench.write_body(&planned) else {
                return Reply::Transport("the bench planned a write to no account");
            };
            let reply = api.write(token, &key, &body).await;
            let outcome = reply.write_outcome();
            (reply, outcome, planned)
        };
        let latency = began.elapsed();
        match outcome {
            Outcome::Completed { .. } => {
                bench.apply(&applied);
                self.recorder.ok(op.index(), latency);
            }
            // Nothing happened (busy included): the ledger stays as it is.
            Outcome::Refused { .. } | Outcome::Busy => {
                self.recorder.error(op.index(), &outcome.label())
            }
            Outcome::Pending { .. } | Outcome::Unknown { .. } => {
                self.recorder.error(op.index(), &outcome.label());
                bench
                    .unknowns
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(Unknown {
                        planned: applied,
                        key,
                        outcome,
                    });
            }
        }
        reply
    }

    /// One read of account `index`: its balance, or its ten newest transactions.
    async fn read(&self, op: Op, index: usize, token: &str) -> Reply {
        let no = &self.bench.accounts[index].no;
        let began = Instant::now();
        let reply = if op == Op::Balance {
            self.api.account(token, no).await
        } else {
            self.api.transactions(token, no, 10, None).await
        };
        if reply.is_success() {
            self.recorder.ok(op.index(), began.elapsed());
        } else {
            self.recorder.error(op.index(), &reply.label());
        }
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_weights_and_rejects_nonsense() {
        let mix = Mix::parse("deposit=40, withdraw=20,balance=30,history=10");
        assert!(matches!(&mix, Ok(mix) if mix.weights == [40, 20, 30, 10, 0, 0]));
        let only = Mix::parse("deposit=1");
        assert!(matches!(&only, Ok(mix) if mix.weights == [1, 0, 0, 0, 0, 0]));
        let legacy = Mix::parse("legacy_deposit=100");
        assert!(matches!(&legacy, Ok(mix) if mix.weights == [0, 0, 0, 0, 100, 0]));
        let transfers = Mix::parse("transfer=5");
        assert!(matches!(&transfers, Ok(mix) if mix.weights == [0, 0, 0, 0, 0, 5]));
        assert!(Mix::parse("loan=5").is_err());
        assert!(Mix::parse("deposit=x").is_err());
        assert!(Mix::parse("deposit=0").is_err());
        assert!(Mix::parse("deposit").is_err());
    }

    #[test]
    fn picks_follow_the_weights() {
        let Ok(mix) = Mix::parse("deposit=3,balance=1") else {
            panic!("mix")
        };
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = [0u32; 4];
        for _ in 0..4000 {
            counts[mix.pick(&mut rng).index()] += 1;
        }
        assert_eq!(counts[1] + counts[3], 0);
        assert!((2800..3200).contains(&counts[0]), "{counts:?}");
    }
}

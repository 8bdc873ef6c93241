//! The bench checking its own results, last: for every account it touched, the balance the read
//! side shows == the sum of the account's transactions == the bench's ledger of acknowledged
//! operations, and the number of transactions == the acknowledged writes plus the opening.
//!
//! Writes whose outcome the client never learned are resolved first (same Idempotency-Key, or
//! polling the request), then the read side is given a bounded time to catch up. A number that
//! is measured without this check proves nothing about a bank; this is what makes the throughput
//! "completed and correct" rather than merely "answered".

use super::workload::Bench;
use futures::StreamExt;
use onlinebank_client::account_check::Entry;
use onlinebank_client::wire::{Account, Page};
use onlinebank_client::{resolve, Client, Outcome};
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long unknown outcomes may take to resolve, all together.
const RESOLVE_PATIENCE: Duration = Duration::from_secs(30);
/// How long the read side may take to show every acknowledged write.
const DRAIN_PATIENCE: Duration = Duration::from_secs(30);
/// Calls in flight during the check.
const PARALLEL: usize = 16;

/// What became of the writes whose outcome was unknown during the run.
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    pub unknown: usize,
    pub applied: usize,
    pub refused: usize,
    /// Still unknown after the deadline: the accounts they touch cannot be judged.
    pub unresolved: usize,
}

/// What the invariant check found.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    pub accounts: usize,
    pub resolution: Resolution,
    /// How long the read side took to show every acknowledged write (None: it did not, in time).
    pub drained_in: Option<Duration>,
    pub violations: Vec<String>,
}

impl Findings {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Resolves the unknown outcomes into the ledger, waits for the read side, and checks every
/// account.
pub async fn check(bench: &Bench, api: &Client) -> Findings {
    let mut findings = Findings {
        accounts: bench.accounts.len(),
        ..Findings::default()
    };
    let unknowns = std::mem::take(
        &mut *bench
            .unknowns
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    );
    findings.resolution.unknown = unknowns.len();
    let deadline = Instant::now() + RESOLVE_PATIENCE;
    let resolved: Vec<(usize, Outcome)> = futures::stream::iter(unknowns.iter().enumerate())
        .map(|(index, unknown)| async move {
            let planned = &unknown.planned;
            let (Some(account), Some(body)) = (
                bench.accounts.get(planned.account),
                bench.write_body(planned),
            ) else {
                return (index, Outcome::lost("no such account"));
            };
            let token = bench.token_of(account).unwrap_or_default();
            let outcome = resolve(
                api,
                token,
                &unknown.key,
                &body,
                unknown.outcome.clone(),
                deadline,
            )
            .await;
            (index, outcome)
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    for (index, outcome) in resolved {
        let unknown = &unknowns[index];
        let planned = &unknown.planned;
        let account = bench.accounts.get(planned.account);
        match outcome {
            Outcome::Completed { .. } => {
                findings.resolution.applied += 1;
                bench.apply(planned);
            }
            Outcome::Refused { .. } => findings.resolution.refused += 1,
            last => {
                findings.resolution.unresolved += 1;
                findings.violations.push(format!(
                    "{}: {} of {} (key {}) still unknown after {RESOLVE_PATIENCE:?} ({})",
                    account.map(|a| a.no.as_str()).unwrap_or("?"),
                    planned.op.name(),
                    planned.amount,
                    unknown.key,
                    last.label()
                ));
            }
        }
    }

    findings.drained_in = drain(bench, api).await;

    let violations: Vec<Vec<String>> = futures::stream::iter(0..bench.accounts.len())
        .map(|index| check_account(bench, api, index))
        .buffered(PARALLEL)
        .collect()
        .await;
    findings.violations.extend(violations.into_iter().flatten());
    findings
}

/// The account as the read side shows it: (balance, version).
async fn read_account(bench: &Bench, api: &Client, index: usize) -> Result<(i64, i64), String> {
    let account = &bench.accounts[index];
    let token = bench.token_of(account).unwrap_or_default();
    let reply = api.account(token, &account.no).await;
    if !reply.is_success() {
        return Err(reply.label());
    }
    let shown: Account = reply.decode();
    match (shown.balance, shown.version) {
        (Some(balance), Some(version)) => Ok((balance, version)),
        _ => Err(format!(
            "unexpected account body {}",
            reply.json().unwrap_or_default()
        )),
    }
}

/// Waits until the read side shows every account at its expected balance and version (open is
/// version 1; every applied write adds one). Bounded; `None` if it did not catch up in time.
async fn drain(bench: &Bench, api: &Client) -> Option<Duration> {
    let started = Instant::now();
    let mut waiting: Vec<usize> = (0..bench.accounts.len()).collect();
    loop {
        let still: Vec<Option<usize>> = futures::stream::iter(waiting.iter().copied())
            .map(|index| async move {
                let account = &bench.accounts[index];
                let expected = account.expected.load(Ordering::SeqCst);
                let entries = i64::try_from(account.entries.load(Ordering::SeqCst)).ok();
                match read_account(bench, api, index).await {
                    Ok((balance, version)) if balance == expected && Some(version) == entries => {
                        None
                    }
                    _ => Some(index),
                }
            })
            .buffered(PARALLEL)
            .collect()
            .await;
        waiting = still.into_iter().flatten().collect();
        if waiting.is_empty() {
            return Some(started.elapsed());
        }
        if started.elapsed() >= DRAIN_PATIENCE {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One account: balance == transactions sum == ledger, entries == acknowledged writes + 1.
async fn check_account(bench: &Bench, api: &Client, index: usize) -> Vec<String> {
    let account = &bench.accounts[index];
    let no = &account.no;
    let expected = account.expected.load(Ordering::SeqCst);
    let entries = account.entries.load(Ordering::SeqCst);
    let (balance, version) = match read_account(bench, api, index).await {
        Ok((balance, version)) => (balance, version),
        Err(error) => return vec![format!("{no}: reading the account: {error}")],
    };
    let (sum, count) = match transactions(bench, api, index).await {
        Ok(totals) => totals,
        Err(error) => return vec![format!("{no}: reading the transactions: {error}")],
    };
    let mut violations = Vec::new();
    if balance != expected {
        violations.push(format!(
            "{no}: balance {balance} != the bench's ledger {expected} (opening {} + acknowledged deposits - withdrawals)",
            account.opening
        ));
    }
    if sum != balance {
        violations.push(format!(
            "{no}: sum of transactions {sum} != balance {balance}"
        ));
    }
    if count != entries {
        violations.push(format!(
            "{no}: {count} transactions != {entries} acknowledged (opening + writes); version {version}"
        ));
    }
    violations
}

/// Pages through the account's transactions: (opening + deposits - withdrawals, count).
async fn transactions(bench: &Bench, api: &Client, index: usize) -> Result<(i64, u64), String> {
    let account = &bench.accounts[index];
    let token = bench.token_of(account).unwrap_or_default();
    let mut before: Option<String> = None;
    let (mut sum, mut count) = (0i64, 0u64);
    // Bounded: at most this many pages of 100.
    for _ in 0..100_000 {
        let reply = api
            .transactions(token, &account.no, 100, before.as_deref())
            .await;
        if !reply.is_success() {
            return Err(reply.label());
        }
        let json = reply.json().unwrap_or_default();
        let page: Page<Value> = serde::Deserialize::deserialize(&json)
            .map_err(|_| format!("unexpected page {json}"))?;
        for item in &page.items {
            sum += Entry::parse(item)?.signed();
            count += 1;
        }
        before = match page.next {
            Some(cursor) => Some(cursor),
            None => return Ok((sum, count)),
        };
    }
    Err("too many pages".to_owned())
}

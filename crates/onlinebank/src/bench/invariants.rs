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
use onlinebank_kit::http::{Api, Reply};
use onlinebank_kit::ledger::Entry;
use onlinebank_kit::{resolve, Answer};
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

/// The verdict.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub accounts: usize,
    pub resolution: Resolution,
    /// How long the read side took to show every acknowledged write (None: it did not, in time).
    pub drained_in: Option<Duration>,
    pub violations: Vec<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Resolves the unknown outcomes into the ledger, waits for the read side, and checks every
/// account.
pub async fn check(bench: &Bench, api: &Api) -> Verdict {
    let mut verdict = Verdict {
        accounts: bench.accounts.len(),
        ..Verdict::default()
    };
    let unknowns = std::mem::take(
        &mut *bench
            .unknowns
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    );
    verdict.resolution.unknown = unknowns.len();
    let deadline = Instant::now() + RESOLVE_PATIENCE;
    let resolved: Vec<(usize, Answer)> = futures::stream::iter(unknowns.iter().enumerate())
        .map(|(index, unknown)| async move {
            let Some(account) = bench.accounts.get(unknown.account) else {
                return (index, Answer::lost("no such account"));
            };
            let token = bench.token_of(account).unwrap_or_default();
            let body = bench.write_body(unknown.op, account, unknown.amount);
            let outcome = resolve(
                api,
                token,
                &unknown.key,
                &body,
                unknown.answer.clone(),
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
        let account = bench.accounts.get(unknown.account);
        match outcome {
            Answer::Completed { .. } => {
                verdict.resolution.applied += 1;
                if let Some(account) = account {
                    account.apply(unknown.op, unknown.amount);
                }
            }
            Answer::Refused { .. } => verdict.resolution.refused += 1,
            last => {
                verdict.resolution.unresolved += 1;
                verdict.violations.push(format!(
                    "{}: {} of {} (key {}) still unknown after {RESOLVE_PATIENCE:?} ({})",
                    account.map(|a| a.no.as_str()).unwrap_or("?"),
                    unknown.op.name(),
                    unknown.amount,
                    unknown.key,
                    last.label()
                ));
            }
        }
    }

    verdict.drained_in = drain(bench, api).await;

    let findings: Vec<Vec<String>> = futures::stream::iter(0..bench.accounts.len())
        .map(|index| check_account(bench, api, index))
        .buffered(PARALLEL)
        .collect()
        .await;
    verdict.violations.extend(findings.into_iter().flatten());
    verdict
}

/// The account as the read side shows it: (balance, version).
async fn read_account(bench: &Bench, api: &Api, index: usize) -> Result<(i64, i64, Value), String> {
    let account = &bench.accounts[index];
    let token = bench.token_of(account).unwrap_or_default();
    let reply = api
        .get(&format!("/api/v1/accounts/{}", account.no), Some(token))
        .await;
    if !reply.is_success() {
        return Err(reply.label());
    }
    let json = reply.json().unwrap_or(Value::Null);
    let balance = json.get("balance").and_then(Value::as_i64);
    let version = json.get("version").and_then(Value::as_i64);
    match (balance, version) {
        (Some(balance), Some(version)) => Ok((balance, version, json)),
        _ => Err(format!("unexpected account body {json}")),
    }
}

/// Waits until the read side shows every account at its expected balance and version (open is
/// version 1; every applied write adds one). Bounded; `None` if it did not catch up in time.
async fn drain(bench: &Bench, api: &Api) -> Option<Duration> {
    let started = Instant::now();
    let mut waiting: Vec<usize> = (0..bench.accounts.len()).collect();
    loop {
        let still: Vec<Option<usize>> = futures::stream::iter(waiting.iter().copied())
            .map(|index| async move {
                let account = &bench.accounts[index];
                let expected = account.expected.load(Ordering::SeqCst);
                let entries = i64::try_from(account.entries.load(Ordering::SeqCst)).ok();
                match read_account(bench, api, index).await {
                    Ok((balance, version, _))
                        if balance == expected && Some(version) == entries =>
                    {
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
async fn check_account(bench: &Bench, api: &Api, index: usize) -> Vec<String> {
    let account = &bench.accounts[index];
    let no = &account.no;
    let expected = account.expected.load(Ordering::SeqCst);
    let entries = account.entries.load(Ordering::SeqCst);
    let (balance, version) = match read_account(bench, api, index).await {
        Ok((balance, version, _)) => (balance, version),
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
async fn transactions(bench: &Bench, api: &Api, index: usize) -> Result<(i64, u64), String> {
    let account = &bench.accounts[index];
    let token = bench.token_of(account).unwrap_or_default();
    let mut before: Option<String> = None;
    let (mut sum, mut count) = (0i64, 0u64);
    // Bounded: at most this many pages of 100.
    for _ in 0..100_000 {
        let path = match &before {
            Some(cursor) => format!(
                "/api/v1/accounts/{}/transactions?limit=100&before={cursor}",
                account.no
            ),
            None => format!("/api/v1/accounts/{}/transactions?limit=100", account.no),
        };
        let reply: Reply = api.get(&path, Some(token)).await;
        if !reply.is_success() {
            return Err(reply.label());
        }
        let json = reply.json().unwrap_or(Value::Null);
        let Some(items) = json.get("items").and_then(Value::as_array) else {
            return Err(format!("unexpected page {json}"));
        };
        for item in items {
            sum += Entry::parse(item)?.signed()?;
            count += 1;
        }
        before = match json.get("next") {
            Some(Value::Number(cursor)) => Some(cursor.to_string()),
            Some(Value::String(cursor)) => Some(cursor.clone()),
            _ => return Ok((sum, count)),
        };
    }
    Err("too many pages".to_owned())
}

//! The money rules, read from the roles' own tables: after every step the cheap ones, once the
//! bank drained all of them.

use crate::node::now;
use crate::saga::Answer;
use crate::world::{Violation, World, ACCOUNT, AUTH, HISTORY, MYPAGE, REQUEST};
use onlinebank_core::db::{Conn, FromRow};
use onlinebank_core::event::WriteKind;
use onlinebank_core::ids::RequestId;
use std::collections::{BTreeMap, BTreeSet};

fn rows<T: FromRow>(conn: &mut Conn, sql: &str) -> Result<Vec<T>, Violation> {
    now(conn.fetch_all(sql, &[]))
        .and_then(|rows| Ok(rows?))
        .map_err(|error| {
            broken(
                "the oracle can read the roles' tables",
                format!("{sql}: {error:#}"),
            )
        })
}

fn broken(invariant: &'static str, detail: String) -> Violation {
    Violation { invariant, detail }
}

/// An account as the account role holds it.
#[derive(Debug)]
struct Held {
    balance: i64,
    version: i64,
    status: String,
    in_flight: i64,
}

/// Every account by its number, as account holds them.
fn accounts(world: &mut World) -> Result<BTreeMap<String, Held>, Violation> {
    let held: Vec<(String, i64, i64, String, i64)> = rows(
        &mut world.nodes[ACCOUNT].conn,
        "SELECT account_no, balance, version, status, in_flight FROM accounts",
    )?;
    Ok(held
        .into_iter()
        .map(|(no, balance, version, status, in_flight)| {
            let held = Held {
                balance,
                version,
                status,
                in_flight,
            };
            (no, held)
        })
        .collect())
}

/// After every step: no negative balance or money in flight, and the read model never ahead of
/// the accounts (an equal version shows an equal balance and status).
pub fn after_step(world: &mut World) -> Result<(), Violation> {
    let accounts = accounts(world)?;
    if let Some((no, held)) = accounts
        .iter()
        .find(|(_, held)| held.balance < 0 || held.in_flight < 0)
    {
        return Err(broken("no negative balance", format!("{no}: {held:?}")));
    }
    let shown: Vec<(String, i64, i64, String)> = rows(
        &mut world.nodes[MYPAGE].conn,
        "SELECT account_no, balance, version, status FROM accounts_view",
    )?;
    for (no, balance, version, status) in shown {
        let fits = accounts.get(&no).is_some_and(|held| {
            held.version > version
                || (held.version == version && held.balance == balance && held.status == status)
        });
        if !fits {
            return Err(broken(
                "the read model never shows what the accounts do not hold",
                format!(
                    "{no}: read model {balance} v{version} {status}, account {:?}",
                    accounts.get(&no)
                ),
            ));
        }
    }
    Ok(())
}

/// Why the bank is not quiet yet, or None.
pub fn unquiet(world: &mut World) -> Option<String> {
    if let Some(node) = world.nodes.iter().find(|node| !node.up) {
        return Some(format!("{} is down", node.name));
    }
    if world.sagas_in_flight() {
        return Some("a saga is in flight".into());
    }
    for node in 0..world.nodes.len() {
        let waiting = now(world.nodes[node]
            .conn
            .scalar::<i64>("SELECT COUNT(*) FROM outbox", &[]));
        if let Ok(Ok(Some(count))) = waiting {
            if count > 0 {
                return Some(format!(
                    "{} has {count} events unshipped",
                    world.nodes[node].name
                ));
            }
        }
        for group in &world.nodes[node].groups {
            for partition in world.bus.partitions_of(group.topics) {
                let end = world.bus.len(&partition);
                let at = world.bus.committed(group.name, &partition);
                if at < end {
                    return Some(format!(
                        "{} is at {at} of {end} in {partition:?}",
                        group.name
                    ));
                }
            }
        }
    }
    let unfinished = now(world.nodes[REQUEST].conn.scalar::<i64>(
        "SELECT COUNT(*) FROM requests WHERE status != 'COMPLETED'",
        &[],
    ));
    match unfinished {
        Ok(Ok(Some(0))) => None,
        other => Some(format!("requests unfinished: {other:?}")),
    }
}

/// The kinds of ledger entries a request leaves, completed or compensated.
fn entries_of(kind: WriteKind, completed: bool) -> BTreeSet<&'static str> {
    let kinds: &[&'static str] = match (kind, completed) {
        (WriteKind::Transfer, true) => &["transfer_in", "transfer_out"],
        (kind, true) => &[match kind {
            WriteKind::Open => "open",
            WriteKind::Deposit => "deposit",
            WriteKind::Withdraw => "withdraw",
            _ => "close",
        }],
        (_, false) => &[],
    };
    kinds.iter().copied().collect()
}

/// Once drained: every account agrees in account, history and mypage; money is conserved; every
/// request is finished, applied exactly once if completed and never if compensated; every
/// answer a client got is what happened.
pub fn after_drain(world: &mut World) -> Result<(), Violation> {
    after_step(world)?;
    let accounts = accounts(world)?;
    let ledger: Vec<(String, i64, i64)> = rows(
        &mut world.nodes[HISTORY].conn,
        "SELECT account_no, CAST(SUM(signed_amount) AS BIGINT), COUNT(*) FROM ledger GROUP BY account_no",
    )?;
    let ledger: BTreeMap<String, (i64, i64)> = ledger
        .into_iter()
        .map(|(no, sum, count)| (no, (sum, count)))
        .collect();
    let shown: Vec<(String, i64, i64, String)> = rows(
        &mut world.nodes[MYPAGE].conn,
        "SELECT account_no, balance, version, status FROM accounts_view",
    )?;
    let shown: BTreeMap<String, (i64, i64, String)> = shown
        .into_iter()
        .map(|(no, balance, version, status)| (no, (balance, version, status)))
        .collect();
    for (no, held) in &accounts {
        let Held {
            balance,
            version,
            status,
            in_flight,
        } = held;
        let agrees = ledger.get(no) == Some(&(*balance, *version))
            && shown.get(no) == Some(&(*balance, *version, status.clone()))
            && *in_flight == 0;
        if !agrees {
            return Err(broken(
                "per account: balance == ledger == read model, one entry per version, nothing in flight",
                format!(
                    "{no}: account {balance} v{version} {status} in flight {in_flight}, ledger {:?}, read model {:?}",
                    ledger.get(no),
                    shown.get(no)
                ),
            ));
        }
    }
    if ledger.len() != accounts.len() || shown.len() != accounts.len() {
        return Err(broken(
            "history and mypage know exactly the accounts account holds",
            format!(
                "{} accounts, {} in the ledger, {} in the read model",
                accounts.len(),
                ledger.len(),
                shown.len()
            ),
        ));
    }
    requests_applied_once(world, &accounts)?;
    no_password_evaluated_while_locked(world)
}

/// The lockout, read from auth's step-up audit in the order it was written: the threshold's
/// wrong passwords in a row (none more than a window after the one before) lock the customer
/// for the window, during which no password is evaluated (no `failed` or `verified` row).
fn no_password_evaluated_while_locked(world: &mut World) -> Result<(), Violation> {
    let audit: Vec<(String, String, i64)> = rows(
        &mut world.nodes[AUTH].conn,
        "SELECT user_id, outcome, at FROM step_up_audit ORDER BY id",
    )?;
    let rule = crate::auth::RULE;
    // Per customer: wrong passwords counted, the last one's time, locked until.
    let mut state: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    for (n, (user, outcome, at)) in audit.into_iter().enumerate() {
        let (count, last, locked_until) = state.entry(user.clone()).or_default();
        let evaluated = outcome == "failed" || outcome == "verified";
        if evaluated && at < *locked_until {
            return Err(broken(
                "lockout: no password is evaluated while the customer is locked",
                format!("audit row {n}: {user} {outcome} at {at}, locked until {locked_until}"),
            ));
        }
        match outcome.as_str() {
            "verified" => *count = 0,
            "failed" => {
                *count = if at - *last > rule.window {
                    1
                } else {
                    *count + 1
                };
                *last = at;
                if *count >= rule.threshold {
                    (*count, *locked_until) = (0, at + rule.window);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// What request holds: the completed requests, and the compensated ones with their reason.
struct Requests {
    completed: BTreeSet<String>,
    cancelled: BTreeMap<String, String>,
}

fn requests(world: &mut World) -> Result<Requests, Violation> {
    let conn = &mut world.nodes[REQUEST].conn;
    let completed: Vec<(String,)> =
        rows(conn, "SELECT id FROM requests WHERE status = 'COMPLETED'")?;
    let cancelled: Vec<(String, String)> = rows(conn, "SELECT id, reason FROM cancelled_requests")?;
    Ok(Requests {
        completed: completed.into_iter().map(|(id,)| id).collect(),
        cancelled: cancelled.into_iter().collect(),
    })
}

fn requests_applied_once(
    world: &mut World,
    accounts: &BTreeMap<String, Held>,
) -> Result<(), Violation> {
    let entries: Vec<(String, String)> = rows(
        &mut world.nodes[HISTORY].conn,
        "SELECT request_id, kind FROM ledger",
    )?;
    let mut applied: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (request_id, kind) in entries {
        applied.entry(request_id).or_default().push(kind);
    }
    let requests = requests(world)?;
    let mut external = 0i64;
    for attempt in world.attempts.iter().filter(|attempt| attempt.recorded) {
        let request = &world.ops[attempt.op].request;
        let id = attempt.request_id.to_string();
        let done = requests.completed.contains(&id);
        let mut kinds: Vec<String> = applied.remove(&id).unwrap_or_default();
        kinds.sort_unstable();
        let expected: Vec<&str> = entries_of(request.kind, done).into_iter().collect();
        let reversed = request.kind == WriteKind::Transfer
            && requests.cancelled.contains_key(&id)
            && kinds == ["transfer_out", "transfer_reversed"];
        if kinds != expected && !reversed {
            let standing = if done {
                "completed".to_owned()
            } else {
                format!("cancelled: {:?}", requests.cancelled.get(&id))
            };
            return Err(broken(
                "every completed request applied exactly once, every compensated one never",
                format!(
                    "op {} {} {id} ({standing}): ledger entries {kinds:?}",
                    attempt.op,
                    request.kind.as_str()
                ),
            ));
        }
        if done {
            external += match request.kind {
                WriteKind::Open | WriteKind::Deposit => request.amount.won(),
                WriteKind::Withdraw => -request.amount.won(),
                WriteKind::Close | WriteKind::Transfer => 0,
            };
        }
    }
    if let Some((id, kinds)) = applied.into_iter().next() {
        return Err(broken(
            "no money moves without a request",
            format!("{id}: {kinds:?}"),
        ));
    }
    let total: i64 = accounts.values().map(|held| held.balance).sum();
    if total != external {
        return Err(broken(
            "money is conserved: balances == opening amounts + deposits - withdrawals of completed requests",
            format!("balances {total}, completed requests {external}"),
        ));
    }
    answers_are_true(world, &requests)
}

/// Every answer a client got is what happened; a key's requests complete once at most; every
/// answer about one request says the same.
fn answers_are_true(world: &World, requests: &Requests) -> Result<(), Violation> {
    let mut first: BTreeMap<RequestId, &Answer> = BTreeMap::new();
    for (n, attempt) in world.attempts.iter().enumerate() {
        let told = &attempt.answer;
        let truthful = match told {
            Answer::Completed(id) => requests.completed.contains(&id.to_string()),
            // Compensated, whatever the stored reason: a saga that gives up on a request the
            // sweeper compensated meanwhile answers service_busy, the record says interrupted;
            // both promise that nothing happened.
            Answer::Refused(id, _) => requests.cancelled.contains_key(&id.to_string()),
            Answer::NotSent | Answer::Lost | Answer::Accepted(_) | Answer::InFlight(_) => true,
        };
        if !truthful {
            return Err(broken(
                "every answer a client got is what happened",
                format!("op {} send {n}: told {told:?}", attempt.op),
            ));
        }
        if let Answer::Completed(id) | Answer::Refused(id, _) = told {
            let earlier = *first.entry(*id).or_insert(told);
            if earlier != told {
                return Err(broken(
                    "a replayed key returns the first answer",
                    format!(
                        "op {} send {n}: told {told:?}, earlier {earlier:?}",
                        attempt.op
                    ),
                ));
            }
        }
    }
    for op in 0..world.ops.len() {
        let completed = world
            .attempts
            .iter()
            .filter(|attempt| attempt.op == op && attempt.recorded)
            .filter(|attempt| requests.completed.contains(&attempt.request_id.to_string()))
            .count();
        if completed > 1 {
            return Err(broken(
                "one Idempotency-Key, one completed request",
                format!("op {op}: {completed} of its requests completed"),
            ));
        }
    }
    Ok(())
}

//! The cross-store rules, as pure functions of what the stores hold (read by `read.rs`), so
//! each comparison is tested on its own.
//!
//! A bank stopped mid-stream (killed, or stopped while its consumers were behind) has account
//! changes in the log that history or mypage have not applied yet: they apply them when the bank
//! starts again. Those are counted with the store they are on their way to, so a store that is
//! merely behind is not reported; a store that lost or invented a change is.

use super::report::Finding;
use onlinebank_bus::embedded::OUTBOX_POSITIONS;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A per-account sum of a store's entries, or why it could not be made (an unknown kind).
pub type Sum = Result<i64, String>;

/// An account as the account role or the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountState {
    /// Won.
    pub balance: i64,
    /// `open` or `closed`.
    pub status: String,
    /// Its version: 1 on open, +1 per change.
    pub version: i64,
}

/// An account change in the log that a consumer group has not applied yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unapplied {
    pub account_no: String,
    /// `open`, `deposit`, `withdraw` or `close`.
    pub kind: String,
    /// Won moved.
    pub amount: i64,
    /// The account as the change leaves it.
    pub after: AccountState,
}

/// What every store holds, per account number; `None`: that store could not be read.
#[derive(Debug, Default)]
pub struct Stores {
    /// account.db's accounts: the truth.
    pub accounts: Option<BTreeMap<String, AccountState>>,
    /// history.db's ledger, summed per account.
    pub ledger: Option<BTreeMap<String, Sum>>,
    /// Account changes history has not applied yet.
    pub ledger_unapplied: Vec<Unapplied>,
    /// mypage.db's accounts_view.
    pub read_model: Option<BTreeMap<String, AccountState>>,
    /// mypage.db's transactions_view, summed per account.
    pub transactions: Option<BTreeMap<String, Sum>>,
    /// Account changes mypage has not applied yet.
    pub read_model_unapplied: Vec<Unapplied>,
}

/// How a change of `kind` moves the balance (the rule of `onlinebank_client::account_check`).
pub fn signed(kind: &str, amount: i64) -> Sum {
    onlinebank_client::account_check::signed(kind, amount)
}

/// Per account: balance == ledger sum == read model == its transactions' sum. One finding per
/// account that breaks it, one for all that hold.
pub fn balances(stores: &Stores) -> Vec<Finding> {
    let mut numbers: BTreeSet<&String> = BTreeSet::new();
    for map in [&stores.accounts, &stores.read_model].into_iter().flatten() {
        numbers.extend(map.keys());
    }
    for map in [&stores.ledger, &stores.transactions].into_iter().flatten() {
        numbers.extend(map.keys());
    }
    numbers.extend(stores.ledger_unapplied.iter().map(|u| &u.account_no));
    numbers.extend(stores.read_model_unapplied.iter().map(|u| &u.account_no));
    let mut findings = Vec::new();
    let (mut holding, mut closed) = (0usize, 0usize);
    for no in numbers {
        let (problems, line) = judge_account(no, stores);
        if problems.is_empty() {
            holding += 1;
            let truth = stores.accounts.as_ref().and_then(|map| map.get(no));
            closed += usize::from(truth.is_some_and(|account| account.status == "closed"));
        } else {
            findings.push(Finding::fails(
                format!("account {no}"),
                format!("{line} ✗ {}", problems.join("; ")),
            ));
        }
    }
    let unapplied = stores.ledger_unapplied.len() + stores.read_model_unapplied.len();
    let mut detail = format!(
        "{holding} accounts ({closed} closed): balance == ledger == read model == transactions"
    );
    if unapplied > 0 {
        detail.push_str(&format!(
            " (counting {} changes for history and {} for mypage still in the log)",
            stores.ledger_unapplied.len(),
            stores.read_model_unapplied.len()
        ));
    }
    findings.insert(0, Finding::holds("accounts that hold", detail));
    findings
}

/// What is wrong with account `no` (empty: nothing) and the line that shows every store's view.
fn judge_account(no: &str, stores: &Stores) -> (Vec<String>, String) {
    let mut problems = Vec::new();
    let truth = stores.accounts.as_ref().and_then(|map| map.get(no));
    let mut line = match truth {
        Some(account) if account.status == "closed" => {
            format!("balance {} (closed)", account.balance)
        }
        Some(account) => format!("balance {}", account.balance),
        None => {
            if stores.accounts.is_some() {
                problems.push("not in account.db".to_owned());
            }
            "balance unknown".to_owned()
        }
    };
    let balance = truth.map(|account| account.balance);
    for (name, sums, unapplied) in [
        ("ledger", &stores.ledger, &stores.ledger_unapplied),
        (
            "transactions",
            &stores.transactions,
            &stores.read_model_unapplied,
        ),
    ] {
        let Some(sums) = sums else { continue };
        match summed(no, sums, unapplied) {
            Ok((applied, pending)) => {
                line.push_str(&format!(", {name} {}", with_pending(applied, pending)));
                if balance.is_some_and(|balance| applied + pending != balance) {
                    problems.push(format!("{name} {} != balance", applied + pending));
                }
            }
            Err(error) => problems.push(format!("{name}: {error}")),
        }
    }
    if let Some(read_model) = &stores.read_model {
        let seen = read_model_as_it_will_be(no, read_model, &stores.read_model_unapplied);
        match seen {
            Some(view) => {
                line.push_str(&format!(", read model {}", view.balance));
                if let Some(truth) = truth {
                    if view.balance != truth.balance {
                        problems.push(format!("read model {} != balance", view.balance));
                    }
                    if view.status != truth.status {
                        problems.push(format!(
                            "read model says {}, account.db {}",
                            view.status, truth.status
                        ));
                    }
                }
            }
            None => problems.push("not in mypage's read model".to_owned()),
        }
    }
    (problems, line)
}

/// A store's sum for `no` (0 without entries) and what its unapplied changes add.
fn summed(
    no: &str,
    sums: &BTreeMap<String, Sum>,
    unapplied: &[Unapplied],
) -> Result<(i64, i64), String> {
    let applied = sums.get(no).cloned().unwrap_or(Ok(0))?;
    let mut pending = 0i64;
    for change in unapplied.iter().filter(|change| change.account_no == no) {
        pending += signed(&change.kind, change.amount)?;
    }
    Ok((applied, pending))
}

fn with_pending(applied: i64, pending: i64) -> String {
    if pending == 0 {
        applied.to_string()
    } else {
        format!(
            "{} ({applied} {pending:+} still in the log)",
            applied + pending
        )
    }
}

/// The read model's row once it applied the log's changes: only ever moved to a newer version.
fn read_model_as_it_will_be(
    no: &str,
    read_model: &BTreeMap<String, AccountState>,
    unapplied: &[Unapplied],
) -> Option<AccountState> {
    let mut view = read_model.get(no).cloned();
    for change in unapplied.iter().filter(|change| change.account_no == no) {
        if view
            .as_ref()
            .is_none_or(|view| view.version < change.after.version)
        {
            view = Some(change.after.clone());
        }
    }
    view
}

/// A request still open in request.db.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    pub id: String,
    pub kind: String,
    pub account_no: String,
    pub amount: i64,
    /// `PENDING` (waiting for its step-up) or `AUTHORIZED` (waiting for the account's outcome).
    pub status: String,
    /// Epoch milliseconds.
    pub created_at: i64,
}

/// No request PENDING longer than `wait` before `last_activity` (epoch ms), the newest moment
/// request.db recorded anything: until then the bank ran, and its sweeper would have
/// compensated such a request. (A request younger than that was in flight when the bank
/// stopped: its next start compensates it.)
pub fn pending_requests(
    open: &[OpenRequest],
    last_activity: Option<i64>,
    wait: Duration,
) -> Vec<Finding> {
    let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
    let last = last_activity.unwrap_or(0);
    let mut findings = Vec::new();
    let (mut pending, mut authorized) = (0usize, 0usize);
    for request in open {
        if request.status != "PENDING" {
            authorized += 1;
            continue;
        }
        pending += 1;
        let age = last.saturating_sub(request.created_at);
        if age > wait_ms {
            findings.push(Finding::fails(
                format!("request {}", request.id),
                format!(
                    "{} of {} on account {} PENDING for {} before the bank's last recorded \
                     activity, longer than the wait ({})",
                    request.kind,
                    request.amount,
                    request.account_no,
                    seconds(age),
                    seconds(wait_ms)
                ),
            ));
        }
    }
    findings.insert(
        0,
        Finding::holds(
            "open requests",
            format!(
                "{pending} PENDING, {authorized} AUTHORIZED (awaiting their outcome from the \
                 log); the wait is {}",
                seconds(wait_ms)
            ),
        ),
    );
    findings
}

fn seconds(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// A consumer group of the embedded log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    /// Its committed position; `None`: it subscribed but never committed.
    pub position: Option<i64>,
    /// The topics it reads.
    pub topics: Vec<String>,
}

/// Where the embedded log ends.
#[derive(Debug, Clone, Default)]
pub struct LogEnds {
    /// The highest position bus.db's `events` table ever gave.
    pub events: i64,
    /// Per topic served from a publisher's outbox: the file and the highest `seq` its outbox
    /// ever gave (an error: it could not be read).
    pub outboxes: BTreeMap<String, (String, Result<i64, String>)>,
}

/// Every consumer's position <= its log's end: in bus.db's `events` below
/// [`OUTBOX_POSITIONS`], in its topics' served outbox (`seq + OUTBOX_POSITIONS`) above.
pub fn consumer_positions(groups: &[Group], ends: &LogEnds) -> Vec<Finding> {
    let mut findings = Vec::new();
    for group in groups {
        let subject = format!("consumer {}", group.name);
        let Some(position) = group.position else {
            findings.push(Finding::holds(
                subject,
                "no position yet: reads from the start",
            ));
            continue;
        };
        findings.push(judge_position(subject, group, position, ends));
    }
    if findings.is_empty() {
        findings.push(Finding::holds("consumers", "no consumer group in bus.db"));
    }
    findings
}

fn judge_position(subject: String, group: &Group, position: i64, ends: &LogEnds) -> Finding {
    if position < OUTBOX_POSITIONS {
        let end = ends.events;
        let detail = format!("at position {position} of bus.db's events, whose end is {end}");
        return if position <= end {
            Finding::holds(subject, detail)
        } else {
            Finding::fails(subject, format!("{detail}: past the log's end"))
        };
    }
    let seq = position - OUTBOX_POSITIONS;
    let served: Vec<&(String, Result<i64, String>)> = group
        .topics
        .iter()
        .filter_map(|topic| ends.outboxes.get(topic))
        .collect();
    let Some((file, end)) = served.first() else {
        return Finding::fails(
            subject,
            format!(
                "position {position} (an outbox's seq {seq}) but no outbox serves its topics ({})",
                group.topics.join(", ")
            ),
        );
    };
    match end {
        Ok(end) if seq <= *end => Finding::holds(
            subject,
            format!("at seq {seq} of {file}'s outbox, whose end is {end}"),
        ),
        Ok(end) => Finding::fails(
            subject,
            format!("at seq {seq} of {file}'s outbox, past its end {end}"),
        ),
        Err(error) => Finding::fails(subject, format!("{file}'s outbox unreadable: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(balance: i64, status: &str, version: i64) -> AccountState {
        AccountState {
            balance,
            status: status.into(),
            version,
        }
    }

    fn map<T: Clone>(rows: &[(&str, T)]) -> Option<BTreeMap<String, T>> {
        Some(
            rows.iter()
                .map(|(no, v)| ((*no).to_owned(), v.clone()))
                .collect(),
        )
    }

    /// Two accounts every store agrees on: 1001 (open 100, withdraw 30) and 1002 (closed).
    fn consistent() -> Stores {
        Stores {
            accounts: map(&[
                ("1001", state(70, "open", 2)),
                ("1002", state(0, "closed", 2)),
            ]),
            ledger: map(&[("1001", Ok(70)), ("1002", Ok(0))]),
            read_model: map(&[
                ("1001", state(70, "open", 2)),
                ("1002", state(0, "closed", 2)),
            ]),
            transactions: map(&[("1001", Ok(70)), ("1002", Ok(0))]),
            ..Stores::default()
        }
    }

    fn failing(findings: &[Finding]) -> Vec<String> {
        findings
            .iter()
            .filter(|finding| !finding.holds)
            .map(|finding| format!("{}: {}", finding.subject, finding.detail))
            .collect()
    }

    #[test]
    fn accounts_every_store_agrees_on_hold() {
        let findings = balances(&consistent());
        assert!(failing(&findings).is_empty(), "{findings:?}");
        assert_eq!(findings[0].detail.split(' ').next(), Some("2"));
        assert!(findings[0].detail.contains("(1 closed)"));
    }

    #[test]
    fn each_store_that_differs_is_named_with_every_value() {
        let mut stores = consistent();
        stores.read_model = map(&[
            ("1001", state(60, "open", 2)),
            ("1002", state(0, "closed", 2)),
        ]);
        let failures = failing(&balances(&stores));
        assert_eq!(
            failures,
            vec!["account 1001: balance 70, ledger 70, transactions 70, read model 60 ✗ read model 60 != balance"]
        );

        let mut stores = consistent();
        stores.ledger = map(&[("1001", Ok(100)), ("1002", Ok(0))]);
        stores.transactions = map(&[("1002", Ok(0))]);
        let failures = failing(&balances(&stores));
        assert_eq!(failures.len(), 1);
        assert!(
            failures[0].contains("ledger 100 != balance"),
            "{failures:?}"
        );
        assert!(
            failures[0].contains("transactions 0 != balance"),
            "{failures:?}"
        );
    }

    #[test]
    fn an_account_missing_from_the_truth_or_the_read_model_or_closed_only_in_one_is_named() {
        let mut stores = consistent();
        stores.ledger = map(&[("1001", Ok(70)), ("1002", Ok(0)), ("1003", Ok(5))]);
        stores.read_model = map(&[
            ("1001", state(70, "open", 2)),
            ("1002", state(0, "open", 1)),
        ]);
        let failures = failing(&balances(&stores));
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(failures[0].contains("read model says open, account.db closed"));
        assert!(failures[1].starts_with("account 1003: balance unknown"));
        assert!(failures[1].contains("not in account.db"));
        assert!(failures[1].contains("not in mypage's read model"));
    }

    #[test]
    fn changes_still_in_the_log_count_for_the_store_they_are_on_their_way_to() {
        let mut stores = consistent();
        // history and mypage have not applied the withdrawal of 30 (version 2) yet.
        stores.ledger = map(&[("1001", Ok(100)), ("1002", Ok(0))]);
        stores.transactions = map(&[("1001", Ok(100)), ("1002", Ok(0))]);
        stores.read_model = map(&[
            ("1001", state(100, "open", 1)),
            ("1002", state(0, "closed", 2)),
        ]);
        let withdrawal = Unapplied {
            account_no: "1001".into(),
            kind: "withdraw".into(),
            amount: 30,
            after: state(70, "open", 2),
        };
        stores.ledger_unapplied = vec![withdrawal.clone()];
        stores.read_model_unapplied = vec![withdrawal];
        let findings = balances(&stores);
        assert!(failing(&findings).is_empty(), "{findings:?}");
        assert!(findings[0].detail.contains("1 changes for history"));
        // Without them in the log, the stores have lost the change.
        stores.ledger_unapplied.clear();
        assert_eq!(failing(&balances(&stores)).len(), 1);
    }

    #[test]
    fn an_unknown_kind_in_a_store_is_a_failure_not_a_guess() {
        let mut stores = consistent();
        stores.ledger = map(&[
            ("1001", Err("unknown transaction type \"transfer\"".into())),
            ("1002", Ok(0)),
        ]);
        let failures = failing(&balances(&stores));
        assert_eq!(failures.len(), 1);
        assert!(failures[0].contains("ledger: unknown transaction type"));
    }

    fn request(id: &str, status: &str, created_at: i64) -> OpenRequest {
        OpenRequest {
            id: id.into(),
            kind: "deposit".into(),
            account_no: "1001".into(),
            amount: 500,
            status: status.into(),
            created_at,
        }
    }

    #[test]
    fn only_a_request_pending_longer_than_the_wait_before_the_last_activity_fails() {
        let wait = Duration::from_secs(8);
        let open = [
            request("fresh", "PENDING", 95_000),
            request("stuck", "PENDING", 10_000),
            request("authorized", "AUTHORIZED", 1_000),
        ];
        let findings = pending_requests(&open, Some(100_000), wait);
        assert_eq!(
            failing(&findings),
            vec![
                "request stuck: deposit of 500 on account 1001 PENDING for 90.0 s before the \
                  bank's last recorded activity, longer than the wait (8.0 s)"
            ]
        );
        assert!(findings[0].detail.starts_with(
            "2 PENDING, 1 AUTHORIZED (awaiting their outcome from the log); the \
                          wait is 8.0 s"
        ));
        // Exactly the wait is still within it.
        assert!(failing(&pending_requests(&open[..1], Some(103_000), wait)).is_empty());
        assert_eq!(
            failing(&pending_requests(&open[..1], Some(103_001), wait)).len(),
            1
        );
    }

    fn group(name: &str, position: Option<i64>) -> Group {
        Group {
            name: name.into(),
            position,
            topics: vec!["onlinebank.accounts".into()],
        }
    }

    #[test]
    fn a_position_past_its_logs_end_fails_in_either_log() {
        let mut ends = LogEnds {
            events: 40,
            ..LogEnds::default()
        };
        ends.outboxes
            .insert("onlinebank.accounts".into(), ("account.db".into(), Ok(75)));
        let groups = [
            group("history", Some(OUTBOX_POSITIONS + 75)),
            group("mypage", Some(OUTBOX_POSITIONS + 76)),
            group("old", Some(40)),
            group("older", Some(41)),
            group("new", None),
        ];
        let findings = consumer_positions(&groups, &ends);
        assert_eq!(
            failing(&findings),
            vec![
                "consumer mypage: at seq 76 of account.db's outbox, past its end 75",
                "consumer older: at position 41 of bus.db's events, whose end is 40: past the log's end",
            ]
        );
        // An outbox position with no outbox serving the topic.
        ends.outboxes.clear();
        assert_eq!(failing(&consumer_positions(&groups[..1], &ends)).len(), 1);
    }
}

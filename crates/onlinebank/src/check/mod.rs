//! `onlinebank check --data-dir DIR`: an offline, read-only check of a stopped bank's data
//! directory (a bank that was killed, a copy, a restored backup).
//!
//! The bank keeps one fact in several stores that are only eventually equal (the account role's
//! balance, history's ledger, mypage's read model, the event log between them) and a crash, a
//! bad disk or a bad restore can leave them apart without any single database looking wrong.
//! So the check runs `PRAGMA integrity_check` on every database, then the rules that hold
//! *across* them (see `rules.rs`): per account balance == ledger sum == read model; no request
//! PENDING longer than the wait; every consumer's position <= its log's end.
//!
//! Nothing in the directory is written or created, not even SQLite's side files (`open.rs`).
//! Exit codes: 0 every check holds (or the directory holds no database: nothing to check),
//! 1 a check fails, 2 usage (the directory does not exist, or a bank serves it right now).

mod open;
mod read;
mod report;
mod rules;

use crate::cli::CheckArgs;
use onlinebank_core::event::TOPIC_ACCOUNTS;
use open::Opened;
use report::{Finding, Report, Section};
use rules::Stores;
use rusqlite::Connection;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// The files of a data directory that hold the bank's data, in the order they are checked: one
/// per role with data, and the embedded event log.
const DATABASES: [&str; 6] = [
    "auth.db",
    "account.db",
    "history.db",
    "mypage.db",
    "request.db",
    "bus.db",
];

/// How long after its step-up timeout request's sweeper compensates a PENDING request (the
/// grace of `sweep` in onlinebank-request's outcomes.rs).
const SWEEP_GRACE: Duration = Duration::from_secs(5);
/// The sweeper's round (it looks every second) and its write, on top of that grace.
const SWEEP_ROUND: Duration = Duration::from_secs(2);

/// Runs the check as `args` say, prints the report and answers the exit code.
pub fn run(args: &CheckArgs) -> ExitCode {
    if !args.data_dir.is_dir() {
        eprintln!(
            "onlinebank check: {} is not a directory",
            args.data_dir.display()
        );
        return ExitCode::from(2);
    }
    let serving = serving_pids(&args.data_dir);
    if !serving.is_empty() {
        eprintln!(
            "onlinebank check: {} is served right now (process {}): check a stopped bank, or a \
             backup of this one (onlinebank backup)",
            args.data_dir.display(),
            serving.join(", ")
        );
        return ExitCode::from(2);
    }
    let wait = Duration::from_millis(args.step_up_timeout_ms) + SWEEP_GRACE + SWEEP_ROUND;
    let report = check_dir(&args.data_dir, wait);
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(error) => {
                eprintln!("onlinebank check: writing the report: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", report.text());
    }
    if report.holds {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The processes serving `dir` now: every `up` and `serve` process holds a lock on its record
/// `DIR/serving/<pid>.json` while it runs (see `backup/serving.rs`). A record whose lock can be
/// taken is stale, and is left as it is: the check removes nothing.
fn serving_pids(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("serving")) else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        let locked = rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared);
        if locked.is_err() {
            let stem = path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned());
            pids.push(stem.unwrap_or_default());
        }
    }
    pids.sort();
    pids
}

/// The databases that could be opened, by file name.
#[derive(Default)]
struct Databases(BTreeMap<&'static str, Opened>);

impl Databases {
    fn get(&self, name: &str) -> Option<&Connection> {
        self.0.get(name).map(|opened| &opened.conn)
    }
}

/// Every check of `dir`; `wait` is how long a request may stay PENDING.
pub fn check_dir(dir: &Path, wait: Duration) -> Report {
    let shown = dir.display().to_string();
    if !DATABASES.iter().any(|name| dir.join(name).exists()) {
        return Report::new(shown, Vec::new());
    }
    let mut databases = Databases::default();
    let integrity = integrity_section(dir, &mut databases);
    let sections = vec![
        integrity,
        balances_section(&databases),
        requests_section(&databases, wait),
        consumers_section(&databases),
    ];
    Report::new(shown, sections)
}

/// `PRAGMA integrity_check` of every database (opening each into `databases`), and whether the
/// secret is there.
fn integrity_section(dir: &Path, databases: &mut Databases) -> Section {
    let mut findings = Vec::new();
    for name in DATABASES {
        let path = dir.join(name);
        if !path.exists() {
            findings.push(Finding::fails(name, "missing"));
            continue;
        }
        let opened = match open::open_read_only(&path) {
            Ok(opened) => opened,
            Err(error) => {
                findings.push(Finding::fails(name, format!("{error:#}")));
                continue;
            }
        };
        findings.push(match read::integrity(&opened.conn) {
            Ok(lines) if lines == ["ok"] => {
                Finding::holds(name, format!("ok ({})", opened.reading.describe()))
            }
            Ok(lines) => Finding::fails(name, damage(&lines)),
            Err(error) => Finding::fails(name, format!("integrity_check failed: {error}")),
        });
        databases.0.insert(name, opened);
    }
    findings.push(if dir.join("secret.key").exists() {
        Finding::holds("secret.key", "present")
    } else {
        Finding::holds("secret.key", "absent: the bank runs with --token-secret")
    });
    Section::new(
        "integrity",
        "PRAGMA integrity_check of every database",
        findings,
    )
}

/// The first lines of what integrity_check found wrong, and how many more there are.
fn damage(lines: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut detail = lines
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if lines.len() > SHOWN {
        detail.push_str(&format!(" (and {} more)", lines.len() - SHOWN));
    }
    detail
}

/// `result`'s value, or a failing finding about `subject` saying why it could not be read.
fn noted<T>(findings: &mut Vec<Finding>, subject: &str, result: rusqlite::Result<T>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(error) => {
            findings.push(Finding::fails(
                subject,
                format!("could not be read: {error}"),
            ));
            None
        }
    }
}

/// Per account: balance == ledger sum == read model == its transactions.
fn balances_section(databases: &Databases) -> Section {
    let title = "per account, balance (account.db) == ledger sum (history.db) == read model \
                 and its transactions (mypage.db), counting changes still in the log";
    let mut findings = Vec::new();
    let mut stores = Stores::default();
    if let Some(conn) = databases.get("account.db") {
        stores.accounts = noted(
            &mut findings,
            "account.db",
            read::accounts(conn, "accounts"),
        );
    }
    if let Some(conn) = databases.get("history.db") {
        stores.ledger = noted(&mut findings, "history.db", read::sums(conn, "ledger"));
        stores.ledger_unapplied = unapplied(databases, "history", conn, &mut findings);
    }
    if let Some(conn) = databases.get("mypage.db") {
        stores.read_model = noted(
            &mut findings,
            "mypage.db",
            read::accounts(conn, "accounts_view"),
        );
        stores.transactions = noted(
            &mut findings,
            "mypage.db",
            read::sums(conn, "transactions_view"),
        );
        stores.read_model_unapplied = unapplied(databases, "mypage", conn, &mut findings);
    }
    for (name, read) in [
        ("account.db", stores.accounts.is_some()),
        ("history.db", stores.ledger.is_some()),
        (
            "mypage.db",
            stores.read_model.is_some() && stores.transactions.is_some(),
        ),
    ] {
        if !read && !findings.iter().any(|finding| finding.subject == name) {
            findings.push(Finding::fails(name, "not there: its side is not compared"));
        }
    }
    if stores.accounts.is_some() {
        findings.extend(rules::balances(&stores));
    }
    Section::new("balances", title, findings)
}

/// The account changes `group` has not applied yet (none when bus.db cannot tell).
fn unapplied(
    databases: &Databases,
    group: &str,
    inbox: &Connection,
    findings: &mut Vec<Finding>,
) -> Vec<rules::Unapplied> {
    let Some(bus) = databases.get("bus.db") else {
        return Vec::new();
    };
    let Some(groups) = noted(findings, "bus.db", read::groups(bus)) else {
        return Vec::new();
    };
    let position = groups
        .iter()
        .find(|found| found.name == group)
        .and_then(|found| found.position)
        .unwrap_or(0);
    let sources = noted(findings, "bus.db", read::outbox_sources(bus)).unwrap_or_default();
    let outbox = sources
        .get(TOPIC_ACCOUNTS)
        .and_then(|file| databases.get(file));
    let reader = read::Reader {
        position,
        topic: TOPIC_ACCOUNTS,
        bus,
        outbox,
        inbox,
    };
    noted(
        findings,
        &format!("consumer {group}"),
        read::unapplied(&reader),
    )
    .unwrap_or_default()
}

/// No request PENDING longer than `wait`.
fn requests_section(databases: &Databases, wait: Duration) -> Section {
    let title = format!(
        "no request PENDING longer than the wait ({} s: the step-up timeout, then 5 s until \
         request's sweeper compensates it, and 2 s for its round) before the bank's last activity",
        wait.as_secs_f64()
    );
    let mut findings = Vec::new();
    match databases.get("request.db") {
        Some(conn) => {
            let open = noted(&mut findings, "request.db", read::open_requests(conn));
            let last = noted(&mut findings, "request.db", read::last_activity(conn));
            if let (Some(open), Some(last)) = (open, last) {
                findings.extend(rules::pending_requests(&open, last, wait));
            }
        }
        None => findings.push(Finding::fails(
            "request.db",
            "not there: nothing to compare",
        )),
    }
    Section::new("requests", title, findings)
}

/// Every consumer's position <= its log's end.
fn consumers_section(databases: &Databases) -> Section {
    let title = "every consumer's position <= its log's end (bus.db's events, or its topic's \
                 served outbox)";
    let mut findings = Vec::new();
    let Some(bus) = databases.get("bus.db") else {
        findings.push(Finding::fails("bus.db", "not there: nothing to compare"));
        return Section::new("consumers", title, findings);
    };
    let groups = noted(&mut findings, "bus.db", read::groups(bus));
    let events = noted(
        &mut findings,
        "bus.db",
        read::table_end(bus, "events", "position"),
    );
    let sources = noted(&mut findings, "bus.db", read::outbox_sources(bus));
    if let (Some(groups), Some(events), Some(sources)) = (groups, events, sources) {
        let mut ends = rules::LogEnds {
            events,
            ..rules::LogEnds::default()
        };
        for (topic, file) in sources {
            let end = match databases.get(&file) {
                Some(conn) => read::table_end(conn, "outbox", "seq").map_err(|e| e.to_string()),
                None => Err(format!("{file} is not in the directory")),
            };
            ends.outboxes.insert(topic, (file, end));
        }
        findings.extend(rules::consumer_positions(&groups, &ends));
    }
    Section::new("consumers", title, findings)
}

#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `onlinebank bench` end to end: the real binary starts its own bank, drives a short mixed
//! workload, and its invariant check (balance == transactions sum == the bench's ledger) runs
//! and passes, over many accounts, on one hot account, and when every write's outcome is
//! unknown at first (202) and has to be resolved before judging.

use serde_json::Value;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_onlinebank");

/// Runs `bench --json` with `args`; the parsed JSON document. Bounded by the bench's own
/// deadlines (duration, ceilings, resolution and drain patience).
fn bench(args: &[&str]) -> Value {
    bench_with_env(args, &[])
}

/// Like `bench`; `env` also reaches the bank it starts (as `ONLINEBANK_*` settings).
fn bench_with_env(args: &[&str], env: &[(&str, &str)]) -> Value {
    let output = Command::new(BIN)
        .arg("bench")
        .args(args)
        .arg("--json")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("running onlinebank bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench {args:?} failed ({:?})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|error| panic!("bench printed no JSON ({error}):\n{stdout}\n{stderr}"))
}

fn assert_checked(report: &Value, accounts: u64) {
    let invariants = &report["invariants"];
    assert_eq!(invariants["ok"], true, "{invariants:#}");
    assert_eq!(invariants["accounts"], accounts, "{invariants:#}");
    assert_eq!(
        invariants["violations"].as_array().map(Vec::len),
        Some(0),
        "{invariants:#}"
    );
    let deposits = &report["operations"]["deposit"];
    assert!(
        deposits["completed"].as_u64().unwrap_or(0) > 0,
        "no deposit completed: {deposits:#}"
    );
    assert!(
        deposits["latencyMs"]["p99"].as_f64().is_some(),
        "{deposits:#}"
    );
    assert_eq!(report["selfStarted"], true);
    assert!(report["bank"]["readyMs"].as_f64().is_some(), "{report:#}");
}

#[test]
fn bench_over_many_accounts_checks_its_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let report = bench(&[
        "--duration",
        "3s",
        "--concurrency",
        "8",
        "--accounts",
        "20",
        "--ceiling-duration",
        "1s",
        "--report",
        html.to_str().unwrap(),
    ]);
    assert_checked(&report, 20);
    for ceiling in ["healthLive", "ping"] {
        assert!(
            report["ceilings"][ceiling]["completed"]
                .as_u64()
                .unwrap_or(0)
                > 0,
            "{ceiling}: {:#}",
            report["ceilings"]
        );
    }
    assert!(report["operations"]["deposit"]["ratioToPing"]
        .as_f64()
        .is_some());
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg"), "no chart in the report");
    assert!(page.contains("invariants: ok"));
    assert!(
        !page.contains("src=\"http"),
        "the report must be self-contained"
    );
}

#[test]
fn bench_on_one_hot_account_checks_its_ledger() {
    let report = bench(&[
        "--duration",
        "2s",
        "--concurrency",
        "8",
        "--accounts",
        "1",
        "--ceiling-duration",
        "0s",
        "--mix",
        "deposit=3,withdraw=1,balance=1",
    ]);
    assert_checked(&report, 1);
    assert_eq!(report["config"]["customers"], 1);
}

#[test]
fn bench_resolves_pending_writes_before_judging() {
    // The bank answers 202 (pending) to nearly every write: the bench must find out what became
    // of each one (poll the request) before it checks the balances.
    let report = bench_with_env(
        &[
            "--duration",
            "2s",
            "--concurrency",
            "8",
            "--accounts",
            "4",
            "--ceiling-duration",
            "0s",
            "--mix",
            "deposit=1,withdraw=1",
        ],
        &[("ONLINEBANK_REQUEST_WAIT_MS", "1")],
    );
    let invariants = &report["invariants"];
    assert_eq!(invariants["ok"], true, "{invariants:#}");
    let unknown = &invariants["unknownOutcomes"];
    assert!(unknown["count"].as_u64().unwrap() > 0, "{unknown:#}");
    assert_eq!(unknown["unresolved"], 0, "{unknown:#}");
    assert_eq!(
        unknown["count"].as_u64(),
        Some(unknown["applied"].as_u64().unwrap() + unknown["refused"].as_u64().unwrap()),
        "{unknown:#}"
    );
}

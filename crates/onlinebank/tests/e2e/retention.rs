//! Retention: with a short window, consumed events leave the embedded log and old inbox rows
//! are forgotten, while every balance, history and view stays right, also across a restart.

use crate::support::*;
use std::time::Duration;

async fn deleted(bank: &TestBank, role: &str, what: &str) -> f64 {
    bank.ops
        .metric(
            role,
            "onlinebank_retention_deleted_total",
            &[("what", what)],
        )
        .await
        .unwrap()
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumed_events_and_old_inbox_rows_are_deleted_and_nothing_is_lost() {
    let mut bank = TestBank::start_with(&["--retention-secs", "2"]).await;
    let alice = bank.customer("alice@retention").await;
    bank.open_ok(&alice, "8001", 1_000).await;
    for _ in 0..10 {
        let reply = bank.deposit(&alice.token, &alice.pw, "8001", 10).await;
        expect_ok(&reply, 200);
    }
    bank.wait_balance(&alice.token, "8001", 1_100).await;

    // Within a few windows both are gone (in `up` the log is purged by the account role).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let events = deleted(&bank, "account", "events").await;
        let inbox = deleted(&bank, "history", "inbox").await;
        if events >= 22.0 && inbox >= 11.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention deleted {events} events and {inbox} history inbox rows"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The read side kept everything it had built; the bank goes on, and a restart replays
    // nothing twice.
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["8001"].balance, 1_100);
    bank.restart().await;
    let alice_token = bank.token(&alice.user, &alice.pw).await;
    let reply = bank.deposit(&alice_token, &alice.pw, "8001", 5).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 1_105);
    let account = bank.wait_balance(&alice_token, "8001", 1_105).await;
    assert_eq!(account["version"], 12, "{account}");
    let ledger = bank.all_transactions(&alice_token, "8001").await;
    assert_eq!(ledger.len(), 12, "the opening and 11 deposits: {ledger:?}");
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["8001"].balance, 1_105);
}

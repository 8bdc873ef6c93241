//! The daily limit (`--daily-limit`, per day of `--time-zone`): withdrawals from one account up
//! to it are applied, one past it is refused with `daily_limit_exceeded` and the won still
//! allowed today, and the refusal changes nothing; deposits are not limited.

use crate::support::*;
use serde_json::{json, Value};

/// A refusal's `allowedToday`, in the error object.
fn allowed_today(reply: &(u16, Value)) -> Option<i64> {
    reply.1["error"]["allowedToday"].as_i64()
}

#[tokio::test]
async fn withdrawals_past_the_daily_limit_are_refused_with_what_is_left_and_change_nothing() {
    let bank = TestBank::start_with(&["--daily-limit", "1000"]).await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 10_000).await;
    let reply = bank.withdraw(&alice.token, &alice.pw, "1001", 600).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 9_400);

    let body =
        json!({"type": "withdraw", "accountNo": "1001", "amount": 500, "password": alice.pw});
    let refused = bank
        .request_with_key(&alice.token, "limit-1", body.clone())
        .await;
    expect_error(&refused, 409, "daily_limit_exceeded");
    assert_eq!(allowed_today(&refused), Some(400), "{}", refused.1);
    let message = refused.1["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("400"), "{message}");
    // The same key answers the same, and the request says why it was cancelled.
    let replayed = bank.request_with_key(&alice.token, "limit-1", body).await;
    expect_error(&replayed, 409, "daily_limit_exceeded");
    assert_eq!(allowed_today(&replayed), Some(400), "{}", replayed.1);
    let id = refused.1["requestId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, shown) = bank.get_request(&alice.token, &id).await;
    assert_eq!(
        (
            status,
            shown["reason"].as_str(),
            shown["allowedToday"].as_i64()
        ),
        (404, Some("daily_limit_exceeded"), Some(400)),
        "{shown}"
    );

    // Up to the limit exactly, then nothing more; deposits go on.
    let reply = bank.withdraw(&alice.token, &alice.pw, "1001", 400).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 9_000);
    let reply = bank.deposit(&alice.token, &alice.pw, "1001", 5_000).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 14_000);
    let refused = bank.withdraw(&alice.token, &alice.pw, "1001", 1).await;
    expect_error(&refused, 409, "daily_limit_exceeded");
    assert_eq!(allowed_today(&refused), Some(0), "{}", refused.1);

    // Another account has its own limit.
    bank.open_ok(&alice, "1002", 2_000).await;
    let reply = bank.withdraw(&alice.token, &alice.pw, "1002", 1_000).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 1_000);

    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, 14_000);
    assert_eq!(snapshot.accounts["1002"].balance, 1_000);
    let entries = bank.all_transactions(&alice.token, "1001").await;
    assert_eq!(
        entries.len(),
        4,
        "open, withdraw, withdraw, deposit: {entries:?}"
    );
}

#[tokio::test]
async fn the_default_daily_limit_is_five_million_won() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 8_000_000).await;
    let reply = bank
        .withdraw(&alice.token, &alice.pw, "1001", 5_000_000)
        .await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 3_000_000);
    let refused = bank.withdraw(&alice.token, &alice.pw, "1001", 1).await;
    expect_error(&refused, 409, "daily_limit_exceeded");
    assert_eq!(allowed_today(&refused), Some(0), "{}", refused.1);
}

#[test]
fn a_time_zone_that_is_not_one_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = std::process::Command::new(BIN)
        .args([
            "up",
            "--port",
            "0",
            "--time-zone",
            "Mars/Olympus",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("run onlinebank");
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--time-zone"), "{stderr}");
}

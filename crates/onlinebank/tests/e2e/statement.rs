//! Statements (`GET /api/v1/accounts/{no}/statement`): after a random mix of operations the
//! running balances reconcile from the opening balance to the account's balance, item by item;
//! the CSV opens in a spreadsheet as it is; someone else's account and a bad range are refused.

use crate::support::*;
use onlinebank_client::wire::Statement;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// Yesterday and tomorrow in Seoul (UTC+9 all year, the bank's default time zone): a range
/// that holds what the test does even across midnight.
fn around_today() -> (String, String) {
    let seoul = chrono::Utc::now() + chrono::Duration::hours(9);
    let day = |offset: i64| {
        (seoul + chrono::Duration::days(offset))
            .date_naive()
            .format("%Y-%m-%d")
            .to_string()
    };
    (day(-1), day(1))
}

#[tokio::test]
async fn running_balances_reconcile_with_the_balance_after_a_random_mix() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 10_000).await;
    let mut rng = StdRng::seed_from_u64(26);
    let mut completed = vec![10_000_i64];
    for _ in 0..40 {
        let amount = rng.random_range(1..=6_000);
        let (signed, reply) = if rng.random_bool(0.5) {
            (
                amount,
                bank.deposit(&alice.token, &alice.pw, "1001", amount).await,
            )
        } else {
            (
                -amount,
                bank.withdraw(&alice.token, &alice.pw, "1001", amount).await,
            )
        };
        match (reply.0, reply.1["error"]["code"].as_str()) {
            (200, _) => completed.push(signed),
            (409, Some("insufficient_funds")) => {}
            other => panic!("{other:?}: {}", reply.1),
        }
    }
    let balance: i64 = completed.iter().sum();
    bank.wait_balance(&alice.token, "1001", balance).await;

    let (from, to) = around_today();
    let path = format!("/api/v1/accounts/1001/statement?from={from}&to={to}");
    let (status, body) = bank.get(&path, Some(&alice.token)).await;
    assert_eq!(status, 200, "{body}");
    let statement: Statement = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(
        (statement.opening_balance, statement.closing_balance),
        (0, balance)
    );
    assert_eq!(statement.time_zone, "Asia/Seoul");
    let moves: Vec<i64> = statement.items.iter().map(|i| i.signed_amount).collect();
    assert_eq!(
        moves, completed,
        "every applied operation once, in order: {body}"
    );
    let mut running = statement.opening_balance;
    for item in &statement.items {
        running += item.signed_amount;
        assert_eq!(item.running_balance, running, "{item:?}");
    }
    assert_eq!(running, balance);

    // The same as CSV: a byte order mark, a header row, the opening balance, the items, the
    // closing balance.
    let csv = bank
        .api
        .get_req(&format!("{path}&format=csv"))
        .bearer(&alice.token)
        .try_send()
        .await
        .unwrap();
    assert_eq!(csv.status, 200);
    assert!(
        csv.text
            .starts_with("\u{feff}time,description,amount,balance,request_id"),
        "{}",
        csv.text
    );
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines.len(), completed.len() + 3, "{}", csv.text);
    assert!(lines[1].contains("opening balance,,0,"), "{}", lines[1]);
    let closing = format!("closing balance,,{balance},");
    assert!(lines[lines.len() - 1].contains(&closing), "{}", csv.text);

    // A day with nothing: the balance carried in and out.
    let (status, body) = bank
        .get(
            "/api/v1/accounts/1001/statement?from=2001-01-01&to=2001-01-31",
            Some(&alice.token),
        )
        .await;
    assert_eq!(
        (status, &body["openingBalance"], &body["closingBalance"]),
        (200, &Value::from(0), &Value::from(0))
    );
}

#[tokio::test]
async fn a_statement_is_only_the_owner_s_and_only_of_a_valid_range() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    let mallory = bank.customer("mallory@test").await;
    bank.open_ok(&alice, "1001", 100).await;
    let (from, to) = around_today();
    let path = format!("/api/v1/accounts/1001/statement?from={from}&to={to}");
    let reply = bank.get(&path, Some(&mallory.token)).await;
    expect_error(&reply, 404, "account_not_found");
    for bad in [
        "from=2026-12-08&to=2026-12-01",
        "from=2025-01-01&to=2026-12-31",
        "from=12/01/2026&to=2026-12-31",
        "to=2026-12-31",
        "from=2026-12-01&to=2026-12-31&format=pdf",
    ] {
        let reply = bank
            .get(
                &format!("/api/v1/accounts/1001/statement?{bad}"),
                Some(&alice.token),
            )
            .await;
        expect_error(&reply, 400, "invalid_request");
    }
}

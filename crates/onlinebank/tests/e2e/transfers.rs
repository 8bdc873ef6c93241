//! Transfers between accounts: the caller's source debited, anyone's target credited, the
//! request COMPLETED only when the target was; a target that cannot take the money (missing,
//! closed, closed while the money was on its way) gets it back to the source, the request ends
//! cancelled with the reason, and each account's balance is the sum of its items.

use crate::support::*;
use onlinebank_client::wire::{self, Write};
use serde_json::{json, Value};
use std::collections::BTreeMap;

async fn transfer(
    bank: &TestBank,
    c: &Customer,
    from: &str,
    to: &str,
    amount: i64,
) -> (u16, Value) {
    let body = Write::transfer(from, to, amount, &c.pw).to_json();
    let reply = bank.request(&c.token, body).await;
    bank.settle(&c.token, reply).await
}

/// The account's items (oldest first) as (type, amount, counterpart).
async fn items(bank: &TestBank, c: &Customer, no: &str) -> Vec<(String, i64, Option<String>)> {
    let mut all = bank.all_transactions(&c.token, no).await;
    all.sort_by_key(|t| t.version);
    all.into_iter()
        .map(|t| {
            (
                t.kind.unwrap_or_default(),
                t.amount.unwrap_or_default(),
                t.counterpart_account_no,
            )
        })
        .collect()
}

/// The balance is the sum of the account's items.
async fn balance_is_the_sum_of_items(bank: &TestBank, c: &Customer, no: &str, balance: i64) {
    let transactions = bank.all_transactions(&c.token, no).await;
    let sum: i64 = transactions
        .iter()
        .map(|t| {
            let kind = t.kind.as_deref().unwrap_or_default();
            let amount = t.amount.unwrap_or_default();
            onlinebank_client::account_check::signed(kind, amount)
                .unwrap_or_else(|error| panic!("{error}"))
        })
        .sum();
    assert_eq!(sum, balance, "{no}: items {transactions:?}");
}

#[tokio::test]
async fn a_transfer_moves_money_to_anyones_account_and_both_histories_show_it() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    let bob = bank.customer("bob@test").await;
    bank.open_ok(&alice, "1001", 10_000).await;
    bank.open_ok(&bob, "2001", 500).await;

    let reply = transfer(&bank, &alice, "1001", "2001", 3_000).await;
    let done = expect_ok(&reply, 200);
    let request: wire::Request = wire::decode(done);
    assert!(request.is_completed(), "{done}");
    assert_eq!(request.kind.as_deref(), Some("transfer"));
    assert_eq!(
        request.balance,
        Some(7_000),
        "the source's balance after: {done}"
    );
    assert_eq!(request.from_account_no.as_deref(), Some("1001"));
    assert_eq!(request.to_account_no.as_deref(), Some("2001"));
    assert_eq!(request.amount, Some(3_000));
    // Completed means credited: the target's owner sees it.
    bank.wait_balance(&bob.token, "2001", 3_500).await;
    bank.wait_balance(&alice.token, "1001", 7_000).await;
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, 7_000);
    assert_eq!(snapshot.accounts["2001"].balance, 3_500);
    assert_eq!(
        items(&bank, &alice, "1001").await,
        [
            ("open".into(), 10_000, None),
            ("transfer_out".into(), 3_000, Some("2001".into()))
        ]
    );
    assert_eq!(
        items(&bank, &bob, "2001").await,
        [
            ("open".into(), 500, None),
            ("transfer_in".into(), 3_000, Some("1001".into()))
        ]
    );
    // The request reads back as it was answered.
    let id = request.request_id.unwrap_or_default();
    let (status, shown) = bank.get_request(&alice.token, &id).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["toAccountNo"], "2001", "{shown}");
    assert_eq!(shown["balance"], 7_000, "{shown}");
    // Bob cannot read Alice's request.
    let (status, _) = bank.get_request(&bob.token, &id).await;
    assert_eq!(status, 404);
    // The statement shows the item with its counterpart (to tomorrow in UTC: the bank's day,
    // Asia/Seoul, may be ahead of UTC's).
    let day = |days: i64| {
        (chrono::Utc::now() + chrono::Duration::days(days))
            .format("%Y-%m-%d")
            .to_string()
    };
    let (status, statement) = bank
        .get(
            &format!(
                "/api/v1/accounts/2001/statement?from={}&to={}",
                day(-30),
                day(1)
            ),
            Some(&bob.token),
        )
        .await;
    assert_eq!(status, 200, "{statement}");
    let statement: wire::Statement = wire::decode(&statement);
    let received = statement.items.iter().find(|i| i.kind == "transfer_in");
    assert_eq!(
        received.and_then(|i| i.counterpart_account_no.as_deref()),
        Some("1001"),
        "{statement:?}"
    );
}

#[tokio::test]
async fn transfers_are_refused_like_every_money_movement_and_change_nothing() {
    let bank = TestBank::start_with(&["--daily-limit", "5000"]).await;
    let alice = bank.customer("alice@test").await;
    let bob = bank.customer("bob@test").await;
    bank.open_ok(&alice, "1001", 10_000).await;
    bank.open_ok(&bob, "2001", 10_000).await;

    // The same account on both sides, a missing field: 400 before anything is recorded.
    let same = Write::transfer("1001", "1001", 5, &alice.pw).to_json();
    expect_error(
        &bank.request(&alice.token, same).await,
        400,
        "invalid_request",
    );
    let no_target = json!({"type": "transfer", "fromAccountNo": "1001", "amount": 5,
                           "password": alice.pw});
    expect_error(
        &bank.request(&alice.token, no_target).await,
        400,
        "invalid_request",
    );
    // Someone else's source: as if it did not exist.
    let stolen = transfer(&bank, &alice, "2001", "1001", 5).await;
    expect_error(&stolen, 404, "account_not_found");
    // More than the balance; more than the day allows (the limit counts transfers out).
    expect_error(
        &transfer(&bank, &alice, "1001", "2001", 10_001).await,
        409,
        "insufficient_funds",
    );
    let reply = transfer(&bank, &alice, "1001", "2001", 4_000).await;
    expect_ok(&reply, 200);
    let over = transfer(&bank, &alice, "1001", "2001", 1_001).await;
    expect_error(&over, 409, "daily_limit_exceeded");
    assert_eq!(over.1["error"]["allowedToday"], 1_000, "{}", over.1);
    // A wrong password: nothing happens.
    let body = Write::transfer("1001", "2001", 5, "wrong password").to_json();
    let wrong = bank.request(&alice.token, body).await;
    assert_eq!(wrong.1["error"]["code"], "step_up_failed", "{}", wrong.1);

    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, 6_000);
    assert_eq!(snapshot.accounts["2001"].balance, 14_000);
    balance_is_the_sum_of_items(&bank, &alice, "1001", 6_000).await;
    balance_is_the_sum_of_items(&bank, &bob, "2001", 14_000).await;
}

#[tokio::test]
async fn a_target_that_cannot_take_the_money_gives_it_back_and_the_request_says_why() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    let bob = bank.customer("bob@test").await;
    bank.open_ok(&alice, "1001", 10_000).await;
    bank.open_ok(&bob, "2001", 0).await;
    let closed = bank.close(&bob.token, &bob.pw, "2001").await;
    expect_ok(&closed, 200);

    let missing = transfer(&bank, &alice, "1001", "9999", 1_000).await;
    assert_eq!(settled(&missing), "account_not_found", "{:?}", missing);
    let to_closed = transfer(&bank, &alice, "1001", "2001", 2_000).await;
    assert_eq!(settled(&to_closed), "account_closed", "{:?}", to_closed);
    // The request says why it was cancelled.
    let id = to_closed.1["requestId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, shown) = bank.get_request(&alice.token, &id).await;
    assert_eq!(
        (status, shown["reason"].as_str()),
        (404, Some("account_closed")),
        "{shown}"
    );

    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(
        snapshot.accounts["1001"].balance, 10_000,
        "every won came back"
    );
    assert_eq!(snapshot.accounts["2001"].balance, 0);
    // Each leg is an item: the money left and came back.
    assert_eq!(
        items(&bank, &alice, "1001").await,
        [
            ("open".into(), 10_000, None),
            ("transfer_out".into(), 1_000, Some("9999".into())),
            ("transfer_reversed".into(), 1_000, Some("9999".into())),
            ("transfer_out".into(), 2_000, Some("2001".into())),
            ("transfer_reversed".into(), 2_000, Some("2001".into())),
        ]
    );
    balance_is_the_sum_of_items(&bank, &alice, "1001", 10_000).await;
}

/// The answer a settled request amounts to.
fn settled(reply: &(u16, Value)) -> String {
    outcome(reply)
}

/// A transfer and the target's close race, again and again: whichever the account role applies
/// first, the books balance. Either the target was credited (and so cannot close:
/// balance_not_zero), or it closed first and the money came back (account_closed).
#[tokio::test]
async fn a_target_closed_while_the_money_is_on_its_way_gets_nothing_and_loses_nothing() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    let bob = bank.customer("bob@test").await;
    bank.open_ok(&alice, "1001", 1_000_000).await;
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut expected_alice = 1_000_000;
    for round in 0..12 {
        let target = format!("{}", 3000 + round);
        bank.open_ok(&bob, &target, 0).await;
        let (sent, closed) = tokio::join!(transfer(&bank, &alice, "1001", &target, 100), async {
            let reply = bank.close(&bob.token, &bob.pw, &target).await;
            bank.settle(&bob.token, reply).await
        });
        let (sent_outcome, close_outcome) = (settled(&sent), settled(&closed));
        let target_balance = match (sent_outcome.as_str(), close_outcome.as_str()) {
            ("completed", "balance_not_zero") => {
                expected_alice -= 100;
                100
            }
            ("account_closed", "completed") => 0,
            other => panic!(
                "round {round}: an outcome the books cannot explain: {other:?} {sent:?} {closed:?}"
            ),
        };
        *seen.entry((sent_outcome, close_outcome)).or_default() += 1;
        let snapshot = bank.ops.drained(SETTLE).await;
        assert_eq!(
            snapshot.accounts[&target].balance, target_balance,
            "round {round}"
        );
        assert_eq!(
            snapshot.accounts["1001"].balance, expected_alice,
            "round {round}"
        );
    }
    println!("transfer vs close of its target, outcomes: {seen:?}");
    balance_is_the_sum_of_items(&bank, &alice, "1001", expected_alice).await;
}

/// 100 transfers at once among 10 accounts of 5 customers, each pair of accounts both ways: no
/// deadlock, no won created or lost, nothing negative, every store agrees, each balance the sum
/// of its items.
#[tokio::test]
async fn a_hundred_concurrent_transfers_among_ten_accounts_conserve_every_won() {
    let bank = TestBank::start().await;
    let savers = bank.savers("saver", 5001, (5, 2), 10_000).await;
    let accounts: Vec<(&Customer, &str)> = savers
        .iter()
        .flat_map(|(c, nos)| nos.iter().map(move |no| (c, no.as_str())))
        .collect();
    let total: i64 = 10_000 * accounts.len() as i64;
    let sends = (0..100).map(|n| {
        // Pairs of accounts five apart, each pair both ways at once (n even: there, n odd: back).
        let (near, far) = ((n / 2) % 10, (n / 2 + 5) % 10);
        let (from, to) = if n % 2 == 0 { (near, far) } else { (far, near) };
        let ((owner, from), (_, to)) = (accounts[from], accounts[to]);
        let amount = 500 + (n as i64 * 37) % 4_000;
        let bank = &bank;
        async move {
            (
                transfer(bank, owner, from, to, amount).await,
                from,
                to,
                amount,
            )
        }
    });
    let replies = futures::future::join_all(sends).await;
    let mut completed = 0;
    let mut expected: BTreeMap<&str, i64> = accounts.iter().map(|(_, no)| (*no, 10_000)).collect();
    for (reply, from, to, amount) in &replies {
        match settled(reply).as_str() {
            "completed" => {
                completed += 1;
                *expected.entry(from).or_default() -= amount;
                *expected.entry(to).or_default() += amount;
            }
            "insufficient_funds" => {}
            other => panic!("{from} -> {to} {amount}: {other} {reply:?}"),
        }
    }
    let snapshot = bank.ops.drained(SETTLE).await;
    let held: i64 = accounts
        .iter()
        .map(|(_, no)| snapshot.accounts[*no].balance)
        .sum();
    assert_eq!(held, total, "no won created or lost");
    for (owner, no) in &accounts {
        let balance = snapshot.accounts[*no].balance;
        assert!(balance >= 0, "{no}: {balance}");
        assert_eq!(
            balance, expected[no],
            "{no}: what the completed transfers say"
        );
        balance_is_the_sum_of_items(&bank, owner, no, balance).await;
    }
    assert!(completed > 50, "most transfers had the money: {completed}");
    println!("{completed} of 100 concurrent transfers completed, the rest refused for funds");
}

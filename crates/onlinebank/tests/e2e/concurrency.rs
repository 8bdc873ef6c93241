//! Concurrency: parallel withdrawals never overdraw; parallel opens of one number have one winner.

use crate::support::*;
use std::collections::BTreeSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_withdrawals_of_1000_on_50000_exactly_fifty_succeed() {
    let bank = TestBank::start_with(&["--request-wait-ms", "30000"]).await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 50_000).await;

    let replies = futures::future::join_all((0..100).map(|_| async {
        let reply = bank.withdraw(&alice.token, &alice.pw, "1001", 1_000).await;
        bank.settle(&alice.token, reply).await
    }))
    .await;

    let mut balances_after = BTreeSet::new();
    let mut succeeded = 0;
    let mut refused = 0;
    for reply in &replies {
        match outcome(reply).as_str() {
            "completed" => {
                succeeded += 1;
                let balance = reply.1["balance"].as_i64().expect("balance");
                assert!(balance >= 0, "negative balance answered: {}", reply.1);
                assert!(
                    balances_after.insert(balance),
                    "two withdrawals saw balance {balance}: lost update"
                );
            }
            "insufficient_funds" => refused += 1,
            other => panic!("unexpected outcome {other}: {} {}", reply.0, reply.1),
        }
    }
    assert_eq!(
        (succeeded, refused),
        (50, 50),
        "exactly 50 of 100 withdrawals fit in 50,000"
    );
    let expected: BTreeSet<i64> = (0..50).map(|i| i * 1_000).collect();
    assert_eq!(
        balances_after, expected,
        "each success leaves a distinct balance 49,000..0"
    );

    // Every store agrees: balance 0, ledger sum 0, mypage 0; history holds exactly 50 withdrawals.
    let snapshot = bank.ops.drained(Duration::from_secs(30)).await;
    assert_eq!(snapshot.accounts["1001"].balance, 0);
    assert_eq!(snapshot.ledger.get("1001").copied(), Some(0));
    assert_eq!(snapshot.mypage["1001"].balance, 0);
    bank.wait_balance(&alice.token, "1001", 0).await;
    let all = bank.all_transactions(&alice.token, "1001").await;
    let withdrawals: Vec<_> = all
        .iter()
        .filter(|t| t.kind.as_deref() == Some("withdraw"))
        .collect();
    assert_eq!(withdrawals.len(), 50, "history: {all:?}");
    assert!(
        all.iter().all(|t| t.balance_after.is_some_and(|b| b >= 0)),
        "{all:?}"
    );
    let mut history_ids: Vec<&str> = withdrawals
        .iter()
        .map(|t| t.request_id.as_deref().unwrap())
        .collect();
    history_ids.sort_unstable();
    let mut completed_ids: Vec<&str> = replies
        .iter()
        .filter(|r| outcome(r) == "completed")
        .map(|r| r.1["requestId"].as_str().unwrap())
        .collect();
    completed_ids.sort_unstable();
    assert_eq!(
        history_ids, completed_ids,
        "history must hold exactly the completed withdrawals"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_parallel_opens_of_the_same_number_have_one_winner_and_the_rest_get_account_exists() {
    let bank = TestBank::start_with(&["--request-wait-ms", "30000"]).await;
    let customers = futures::future::join_all((0..10).map(|i| {
        let bank = &bank;
        async move { bank.customer(&format!("c{i}@test")).await }
    }))
    .await;

    let replies = futures::future::join_all(customers.iter().map(|c| async {
        let reply = bank.open(&c.token, &c.pw, Some("7777"), Some(100)).await;
        (c.user.clone(), bank.settle(&c.token, reply).await)
    }))
    .await;

    let winners: Vec<&String> = replies
        .iter()
        .filter(|(_, r)| outcome(r) == "completed")
        .map(|(u, _)| u)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one open wins: {replies:?}");
    for (user, reply) in &replies {
        if user != winners[0] {
            assert_eq!(
                outcome(reply),
                "account_exists",
                "{user}: {} {}",
                reply.0,
                reply.1
            );
            if reply.0 != 404 {
                expect_error(reply, 409, "account_exists");
            }
        }
    }
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts.len(), 1, "{snapshot:?}");
    let row = &snapshot.accounts["7777"];
    assert_eq!(
        (row.customer_id.as_str(), row.balance),
        (winners[0].as_str(), 100),
        "{row:?}"
    );
    assert_eq!(snapshot.ledger.get("7777").copied(), Some(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deposits_and_withdrawals_on_several_accounts_keep_every_store_in_agreement() {
    let bank = TestBank::start_with(&["--request-wait-ms", "30000"]).await;
    let alice = bank.customer("alice@test").await;
    let accounts = ["1001", "1002", "1003"];
    for no in accounts {
        bank.open_ok(&alice, no, 1_000).await;
    }
    let replies = futures::future::join_all((0..60).map(|i| {
        let bank = &bank;
        let alice = &alice;
        async move {
            let no = accounts[i % 3];
            let (kind, amount) = if i % 2 == 0 {
                ("deposit", 300)
            } else {
                ("withdraw", 500)
            };
            let reply = bank
                .request(&alice.token, money(kind, no, amount, &alice.pw))
                .await;
            (no, kind, amount, bank.settle(&alice.token, reply).await)
        }
    }))
    .await;
    let mut expected = std::collections::BTreeMap::new();
    for (no, kind, amount, reply) in &replies {
        let entry = expected.entry(*no).or_insert(1_000_i64);
        match (outcome(reply).as_str(), *kind) {
            ("completed", "deposit") => *entry += amount,
            ("completed", "withdraw") => *entry -= amount,
            ("insufficient_funds", "withdraw") => {}
            (other, _) => panic!("{kind} on {no}: {other}: {}", reply.1),
        }
    }
    let snapshot = bank.ops.drained(Duration::from_secs(30)).await;
    for no in accounts {
        assert_eq!(
            snapshot.accounts[no].balance, expected[no],
            "{no}: {snapshot:?}"
        );
        assert!(snapshot.accounts[no].balance >= 0);
    }
}

use std::time::Duration;

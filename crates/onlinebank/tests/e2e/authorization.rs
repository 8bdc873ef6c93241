//! A customer sees and touches only their own accounts and requests (others: 404).

use crate::support::*;

#[tokio::test]
async fn another_customer_cannot_read_my_account_or_its_transactions() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    let bob = bank.customer("bob@test").await;
    bank.open_ok(&alice, "1001", 4_000).await;
    bank.open_ok(&bob, "2001", 1).await;
    bank.wait_balance(&alice.token, "1001", 4_000).await;

    expect_error(
        &bank.account(&bob.token, "1001").await,
        404,
        "account_not_found",
    );
    expect_error(
        &bank.transactions(&bob.token, "1001", "").await,
        404,
        "account_not_found",
    );
    for reply in [
        bank.balance(&bob.token, "1001").await,
        bank.history(&bob.token, "1001").await,
    ] {
        assert_eq!(
            reply.0, 404,
            "bob reading alice's account by request: {}",
            reply.1
        );
        let code = reply.1["error"]["code"].as_str();
        assert!(
            code == Some("account_not_found"),
            "bob reading alice's account by request: {}",
            reply.1
        );
        assert!(
            reply.1.get("balance").is_none() && !reply.1.to_string().contains("4000"),
            "{}",
            reply.1
        );
    }
    let (status, list) = bank.accounts(&bob.token).await;
    assert_eq!(status, 200, "{list}");
    assert!(
        !items(&list).iter().any(|i| i["accountNo"] == "1001"),
        "alice's account listed for bob: {list}"
    );
    // And alice still reads hers.
    expect_ok(&bank.account(&alice.token, "1001").await, 200);
}

#[tokio::test]
async fn another_customer_cannot_read_my_requests() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    let bob = bank.customer("bob@test").await;
    bank.open_ok(&alice, "1001", 100).await;
    let done = bank.deposit(&alice.token, &alice.pw, "1001", 5).await;
    let done_id = expect_ok(&done, 200)["requestId"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = bank.withdraw(&alice.token, &alice.pw, "1001", 1_000).await;
    let failed_id =
        expect_compensated(&bank, &alice.token, &failed, 409, "insufficient_funds").await;

    // Someone else's request reads exactly like an unknown one, completed or cancelled.
    expect_error(
        &bank.get_request(&bob.token, &done_id).await,
        404,
        "request_not_found",
    );
    let reply = bank.get_request(&bob.token, &failed_id).await;
    expect_error(&reply, 404, "request_not_found");
    assert!(
        reply.1.get("reason").is_none(),
        "the reason leaked to another customer: {}",
        reply.1
    );

    let (status, list) = bank.get("/api/v1/requests", Some(&bob.token)).await;
    assert_eq!(status, 200, "{list}");
    assert!(
        items(&list).is_empty(),
        "bob sees requests that are not his: {list}"
    );
    assert!(list["next"].is_null(), "{list}");

    let (status, list) = bank.get("/api/v1/requests", Some(&alice.token)).await;
    assert_eq!(status, 200, "{list}");
    let mine = items(&list);
    assert!(
        mine.iter().any(|r| r["requestId"] == done_id.as_str()),
        "{list}"
    );
    assert!(mine.iter().all(|r| r["accountNo"] == "1001"), "{list}");
}

#[tokio::test]
async fn my_requests_list_pages_newest_first() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 0).await;
    let mut ids = Vec::new();
    for amount in 1..=5 {
        let reply = bank.deposit(&alice.token, &alice.pw, "1001", amount).await;
        ids.push(expect_ok(&reply, 200)["requestId"].clone());
    }
    ids.reverse();
    let (status, page1) = bank
        .get("/api/v1/requests?limit=2", Some(&alice.token))
        .await;
    assert_eq!(status, 200, "{page1}");
    let next = page1["next"]
        .as_str()
        .unwrap_or_else(|| panic!("page 1 needs next: {page1}"))
        .to_owned();
    let (status, page2) = bank
        .get(
            &format!("/api/v1/requests?limit=2&before={}", encode(&next)),
            Some(&alice.token),
        )
        .await;
    assert_eq!(status, 200, "{page2}");
    let got: Vec<serde_json::Value> = items(&page1)
        .iter()
        .chain(items(&page2).iter())
        .map(|r| r["requestId"].clone())
        .collect();
    assert_eq!(
        got,
        ids[..4].to_vec(),
        "newest first across pages: {page1} {page2}"
    );
}

//! One process per role (`onlinebank serve <role>`): the same flows across processes, and reads
//! that keep answering with the write side down.

use crate::support::*;

#[tokio::test]
async fn a_deposit_flow_works_across_one_process_per_role() {
    let cluster = Cluster::start().await;
    for role in ROLES {
        let (status, body) = cluster.ops.plain(role, "/health/ready").await.unwrap();
        assert_eq!(status, 200, "{role} ready: {body}");
    }
    let alice = cluster.customer("alice@test").await;
    let opened = cluster
        .open(&alice.token, &alice.pw, Some("1001"), Some(1_000))
        .await;
    assert_eq!(expect_ok(&opened, 200)["balance"], 1_000);
    let reply = cluster.deposit(&alice.token, &alice.pw, "1001", 250).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 1_250);
    let reply = cluster.withdraw(&alice.token, &alice.pw, "1001", 50).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 1_200);
    let reply = cluster
        .withdraw(&alice.token, &alice.pw, "1001", 5_000)
        .await;
    expect_compensated(&cluster, &alice.token, &reply, 409, "insufficient_funds").await;
    expect_error(
        &cluster.deposit(&alice.token, "wrong-pw", "1001", 1).await,
        403,
        "step_up_failed",
    );

    let account = cluster.wait_balance(&alice.token, "1001", 1_200).await;
    assert_eq!(
        account["transactions"].as_array().map(Vec::len),
        Some(3),
        "{account}"
    );
    let reply = cluster.balance(&alice.token, "1001").await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 1_200);

    let snapshot = cluster.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, 1_200);
    assert_eq!(snapshot.ledger["1001"], 1_200);
}

#[tokio::test]
async fn reads_keep_answering_with_request_auth_and_account_killed() {
    let mut cluster = Cluster::start().await;
    let alice = cluster.customer("alice@test").await;
    cluster.open_ok(&alice, "1001", 1_000).await;
    expect_ok(
        &cluster.deposit(&alice.token, &alice.pw, "1001", 500).await,
        200,
    );
    cluster.open_ok(&alice, "1002", 0).await;
    cluster.ops.drained(SETTLE).await;
    cluster.wait_balance(&alice.token, "1001", 1_500).await;

    // Auth down: a write is refused fast with 503 service_busy + Retry-After, nothing happens.
    cluster.kill("auth");
    let started = std::time::Instant::now();
    let reply = cluster
        .post_req("/api/v1/requests")
        .bearer(&alice.token)
        .json(money("deposit", "1001", 1, &alice.pw))
        .send()
        .await;
    expect_error(&reply.pair(), 503, "service_busy");
    assert!(
        reply.header("retry-after").is_some(),
        "503 without Retry-After: {:?}",
        reply.headers
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "busy answer took {:?}",
        started.elapsed()
    );

    cluster.kill("request");
    cluster.kill("account");

    // Reads through the gateway answer from mypage (and history).
    for _ in 0..5 {
        let (status, account) = cluster.account(&alice.token, "1001").await;
        assert_eq!(
            status, 200,
            "GET account with the write side down: {account}"
        );
        assert_eq!(account["balance"], 1_500, "{account}");
        assert_eq!(account["status"], "open", "{account}");
        let (status, page) = cluster.transactions(&alice.token, "1001", "limit=10").await;
        assert_eq!(
            status, 200,
            "GET transactions with the write side down: {page}"
        );
        assert_eq!(items(&page).len(), 2, "{page}");
        let (status, list) = cluster.accounts(&alice.token).await;
        assert_eq!(status, 200, "GET accounts with the write side down: {list}");
        assert_eq!(items(&list).len(), 2, "{list}");
    }
    let (status, body) = cluster.get("/api/v1/ping", None).await;
    assert_eq!(status, 200, "{body}");
    // Tokens are still verified without auth.
    expect_error(
        &cluster.account("garbage", "1001").await,
        401,
        "unauthorized",
    );
    // Writes fail with an error, not a hang.
    let reply = cluster.deposit(&alice.token, &alice.pw, "1001", 1).await;
    assert!(
        reply.0 >= 500,
        "a write with request down: {} {}",
        reply.0,
        reply.1
    );
}

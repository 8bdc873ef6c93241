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
async fn step_ups_go_to_every_auth_instance_and_keep_working_with_one_of_two_stopped() {
    let mut cluster = Cluster::start_layout(&[], |role| if role == "auth" { 2 } else { 1 }).await;
    assert_eq!(cluster.urls_of("auth").len(), 2);
    let alice = cluster.customer("alice@two-auths").await;
    cluster.open_ok(&alice, "1501", 100).await;
    // The first instance of the list goes away: step-ups reach the second one.
    cluster["auth"].kill();
    for round in 1..=6 {
        let reply = cluster.deposit(&alice.token, &alice.pw, "1501", 10).await;
        assert_eq!(
            expect_ok(&reply, 200)["balance"],
            100 + 10 * round,
            "deposit {round} with the first auth down"
        );
    }
    // A wrong password is still refused (and counted) by the instance that answers.
    expect_error(
        &cluster.deposit(&alice.token, "wrong-pw", "1501", 1).await,
        403,
        "step_up_failed",
    );
    let snapshot = cluster.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1501"].balance, 160);
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
    cluster["auth"].kill();
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

    cluster["request"].kill();
    cluster["account"].kill();

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

#[tokio::test]
async fn a_request_outliving_the_wait_answers_202_and_a_retry_meanwhile_is_409_in_flight() {
    let mut cluster = Cluster::start_with(&["--request-wait-ms", "500"]).await;
    let alice = cluster.customer("alice@test").await;
    let opened = cluster
        .open(&alice.token, &alice.pw, Some("1001"), Some(100))
        .await;
    assert_eq!(
        outcome(&cluster.settle(&alice.token, opened).await),
        "completed"
    );
    cluster.ops.drained(SETTLE).await;

    // With account down the outcome cannot arrive: 202 with Location, pending.
    cluster["account"].kill();
    let body = money("deposit", "1001", 50, &alice.pw);
    let reply = cluster
        .post_req("/api/v1/requests")
        .bearer(&alice.token)
        .header("Idempotency-Key", "k-1")
        .json(body.clone())
        .send()
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let id = reply.body["requestId"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", reply.text))
        .to_owned();
    assert_eq!(reply.body["type"], "deposit", "{}", reply.text);
    assert_eq!(reply.body["status"], "pending", "{}", reply.text);
    assert_eq!(
        reply.header("location").as_deref(),
        Some(format!("/api/v1/requests/{id}").as_str()),
        "202 needs Location: {:?}",
        reply.headers
    );
    let (status, pending) = cluster.get_request(&alice.token, &id).await;
    assert_eq!(status, 200, "{pending}");
    assert_eq!(pending["status"], "pending", "{pending}");
    assert_eq!(pending["accountNo"], "1001", "{pending}");
    assert_eq!(pending["amount"], 50, "{pending}");
    assert!(pending["createdAt"].is_string(), "{pending}");
    assert!(
        pending
            .get("completedAt")
            .is_none_or(serde_json::Value::is_null),
        "{pending}"
    );

    // The same key while the first is still running: 409 idempotency_key_in_flight.
    let again = cluster
        .request_with_key(&alice.token, "k-1", body.clone())
        .await;
    expect_error(&again, 409, "idempotency_key_in_flight");

    // Account back: the request completes, once.
    cluster.restart("account").await;
    let done = cluster.settle(&alice.token, reply.pair()).await;
    assert_eq!(outcome(&done), "completed", "{}", done.1);
    assert_eq!(done.1["balance"], 150, "{}", done.1);
    let replay = cluster.request_with_key(&alice.token, "k-1", body).await;
    assert!(
        matches!(replay.0, 200 | 202),
        "replay after completion: {} {}",
        replay.0,
        replay.1
    );
    assert_eq!(
        replay.1["requestId"],
        id.as_str(),
        "a replay must name the first request: {}",
        replay.1
    );
    let snapshot = cluster.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, 150);
    assert_eq!(
        cluster.all_transactions(&alice.token, "1001").await.len(),
        2
    );
}

#[tokio::test]
async fn a_step_up_that_times_out_answers_503_and_never_moves_money_later() {
    let cluster = Cluster::start().await;
    let alice = cluster.customer("alice@test").await;
    cluster.open_ok(&alice, "1001", 100).await;
    cluster.ops.drained(SETTLE).await;

    // Auth frozen: the verification times out, the customer is told busy.
    cluster["auth"].signal("STOP");
    let body = money("deposit", "1001", 50, &alice.pw);
    let started = std::time::Instant::now();
    let reply = cluster
        .post_req("/api/v1/requests")
        .bearer(&alice.token)
        .header("Idempotency-Key", "k-frozen")
        .json(body.clone())
        .send()
        .await;
    let elapsed = started.elapsed();
    expect_error(&reply.pair(), 503, "service_busy");
    assert!(reply.header("retry-after").is_some(), "{:?}", reply.headers);
    assert!(
        elapsed < std::time::Duration::from_secs(4),
        "busy answer took {elapsed:?}"
    );
    let other = cluster.withdraw(&alice.token, &alice.pw, "1001", 30).await;
    expect_error(&other, 503, "service_busy");

    // Auth resumes and answers the old verifications late: they must not move money.
    cluster["auth"].signal("CONT");
    let retried = eventually("the key's retry to complete", SETTLE, || async {
        let reply = cluster
            .request_with_key(&alice.token, "k-frozen", body.clone())
            .await;
        match (reply.0, reply.1["error"]["code"].as_str()) {
            (200, _) => Ok(reply),
            (503, Some("service_busy")) => Err(format!("{}", reply.1)),
            _ => panic!("retry after auth resumed: {} {}", reply.0, reply.1),
        }
    })
    .await;
    assert_eq!(
        retried.1["balance"], 150,
        "the busy answer must have released the key and moved nothing: {}",
        retried.1
    );
    let snapshot = cluster.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, 150, "{snapshot:?}");
    let all = cluster.all_transactions(&alice.token, "1001").await;
    assert_eq!(all.len(), 2, "open + the one retried deposit: {all:?}");
}

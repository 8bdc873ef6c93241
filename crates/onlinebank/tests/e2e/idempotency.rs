//! Idempotency-Key: the same key and body replay the first answer and apply once; a different
//! body is 422 `idempotency_key_reused`; keys are per customer; "try again" answers release it.

use crate::support::*;

#[tokio::test]
async fn the_same_key_and_body_replays_the_first_answer_and_applies_once() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 1_000).await;
    let body = money("deposit", "1001", 250, &alice.pw);

    let first = bank
        .request_with_key(&alice.token, "key-1", body.clone())
        .await;
    assert_eq!(expect_ok(&first, 200)["balance"], 1_250);
    for _ in 0..3 {
        let again = bank
            .request_with_key(&alice.token, "key-1", body.clone())
            .await;
        assert_eq!(
            again, first,
            "a replay must answer the first status and body"
        );
    }
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(
        snapshot.accounts["1001"].balance, 1_250,
        "the deposit applied more than once"
    );
    let all = bank.all_transactions(&alice.token, "1001").await;
    assert_eq!(all.len(), 2, "open + one deposit: {all:?}");

    // A failed (compensated) answer is replayed too, and does not apply later.
    let body = money("withdraw", "1001", 5_000, &alice.pw);
    let first = bank
        .request_with_key(&alice.token, "key-2", body.clone())
        .await;
    expect_compensated(&bank, &alice.token, &first, 409, "insufficient_funds").await;
    let again = bank.request_with_key(&alice.token, "key-2", body).await;
    assert_eq!(
        again, first,
        "a replayed failure must answer the first status and body"
    );
    assert_eq!(
        bank.ops.drained(SETTLE).await.accounts["1001"].balance,
        1_250
    );
}

#[tokio::test]
async fn the_same_key_with_a_different_body_is_422_idempotency_key_reused() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 1_000).await;
    let first = bank
        .request_with_key(
            &alice.token,
            "key-1",
            money("deposit", "1001", 100, &alice.pw),
        )
        .await;
    assert_eq!(expect_ok(&first, 200)["balance"], 1_100);

    for body in [
        money("deposit", "1001", 101, &alice.pw),
        money("withdraw", "1001", 100, &alice.pw),
        money("deposit", "1002", 100, &alice.pw),
    ] {
        let reply = bank
            .request_with_key(&alice.token, "key-1", body.clone())
            .await;
        assert_eq!(
            (reply.0, reply.1["error"]["code"].as_str()),
            (422, Some("idempotency_key_reused")),
            "key-1 with {body}: {}",
            reply.1
        );
    }
    assert_eq!(
        bank.ops.drained(SETTLE).await.accounts["1001"].balance,
        1_100
    );
}

#[tokio::test]
async fn concurrent_retries_with_one_key_apply_once() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 0).await;
    let body = money("deposit", "1001", 777, &alice.pw);
    let replies = futures::future::join_all(
        (0..8).map(|_| bank.request_with_key(&alice.token, "same-key", body.clone())),
    )
    .await;
    let mut completed = Vec::new();
    for reply in &replies {
        match reply.0 {
            200 => completed.push(reply.1.clone()),
            409 => expect_error(reply, 409, "idempotency_key_in_flight"),
            _ => panic!("concurrent retry answered {} {}", reply.0, reply.1),
        }
    }
    assert!(!completed.is_empty(), "no retry completed: {replies:?}");
    for body in &completed {
        assert_eq!(
            body["requestId"], completed[0]["requestId"],
            "two requests for one key: {replies:?}"
        );
        assert_eq!(body["balance"], 777, "{body}");
    }
    // After the first finished, the key replays.
    let again = bank.request_with_key(&alice.token, "same-key", body).await;
    assert_eq!(again.1, completed[0], "replay after completion");
    assert_eq!(bank.ops.drained(SETTLE).await.accounts["1001"].balance, 777);
    assert_eq!(bank.all_transactions(&alice.token, "1001").await.len(), 2);
}

#[tokio::test]
async fn idempotency_keys_are_scoped_to_the_customer() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    let bob = bank.customer("bob@test").await;
    bank.open_ok(&alice, "1001", 0).await;
    bank.open_ok(&bob, "2001", 0).await;
    let a = bank
        .request_with_key(
            &alice.token,
            "shared-key",
            money("deposit", "1001", 10, &alice.pw),
        )
        .await;
    let b = bank
        .request_with_key(
            &bob.token,
            "shared-key",
            money("deposit", "2001", 20, &bob.pw),
        )
        .await;
    assert_eq!(expect_ok(&a, 200)["balance"], 10);
    assert_eq!(
        expect_ok(&b, 200)["balance"],
        20,
        "bob's key must not collide with alice's"
    );
    assert_ne!(a.1["requestId"], b.1["requestId"]);
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, 10);
    assert_eq!(snapshot.accounts["2001"].balance, 20);
}

#[tokio::test]
async fn a_step_up_failure_releases_the_key_so_the_corrected_retry_applies() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 0).await;
    let wrong = bank
        .request_with_key(
            &alice.token,
            "key-1",
            money("deposit", "1001", 40, "wrong-password"),
        )
        .await;
    expect_error(&wrong, 403, "step_up_failed");
    let right = bank
        .request_with_key(
            &alice.token,
            "key-1",
            money("deposit", "1001", 40, &alice.pw),
        )
        .await;
    assert_eq!(expect_ok(&right, 200)["balance"], 40, "{}", right.1);
    let replay = bank
        .request_with_key(
            &alice.token,
            "key-1",
            money("deposit", "1001", 40, &alice.pw),
        )
        .await;
    assert_eq!(replay, right);
    assert_eq!(bank.ops.drained(SETTLE).await.accounts["1001"].balance, 40);
}

#[tokio::test]
async fn an_over_long_idempotency_key_is_400_invalid_request() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 0).await;
    let key = "k".repeat(129);
    let reply = bank
        .request_with_key(&alice.token, &key, money("deposit", "1001", 1, &alice.pw))
        .await;
    expect_error(&reply, 400, "invalid_request");
    let key = "k".repeat(128);
    let reply = bank
        .request_with_key(&alice.token, &key, money("deposit", "1001", 1, &alice.pw))
        .await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 1);
}

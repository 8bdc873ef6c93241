//! Five consecutive failed step-ups or logins lock the customer out (429 `locked_out` with
//! Retry-After, even with the right password); a success resets the count; the lock expires.

use crate::support::*;

#[tokio::test]
async fn five_wrong_step_ups_lock_out_even_the_right_password() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 1_000).await;

    for attempt in 1..=5 {
        let reply = bank
            .deposit(&alice.token, "wrong-password", "1001", 10)
            .await;
        assert_eq!(
            (reply.0, reply.1["error"]["code"].as_str()),
            (403, Some("step_up_failed")),
            "wrong step-up #{attempt}: {}",
            reply.1
        );
    }
    let reply = bank
        .post_req("/api/v1/requests")
        .bearer(&alice.token)
        .json(money("deposit", "1001", 10, &alice.pw))
        .send()
        .await;
    expect_error(&reply.pair(), 429, "locked_out");
    assert!(
        reply.header("retry-after").is_some(),
        "429 without Retry-After: {:?}",
        reply.headers
    );

    // Login is locked as well, and so are the other step-up operations.
    let reply = bank
        .post_req("/api/v1/sessions")
        .json(serde_json::json!({"userId": alice.user, "password": alice.pw}))
        .send()
        .await;
    expect_error(&reply.pair(), 429, "locked_out");
    assert!(
        reply.header("retry-after").is_some(),
        "429 without Retry-After: {:?}",
        reply.headers
    );
    expect_error(
        &bank.withdraw(&alice.token, &alice.pw, "1001", 10).await,
        429,
        "locked_out",
    );

    // Reads need no step-up and keep working; nothing moved.
    let account = bank.wait_balance(&alice.token, "1001", 1_000).await;
    assert_eq!(
        account["transactions"].as_array().map(Vec::len),
        Some(1),
        "{account}"
    );
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, 1_000);
}

#[tokio::test]
async fn five_wrong_logins_lock_out_login_and_step_up_even_with_the_right_password() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 1_000).await;
    for attempt in 1..=5 {
        let reply = bank.login(&alice.user, "wrong-password").await;
        assert_eq!(
            (reply.0, reply.1["error"]["code"].as_str()),
            (401, Some("invalid_credentials")),
            "wrong login #{attempt}: {}",
            reply.1
        );
    }
    expect_error(&bank.login(&alice.user, &alice.pw).await, 429, "locked_out");
    // The session from before the lockout cannot step up either.
    expect_error(
        &bank.deposit(&alice.token, &alice.pw, "1001", 10).await,
        429,
        "locked_out",
    );
    // Another customer is not affected.
    let bob = bank.customer("bob@test").await;
    bank.open_ok(&bob, "2001", 10).await;
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, 1_000);
}

#[tokio::test]
async fn a_success_resets_the_count_of_failed_attempts() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 0).await;
    for round in 0..3 {
        for _ in 0..4 {
            expect_error(
                &bank.login(&alice.user, "wrong-password").await,
                401,
                "invalid_credentials",
            );
        }
        bank.token(&alice.user, &alice.pw).await;
        for _ in 0..4 {
            expect_error(
                &bank
                    .deposit(&alice.token, "wrong-password", "1001", 1)
                    .await,
                403,
                "step_up_failed",
            );
        }
        let reply = bank.deposit(&alice.token, &alice.pw, "1001", 1).await;
        assert_eq!(expect_ok(&reply, 200)["balance"], round + 1, "{}", reply.1);
    }
}

#[tokio::test]
async fn a_lockout_expires_after_lockout_secs_and_the_locked_attempts_changed_nothing() {
    let bank = TestBank::start_with(&["--lockout-secs", "3"]).await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 100).await;
    for _ in 0..5 {
        expect_error(
            &bank
                .deposit(&alice.token, "wrong-password", "1001", 1)
                .await,
            403,
            "step_up_failed",
        );
    }
    // Retry with the right password until the lock is gone: every refusal is locked_out.
    let refused = std::cell::Cell::new(0);
    let reply = eventually(
        "the lockout to expire",
        std::time::Duration::from_secs(15),
        || async {
            let reply = bank.deposit(&alice.token, &alice.pw, "1001", 1).await;
            match (reply.0, reply.1["error"]["code"].as_str()) {
                (200, _) => Ok(reply),
                (429, Some("locked_out")) => {
                    refused.set(refused.get() + 1);
                    Err("still locked".to_owned())
                }
                _ => panic!("during a lockout: {} {}", reply.0, reply.1),
            }
        },
    )
    .await;
    assert_eq!(
        reply.1["balance"], 101,
        "only the successful deposit moved money: {}",
        reply.1
    );
    assert!(refused.get() > 0, "the lockout never showed");
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, 101);
}

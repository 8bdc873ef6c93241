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

/// The password of attempt `n` of a burst: the right one at #100, wrong ones around it.
fn burst_password(n: usize, right: &str) -> String {
    if n == 100 {
        right.to_owned()
    } else {
        "wrong-password".to_owned()
    }
}

/// A burst's answers hold the lockout: at most five wrong passwords were evaluated (answered
/// `wrong` with `wrong_status`); every other answer, the right password's at #100 included, is
/// 429 `locked_out`.
fn assert_burst_held(replies: &[(u16, serde_json::Value)], wrong_status: u16, wrong: &str) {
    let answers: Vec<(u16, &str)> = replies
        .iter()
        .map(|(status, body)| (*status, body["error"]["code"].as_str().unwrap_or("ok")))
        .collect();
    let evaluated = answers.iter().filter(|answer| answer.1 == wrong).count();
    assert!(
        evaluated <= 5,
        "{evaluated} wrong passwords were evaluated: {answers:?}"
    );
    assert_eq!(
        answers[100],
        (429, "locked_out"),
        "the right password inside the burst: {}",
        replies[100].1
    );
    for (n, answer) in answers.iter().enumerate() {
        assert!(
            *answer == (wrong_status, wrong) || *answer == (429, "locked_out"),
            "attempt #{n}: {answer:?}"
        );
    }
}

#[tokio::test]
async fn two_hundred_parallel_logins_evaluate_at_most_five_and_lock_out_even_the_right_password() {
    // Places for sign-up and login wait long here: this is about the lockout, not the admission.
    let bank = TestBank::start_with(&["--public-wait-ms", "30000"]).await;
    let alice = bank.customer("alice@test").await;
    let api = bank.unpooled();
    let attempts = (0..200).map(|n| {
        let api = api.clone();
        let (user, pw) = (alice.user.clone(), alice.pw.clone());
        async move { api.login(&user, &burst_password(n, &pw)).await }
    });
    let replies = futures::future::join_all(attempts).await;
    assert_burst_held(&replies, 401, "invalid_credentials");
    expect_error(&bank.login(&alice.user, &alice.pw).await, 429, "locked_out");
}

#[tokio::test]
async fn two_hundred_parallel_step_ups_evaluate_at_most_five_and_move_no_money() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 1_000).await;
    let api = bank.unpooled();
    let attempts = (0..200).map(|n| {
        let api = api.clone();
        let (token, pw) = (alice.token.clone(), alice.pw.clone());
        async move {
            api.deposit(&token, &burst_password(n, &pw), "1001", 1)
                .await
        }
    });
    let replies = futures::future::join_all(attempts).await;
    assert_burst_held(&replies, 403, "step_up_failed");
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, 1_000, "{snapshot:?}");
}

#[tokio::test]
async fn an_unknown_user_id_is_locked_out_exactly_like_a_customer() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    let mut seen = Vec::new();
    for user in [alice.user.as_str(), "nobody@test"] {
        let mut answers = Vec::new();
        for _ in 0..7 {
            let reply = bank
                .post_req("/api/v1/sessions")
                .json(serde_json::json!({"userId": user, "password": "wrong-password"}))
                .send()
                .await;
            answers.push((
                reply.status,
                reply.body["error"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                reply.body["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                reply.header("retry-after").is_some(),
            ));
        }
        seen.push(answers);
    }
    assert_eq!(
        seen[0], seen[1],
        "a customer and an unknown id answered differently"
    );
    assert_eq!(seen[1][4].0, 401, "{:?}", seen[1]);
    assert_eq!(
        (seen[1][5].0, seen[1][5].1.as_str()),
        (429, "locked_out"),
        "{:?}",
        seen[1]
    );
}

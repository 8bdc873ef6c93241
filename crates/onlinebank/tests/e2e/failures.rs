//! Every failure reason of the write path: the exact status and code, the compensated request
//! (requestId beside the error, `request_cancelled` with the reason afterwards), and that nothing
//! changed.

use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn deposit_to_an_unknown_account_is_404_account_not_found_and_the_request_is_deleted() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    let reply = bank.deposit(&alice.token, &alice.pw, "9999", 100).await;
    expect_compensated(&bank, &alice.token, &reply, 404, "account_not_found").await;
    let reply = bank.withdraw(&alice.token, &alice.pw, "9999", 100).await;
    expect_compensated(&bank, &alice.token, &reply, 404, "account_not_found").await;
    let reply = bank.close(&alice.token, &alice.pw, "9999").await;
    expect_compensated(&bank, &alice.token, &reply, 404, "account_not_found").await;

    // Reads of an unknown account are 404 account_not_found too.
    expect_error(
        &bank.account(&alice.token, "9999").await,
        404,
        "account_not_found",
    );
    expect_error(
        &bank.transactions(&alice.token, "9999", "").await,
        404,
        "account_not_found",
    );
    expect_error(
        &bank.balance(&alice.token, "9999").await,
        404,
        "account_not_found",
    );
    expect_error(
        &bank.history(&alice.token, "9999").await,
        404,
        "account_not_found",
    );

    let snapshot = bank.ops.drained(SETTLE).await;
    assert!(
        snapshot.accounts.is_empty(),
        "a failed request created an account: {snapshot:?}"
    );
}

#[tokio::test]
async fn withdraw_beyond_balance_is_rejected_and_request_deleted() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    let opened = bank.open_ok(&alice, "1001", 1_000).await;
    let version = opened["version"].as_i64().unwrap();

    let reply = bank.withdraw(&alice.token, &alice.pw, "1001", 1_001).await;
    let id = expect_compensated(&bank, &alice.token, &reply, 409, "insufficient_funds").await;

    // The deleted request is not in the customer's list of requests.
    let (status, list) = bank.get("/api/v1/requests", Some(&alice.token)).await;
    assert_eq!(status, 200, "{list}");
    assert!(
        !items(&list)
            .iter()
            .any(|item| item["requestId"] == id.as_str()),
        "a compensated request is still listed: {list}"
    );

    // Nothing changed: same balance and version, no ledger entry.
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, 1_000);
    assert_eq!(snapshot.accounts["1001"].version, version);
    let all = bank.all_transactions(&alice.token, "1001").await;
    assert_eq!(all.len(), 1, "only the open: {all:?}");

    // Exactly the whole balance is fine.
    let reply = bank.withdraw(&alice.token, &alice.pw, "1001", 1_000).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 0);
    let reply = bank.withdraw(&alice.token, &alice.pw, "1001", 1).await;
    expect_compensated(&bank, &alice.token, &reply, 409, "insufficient_funds").await;
}

#[tokio::test]
async fn opening_a_number_already_taken_is_409_account_exists() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    let bob = bank.customer("bob@test").await;
    bank.open_ok(&alice, "1001", 50).await;

    let reply = bank
        .open(&alice.token, &alice.pw, Some("1001"), Some(10))
        .await;
    expect_compensated(&bank, &alice.token, &reply, 409, "account_exists").await;
    let reply = bank.open(&bob.token, &bob.pw, Some("1001"), None).await;
    expect_compensated(&bank, &bob.token, &reply, 409, "account_exists").await;

    let snapshot = bank.ops.drained(SETTLE).await;
    let row = &snapshot.accounts["1001"];
    assert_eq!(
        (row.balance, row.customer_id.as_str()),
        (50, "alice@test"),
        "{row:?}"
    );
}

#[tokio::test]
async fn writes_to_another_customers_account_answer_exactly_like_a_missing_account_and_change_nothing(
) {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    let bob = bank.customer("bob@test").await;
    let opened = bank.open_ok(&alice, "1001", 5_000).await;

    // Someone else's account and no account at all: the same status, code and message, now and
    // when the request is looked up later, so nobody learns which numbers exist.
    let missing = bank.deposit(&bob.token, &bob.pw, "9999", 100).await;
    expect_compensated(&bank, &bob.token, &missing, 404, "account_not_found").await;
    for reply in [
        bank.deposit(&bob.token, &bob.pw, "1001", 100).await,
        bank.withdraw(&bob.token, &bob.pw, "1001", 100).await,
        bank.close(&bob.token, &bob.pw, "1001").await,
    ] {
        expect_compensated(&bank, &bob.token, &reply, 404, "account_not_found").await;
        assert_eq!(
            reply.1["error"], missing.1["error"],
            "{} vs {}",
            reply.1, missing.1
        );
        let id = reply.1["requestId"].as_str().unwrap();
        let later = bank.get_request(&bob.token, id).await;
        assert_eq!(later.1["reason"], "account_not_found", "{}", later.1);
        assert!(!later.1.to_string().contains("not_owner"), "{}", later.1);
    }

    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, 5_000);
    assert_eq!(
        snapshot.accounts["1001"].version,
        opened["version"].as_i64().unwrap()
    );
    assert_eq!(snapshot.accounts["1001"].status, "open");
}

#[tokio::test]
async fn invalid_amounts_are_400_invalid_amount_and_change_nothing() {
    let bank = TestBank::start_with(&["--max-amount", "1000000"]).await;
    let alice = bank.customer("alice@test").await;
    let opened = bank.open_ok(&alice, "1001", 1_000_000).await;
    let version = opened["version"].as_i64().unwrap();

    for kind in ["deposit", "withdraw"] {
        for (what, amount) in [
            ("zero", json!(0)),
            ("negative", json!(-5)),
            ("over the limit", json!(1_000_001)),
            ("not an integer", json!(1.5)),
            ("beyond i64", json!(1e30)),
        ] {
            let body =
                json!({"type": kind, "accountNo": "1001", "amount": amount, "password": alice.pw});
            let reply = bank.request(&alice.token, body).await;
            assert_eq!(
                (reply.0, reply.1["error"]["code"].as_str()),
                (400, Some("invalid_amount")),
                "{kind} {what}: {}",
                reply.1
            );
        }
        let body = json!({"type": kind, "accountNo": "1001", "password": alice.pw});
        let reply = bank.request(&alice.token, body).await;
        assert_eq!(
            (reply.0, reply.1["error"]["code"].as_str()),
            (400, Some("invalid_amount")),
            "{kind} without amount: {}",
            reply.1
        );
    }
    // An opening amount may be zero but not negative or over the limit.
    let reply = bank
        .open(&alice.token, &alice.pw, Some("1002"), Some(-1))
        .await;
    expect_error(&reply, 400, "invalid_amount");
    let reply = bank
        .open(&alice.token, &alice.pw, Some("1003"), Some(1_000_001))
        .await;
    expect_error(&reply, 400, "invalid_amount");

    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts.len(), 1, "{snapshot:?}");
    assert_eq!(snapshot.accounts["1001"].balance, 1_000_000);
    assert_eq!(snapshot.accounts["1001"].version, version);

    // The limit itself is allowed.
    let reply = bank
        .deposit(&alice.token, &alice.pw, "1001", 1_000_000)
        .await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 2_000_000);
    let reply = bank
        .withdraw(&alice.token, &alice.pw, "1001", 1_000_000)
        .await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 1_000_000);
}

#[tokio::test]
async fn the_default_limit_is_ten_billion_won() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 0).await;
    let reply = bank
        .deposit(&alice.token, &alice.pw, "1001", 10_000_000_000)
        .await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 10_000_000_000_i64);
    let reply = bank
        .deposit(&alice.token, &alice.pw, "1001", 10_000_000_001)
        .await;
    expect_error(&reply, 400, "invalid_amount");
}

#[tokio::test]
async fn a_balance_beyond_i64_is_409_balance_overflow() {
    let bank = TestBank::start_with(&["--max-amount", "9223372036854775807"]).await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", i64::MAX - 10).await;
    let reply = bank.deposit(&alice.token, &alice.pw, "1001", 11).await;
    expect_compensated(&bank, &alice.token, &reply, 409, "balance_overflow").await;
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, i64::MAX - 10);
}

#[tokio::test]
async fn a_wrong_step_up_password_is_403_step_up_failed_and_changes_nothing() {
    let bank = TestBank::start_with(&["--lockout-threshold", "100"]).await;
    let alice = bank.customer("alice@test").await;
    let opened = bank.open_ok(&alice, "1001", 1_000).await;
    let version = opened["version"].as_i64().unwrap();
    let wrong = "not-alices-password";

    let replies = [
        bank.deposit(&alice.token, wrong, "1001", 10).await,
        bank.withdraw(&alice.token, wrong, "1001", 10).await,
        bank.open(&alice.token, wrong, Some("1002"), Some(10)).await,
        bank.withdraw(&alice.token, &alice.pw, "1001", 1_000).await,
    ];
    for reply in &replies[..3] {
        expect_error(reply, 403, "step_up_failed");
        // If the refused request got an id, it reads as cancelled with that reason.
        if let Some(id) = reply.1["requestId"].as_str() {
            let (status, body) = bank.get_request(&alice.token, id).await;
            assert_eq!(status, 404, "{body}");
            assert_eq!(body["error"]["code"], "request_cancelled", "{body}");
            assert_eq!(body["reason"], "step_up_failed", "{body}");
        }
    }
    assert_eq!(expect_ok(&replies[3], 200)["balance"], 0);
    let reply = bank.close(&alice.token, wrong, "1001").await;
    expect_error(&reply, 403, "step_up_failed");
    let reply = bank
        .request(
            &alice.token,
            json!({"type": "deposit", "accountNo": "1001", "amount": 5}),
        )
        .await;
    assert!(
        matches!(reply.0, 400 | 401 | 403),
        "a deposit without password must be refused: {} {}",
        reply.0,
        reply.1
    );

    // Nothing changed: 1001 still open at 0 (only the real withdrawal moved), 1002 never opened.
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts.len(), 1, "{snapshot:?}");
    let row = &snapshot.accounts["1001"];
    assert_eq!((row.balance, row.status.as_str()), (0, "open"), "{row:?}");
    assert!(row.version > version, "{row:?}");
    assert_eq!(
        Some(row.version),
        replies[3].1["version"].as_i64(),
        "only the withdrawal changed it: {row:?}"
    );
    expect_error(
        &bank.account(&alice.token, "1002").await,
        404,
        "account_not_found",
    );
    bank.assert_never_answered(&alice.pw);
}

#[tokio::test]
async fn bad_account_numbers_and_unknown_request_ids_are_rejected() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    for no in [
        "12 3",
        "-12",
        "12-",
        "",
        "a'; drop table accounts; --",
        &"1".repeat(33),
    ] {
        let reply = bank
            .request(
                &alice.token,
                json!({"type": "deposit", "accountNo": no, "amount": 1, "password": alice.pw}),
            )
            .await;
        expect_error(&reply, 400, "invalid_request");
    }
    let reply = bank
        .request(
            &alice.token,
            json!({"type": "deposit", "amount": 1, "password": alice.pw}),
        )
        .await;
    expect_error(&reply, 400, "invalid_request");
    let reply = bank.request(&alice.token, json!({"type": "balance"})).await;
    expect_error(&reply, 400, "invalid_request");

    let unknown = uuid::Uuid::new_v4().to_string();
    expect_error(
        &bank.get_request(&alice.token, &unknown).await,
        404,
        "request_not_found",
    );
    let (status, body) = bank.get_request(&alice.token, "not-a-uuid").await;
    assert!(matches!(status, 400 | 404), "{status} {body}");
    let snapshot = bank.ops.drained(SETTLE).await;
    assert!(snapshot.accounts.is_empty(), "{snapshot:?}");
}

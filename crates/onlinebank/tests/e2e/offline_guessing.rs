//! A copy of the data directory (`auth.db` with its WAL, and `secret.key`) must not let anyone
//! test password guesses faster than argon2id: the keys of the sessions' step-up verifiers are
//! made per process and kept in memory, not derived from `secret.key`. Sessions still step up
//! across a restart (argon2id decides once, then the verifier is rewritten), and a wrong password
//! there is refused and counted as ever.

use crate::support::*;
use onlinebank_core::db::Db;
use onlinebank_core::secret::{hmac_sha256, MasterSecret};
use std::path::Path;

/// Copies what an attacker with read access to the data directory would take: the auth store
/// (with its WAL and shared-memory files, which hold the latest commits) and the secret.
fn copy_auth_files(from: &Path, to: &Path) {
    let mut copied = Vec::new();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("auth.db") || name == "secret.key" {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
            copied.push(name);
        }
    }
    assert!(
        copied.iter().any(|name| name == "auth.db") && copied.iter().any(|n| n == "secret.key"),
        "the data directory has no auth.db or secret.key: {copied:?}"
    );
}

/// Every session of `user_id` in the copied store, with its stored step-up verifier.
async fn sessions_in_copy(dir: &Path, user_id: &str) -> Vec<(String, Vec<u8>)> {
    let url = format!("sqlite://{}", dir.join("auth.db").display());
    let db = Db::open(&url, "auth").await.unwrap();
    let rows: Vec<(String, Vec<u8>)> = db
        .read()
        .await
        .unwrap()
        .fetch_all(
            "SELECT id, verifier FROM sessions WHERE user_id = $1",
            onlinebank_core::args![user_id],
        )
        .await
        .unwrap();
    rows
}

#[tokio::test]
async fn a_copy_of_the_data_directory_gives_nothing_to_test_a_sessions_password_against() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 1_000).await;

    let stolen = tempfile::tempdir().unwrap();
    copy_auth_files(bank.data_dir(), stolen.path());
    let pepper = MasterSecret::load_or_create(stolen.path())
        .unwrap()
        .derive("onlinebank step-up v1");
    let sessions = sessions_in_copy(stolen.path(), &alice.user).await;
    assert!(!sessions.is_empty(), "no session of alice in the copy");
    for (session_id, verifier) in sessions {
        // The attacker's guess is the right password: if this matched, every dictionary word could
        // be tested in a microsecond, where argon2id takes tens of milliseconds.
        let session_key = hmac_sha256(&pepper.0, session_id.as_bytes());
        let guess = hmac_sha256(&session_key, alice.pw.as_bytes());
        assert!(
            !verifier.windows(guess.len()).any(|window| window == guess),
            "session {session_id}'s verifier is keyed by secret.key: the right password is \
             confirmed offline without argon2id"
        );
    }
}

/// `onlinebank_step_up_rechecks_total{valid}` on auth (0 when there is no such series yet).
async fn rechecks(bank: &TestBank, valid: &str) -> f64 {
    bank.ops
        .metric(
            "auth",
            "onlinebank_step_up_rechecks_total",
            &[("valid", valid)],
        )
        .await
        .unwrap()
        .unwrap_or(0.0)
}

#[tokio::test]
async fn sessions_from_before_a_restart_still_step_up_and_wrong_passwords_there_still_lock() {
    let mut bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 1_000).await;
    // A second session of alice from before the restart, used only for wrong passwords.
    let other_token = bank.token(&alice.user, &alice.pw).await;
    bank.restart().await;

    // The first step-up after the restart is decided by argon2id, the next ones by the rewritten
    // verifier again.
    for amount in [10, 20] {
        let reply = bank.deposit(&alice.token, &alice.pw, "1001", amount).await;
        assert_eq!(
            reply.0, 200,
            "deposit of {amount} after a restart: {}",
            reply.1
        );
        assert_eq!(reply.1["status"], "completed", "{}", reply.1);
    }
    assert_eq!(
        rechecks(&bank, "yes").await,
        1.0,
        "argon2id did not decide once"
    );

    // Wrong passwords with the other session (whose verifier argon2id never accepted) are refused
    // and counted: the fifth locks alice, on every session.
    for attempt in 1..=5 {
        let reply = bank
            .deposit(&other_token, "wrong-password", "1001", 10)
            .await;
        assert_eq!(
            (reply.0, reply.1["error"]["code"].as_str()),
            (403, Some("step_up_failed")),
            "wrong step-up #{attempt} after a restart: {}",
            reply.1
        );
    }
    expect_error(
        &bank.deposit(&alice.token, &alice.pw, "1001", 10).await,
        429,
        "locked_out",
    );
    expect_error(
        &bank.deposit(&other_token, &alice.pw, "1001", 10).await,
        429,
        "locked_out",
    );
    assert_eq!(rechecks(&bank, "no").await, 5.0);
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, 1_030);
}

/// A bank restarted after alice opened 1001 with 1,000 won (her session is from before the
/// restart). Bursts queue for their turns: the request role waits for each step-up as long as
/// needed.
async fn restarted_with_an_account() -> (TestBank, Customer) {
    let mut bank = TestBank::start_with(&["--step-up-timeout-ms", "10000"]).await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 1_000).await;
    bank.restart().await;
    (bank, alice)
}

#[tokio::test]
async fn after_a_restart_a_burst_of_wrong_step_ups_costs_at_most_five_argon2id_checks() {
    let (bank, alice) = restarted_with_an_account().await;

    let api = bank.unpooled();
    let attempts = (0..50).map(|_| {
        let (api, token) = (api.clone(), alice.token.clone());
        async move { api.deposit(&token, "wrong-password", "1001", 1).await }
    });
    let replies = futures::future::join_all(attempts).await;
    let answers: Vec<(u16, &str)> = replies
        .iter()
        .map(|(status, body)| (*status, body["error"]["code"].as_str().unwrap_or("ok")))
        .collect();
    for answer in &answers {
        assert!(
            *answer == (403, "step_up_failed") || *answer == (429, "locked_out"),
            "{answers:?}"
        );
    }
    let refused = answers.iter().filter(|answer| answer.1 == "step_up_failed");
    assert_eq!(refused.count(), 5, "{answers:?}");
    let evaluated = rechecks(&bank, "no").await + rechecks(&bank, "yes").await;
    assert_eq!(
        evaluated, 5.0,
        "argon2id checks after the restart: a wrong password each until the lock, then none"
    );
    expect_error(
        &bank.deposit(&alice.token, &alice.pw, "1001", 1).await,
        429,
        "locked_out",
    );
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, 1_000);
}

#[tokio::test]
async fn after_a_restart_concurrent_right_step_ups_of_one_session_cost_one_argon2id_check() {
    let (bank, alice) = restarted_with_an_account().await;

    // Eight deposits at once, each with the right password, on the session from before the
    // restart: the first to take the id's turn rekeys the session, the others then find it
    // rekeyed and are checked by HMAC.
    let api = bank.unpooled();
    let deposits = (0..8).map(|_| {
        let (api, token, pw) = (api.clone(), alice.token.clone(), alice.pw.clone());
        async move { api.deposit(&token, &pw, "1001", 10).await }
    });
    for (status, body) in futures::future::join_all(deposits).await {
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        rechecks(&bank, "yes").await,
        1.0,
        "argon2id ran more than once for one session's right password"
    );
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, 1_080);
}

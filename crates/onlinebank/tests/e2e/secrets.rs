//! Passwords are never echoed, logged or stored in clear.

use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn passwords_never_appear_in_answers_logs_or_data_files() {
    let bank = TestBank::start().await;
    let pw = "Unmistakable-Passw0rd-93xq";
    expect_ok(&bank.register("alice@test", "Alice", pw).await, 201);
    let token = bank.token("alice@test", pw).await;
    expect_ok(&bank.open(&token, pw, Some("1001"), Some(500)).await, 200);
    expect_ok(&bank.deposit(&token, pw, "1001", 5).await, 200);
    expect_error(
        &bank.withdraw(&token, pw, "1001", 50_000).await,
        409,
        "insufficient_funds",
    );
    expect_error(
        &bank.deposit(&token, "Wrong-Passw0rd-93xq", "1001", 5).await,
        403,
        "step_up_failed",
    );
    expect_error(
        &bank.register("alice@test", "Alice", pw).await,
        409,
        "customer_exists",
    );
    expect_error(
        &bank.login("alice@test", "Wrong-Passw0rd-93xq").await,
        401,
        "invalid_credentials",
    );
    // Invalid bodies that carry the password must not echo it in their error message.
    bank.request(
        &token,
        json!({"type": "deposit", "accountNo": "1001", "amount": "lots", "password": pw}),
    )
    .await;
    bank.request(
        &token,
        json!({"type": pw, "accountNo": "1001", "amount": 5, "password": pw}),
    )
    .await;
    bank.post(
        "/api/v1/customers",
        None,
        json!({"userId": "b c", "name": "B", "password": pw}),
    )
    .await;
    bank.post(
        "/api/v1/sessions",
        None,
        json!({"userId": "alice@test", "password": pw, "extra": 1}),
    )
    .await;
    // Legacy calls with the password in the body, and Basic reads.
    let legacy = json!({"accountNo": "1001", "requestId": "01", "requestName": "Deposit", "amountOfMoney": 7,
        "userId": "alice@test", "userName": "Alice", "userPassword": pw});
    expect_ok(&bank.post("/requests", None, legacy).await, 201);
    expect_ok(
        &bank
            .get_req("/requests")
            .basic("alice@test", pw)
            .pair()
            .await,
        200,
    );
    expect_ok(
        &bank
            .get_req("/mypages/search/findByAccountNo?accountNo=1001")
            .basic("alice@test", pw)
            .pair()
            .await,
        200,
    );
    let (_, list) = bank.get("/api/v1/requests", Some(&token)).await;
    for request in items(&list) {
        let id = request["requestId"].as_str().unwrap();
        bank.get_request(&token, id).await;
    }
    bank.history(&token, "1001").await;
    bank.ops.drained(SETTLE).await;

    // Answers.
    bank.assert_never_answered(pw);
    // Logs.
    let log = bank.log();
    assert!(
        !log.contains(pw),
        "the password was logged:\n{}",
        excerpt(&log, pw)
    );
    // Data files (databases, event log, WAL): nothing holds it in clear.
    for path in files_under(bank.data_dir()) {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        assert!(
            !bytes.windows(pw.len()).any(|w| w == pw.as_bytes()),
            "{} holds the password in clear",
            path.display()
        );
    }
}

fn excerpt(text: &str, needle: &str) -> String {
    text.lines()
        .filter(|l| l.contains(needle))
        .take(5)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_data_directory_is_0700_and_every_file_the_bank_creates_is_0600() {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let check = |dir: &std::path::Path| {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
        let files = files_under(dir);
        assert!(
            files.iter().any(|path| path.ends_with("auth.db")),
            "{files:?}"
        );
        for path in files {
            assert_eq!(
                mode(&path),
                0o600,
                "{} is {:o}",
                path.display(),
                mode(&path)
            );
        }
    };
    let mut bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 100).await;
    expect_ok(
        &bank.deposit(&alice.token, &alice.pw, "1001", 50).await,
        200,
    );
    bank.ops.drained(SETTLE).await;
    check(bank.data_dir());

    // A data directory someone loosened (as `mkdir` and `cp` under umask 022 leave them) is made
    // private again at start.
    let dir = bank.data_dir().to_path_buf();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for path in files_under(&dir) {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    bank.restart().await;
    let token = bank.token(&alice.user, &alice.pw).await;
    bank.wait_balance(&token, "1001", 150).await;
    check(&dir);
}

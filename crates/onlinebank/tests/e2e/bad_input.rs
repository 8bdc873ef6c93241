//! Bad input gets a 4xx with a code and changes nothing: malformed JSON, unknown type, wrong
//! content type, a 1 MB body, missing/garbage/tampered tokens.

use crate::support::*;
use serde_json::json;

/// A bank with alice holding account 1001 at 1,000.
async fn bank_with_account() -> (TestBank, Customer, AccountRow, usize) {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 1_000).await;
    let snapshot = bank.ops.drained(SETTLE).await;
    let row = snapshot.accounts["1001"].clone();
    let requests = request_count(&bank, &alice).await;
    (bank, alice, row, requests)
}

async fn request_count(bank: &TestBank, alice: &Customer) -> usize {
    let (status, list) = bank
        .get("/api/v1/requests?limit=100", Some(&alice.token))
        .await;
    assert_eq!(status, 200, "{list}");
    items(&list).len()
}

/// Nothing changed: no new request, and one real deposit afterwards is the only change.
async fn assert_nothing_changed(
    bank: &TestBank,
    alice: &Customer,
    before: &AccountRow,
    requests: usize,
) {
    assert_eq!(
        request_count(bank, alice).await,
        requests,
        "bad input created a request"
    );
    let reply = bank.deposit(&alice.token, &alice.pw, "1001", 1).await;
    let done = expect_ok(&reply, 200);
    assert_eq!(
        done["balance"],
        before.balance + 1,
        "bad input moved money: {done}"
    );
    let snapshot = bank.ops.drained(SETTLE).await;
    let row = &snapshot.accounts["1001"];
    assert_eq!(row.balance, before.balance + 1, "{row:?}");
    assert_eq!(Some(row.version), done["version"].as_i64(), "{row:?}");
    assert_eq!(
        snapshot.accounts.len(),
        1,
        "bad input opened an account: {snapshot:?}"
    );
    let all = bank.all_transactions(&alice.token, "1001").await;
    assert_eq!(all.len(), 2, "open + the one deposit: {all:?}");
}

#[tokio::test]
async fn malformed_json_is_400_malformed_json_and_changes_nothing() {
    let (bank, alice, before, requests) = bank_with_account().await;
    for body in [
        r#"{"type":"deposit","accountNo":"1001","amount":5,"#.as_bytes(),
        b"not json at all",
        b"{'type':'deposit'}",
        b"",
    ] {
        let reply = bank
            .post_req("/api/v1/requests")
            .bearer(&alice.token)
            .raw(Some("application/json"), body.to_vec())
            .pair()
            .await;
        let shown = String::from_utf8_lossy(body);
        assert_eq!(
            (reply.0, reply.1["error"]["code"].as_str()),
            (400, Some("malformed_json")),
            "body {shown:?}: {}",
            reply.1
        );
    }
    let reply = bank
        .post_req("/api/v1/customers")
        .raw(Some("application/json"), b"{\"userId\":".to_vec())
        .pair()
        .await;
    expect_error(&reply, 400, "malformed_json");
    assert_nothing_changed(&bank, &alice, &before, requests).await;
}

#[tokio::test]
async fn an_unknown_type_is_400_invalid_request_and_changes_nothing() {
    let (bank, alice, before, requests) = bank_with_account().await;
    for body in [
        json!({"type": "transfer", "accountNo": "1001", "amount": 5, "password": alice.pw}),
        json!({"type": "DEPOSIT", "accountNo": "1001", "amount": 5, "password": alice.pw}),
        json!({"accountNo": "1001", "amount": 5, "password": alice.pw}),
        json!(["deposit", "1001", 5]),
        json!({"type": 3, "accountNo": "1001"}),
    ] {
        let reply = bank.request(&alice.token, body.clone()).await;
        assert_eq!(
            (reply.0, reply.1["error"]["code"].as_str()),
            (400, Some("invalid_request")),
            "body {body}: {}",
            reply.1
        );
    }
    assert_nothing_changed(&bank, &alice, &before, requests).await;
}

#[tokio::test]
async fn an_unknown_field_is_400_invalid_request_and_changes_nothing() {
    let (bank, alice, before, requests) = bank_with_account().await;
    for body in [
        json!({"type": "deposit", "accountNo": "1001", "amount": 5, "password": alice.pw, "to": "2002"}),
        json!({"type": "withdraw", "accountNo": "1001", "amount": 5, "password": alice.pw, "currency": "USD"}),
    ] {
        let reply = bank.request(&alice.token, body.clone()).await;
        assert_eq!(
            (reply.0, reply.1["error"]["code"].as_str()),
            (400, Some("invalid_request")),
            "body {body}: {}",
            reply.1
        );
    }
    assert_nothing_changed(&bank, &alice, &before, requests).await;
}

#[tokio::test]
async fn a_wrong_content_type_is_415_unsupported_media_type_and_changes_nothing() {
    let (bank, alice, before, requests) = bank_with_account().await;
    let body = serde_json::to_vec(&money("deposit", "1001", 5, &alice.pw)).unwrap();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let reply = bank
            .post_req("/api/v1/requests")
            .bearer(&alice.token)
            .raw(content_type, body.clone())
            .pair()
            .await;
        assert_eq!(
            (reply.0, reply.1["error"]["code"].as_str()),
            (415, Some("unsupported_media_type")),
            "content type {content_type:?}: {}",
            reply.1
        );
    }
    assert_nothing_changed(&bank, &alice, &before, requests).await;
}

#[tokio::test]
async fn a_one_megabyte_body_is_413_payload_too_large_and_changes_nothing() {
    let (bank, alice, before, requests) = bank_with_account().await;
    let mut body = money("deposit", "1001", 5, &alice.pw);
    body["padding"] = json!("x".repeat(1024 * 1024));
    let bytes = serde_json::to_vec(&body).unwrap();
    // Each on its own connection: this test is about the answer, not connection reuse.
    for path in [
        "/api/v1/requests",
        "/api/v1/customers",
        "/api/v1/sessions",
        "/requests",
    ] {
        let reply = bank
            .unpooled()
            .post_req(path)
            .bearer(&alice.token)
            .raw(Some("application/json"), bytes.clone())
            .try_send()
            .await
            .unwrap_or_else(|error| {
                panic!("a 1 MB body to {path} must get an answer (413), got: {error}")
            });
        let got = (reply.status, reply.body["error"]["code"].as_str());
        assert_eq!(
            got,
            (413, Some("payload_too_large")),
            "1 MB to {path}: {}",
            reply.text
        );
    }
    assert_nothing_changed(&bank, &alice, &before, requests).await;
}

#[tokio::test]
async fn after_a_413_the_next_request_on_the_same_keep_alive_connection_still_works() {
    let (bank, alice, before, requests) = bank_with_account().await;
    let mut body = money("deposit", "1001", 5, &alice.pw);
    body["padding"] = json!("x".repeat(1024 * 1024));
    let bytes = serde_json::to_vec(&body).unwrap();
    // One client, one pooled connection: the 413, then an ordinary request.
    let api = bank.with_http(
        reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap(),
    );
    let reply = api
        .post_req("/api/v1/customers")
        .raw(Some("application/json"), bytes)
        .try_send()
        .await
        .unwrap_or_else(|error| panic!("a 1 MB body must get an answer (413), got: {error}"));
    assert_eq!(reply.status, 413, "{}", reply.text);
    let next = api
        .get_req("/api/v1/accounts")
        .bearer(&alice.token)
        .try_send()
        .await
        .unwrap_or_else(|error| {
            panic!(
                "the request after a 413 failed (the server closed the kept-alive connection \
                 without `Connection: close`): {error}"
            )
        });
    assert_eq!(next.status, 200, "{}", next.text);
    assert_nothing_changed(&bank, &alice, &before, requests).await;
}

#[tokio::test]
async fn a_missing_garbage_or_tampered_token_is_401_unauthorized_and_changes_nothing() {
    let (bank, alice, before, requests) = bank_with_account().await;
    let body = money("deposit", "1001", 5, &alice.pw);
    // Flip one character of the signature, and one of the claims.
    let mut tampered_sig = alice.token.clone().into_bytes();
    let at = tampered_sig.len() - 10;
    tampered_sig[at] = if tampered_sig[at] == b'A' { b'B' } else { b'A' };
    let tampered_sig = String::from_utf8(tampered_sig).unwrap();
    let mut tampered_claims = alice.token.clone().into_bytes();
    let at = tampered_claims.len() / 3;
    tampered_claims[at] = if tampered_claims[at] == b'x' {
        b'y'
    } else {
        b'x'
    };
    let tampered_claims = String::from_utf8(tampered_claims).unwrap();
    let tokens: Vec<Option<String>> = vec![
        None,
        Some("garbage".into()),
        Some("v1.garbage.garbage".into()),
        Some(String::new()),
        Some(tampered_sig),
        Some(tampered_claims),
    ];
    for token in &tokens {
        let mut req = bank.post_req("/api/v1/requests").json(body.clone());
        if let Some(token) = token {
            req = req.bearer(token);
        }
        let reply = req.pair().await;
        assert_eq!(
            (reply.0, reply.1["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "POST with token {token:?}: {}",
            reply.1
        );
        for path in [
            "/api/v1/accounts",
            "/api/v1/accounts/1001",
            "/api/v1/accounts/1001/transactions",
            "/api/v1/requests",
        ] {
            let mut req = bank.get_req(path);
            if let Some(token) = token {
                req = req.bearer(token);
            }
            let reply = req.pair().await;
            assert_eq!(
                (reply.0, reply.1["error"]["code"].as_str()),
                (401, Some("unauthorized")),
                "GET {path} with token {token:?}: {}",
                reply.1
            );
        }
    }
    // A token in the wrong scheme is no token.
    let reply = bank
        .post_req("/api/v1/requests")
        .header("authorization", &format!("Token {}", alice.token))
        .json(body.clone())
        .pair()
        .await;
    expect_error(&reply, 401, "unauthorized");
    assert_nothing_changed(&bank, &alice, &before, requests).await;
}

#[tokio::test]
async fn a_token_from_another_bank_is_401_unauthorized() {
    let (bank, alice, before, requests) = bank_with_account().await;
    let other = TestBank::start().await;
    let mallory = other.customer("alice@test").await;
    let reply = bank.deposit(&mallory.token, &alice.pw, "1001", 5).await;
    expect_error(&reply, 401, "unauthorized");
    expect_error(
        &bank.account(&mallory.token, "1001").await,
        401,
        "unauthorized",
    );
    drop(other);
    assert_nothing_changed(&bank, &alice, &before, requests).await;
}

/// Calls every router and extractor used to answer in plain text or with no body.
async fn assert_every_error_is_json(api: &Api, alice: &Customer) {
    let token = alice.token.as_str();
    let calls: Vec<(reqwest::Method, &str, bool, u16)> = vec![
        (reqwest::Method::PUT, "/api/v1/requests", true, 405),
        (reqwest::Method::DELETE, "/api/v1/accounts", true, 405),
        (reqwest::Method::PATCH, "/api/v1/customers", false, 405),
        (reqwest::Method::PUT, "/requests", false, 405),
        (
            reqwest::Method::GET,
            "/api/v1/requests?limit=1&limit=2",
            true,
            400,
        ),
        (
            reqwest::Method::GET,
            "/api/v1/requests?limit=abc",
            true,
            400,
        ),
        (
            reqwest::Method::GET,
            "/api/v1/accounts/1001/transactions?limit=1&limit=2",
            true,
            400,
        ),
        (
            reqwest::Method::GET,
            "/api/v1/accounts/1001/transactions?before=%FF",
            true,
            400,
        ),
        (reqwest::Method::GET, "/api/v1/requests/%FF", true, 400),
        (reqwest::Method::GET, "/requests/%FF", true, 400),
        (reqwest::Method::GET, "/no/such/route", false, 404),
    ];
    for (method, path, with_token, status) in calls {
        let mut req = api.req(method.clone(), path);
        if with_token {
            req = req.bearer(token);
        }
        let reply = req.send().await;
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.text);
        let code = reply.body["error"]["code"].as_str();
        let message = reply.body["error"]["message"].as_str();
        assert!(
            code.is_some_and(|code| !code.is_empty()) && message.is_some_and(|m| !m.is_empty()),
            "{method} {path} answered outside the error shape: {:?}",
            reply.text
        );
        if status == 405 {
            assert_eq!(code, Some("method_not_allowed"), "{method} {path}");
            assert!(
                reply.header("allow").is_some(),
                "{method} {path} without Allow"
            );
        }
    }
}

#[tokio::test]
async fn every_error_from_every_router_and_extractor_is_json_with_a_code() {
    let (bank, alice, _, _) = bank_with_account().await;
    assert_every_error_is_json(&bank.api, &alice).await;
}

#[tokio::test]
async fn every_error_is_json_with_a_code_also_when_each_role_answers_itself() {
    let cluster = Cluster::start().await;
    let alice = cluster.customer("alice@test").await;
    cluster.open_ok(&alice, "1001", 10).await;
    assert_every_error_is_json(&cluster.api, &alice).await;
    // And on a role's own port.
    for role in ROLES {
        let (status, body) = cluster
            .ops
            .plain(role, "/health/ready?x=%FF")
            .await
            .unwrap();
        assert_eq!(status, 200, "{role}: {body}");
    }
    let url = format!("{}/api/v1/requests", cluster.ops.urls["request"]);
    let reply = reqwest::Client::new().put(&url).send().await.unwrap();
    assert_eq!(reply.status().as_u16(), 405);
    let body: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
}

//! The original Spring system's endpoints: `POST /requests` with codes 01..06 and credentials in
//! the body, `GET /requests` and `GET /mypages/search/findByAccountNo` as HAL documents. The
//! password is never answered.

use crate::support::*;
use serde_json::{json, Value};

fn legacy_body(no: &str, code: &str, amount: i64, c: &Customer) -> Value {
    let name = match code {
        "01" => "Deposit",
        "02" => "Withdraw",
        "03" => "Balance",
        "04" => "Transaction",
        "05" => "addAccount",
        "06" => "deleteAccount",
        _ => "Unknown",
    };
    json!({
        "accountNo": no, "requestId": code, "requestName": name, "amountOfMoney": amount,
        "userId": c.user, "userName": c.name, "userPassword": c.pw,
    })
}

async fn legacy(bank: &TestBank, no: &str, code: &str, amount: i64, c: &Customer) -> (u16, Value) {
    bank.post("/requests", None, legacy_body(no, code, amount, c))
        .await
}

/// Asserts a completed legacy answer and returns it.
#[track_caller]
fn completed<'a>(reply: &'a (u16, Value), no: &str, code: &str, c: &Customer) -> &'a Value {
    let body = expect_ok(reply, 201);
    assert_eq!(body["requestStatus"], "RequestCompleted", "{body}");
    assert_eq!(body["accountNo"], no, "{body}");
    assert_eq!(body["requestId"], code, "{body}");
    assert_eq!(body["userId"], c.user.as_str(), "{body}");
    assert!(body["requestName"].is_string(), "{body}");
    assert!(body["_links"]["self"]["href"].is_string(), "{body}");
    assert!(body["_links"]["request"]["href"].is_string(), "{body}");
    assert!(
        body.get("userPassword").is_none_or(Value::is_null),
        "password field answered: {body}"
    );
    body
}

/// Asserts a cancelled legacy answer: status, error code, RequestCancelled and legacy message.
#[track_caller]
fn cancelled(reply: &(u16, Value), status: u16, code: &str, message: &str) {
    expect_error(reply, status, code);
    assert_eq!(reply.1["requestStatus"], "RequestCancelled", "{}", reply.1);
    assert_eq!(reply.1["message"], message, "{}", reply.1);
    assert!(
        reply.1.get("userPassword").is_none_or(Value::is_null),
        "{}",
        reply.1
    );
}

#[tokio::test]
async fn legacy_requests_01_to_06_work_and_answer_in_the_spring_shape() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;

    let reply = legacy(&bank, "2001", "05", 0, &alice).await;
    completed(&reply, "2001", "05", &alice);
    cancelled(
        &legacy(&bank, "2001", "05", 0, &alice).await,
        409,
        "account_exists",
        "Account Exist",
    );

    let reply = legacy(&bank, "2001", "01", 5_000, &alice).await;
    let body = completed(&reply, "2001", "01", &alice);
    assert_eq!(body["amountOfMoney"], 5_000, "{body}");
    assert_eq!(body["balance"], 5_000, "{body}");

    let reply = legacy(&bank, "2001", "02", 2_000, &alice).await;
    let body = completed(&reply, "2001", "02", &alice);
    assert_eq!(body["amountOfMoney"], 2_000, "{body}");
    assert_eq!(body["balance"], 3_000, "{body}");

    cancelled(
        &legacy(&bank, "2001", "02", 9_000, &alice).await,
        409,
        "insufficient_funds",
        "Not Sufficient",
    );
    cancelled(
        &legacy(&bank, "7777", "01", 1, &alice).await,
        404,
        "account_not_found",
        "Account Not Exist",
    );

    // 03 answers the balance in amountOfMoney (from the read side, so poll until it caught up).
    let reply = eventually("legacy balance 3000", SETTLE, || async {
        let reply = legacy(&bank, "2001", "03", 0, &alice).await;
        if reply.0 == 201 && reply.1["amountOfMoney"] == 3_000 {
            Ok(reply)
        } else {
            Err(format!("{} {}", reply.0, reply.1))
        }
    })
    .await;
    let body = completed(&reply, "2001", "03", &alice);
    assert_eq!(body["balance"], 3_000, "{body}");

    let reply = eventually("legacy history with 3 transactions", SETTLE, || async {
        let reply = legacy(&bank, "2001", "04", 0, &alice).await;
        if reply.0 == 201 && reply.1["transactions"].as_array().map(Vec::len) == Some(3) {
            Ok(reply)
        } else {
            Err(format!("{} {}", reply.0, reply.1))
        }
    })
    .await;
    completed(&reply, "2001", "04", &alice);

    cancelled(
        &legacy(&bank, "2001", "06", 0, &alice).await,
        409,
        "balance_not_zero",
        "Balance Not Zero",
    );
    completed(
        &legacy(&bank, "2001", "02", 3_000, &alice).await,
        "2001",
        "02",
        &alice,
    );
    completed(
        &legacy(&bank, "2001", "06", 0, &alice).await,
        "2001",
        "06",
        &alice,
    );
    cancelled(
        &legacy(&bank, "2001", "01", 1, &alice).await,
        409,
        "account_closed",
        "Account Closed",
    );

    // The legacy calls are the same requests as the v1 API's.
    let account = bank
        .account_when(&alice.token, "2001", "2001 closed in the read model", |b| {
            b["status"] == "closed"
        })
        .await;
    assert_eq!(account["balance"], 0, "{account}");
    let kinds: Vec<String> = bank
        .all_transactions(&alice.token, "2001")
        .await
        .iter()
        .map(|t| t.kind.clone().unwrap_or_else(|| "?".into()))
        .collect();
    assert_eq!(kinds, ["close", "withdraw", "withdraw", "deposit", "open"]);
    bank.ops.drained(SETTLE).await;
    bank.assert_never_answered(&alice.pw);
}

#[tokio::test]
async fn legacy_credentials_are_checked_and_a_wrong_password_changes_nothing() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "2001", 100).await;
    let mut wrong = alice.clone();
    wrong.pw = "not-the-password".into();
    for code in ["01", "02", "05", "06"] {
        let reply = legacy(&bank, "2001", code, 10, &wrong).await;
        let got = (reply.0, reply.1["error"]["code"].as_str());
        assert!(
            got == (401, Some("invalid_credentials")) || got == (403, Some("step_up_failed")),
            "legacy {code} with a wrong password: {} {}",
            reply.0,
            reply.1
        );
    }
    let mut stranger = alice.clone();
    stranger.user = "nobody@test".into();
    let reply = legacy(&bank, "2001", "03", 0, &stranger).await;
    assert_eq!(reply.0, 401, "legacy with an unknown user: {}", reply.1);
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["2001"].balance, 100);
    assert_eq!(snapshot.accounts.len(), 1);
}

#[tokio::test]
async fn legacy_reads_need_credentials_and_show_only_my_requests_and_accounts_as_hal() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    let bob = bank.customer("bob@test").await;
    completed(
        &legacy(&bank, "2001", "05", 0, &alice).await,
        "2001",
        "05",
        &alice,
    );
    completed(
        &legacy(&bank, "2001", "01", 700, &alice).await,
        "2001",
        "01",
        &alice,
    );
    completed(
        &legacy(&bank, "3001", "05", 0, &bob).await,
        "3001",
        "05",
        &bob,
    );

    // Without or with wrong credentials: 401 unauthorized.
    expect_error(&bank.get("/requests", None).await, 401, "unauthorized");
    expect_error(
        &bank
            .get("/mypages/search/findByAccountNo?accountNo=2001", None)
            .await,
        401,
        "unauthorized",
    );
    let reply = bank
        .get_req("/requests")
        .basic(&alice.user, "not-the-password")
        .pair()
        .await;
    // Wrong credentials: 401 (the docs name the code only for missing credentials).
    assert_eq!(reply.0, 401, "wrong Basic password: {}", reply.1);
    let code = reply.1["error"]["code"].as_str();
    assert!(
        code == Some("unauthorized") || code == Some("invalid_credentials"),
        "{}",
        reply.1
    );

    // GET /requests with Basic: alice's requests only, in the HAL shape.
    let (status, doc) = bank
        .get_req("/requests")
        .basic(&alice.user, &alice.pw)
        .pair()
        .await;
    assert_eq!(status, 200, "{doc}");
    let requests = doc["_embedded"]["requests"]
        .as_array()
        .unwrap_or_else(|| panic!("{doc}"))
        .clone();
    assert!(requests.len() >= 2, "alice's open and deposit: {doc}");
    assert!(
        requests.iter().all(|r| r["accountNo"] == "2001"),
        "someone else's request: {doc}"
    );
    assert!(requests.iter().any(|r| r["amountOfMoney"] == 700), "{doc}");
    assert!(doc["_links"].is_object(), "{doc}");
    for field in ["size", "totalElements", "totalPages", "number"] {
        assert!(
            doc["page"][field].is_i64() || doc["page"][field].is_u64(),
            "page.{field}: {doc}"
        );
    }
    assert!(
        doc["page"]["totalElements"].as_i64().unwrap() >= requests.len() as i64,
        "{doc}"
    );

    // With Bearer works too.
    let (status, doc) = bank.get_req("/requests").bearer(&bob.token).pair().await;
    assert_eq!(status, 200, "{doc}");
    let requests = doc["_embedded"]["requests"]
        .as_array()
        .unwrap_or_else(|| panic!("{doc}"))
        .clone();
    assert!(
        !requests.is_empty() && requests.iter().all(|r| r["accountNo"] == "3001"),
        "{doc}"
    );

    // findByAccountNo: the view rows with the balance in amountOfMoney.
    let doc = eventually("mypage row of 2001 at 700", SETTLE, || async {
        let (status, doc) = bank
            .get_req("/mypages/search/findByAccountNo?accountNo=2001")
            .basic(&alice.user, &alice.pw)
            .pair()
            .await;
        let rows = doc["_embedded"]["mypages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if status == 200 && rows.iter().any(|r| r["amountOfMoney"] == 700) {
            Ok(doc)
        } else {
            Err(format!("{status} {doc}"))
        }
    })
    .await;
    assert!(doc["_links"].is_object(), "{doc}");
    for row in doc["_embedded"]["mypages"].as_array().unwrap() {
        assert_eq!(row["accountNo"], "2001", "{doc}");
        for field in [
            "lastRequestId",
            "lastRequestName",
            "requestMoney",
            "amountOfMoney",
            "requestStatus",
            "lastModifiedDate",
        ] {
            assert!(
                row.get(field).is_some(),
                "mypage row without {field}: {doc}"
            );
        }
    }
    let rows = doc["_embedded"]["mypages"].as_array().unwrap();
    assert!(
        rows.iter()
            .any(|r| r["requestStatus"] == "RequestCompleted"),
        "{doc}"
    );

    // Bob asking for alice's account gets nothing of it.
    let (status, doc) = bank
        .get_req("/mypages/search/findByAccountNo?accountNo=2001")
        .basic(&bob.user, &bob.pw)
        .pair()
        .await;
    match status {
        200 => assert!(
            doc["_embedded"]["mypages"]
                .as_array()
                .is_some_and(Vec::is_empty),
            "bob sees alice's account: {doc}"
        ),
        404 => {}
        _ => panic!("bob asking for alice's account: {status} {doc}"),
    }
    bank.assert_never_answered(&alice.pw);
    bank.assert_never_answered(&bob.pw);
}

#[tokio::test]
async fn the_original_demo_script_works_with_the_demo_customer() {
    let bank = TestBank::start_with(&["--demo"]).await;
    let sam = Customer {
        user: "1@sk.com".into(),
        name: "sam".into(),
        pw: "1234".into(),
        token: String::new(),
    };
    completed(&legacy(&bank, "1", "05", 0, &sam).await, "1", "05", &sam);
    let reply = legacy(&bank, "1", "01", 10_000, &sam).await;
    assert_eq!(completed(&reply, "1", "01", &sam)["balance"], 10_000);
    let reply = legacy(&bank, "1", "02", 2_500, &sam).await;
    assert_eq!(completed(&reply, "1", "02", &sam)["balance"], 7_500);
    for body in bank.seen() {
        let doc: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert!(
            !contains_value(&doc, "1234"),
            "the demo password was answered: {body}"
        );
    }
}

/// Whether any string in a JSON document equals `needle`.
fn contains_value(doc: &Value, needle: &str) -> bool {
    match doc {
        Value::String(s) => s == needle,
        Value::Array(items) => items.iter().any(|v| contains_value(v, needle)),
        Value::Object(map) => map.values().any(|v| contains_value(v, needle)),
        _ => false,
    }
}

/// Every legacy answer a client can get, asked with `Host: evil.example`: the texts.
async fn legacy_answers_with_a_forged_host(bank: &TestBank, c: &Customer) -> Vec<String> {
    let mut texts = Vec::new();
    for code in ["05", "01"] {
        let reply = bank
            .post_req("/requests")
            .header("host", "evil.example")
            .json(legacy_body("8001", code, 100, c))
            .send()
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        texts.push(reply.text);
    }
    let id = serde_json::from_str::<Value>(&texts[1]).unwrap()["_links"]["self"]["href"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    for path in [
        "/requests".to_owned(),
        format!("/requests/{id}"),
        "/mypages/search/findByAccountNo?accountNo=8001".to_owned(),
    ] {
        let reply = bank
            .get_req(&path)
            .basic(&c.user, &c.pw)
            .header("host", "evil.example")
            .send()
            .await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        texts.push(reply.text);
    }
    texts
}

#[tokio::test]
async fn legacy_links_never_echo_the_host_header_and_start_with_the_public_url_when_set() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    for text in legacy_answers_with_a_forged_host(&bank, &alice).await {
        assert!(
            !text.contains("evil.example"),
            "the Host header leaked: {text}"
        );
        assert!(text.contains("\"href\":\"/"), "links are relative: {text}");
    }

    let bank = TestBank::start_with(&["--public-url", "https://bank.example/"]).await;
    let alice = bank.customer("alice@test").await;
    for text in legacy_answers_with_a_forged_host(&bank, &alice).await {
        assert!(
            !text.contains("evil.example"),
            "the Host header leaked: {text}"
        );
        assert!(
            text.contains("\"href\":\"https://bank.example/"),
            "links start with the public URL: {text}"
        );
    }
}

/// `onlinebank_legacy_logins_total{how}` on auth (0 when there is no such series yet).
async fn legacy_logins(bank: &TestBank, how: &str) -> f64 {
    bank.ops
        .metric("auth", "onlinebank_legacy_logins_total", &[("how", how)])
        .await
        .unwrap()
        .unwrap_or(0.0)
}

#[tokio::test]
async fn remembered_legacy_credentials_cost_no_hash_yet_wrong_passwords_and_lockout_hold() {
    let bank = TestBank::start_with(&["--lockout-threshold", "3"]).await;
    let alice = bank.customer("alice@verifier").await;
    bank.open_ok(&alice, "3001", 0).await;

    // Twenty deposits and a Basic read with the same credentials: one argon2id check in all.
    for _ in 0..20 {
        completed(
            &legacy(&bank, "3001", "01", 10, &alice).await,
            "3001",
            "01",
            &alice,
        );
    }
    let basic = bank
        .get_req("/requests?size=5")
        .basic(&alice.user, &alice.pw)
        .send()
        .await;
    assert_eq!(basic.status, 200, "{:?}", basic.body);
    assert_eq!(legacy_logins(&bank, "argon2").await, 1.0);
    assert_eq!(legacy_logins(&bank, "remembered").await, 20.0);

    // A wrong password is never taken from memory: it is checked and counted...
    let mut wrong = alice.clone();
    wrong.pw = "not-the-password".into();
    let reply = legacy(&bank, "3001", "01", 10, &wrong).await;
    expect_error(&reply, 401, "invalid_credentials");
    // ... and the right one after it goes the full way again (resetting the count, as a login does).
    completed(
        &legacy(&bank, "3001", "01", 10, &alice).await,
        "3001",
        "01",
        &alice,
    );
    assert_eq!(legacy_logins(&bank, "argon2").await, 3.0);

    // Three wrong passwords in a row lock the id: then even the remembered credentials are
    // answered locked_out, on writes and on Basic reads, and nothing moves.
    for attempt in 1..=3 {
        let reply = legacy(&bank, "3001", "02", 10, &wrong).await;
        assert!(
            reply.0 == 401 || (attempt == 3 && reply.0 == 429),
            "wrong password #{attempt}: {} {}",
            reply.0,
            reply.1
        );
    }
    let reply = legacy(&bank, "3001", "01", 10, &alice).await;
    expect_error(&reply, 429, "locked_out");
    let basic = bank
        .get_req("/requests?size=5")
        .basic(&alice.user, &alice.pw)
        .send()
        .await;
    assert_eq!(basic.status, 429, "{:?}", basic.body);
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["3001"].balance, 210);
}

/// Every `href` anywhere in `doc`.
fn hrefs(doc: &Value, out: &mut Vec<String>) {
    match doc {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value.as_str()) {
                    ("href", Some(href)) => out.push(href.to_owned()),
                    _ => hrefs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| hrefs(item, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_link_the_legacy_api_hands_out_answers_and_a_401_says_how_to_authenticate() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@links").await;
    let mut answers = Vec::new();
    for (code, amount) in [("05", 0), ("01", 700), ("02", 200)] {
        let reply = legacy(&bank, "2601", code, amount, &alice).await;
        answers.push(completed(&reply, "2601", code, &alice).clone());
    }
    for code in ["03", "04"] {
        let reply = legacy(&bank, "2601", code, 0, &alice).await;
        answers.push(completed(&reply, "2601", code, &alice).clone());
    }
    for path in [
        "/requests",
        "/mypages/search/findByAccountNo?accountNo=2601",
    ] {
        let reply = bank
            .get_req(path)
            .basic(&alice.user, &alice.pw)
            .send()
            .await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        answers.push(reply.body);
    }
    let mut links = Vec::new();
    for answer in &answers {
        hrefs(answer, &mut links);
    }
    links.sort();
    links.dedup();
    assert!(links.len() >= 6, "{links:?}");
    for link in &links {
        let reply = bank
            .get_req(link)
            .basic(&alice.user, &alice.pw)
            .send()
            .await;
        assert_eq!(reply.status, 200, "GET {link}: {}", reply.body);
    }

    // Without credentials: 401, and the answer says how to send them.
    let reply = bank.get_req("/requests").send().await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("Basic") && challenge.contains("Bearer"),
        "{challenge}"
    );
    let message = reply.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Basic") && message.contains("userId:password"),
        "{message}"
    );
}

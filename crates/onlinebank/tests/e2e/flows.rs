//! Every customer flow through `onlinebank up`: register, login, open, deposit, withdraw,
//! balance, history, the account list, close.

use crate::support::*;
use onlinebank_core::internal;
use serde_json::{json, Value};

fn is_account_no(no: &str) -> bool {
    !no.is_empty()
        && no.len() <= 32
        && no.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !no.starts_with('-')
        && !no.ends_with('-')
}

#[tokio::test]
async fn register_answers_201_and_a_duplicate_user_id_is_409_customer_exists() {
    let bank = TestBank::start().await;
    let reply = bank.register("1@sk.com", "sam", "pw-register-1").await;
    let body = expect_ok(&reply, 201);
    assert_eq!(body["userId"], "1@sk.com", "{body}");
    assert_eq!(body["name"], "sam", "{body}");
    assert!(body["createdAt"].is_string(), "createdAt missing: {body}");

    let again = bank
        .register("1@sk.com", "someone else", "pw-register-2")
        .await;
    expect_error(&again, 409, "customer_exists");

    // The first registration still holds: its password logs in, the second one does not.
    bank.token("1@sk.com", "pw-register-1").await;
    expect_error(
        &bank.login("1@sk.com", "pw-register-2").await,
        401,
        "invalid_credentials",
    );
    bank.assert_never_answered("pw-register-1");
}

#[tokio::test]
async fn register_with_bad_fields_is_400_invalid_request() {
    let bank = TestBank::start().await;
    let long_id = "x".repeat(65);
    let long_name = "n".repeat(101);
    let long_pw = "p".repeat(129);
    let cases: Vec<(&str, Value)> = vec![
        (
            "empty userId",
            json!({"userId": "", "name": "a", "password": "pass1"}),
        ),
        (
            "userId with a space",
            json!({"userId": "a b", "name": "a", "password": "pass1"}),
        ),
        (
            "userId of 65 chars",
            json!({"userId": long_id, "name": "a", "password": "pass1"}),
        ),
        (
            "empty name",
            json!({"userId": "a1", "name": "", "password": "pass1"}),
        ),
        (
            "name of 101 chars",
            json!({"userId": "a2", "name": long_name, "password": "pass1"}),
        ),
        (
            "password of 3 chars",
            json!({"userId": "a3", "name": "a", "password": "abc"}),
        ),
        (
            "password of 129 chars",
            json!({"userId": "a4", "name": "a", "password": long_pw}),
        ),
        ("missing password", json!({"userId": "a5", "name": "a"})),
        ("missing userId", json!({"name": "a", "password": "pass1"})),
        (
            "userId not a string",
            json!({"userId": 12, "name": "a", "password": "pass1"}),
        ),
    ];
    for (what, body) in cases {
        let reply = bank.post("/api/v1/customers", None, body).await;
        assert_eq!(reply.0, 400, "{what}: {}", reply.1);
        assert_eq!(
            reply.1["error"]["code"], "invalid_request",
            "{what}: {}",
            reply.1
        );
    }
    // None of them was created: the ids stay free.
    for user in ["a1", "a2", "a3", "a4", "a5"] {
        expect_ok(&bank.register(user, "fine", "pass-ok-1").await, 201);
    }
    // The edges of the rules are accepted.
    let edge_id = "y".repeat(64);
    let edge_name = "m".repeat(100);
    let edge_pw = "q".repeat(128);
    expect_ok(&bank.register(&edge_id, &edge_name, "abcd").await, 201);
    expect_ok(&bank.register("edge@sk.com", "e", &edge_pw).await, 201);
}

#[tokio::test]
async fn login_answers_a_token_and_a_wrong_password_is_401_invalid_credentials() {
    let bank = TestBank::start().await;
    expect_ok(
        &bank.register("alice@test", "Alice", "alice-Secret-1").await,
        201,
    );

    let reply = bank.login("alice@test", "alice-Secret-1").await;
    let body = expect_ok(&reply, 200);
    assert!(
        body["token"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert!(body["expiresAt"].is_string(), "expiresAt missing: {body}");
    let token = body["token"].as_str().unwrap();
    expect_ok(&bank.accounts(token).await, 200);

    expect_error(
        &bank.login("alice@test", "alice-Secret-2").await,
        401,
        "invalid_credentials",
    );
    expect_error(
        &bank.login("nobody@test", "alice-Secret-1").await,
        401,
        "invalid_credentials",
    );
    bank.assert_never_answered("alice-Secret-1");
}

#[tokio::test]
async fn open_with_number_and_opening_amount_then_deposit_and_withdraw_move_the_balance() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;

    let reply = bank
        .open(&alice.token, &alice.pw, Some("1001"), Some(10_000))
        .await;
    let opened = expect_ok(&reply, 200).clone();
    assert_eq!(opened["type"], "open", "{opened}");
    assert_eq!(opened["status"], "completed", "{opened}");
    assert_eq!(opened["accountNo"], "1001", "{opened}");
    assert_eq!(opened["amount"], 10_000, "{opened}");
    assert_eq!(opened["balance"], 10_000, "{opened}");
    assert!(opened["requestId"].is_string(), "{opened}");
    assert!(opened["completedAt"].is_string(), "{opened}");
    let v_open = opened["version"].as_i64().expect("version");

    let reply = bank.deposit(&alice.token, &alice.pw, "1001", 5_000).await;
    let deposited = expect_ok(&reply, 200).clone();
    assert_eq!(deposited["type"], "deposit", "{deposited}");
    assert_eq!(deposited["status"], "completed", "{deposited}");
    assert_eq!(deposited["accountNo"], "1001", "{deposited}");
    assert_eq!(deposited["amount"], 5_000, "{deposited}");
    assert_eq!(deposited["balance"], 15_000, "{deposited}");
    let v_dep = deposited["version"].as_i64().expect("version");
    assert!(
        v_dep > v_open,
        "version must grow: {opened} then {deposited}"
    );

    let reply = bank.withdraw(&alice.token, &alice.pw, "1001", 3_000).await;
    let withdrawn = expect_ok(&reply, 200).clone();
    assert_eq!(withdrawn["type"], "withdraw", "{withdrawn}");
    assert_eq!(withdrawn["amount"], 3_000, "{withdrawn}");
    assert_eq!(withdrawn["balance"], 12_000, "{withdrawn}");
    let v_wd = withdrawn["version"].as_i64().expect("version");
    assert!(
        v_wd > v_dep,
        "version must grow: {deposited} then {withdrawn}"
    );

    // GET /api/v1/accounts/{no} from the read model, once it caught up.
    let account = bank
        .account_when(
            &alice.token,
            "1001",
            "the read model to show 3 transactions",
            |b| {
                b["version"].as_i64() == Some(v_wd)
                    && b["transactions"].as_array().map(Vec::len) == Some(3)
            },
        )
        .await;
    assert_eq!(account["accountNo"], "1001", "{account}");
    assert_eq!(account["balance"], 12_000, "{account}");
    assert_eq!(account["status"], "open", "{account}");
    assert!(
        account["openedAt"].is_string() && account["updatedAt"].is_string(),
        "{account}"
    );
    let kinds: Vec<&str> = account["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        kinds,
        ["withdraw", "deposit", "open"],
        "newest first: {account}"
    );
    let ids: Vec<&Value> = account["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["requestId"])
        .collect();
    assert_eq!(
        ids,
        [
            &withdrawn["requestId"],
            &deposited["requestId"],
            &opened["requestId"]
        ],
        "{account}"
    );

    // POST type balance answers from the read side.
    let reply = bank.balance(&alice.token, "1001").await;
    let balance = expect_ok(&reply, 200);
    assert_eq!(balance["type"], "balance", "{balance}");
    assert_eq!(balance["status"], "completed", "{balance}");
    assert_eq!(balance["accountNo"], "1001", "{balance}");
    assert_eq!(balance["balance"], 12_000, "{balance}");
    assert_eq!(balance["version"], v_wd, "{balance}");
    assert_eq!(balance["accountStatus"], "open", "{balance}");
    assert!(
        balance["requestId"].is_string() && balance["completedAt"].is_string(),
        "{balance}"
    );

    // The completed requests stay readable by id.
    let id = deposited["requestId"].as_str().unwrap();
    let (status, request) = bank.get_request(&alice.token, id).await;
    assert_eq!(status, 200, "{request}");
    assert_eq!(request["requestId"], id, "{request}");
    assert_eq!(request["type"], "deposit", "{request}");
    assert_eq!(request["status"], "completed", "{request}");
    assert_eq!(request["accountNo"], "1001", "{request}");
    assert_eq!(request["amount"], 5_000, "{request}");
    assert_eq!(request["balance"], 15_000, "{request}");
    assert!(
        request["createdAt"].is_string() && request["completedAt"].is_string(),
        "{request}"
    );

    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, 12_000);
    assert_eq!(snapshot.accounts["1001"].customer_id, "alice@test");
    bank.assert_never_answered(&alice.pw);
}

#[tokio::test]
async fn open_without_number_assigns_one_and_the_account_list_shows_only_my_accounts() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    let bob = bank.customer("bob@test").await;

    let reply = bank.open(&alice.token, &alice.pw, None, None).await;
    let first = expect_ok(&reply, 200).clone();
    let assigned = first["accountNo"]
        .as_str()
        .expect("assigned accountNo")
        .to_owned();
    assert!(
        is_account_no(&assigned),
        "assigned number {assigned:?} is not an account number"
    );
    assert_eq!(first["balance"], 0, "{first}");

    let reply = bank.open(&alice.token, &alice.pw, None, Some(700)).await;
    let second = expect_ok(&reply, 200).clone();
    let assigned2 = second["accountNo"]
        .as_str()
        .expect("assigned accountNo")
        .to_owned();
    assert_ne!(assigned, assigned2, "two opens got the same number");
    assert_eq!(second["balance"], 700, "{second}");

    let reply = bank
        .open(&alice.token, &alice.pw, Some("A-77"), Some(0))
        .await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 0);
    bank.open_ok(&bob, "B-1", 99).await;

    let list = eventually("alice's three accounts in the list", SETTLE, || async {
        let (status, body) = bank.accounts(&alice.token).await;
        if status == 200 && body["items"].as_array().map(Vec::len) == Some(3) {
            Ok(body)
        } else {
            Err(format!("{status} {body}"))
        }
    })
    .await;
    assert!(list["next"].is_null(), "{list}");
    let mut seen: Vec<(String, i64)> = items(&list)
        .iter()
        .map(|item| {
            assert_eq!(item["status"], "open", "{item}");
            assert!(item["version"].is_i64(), "{item}");
            assert!(
                item["openedAt"].is_string() && item["updatedAt"].is_string(),
                "{item}"
            );
            (
                item["accountNo"].as_str().unwrap().to_owned(),
                item["balance"].as_i64().unwrap(),
            )
        })
        .collect();
    seen.sort();
    let mut expected = vec![(assigned, 0), (assigned2, 700), ("A-77".to_owned(), 0)];
    expected.sort();
    assert_eq!(seen, expected, "{list}");
}

#[tokio::test]
async fn history_pages_transactions_newest_first_with_limit_and_before() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    let opened = bank.open_ok(&alice, "2001", 100).await;
    let mut expected = vec![("open", 100, 100, opened["requestId"].clone())];
    let mut balance = 100;
    for amount in [10, 20, 30, 40, 50] {
        let reply = bank.deposit(&alice.token, &alice.pw, "2001", amount).await;
        balance += amount;
        assert_eq!(expect_ok(&reply, 200)["balance"], balance);
        expected.push(("deposit", amount, balance, reply.1["requestId"].clone()));
    }
    let reply = bank.withdraw(&alice.token, &alice.pw, "2001", 15).await;
    balance -= 15;
    assert_eq!(expect_ok(&reply, 200)["balance"], balance);
    expected.push(("withdraw", 15, balance, reply.1["requestId"].clone()));
    expected.reverse(); // newest first

    let full = eventually("7 transactions", SETTLE, || async {
        let (status, body) = bank.transactions(&alice.token, "2001", "").await;
        if status == 200 && body["items"].as_array().map(Vec::len) == Some(7) {
            Ok(body)
        } else {
            Err(format!("{status} {body}"))
        }
    })
    .await;
    assert!(
        full["next"].is_null(),
        "default limit 20 covers 7 items: {full}"
    );
    let full = items(&full);
    let mut last_version = i64::MAX;
    for (item, (kind, amount, after, id)) in full.iter().zip(&expected) {
        assert_eq!(item["type"], *kind, "{item}");
        assert_eq!(item["amount"], *amount, "{item}");
        assert_eq!(item["balanceAfter"], *after, "{item}");
        assert_eq!(&item["requestId"], id, "{item}");
        assert!(item["occurredAt"].is_string(), "{item}");
        let version = item["version"].as_i64().expect("version");
        assert!(version < last_version, "newest first by version: {full:?}");
        last_version = version;
    }

    // Pages of 3: 3 + 3 + 1, each page's `next` is the following page's `before`.
    let (status, page1) = bank.transactions(&alice.token, "2001", "limit=3").await;
    assert_eq!(status, 200, "{page1}");
    let next1 = page1["next"]
        .as_str()
        .unwrap_or_else(|| panic!("page 1 needs next: {page1}"));
    let (status, page2) = bank
        .transactions(
            &alice.token,
            "2001",
            &format!("limit=3&before={}", encode(next1)),
        )
        .await;
    assert_eq!(status, 200, "{page2}");
    let next2 = page2["next"]
        .as_str()
        .unwrap_or_else(|| panic!("page 2 needs next: {page2}"));
    let (status, page3) = bank
        .transactions(
            &alice.token,
            "2001",
            &format!("limit=3&before={}", encode(next2)),
        )
        .await;
    assert_eq!(status, 200, "{page3}");
    assert!(page3["next"].is_null(), "last page: {page3}");
    let paged: Vec<Value> = [items(&page1), items(&page2), items(&page3)].concat();
    assert_eq!(items(&page1).len(), 3);
    assert_eq!(items(&page2).len(), 3);
    assert_eq!(paged, full, "paging must walk the same list");

    // POST type history answers the same transactions, newest first.
    let reply = bank.history(&alice.token, "2001").await;
    let history = expect_ok(&reply, 200);
    assert_eq!(history["type"], "history", "{history}");
    assert_eq!(history["status"], "completed", "{history}");
    assert_eq!(history["accountNo"], "2001", "{history}");
    assert_eq!(history["balance"], 235, "{history}");
    let ids: Vec<&Value> = history["transactions"]
        .as_array()
        .unwrap_or_else(|| panic!("history without transactions: {history}"))
        .iter()
        .map(|t| &t["requestId"])
        .collect();
    let expected_ids: Vec<&Value> = expected.iter().map(|e| &e.3).collect();
    assert_eq!(ids, expected_ids, "{history}");

    // GET /api/v1/accounts/{no} carries the newest ones too (at most 10).
    let account = bank.wait_balance(&alice.token, "2001", 235).await;
    let recent = account["transactions"].as_array().expect("transactions");
    assert_eq!(recent.len(), 7, "{account}");
    assert_eq!(recent[0]["requestId"], expected[0].3, "{account}");
}

#[tokio::test]
async fn account_read_shows_only_the_ten_newest_transactions() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "2101", 0).await;
    let mut last = Value::Null;
    for amount in 1..=12 {
        let reply = bank.deposit(&alice.token, &alice.pw, "2101", amount).await;
        last = expect_ok(&reply, 200)["requestId"].clone();
    }
    let account = bank.wait_balance(&alice.token, "2101", 78).await;
    let recent = account["transactions"].as_array().expect("transactions");
    assert_eq!(recent.len(), 10, "{account}");
    assert_eq!(recent[0]["requestId"], last, "{account}");
    assert_eq!(recent[0]["amount"], 12, "{account}");
    assert_eq!(recent[9]["amount"], 3, "{account}");
    let all = bank.all_transactions(&alice.token, "2101").await;
    assert_eq!(all.len(), 13, "open + 12 deposits: {all:?}");
}

#[tokio::test]
async fn close_needs_a_zero_balance_and_a_closed_account_refuses_money_but_stays_readable() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "3001", 500).await;

    let reply = bank.close(&alice.token, &alice.pw, "3001").await;
    expect_compensated(&bank, &alice.token, &reply, 409, "balance_not_zero").await;

    let reply = bank.withdraw(&alice.token, &alice.pw, "3001", 500).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 0);
    let reply = bank.close(&alice.token, &alice.pw, "3001").await;
    let closed = expect_ok(&reply, 200).clone();
    assert_eq!(closed["type"], "close", "{closed}");
    assert_eq!(closed["status"], "completed", "{closed}");
    assert_eq!(closed["accountNo"], "3001", "{closed}");
    assert_eq!(closed["balance"], 0, "{closed}");

    let reply = bank.deposit(&alice.token, &alice.pw, "3001", 1).await;
    expect_compensated(&bank, &alice.token, &reply, 409, "account_closed").await;
    let reply = bank.withdraw(&alice.token, &alice.pw, "3001", 1).await;
    expect_compensated(&bank, &alice.token, &reply, 409, "account_closed").await;
    let reply = bank.close(&alice.token, &alice.pw, "3001").await;
    expect_compensated(&bank, &alice.token, &reply, 409, "account_closed").await;

    // History stays readable, with the close as the newest transaction.
    let account = bank
        .account_when(&alice.token, "3001", "the account to read closed", |b| {
            b["status"] == "closed"
        })
        .await;
    assert_eq!(account["balance"], 0, "{account}");
    let all = bank.all_transactions(&alice.token, "3001").await;
    let kinds: Vec<&str> = all
        .iter()
        .map(|t| t.kind.as_deref().unwrap_or("?"))
        .collect();
    assert_eq!(kinds, ["close", "withdraw", "open"], "{all:?}");
    assert_eq!(all[0].request_id.as_deref(), closed["requestId"].as_str());

    let reply = bank.balance(&alice.token, "3001").await;
    assert_eq!(
        expect_ok(&reply, 200)["accountStatus"],
        "closed",
        "{}",
        reply.1
    );
    let reply = bank.history(&alice.token, "3001").await;
    assert_eq!(
        expect_ok(&reply, 200)["transactions"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    let (status, list) = bank.accounts(&alice.token).await;
    assert_eq!(status, 200, "{list}");
    let row = items(&list)
        .into_iter()
        .find(|i| i["accountNo"] == "3001")
        .expect("3001 listed");
    assert_eq!(row["status"], "closed", "{list}");

    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["3001"].status, "closed");
    assert_eq!(snapshot.accounts["3001"].balance, 0);
}

#[tokio::test]
async fn every_role_answers_health_and_the_gateway_answers_ping_but_never_routes_internal() {
    let bank = TestBank::start().await;
    for role in ROLES {
        let (status, body) = bank.ops.plain(role, "/health/live").await.unwrap();
        assert_eq!(status, 200, "{role} live: {body}");
        let (status, body) = bank.ops.plain(role, "/health/ready").await.unwrap();
        assert_eq!(status, 200, "{role} ready: {body}");
    }
    let (status, body) = bank.get("/api/v1/ping", None).await;
    assert_eq!(
        (status, body.clone()),
        (200, json!({"pong": true})),
        "{body}"
    );

    // Internal endpoints need the header on the role's port, and the gateway never routes them.
    let (status, body) = bank.ops.plain("account", internal::ACCOUNTS).await.unwrap();
    assert!(
        status == 401 || status == 403,
        "internal without header: {status} {body}"
    );
    let (status, body) = bank
        .ops
        .internal("account", internal::ACCOUNTS)
        .await
        .unwrap();
    assert_eq!(status, 200, "internal with header: {body}");
    let reply = bank
        .get_req(internal::ACCOUNTS)
        .header(onlinebank_core::http::INTERNAL_HEADER, &bank.ops.token)
        .pair()
        .await;
    assert_eq!(
        reply.0, 404,
        "the gateway must not route /internal: {}",
        reply.1
    );
}

#[tokio::test]
async fn up_keeps_customers_accounts_and_balances_across_a_restart() {
    let mut bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "4001", 1_000).await;
    expect_ok(
        &bank.deposit(&alice.token, &alice.pw, "4001", 234).await,
        200,
    );
    bank.ops.drained(SETTLE).await;

    bank.restart().await;

    // The old token still verifies (same secret), the password still logs in.
    let account = bank.wait_balance(&alice.token, "4001", 1_234).await;
    assert_eq!(account["status"], "open", "{account}");
    let token = bank.token(&alice.user, &alice.pw).await;
    let reply = bank.withdraw(&token, &alice.pw, "4001", 34).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 1_200, "{}", reply.1);
    expect_error(
        &bank.register(&alice.user, "again", "another-pw").await,
        409,
        "customer_exists",
    );
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["4001"].balance, 1_200);
}

#[tokio::test]
async fn the_demo_customer_exists_only_with_the_demo_flag() {
    let plain = TestBank::start().await;
    expect_error(
        &plain.login("1@sk.com", "1234").await,
        401,
        "invalid_credentials",
    );
    drop(plain);
    let demo = TestBank::start_with(&["--demo"]).await;
    let token = demo.token("1@sk.com", "1234").await;
    expect_ok(&demo.accounts(&token).await, 200);
}

#[tokio::test]
async fn settings_can_come_from_onlinebank_environment_variables() {
    let bank = TestBank::start_with_env(
        &[],
        &[
            ("ONLINEBANK_MAX_AMOUNT", "100"),
            ("ONLINEBANK_LOCKOUT_THRESHOLD", "2"),
        ],
    )
    .await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 0).await;
    let reply = bank.deposit(&alice.token, &alice.pw, "1001", 100).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 100);
    let reply = bank.deposit(&alice.token, &alice.pw, "1001", 101).await;
    expect_error(&reply, 400, "invalid_amount");
    for _ in 0..2 {
        expect_error(
            &bank.login(&alice.user, "wrong-password").await,
            401,
            "invalid_credentials",
        );
    }
    expect_error(&bank.login(&alice.user, &alice.pw).await, 429, "locked_out");
}

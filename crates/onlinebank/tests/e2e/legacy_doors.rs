//! The legacy endpoints as doors: a logged-out token is refused by every legacy read as by the v1
//! API; strangers flooding legacy credential logins (HTTP Basic on the reads, credentials in
//! `POST /requests` bodies) from one address take nothing from another address's logins; and a
//! legacy `amountOfMoney` given as a string is plain digits or refused.
//!
//! Every 127.x.y.z address is this machine's on Linux, so a client bound to 127.0.0.2 is
//! "another address" to the bank, and the flood comes from 127.0.0.1.

use crate::support::*;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Every legacy read of one account and one request, with the bearer token they are asked with.
fn legacy_reads(account_no: &str, request_id: &str) -> Vec<String> {
    vec![
        "/requests".to_owned(),
        format!("/requests/{request_id}"),
        format!("/mypages/search/findByAccountNo?accountNo={account_no}"),
        format!("/mypages/{account_no}"),
    ]
}

async fn log_out(bank: &TestBank, token: &str) -> u16 {
    bank.req(reqwest::Method::DELETE, "/api/v1/sessions/current")
        .bearer(token)
        .send()
        .await
        .status
}

#[tokio::test]
async fn a_logged_out_token_is_refused_by_every_legacy_read_as_by_the_v1_api() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 0).await;
    let deposited = expect_ok(
        &bank.deposit(&alice.token, &alice.pw, "1001", 500).await,
        200,
    )
    .clone();
    let request_id = deposited["requestId"]
        .as_str()
        .expect("requestId")
        .to_owned();
    let paths = legacy_reads("1001", &request_id);

    // Logged in: every legacy read answers with the token (the read side catches up first).
    for path in &paths {
        eventually(&format!("{path} to answer 200"), SETTLE, || async {
            let (status, body) = bank.get(path, Some(&alice.token)).await;
            let no_rows = body["_embedded"]["mypages"]
                .as_array()
                .is_some_and(Vec::is_empty);
            match status {
                200 if !no_rows => Ok(()),
                _ => Err(format!("{status} {body}")),
            }
        })
        .await;
    }

    assert_eq!(log_out(&bank, &alice.token).await, 204);

    // Within a few of the gateway's revocation polls, every door refuses the token.
    let mut doors = paths.clone();
    doors.push("/api/v1/accounts/1001".to_owned());
    for path in &doors {
        let refused = eventually(
            &format!("{path} to refuse the logged-out token"),
            Duration::from_secs(5),
            || async {
                match bank.get(path, Some(&alice.token)).await {
                    (401, body) => Ok((401, body)),
                    (status, body) => Err(format!("{status} {body}")),
                }
            },
        )
        .await;
        expect_error(&refused, 401, "unauthorized");
    }
    // And they keep refusing it: no legacy read hands out the balance or the history again.
    for path in &doors {
        let reply = bank.get(path, Some(&alice.token)).await;
        assert_eq!(reply.0, 401, "{path} after logout: {}", reply.1);
    }
    // Alice's credentials still open the legacy reads: only the session ended.
    let reply = bank
        .get_req("/requests")
        .basic(&alice.user, &alice.pw)
        .pair()
        .await;
    assert_eq!(reply.0, 200, "Basic after logout: {}", reply.1);
}

/// How the strangers' legacy logins carry their (unknown) credentials.
#[derive(Clone, Copy, Debug)]
enum Credentials {
    /// `GET /requests` with HTTP Basic.
    Basic,
    /// `POST /requests` with `userId` and `userPassword` in the body.
    Body,
}

/// An HTTP client whose connections come from `address`.
fn client_from(address: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(address))
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build()
        .expect("http client")
}

/// One stranger's legacy login with an unknown id: its status, 0 when its connection was closed
/// (the bank may close a connection past the client's share of connections at once).
async fn stranger_login(strangers: &Api, credentials: Credentials, id: &str) -> u16 {
    let request = match credentials {
        Credentials::Basic => strangers.get_req("/requests").basic(id, "wrong-password"),
        Credentials::Body => strangers.post_req("/requests").json(json!({
            "accountNo": "1001", "requestId": "03", "requestName": "Balance",
            "amountOfMoney": 0, "userId": id, "userName": "x", "userPassword": "wrong-password",
        })),
    };
    request.try_send().await.map_or(0, |reply| reply.status)
}

/// `workers` strangers on 127.0.0.1 logging in with unknown ids until `stop`; their statuses.
fn flood(
    bank: &TestBank,
    credentials: Credentials,
    workers: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<u16>> {
    let strangers = bank.api.with_http(client_from([127, 0, 0, 1]));
    tokio::spawn(async move {
        let workers = (0..workers).map(|worker| {
            let strangers = strangers.clone();
            let stop = stop.clone();
            async move {
                let mut statuses = Vec::new();
                let mut guess = 0;
                while !stop.load(Ordering::Relaxed) {
                    guess += 1;
                    let id = format!("stranger{worker}-{guess}@test");
                    let status = stranger_login(&strangers, credentials, &id).await;
                    if status == 0 {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    statuses.push(status);
                }
                statuses
            }
        });
        futures::future::join_all(workers)
            .await
            .into_iter()
            .flatten()
            .collect()
    })
}

/// Whether `victim` logs in within `within`, retrying busy answers.
async fn logs_in(victim: &Api, customer: &Customer, within: Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        let (status, body) = victim.login(&customer.user, &customer.pw).await;
        match status {
            200 => return true,
            503 if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            503 => return false,
            _ => panic!("the customer's login: {status} {body}"),
        }
    }
}

/// A customer on 127.0.0.2 logs in 5 times while 200 strangers on 127.0.0.1 flood legacy logins
/// of unknown ids (each of which makes auth run an argon2id).
async fn logins_from_another_address_pass_a_flood_of(credentials: Credentials) {
    let bank = TestBank::start_with(&["--max-in-flight-per-client", "2"]).await;
    let alice = bank.customer("alice@test").await;
    let victim = bank.api.with_http(client_from([127, 0, 0, 2]));
    let stop = Arc::new(AtomicBool::new(false));
    let strangers = flood(&bank, credentials, 200, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut logged_in = 0;
    for _ in 0..5 {
        if logs_in(&victim, &alice, Duration::from_secs(5)).await {
            logged_in += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let statuses = strangers.await.expect("the strangers' flood");
    eprintln!(
        "{credentials:?}: alice logged in {logged_in} of 5 times during {} stranger logins \
         ({} answered 401, {} 503, {} closed)",
        statuses.len(),
        statuses.iter().filter(|status| **status == 401).count(),
        statuses.iter().filter(|status| **status == 503).count(),
        statuses.iter().filter(|status| **status == 0).count(),
    );
    let checked = statuses.iter().filter(|status| **status == 401).count();
    assert!(
        statuses.len() >= 200 && checked > 0,
        "the flood ran: {} calls, {checked} of them checked by auth",
        statuses.len()
    );
    assert!(
        statuses
            .iter()
            .all(|status| [0, 401, 429, 503].contains(status)),
        "strangers got: {statuses:?}"
    );
    assert!(
        logged_in >= 4,
        "alice logged in {logged_in} of 5 times during a flood of {credentials:?} logins"
    );
}

#[tokio::test]
async fn strangers_flooding_basic_legacy_reads_from_one_address_leave_another_addresses_logins_alone(
) {
    logins_from_another_address_pass_a_flood_of(Credentials::Basic).await;
}

#[tokio::test]
async fn strangers_flooding_legacy_requests_with_body_credentials_leave_another_addresses_logins_alone(
) {
    logins_from_another_address_pass_a_flood_of(Credentials::Body).await;
}

/// A legacy `POST /requests` with `amountOfMoney` as it is given.
async fn legacy_with_amount(
    bank: &TestBank,
    c: &Customer,
    no: &str,
    code: &str,
    amount: Value,
) -> (u16, Value) {
    let body = json!({"accountNo": no, "requestId": code, "requestName": "x",
        "amountOfMoney": amount, "userId": c.user, "userName": c.name, "userPassword": c.pw});
    bank.post("/requests", None, body).await
}

#[tokio::test]
async fn a_legacy_amount_given_as_a_string_is_plain_digits_or_refused_and_moves_nothing() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    // addAccount with the "0" the original's clients send.
    let opened = legacy_with_amount(&bank, &alice, "2001", "05", json!("0")).await;
    assert_eq!(opened.0, 201, "{}", opened.1);

    for bad in ["+100", "0100", " 100 ", "00", "-100", "1e2", ""] {
        for (code, no) in [("01", "2001"), ("02", "2001"), ("05", "2002")] {
            let reply = legacy_with_amount(&bank, &alice, no, code, json!(bad)).await;
            assert_eq!(reply.0, 400, "{code} with {bad:?}: {}", reply.1);
            expect_error(&reply, 400, "invalid_amount");
        }
    }
    // A JSON number that is not a whole positive number of won is refused downstream, clearly.
    for bad in [json!(1.5), json!(-100), json!(0)] {
        let reply = legacy_with_amount(&bank, &alice, "2001", "01", bad.clone()).await;
        assert_eq!(reply.0, 400, "deposit {bad}: {}", reply.1);
        expect_error(&reply, 400, "invalid_amount");
    }

    let deposited = legacy_with_amount(&bank, &alice, "2001", "01", json!("100")).await;
    assert_eq!(deposited.0, 201, "{}", deposited.1);
    assert_eq!(deposited.1["amountOfMoney"], 100, "{}", deposited.1);

    // Only "100" moved money, and the refused addAccount opened nothing.
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["2001"].balance, 100, "{snapshot:?}");
    assert!(!snapshot.accounts.contains_key("2002"), "{snapshot:?}");
}

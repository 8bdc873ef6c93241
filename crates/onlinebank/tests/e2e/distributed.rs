//! Distributed mode on the real engines: every role's store on PostgreSQL (a fresh database,
//! one schema per role), events on Apache Kafka, two processes of every stateful role. The same
//! flows as on SQLite, the same answers, and the stores agree afterwards.

use crate::support::*;
use std::time::Duration;

async fn replicated(name: &str) -> (Cluster, Distributed) {
    let services = Distributed::create(name, 4).await;
    let knobs = services.knobs();
    let knobs: Vec<&str> = knobs.iter().map(String::as_str).collect();
    let cluster = Cluster::start_layout(&knobs, |role| if role == "gateway" { 1 } else { 2 }).await;
    (cluster, services)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Kafka (ONLINEBANK_TEST_POSTGRES, ONLINEBANK_TEST_KAFKA): ./.ci/run runs it"]
async fn every_flow_works_with_two_processes_per_role_on_postgres_and_kafka() {
    let (cluster, _services) = replicated("flows").await;
    assert_eq!(cluster.names().len(), 11, "{:?}", cluster.names());
    assert_eq!(cluster.urls_of("account").len(), 2);
    for name in cluster.names() {
        let (status, body) = cluster.ops.plain(&name, "/health/ready").await.unwrap();
        assert_eq!(status, 200, "{name} ready: {body}");
    }
    let alice = cluster.customer("alice@dist").await;
    let opened = cluster
        .open(&alice.token, &alice.pw, Some("5001"), Some(1_000))
        .await;
    assert_eq!(expect_ok(&opened, 200)["balance"], 1_000);
    let reply = cluster.deposit(&alice.token, &alice.pw, "5001", 250).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 1_250);
    let reply = cluster.withdraw(&alice.token, &alice.pw, "5001", 50).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 1_200);
    let reply = cluster
        .withdraw(&alice.token, &alice.pw, "5001", 5_000)
        .await;
    expect_compensated(&cluster, &alice.token, &reply, 409, "insufficient_funds").await;
    expect_error(
        &cluster.deposit(&alice.token, "wrong-pw", "5001", 1).await,
        403,
        "step_up_failed",
    );
    let opened_twice = cluster
        .open(&alice.token, &alice.pw, Some("5001"), Some(1))
        .await;
    expect_compensated(&cluster, &alice.token, &opened_twice, 409, "account_exists").await;

    let account = cluster.wait_balance(&alice.token, "5001", 1_200).await;
    assert_eq!(
        account["transactions"].as_array().map(Vec::len),
        Some(3),
        "{account}"
    );

    // Concurrent withdrawals on one account, arriving at both request processes: exactly the
    // ones the balance covers succeed.
    let bob = cluster.customer("bob@dist").await;
    cluster.open_ok(&bob, "6001", 100_000).await;
    let mut calls = Vec::new();
    for _ in 0..20 {
        let api = cluster.api.clone();
        let (token, pw) = (bob.token.clone(), bob.pw.clone());
        calls.push(tokio::spawn(async move {
            api.withdraw(&token, &pw, "6001", 10_000).await
        }));
    }
    let mut ok = 0;
    for call in calls {
        let (status, body) = call.await.unwrap();
        match status {
            200 => ok += 1,
            409 => assert_eq!(body["error"]["code"], "insufficient_funds", "{body}"),
            other => panic!("withdrawal answered {other} {body}"),
        }
    }
    assert_eq!(ok, 10, "exactly the covered withdrawals succeed");

    // Transfers between the two customers' accounts (two partitions, two account processes):
    // one credited, one to a closed account returned.
    let body = onlinebank_client::wire::Write::transfer("5001", "6001", 200, &alice.pw).to_json();
    let reply = cluster.request(&alice.token, body).await;
    let reply = cluster.settle(&alice.token, reply).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 1_000, "{}", reply.1);
    cluster.wait_balance(&bob.token, "6001", 200).await;
    let body = onlinebank_client::wire::Write::transfer("6001", "5001", 200, &bob.pw).to_json();
    let reply = cluster.request(&bob.token, body).await;
    let reply = cluster.settle(&bob.token, reply).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 0, "{}", reply.1);

    // Empty and close.
    let reply = cluster.close(&bob.token, &bob.pw, "6001").await;
    assert_eq!(expect_ok(&reply, 200)["status"], "completed", "{}", reply.1);

    let body = onlinebank_client::wire::Write::transfer("5001", "6001", 300, &alice.pw).to_json();
    let reply = cluster.request(&alice.token, body).await;
    let reply = cluster.settle(&alice.token, reply).await;
    assert_eq!(outcome(&reply), "account_closed", "{reply:?}");

    let snapshot = cluster.ops.drained(Duration::from_secs(60)).await;
    assert_eq!(snapshot.accounts["5001"].balance, 1_200);
    assert_eq!(snapshot.accounts["6001"].balance, 0);
    assert_eq!(snapshot.accounts["6001"].status, "closed");
    let history = cluster.all_transactions(&bob.token, "6001").await;
    assert_eq!(
        history.len(),
        14,
        "open, 10 withdrawals, a transfer in and out, close: {history:?}"
    );
    let history = cluster.all_transactions(&alice.token, "5001").await;
    assert_eq!(
        history.len(),
        7,
        "and two transfers out, one returned: {history:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Kafka (ONLINEBANK_TEST_POSTGRES, ONLINEBANK_TEST_KAFKA): ./.ci/run runs it"]
async fn a_killed_account_process_hands_its_partitions_to_the_other() {
    let (mut cluster, _services) = replicated("rebalance").await;
    let carol = cluster.customer("carol@dist").await;
    for no in ["7001", "7002", "7003", "7004"] {
        cluster.open_ok(&carol, no, 1_000).await;
    }
    cluster["account"].kill();
    // Within the group's session timeout the other account process takes every partition.
    for (i, no) in ["7001", "7002", "7003", "7004"].iter().enumerate() {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let reply = cluster.deposit(&carol.token, &carol.pw, no, 10).await;
            match reply.0 {
                200 => {
                    assert_eq!(reply.1["balance"], 1_010, "{}", reply.1);
                    break;
                }
                // Not applied yet (202) or not certain: look it up until it completes.
                202 => {
                    let id = reply.1["requestId"].as_str().unwrap().to_owned();
                    let done =
                        eventually("the deposit to complete", Duration::from_secs(60), || {
                            let (api, token, id) =
                                (cluster.api.clone(), carol.token.clone(), id.clone());
                            async move {
                                let (status, body) = api.get_request(&token, &id).await;
                                match body["status"].as_str() {
                                    Some("completed") => Ok(body),
                                    _ => Err(format!("{status} {body}")),
                                }
                            }
                        })
                        .await;
                    assert_eq!(done["balance"], 1_010, "{done}");
                    break;
                }
                _ if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                _ => panic!("deposit {i} on {no}: {} {}", reply.0, reply.1),
            }
        }
    }
    cluster.restart("account").await;
    let snapshot = cluster.ops.drained(Duration::from_secs(60)).await;
    for no in ["7001", "7002", "7003", "7004"] {
        assert_eq!(snapshot.accounts[no].balance, 1_010, "{no}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Kafka (ONLINEBANK_TEST_POSTGRES, ONLINEBANK_TEST_KAFKA): ./.ci/run runs it"]
async fn one_idempotency_key_sent_at_once_to_both_request_processes_applies_once() {
    let (cluster, _services) = replicated("idem").await;
    let dan = cluster.customer("dan@dist").await;
    cluster.open_ok(&dan, "8001", 1_000).await;
    let mut calls = Vec::new();
    for _ in 0..12 {
        let api = cluster.api.clone();
        let (token, pw) = (dan.token.clone(), dan.pw.clone());
        calls.push(tokio::spawn(async move {
            api.request_with_key(&token, "same-key-1", money("deposit", "8001", 100, &pw))
                .await
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for call in calls {
        let (status, body) = call.await.unwrap();
        match status {
            200 => {
                ids.insert(body["requestId"].as_str().unwrap().to_owned());
            }
            202 => {
                ids.insert(body["requestId"].as_str().unwrap().to_owned());
            }
            409 => assert_eq!(body["error"]["code"], "idempotency_key_in_flight", "{body}"),
            other => panic!("a concurrent replay answered {other} {body}"),
        }
    }
    assert!(ids.len() <= 1, "one key, one request: {ids:?}");
    let snapshot = cluster.ops.drained(Duration::from_secs(60)).await;
    assert_eq!(
        snapshot.accounts["8001"].balance, 1_100,
        "applied exactly once"
    );
}

/// Polyglot persistence: account, request and auth keep their data in PostgreSQL, history and
/// mypage in SQLite files, events on Kafka; the flows and the invariants hold all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Kafka (ONLINEBANK_TEST_POSTGRES, ONLINEBANK_TEST_KAFKA): ./.ci/run runs it"]
async fn roles_on_different_engines_form_one_bank_postgres_sqlite_and_kafka() {
    let services = Distributed::create("polyglot", 2).await;
    let (database, bus) = (services.database.clone(), services.bus.clone());
    let cluster = Cluster::start_mixed(
        |role| match role {
            "account" | "request" | "auth" => {
                vec![
                    "--database".into(),
                    database.clone(),
                    "--bus".into(),
                    bus.clone(),
                ]
            }
            "history" | "mypage" => vec!["--bus".into(), bus.clone()],
            _ => Vec::new(),
        },
        |_| 1,
    )
    .await;
    let alice = cluster.customer("alice@polyglot").await;
    cluster.open_ok(&alice, "7001", 1_000).await;
    let reply = cluster.deposit(&alice.token, &alice.pw, "7001", 500).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 1_500);
    let reply = cluster.withdraw(&alice.token, &alice.pw, "7001", 200).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 1_300);
    let reply = cluster
        .withdraw(&alice.token, &alice.pw, "7001", 9_999)
        .await;
    expect_compensated(&cluster, &alice.token, &reply, 409, "insufficient_funds").await;
    let account = cluster.wait_balance(&alice.token, "7001", 1_300).await;
    assert_eq!(
        account["transactions"].as_array().map(Vec::len),
        Some(3),
        "{account}"
    );
    // Where each role keeps its data: SQLite files only for history and mypage.
    let files: Vec<String> = files_under(cluster.data_dir())
        .iter()
        .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
        .filter(|name| name.ends_with(".db"))
        .collect();
    assert!(
        files.contains(&"history.db".to_owned()) && files.contains(&"mypage.db".to_owned()),
        "{files:?}"
    );
    assert!(
        !files
            .iter()
            .any(|name| name == "account.db" || name == "request.db"),
        "{files:?}"
    );
    let snapshot = cluster.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["7001"].balance, 1_300, "{snapshot:?}");
}

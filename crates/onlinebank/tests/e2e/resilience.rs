//! Fault isolation (issue 3), with real processes and real faults: auth frozen (SIGSTOP) or
//! killed behind the step-up timeout and circuit breaker, write overload against
//! `--max-in-flight-writes`, a rolling restart of two request instances behind the gateway,
//! clients that hang up mid-request, graceful shutdown on SIGTERM, and `/metrics` on every role.
//!
//! Timings are asserted only where the issue promises them, with generous bounds (a slow-path
//! busy answer under 2 s, a breaker-open answer under 500 ms); the breaker's state is read from
//! `/metrics`. Every wait polls with a deadline, every client call has a timeout.

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// No client call may take longer than this: past it the call "hung".
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A busy answer after a step-up timeout (610 ms by default): "within ~1 s".
const SLOW_BUSY: Duration = Duration::from_secs(2);
/// A busy answer with the breaker open: "in milliseconds" (generous, for a loaded CI machine).
const FAST_BUSY: Duration = Duration::from_millis(500);
/// How long a drained process may take to exit after SIGTERM.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// helpers

/// `POST /api/v1/requests` with an optional Idempotency-Key, bounded by `CALL_TIMEOUT`; the
/// answer (or why there was none) and how long it took.
async fn timed_request(
    api: &Api,
    token: &str,
    key: Option<&str>,
    body: Value,
) -> (Result<Reply, String>, Duration) {
    let mut req = api.post_req("/api/v1/requests").bearer(token).json(body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let started = Instant::now();
    let result = match tokio::time::timeout(CALL_TIMEOUT, req.try_send()).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?} (the call hung)")),
    };
    (result, started.elapsed())
}

async fn timed_deposit(
    api: &Api,
    c: &Customer,
    no: &str,
    amount: i64,
    key: Option<&str>,
) -> (Result<Reply, String>, Duration) {
    timed_request(api, &c.token, key, money("deposit", no, amount, &c.pw)).await
}

/// Asserts 503 `service_busy` with a message and a `Retry-After` (seconds or an HTTP date).
#[track_caller]
fn assert_busy(reply: &Reply, what: &str) {
    assert_eq!(
        (reply.status, reply.body["error"]["code"].as_str()),
        (503, Some("service_busy")),
        "{what}: expected 503 service_busy, got {} {}",
        reply.status,
        reply.text
    );
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: a busy answer needs a human message: {}",
        reply.text
    );
    let retry_after = reply.header("retry-after").unwrap_or_else(|| {
        panic!(
            "{what}: 503 service_busy without Retry-After: {:?}",
            reply.headers
        )
    });
    assert!(
        retry_after.trim().parse::<u64>().is_ok() || retry_after.contains("GMT"),
        "{what}: Retry-After must be seconds or an HTTP date, got {retry_after:?}"
    );
}

/// Unwraps an answer that must have come (no transport error, no hang).
#[track_caller]
fn answered(result: Result<Reply, String>, what: &str) -> Reply {
    result.unwrap_or_else(|error| panic!("{what}: no answer: {error}"))
}

/// The request role's step-up breaker as `/metrics` shows it (0 closed, 1 open, 2 half-open).
async fn breaker_state(ops: &Ops, role: &str) -> Option<f64> {
    ops.metric(role, "onlinebank_breaker_state", &[("target", "auth")])
        .await
        .unwrap_or_else(|error| panic!("metrics of {role}: {error}"))
}

/// Polls `/metrics` until the breaker shows `state`.
async fn wait_breaker(ops: &Ops, role: &str, state: f64, timeout: Duration) {
    eventually(
        &format!("onlinebank_breaker_state{{target=\"auth\"}} {state} on {role}"),
        timeout,
        || async {
            match breaker_state(ops, role).await {
                Some(now) if now == state => Ok(()),
                other => Err(format!("onlinebank_breaker_state is {other:?}")),
            }
        },
    )
    .await;
}

/// Checks that account `no` shows `balance` and `entries` transactions everywhere a customer or
/// an operator can look, and that no request is pending.
async fn assert_untouched(
    api: &Api,
    ops: &Ops,
    c: &Customer,
    no: &str,
    balance: i64,
    entries: usize,
) {
    let (status, account) = api.account(&c.token, no).await;
    assert_eq!(status, 200, "GET account {no}: {account}");
    let shown: wire::Account = wire::decode(&account);
    assert_eq!(shown.balance, Some(balance), "GET account {no}: {account}");
    let (status, page) = api.transactions(&c.token, no, "limit=100").await;
    assert_eq!(status, 200, "GET transactions of {no}: {page}");
    assert_eq!(items(&page).len(), entries, "transactions of {no}: {page}");
    let (status, by_request) = api.balance(&c.token, no).await;
    assert_eq!(status, 200, "balance request of {no}: {by_request}");
    let read: wire::ReadAnswer = wire::decode(&by_request);
    assert_eq!(read.balance, Some(balance), "{by_request}");
    let (status, history) = api.history(&c.token, no).await;
    assert_eq!(status, 200, "history request of {no}: {history}");
    let read: wire::ReadAnswer = wire::decode(&history);
    assert_eq!(
        read.transactions.as_ref().map(Vec::len),
        Some(entries),
        "history request of {no}: {history}"
    );
    let snapshot = ops
        .snapshot()
        .await
        .unwrap_or_else(|error| panic!("snapshot: {error}"));
    assert_eq!(snapshot.pending, 0, "requests left pending: {snapshot:?}");
    assert_eq!(
        snapshot.accounts.get(no).map(|a| a.balance),
        Some(balance),
        "account role: {snapshot:?}"
    );
    assert_eq!(
        snapshot.ledger.get(no).copied(),
        Some(balance),
        "history ledger: {snapshot:?}"
    );
    assert_eq!(
        snapshot.mypage.get(no).map(|a| a.balance),
        Some(balance),
        "mypage: {snapshot:?}"
    );
}

/// Deposits `amount` (no key) until an attempt completes, at most `timeout`; every failed
/// attempt must be 503 `service_busy`. Returns the completed answer.
async fn deposit_until_it_succeeds(
    api: &Api,
    c: &Customer,
    no: &str,
    amount: i64,
    timeout: Duration,
) -> Reply {
    eventually("a deposit to succeed again", timeout, || async {
        let (result, _) = timed_deposit(api, c, no, amount, None).await;
        let reply = answered(result, "a deposit while auth recovers");
        match reply.status {
            200 => Ok(reply),
            503 => {
                assert_busy(&reply, "a deposit while auth recovers");
                Err(reply.text)
            }
            _ => panic!(
                "a deposit while auth recovers: {} {}",
                reply.status, reply.text
            ),
        }
    })
    .await
}

/// The ids of the deposits in an account's ledger, as the customer reads it.
async fn ledger_deposits(api: &Api, c: &Customer, no: &str) -> BTreeMap<String, i64> {
    let mut ids = BTreeMap::new();
    for entry in api.all_transactions(&c.token, no).await {
        if entry.kind.as_deref() == Some("deposit") {
            let id = entry.request_id.unwrap_or_default();
            let amount = entry.amount.unwrap_or_default();
            assert!(
                ids.insert(id.clone(), amount).is_none(),
                "{no}: request {id} is in the ledger twice"
            );
        }
    }
    ids
}

/// Every request of the customer (`GET /api/v1/requests`, all pages).
async fn all_requests(api: &Api, c: &Customer) -> Vec<Value> {
    let mut all = Vec::new();
    let mut query = "limit=100".to_owned();
    for _ in 0..1000 {
        let (status, body) = api
            .get(&format!("/api/v1/requests?{query}"), Some(&c.token))
            .await;
        assert_eq!(status, 200, "GET /api/v1/requests: {body}");
        all.extend(items(&body));
        match body["next"].as_str() {
            Some(next) => query = format!("limit=100&before={}", encode(next)),
            None => return all,
        }
    }
    panic!("GET /api/v1/requests never ended");
}

// ---------------------------------------------------------------------------------------------
// auth frozen, auth killed

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_auth_makes_deposits_busy_opens_the_breaker_keeps_reads_and_moves_no_money_even_when_it_wakes(
) {
    // Default step-up timeout (610 ms) and breaker (5 calls, 50 %, open 3 s, 3 trials).
    let cluster = Cluster::start_with(&["--step-up-timeout-ms", "610"]).await;
    let alice = cluster.customer("alice@frozen").await;
    cluster.open_ok(&alice, "1001", 10_000).await;
    cluster.ops.drained(SETTLE).await;
    assert_eq!(
        breaker_state(&cluster.ops, "request").await,
        Some(0.0),
        "the breaker starts closed"
    );

    cluster["auth"].signal("STOP");

    // Slow path: each deposit waits for the step-up timeout, then 503 busy, nothing recorded.
    let slow = futures::future::join_all((0..5).map(|i| {
        let key = format!("frozen-{i}");
        let cluster = &cluster;
        let alice = &alice;
        async move { timed_deposit(cluster, alice, "1001", 100 + i, Some(&key)).await }
    }))
    .await;
    let mut cancelled_ids = Vec::new();
    for (i, (result, elapsed)) in slow.into_iter().enumerate() {
        let reply = answered(result, "a deposit with auth frozen");
        assert_busy(&reply, "a deposit with auth frozen");
        assert!(
            elapsed < SLOW_BUSY,
            "deposit {i} with auth frozen answered busy after {elapsed:?} (want ~1 s)"
        );
        // The request was created, then deleted with the reason `service_busy`.
        let id =
            expect_compensated(&cluster, &alice.token, &reply.pair(), 503, "service_busy").await;
        cancelled_ids.push(id);
    }

    // The breaker is open now (as /metrics shows it) ...
    wait_breaker(&cluster.ops, "request", 1.0, Duration::from_secs(2)).await;
    let opened = cluster
        .ops
        .metric(
            "request",
            "onlinebank_breaker_transitions_total",
            &[("target", "auth"), ("to", "open")],
        )
        .await
        .unwrap();
    assert!(
        opened.is_some_and(|n| n >= 1.0),
        "onlinebank_breaker_transitions_total{{to=\"open\"}}: {opened:?}"
    );
    // ... and busy answers come at once, without waiting for a timeout.
    for i in 0..5 {
        let (result, elapsed) = timed_deposit(&cluster, &alice, "1001", 1, None).await;
        let reply = answered(result, "a deposit with the breaker open");
        assert_busy(&reply, "a deposit with the breaker open");
        assert!(
            elapsed < FAST_BUSY,
            "deposit {i} with the breaker open took {elapsed:?}"
        );
        // Answered before anything was recorded: there is no request to name.
        assert!(
            reply.body.get("requestId").is_none_or(Value::is_null),
            "with the breaker open nothing may be recorded, yet: {}",
            reply.text
        );
    }

    // Reads answer meanwhile; no money moved; nothing pending.
    assert_untouched(&cluster, &cluster.ops, &alice, "1001", 10_000, 1).await;

    // Auth wakes up and answers the old verifications late; deposits succeed again.
    cluster["auth"].signal("CONT");
    let first =
        deposit_until_it_succeeds(&cluster, &alice, "1001", 7, Duration::from_secs(15)).await;
    assert_eq!(first.body["status"], "completed", "{}", first.text);
    let mut expected = 10_007;
    for _ in 0..3 {
        let (result, _) = timed_deposit(&cluster, &alice, "1001", 10, None).await;
        let reply = answered(result, "a deposit after auth resumed");
        assert_eq!(reply.status, 200, "after auth resumed: {}", reply.text);
        expected += 10;
        assert_eq!(reply.body["balance"], expected, "{}", reply.text);
    }
    wait_breaker(&cluster.ops, "request", 0.0, Duration::from_secs(10)).await;

    // The late verifications move no money, ever: exactly the four deposits above.
    cluster.ops.drained(SETTLE).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let snapshot = cluster.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, expected, "{snapshot:?}");
    cluster.wait_balance(&alice.token, "1001", expected).await;
    let deposits = ledger_deposits(&cluster, &alice, "1001").await;
    assert_eq!(deposits.len(), 4, "{deposits:?}");
    for id in &cancelled_ids {
        assert!(
            !deposits.contains_key(id),
            "request {id} answered busy but is in the ledger"
        );
        let (status, body) = cluster.get_request(&alice.token, id).await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (404, Some("service_busy")),
            "request {id} after auth answered late: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_auth_makes_deposits_busy_opens_the_breaker_and_deposits_succeed_again_after_its_restart(
) {
    let mut cluster =
        Cluster::start_with(&["--breaker-open-ms", "1500", "--step-up-timeout-ms", "610"]).await;
    let alice = cluster.customer("alice@killed").await;
    cluster.open_ok(&alice, "1001", 10_000).await;
    cluster.ops.drained(SETTLE).await;

    cluster["auth"].kill();
    for i in 0..6 {
        let (result, elapsed) = timed_deposit(&cluster, &alice, "1001", 100 + i, None).await;
        let reply = answered(result, "a deposit with auth dead");
        assert_busy(&reply, "a deposit with auth dead");
        assert!(
            elapsed < SLOW_BUSY,
            "deposit {i} with auth dead took {elapsed:?}"
        );
    }
    wait_breaker(&cluster.ops, "request", 1.0, Duration::from_secs(2)).await;
    for i in 0..3 {
        let (result, elapsed) = timed_deposit(&cluster, &alice, "1001", 1, None).await;
        let reply = answered(result, "a deposit with the breaker open");
        assert_busy(&reply, "a deposit with the breaker open");
        assert!(
            elapsed < FAST_BUSY,
            "deposit {i} with the breaker open took {elapsed:?}"
        );
    }
    assert_untouched(&cluster, &cluster.ops, &alice, "1001", 10_000, 1).await;

    // auth back on its port: after the breaker's open time, trial calls pass and it closes.
    cluster.restart("auth").await;
    let first =
        deposit_until_it_succeeds(&cluster, &alice, "1001", 5, Duration::from_secs(15)).await;
    assert_eq!(first.body["balance"], 10_005, "{}", first.text);
    for i in 1..=3 {
        let (result, _) = timed_deposit(&cluster, &alice, "1001", 5, None).await;
        let reply = answered(result, "a deposit after auth restarted");
        assert_eq!(reply.status, 200, "after auth restarted: {}", reply.text);
        assert_eq!(reply.body["balance"], 10_005 + 5 * i, "{}", reply.text);
    }
    wait_breaker(&cluster.ops, "request", 0.0, Duration::from_secs(10)).await;
    let snapshot = cluster.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, 10_020, "{snapshot:?}");
    assert_eq!(ledger_deposits(&cluster, &alice, "1001").await.len(), 4);
}

// ---------------------------------------------------------------------------------------------
// overload

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_more_concurrent_deposits_than_the_write_limit_are_shed_503_busy_none_hang_none_half_apply_and_reads_answer(
) {
    const OPENING: i64 = 1_000_000;
    const CALLS: i64 = 200;
    let bank = TestBank::start_with(&["--max-in-flight-writes", "4"]).await;
    let alice = bank.customer("alice@overload").await;
    bank.open_ok(&alice, "1001", OPENING).await;
    bank.ops.drained(SETTLE).await;

    // Reads while the burst runs: GET account and the `balance` request type (both answered by
    // mypage). Each must answer 200; what did not is reported at the end.
    let burst_running = Arc::new(AtomicBool::new(true));
    let reader = {
        let api = bank.api.clone();
        let alice = alice.clone();
        let running = burst_running.clone();
        tokio::spawn(async move {
            let mut reads = 0;
            let mut refused = Vec::new();
            while running.load(Ordering::SeqCst) || reads < 10 {
                let get = tokio::time::timeout(CALL_TIMEOUT, api.account(&alice.token, "1001"))
                    .await
                    .expect("GET account hung during the write overload");
                if get.0 != 200 {
                    refused.push(format!("GET /api/v1/accounts/1001: {} {}", get.0, get.1));
                }
                let by_request =
                    tokio::time::timeout(CALL_TIMEOUT, api.balance(&alice.token, "1001"))
                        .await
                        .expect("a balance request hung during the write overload");
                if by_request.0 != 200 {
                    refused.push(format!(
                        "POST /api/v1/requests type balance: {} {}",
                        by_request.0, by_request.1
                    ));
                }
                reads += 2;
            }
            (reads, refused)
        })
    };

    let answers = futures::future::join_all((0..CALLS).map(|i| {
        let api = &bank.api;
        let alice = &alice;
        async move {
            let key = format!("burst-{i}");
            let amount = 1_000 + i;
            let (result, _) = timed_deposit(api, alice, "1001", amount, Some(&key)).await;
            (key, amount, result)
        }
    }))
    .await;
    burst_running.store(false, Ordering::SeqCst);
    let (reads, refused_reads) = reader.await.expect("the reader panicked");

    let mut completed: BTreeMap<String, i64> = BTreeMap::new();
    let mut busy: Vec<(String, i64)> = Vec::new();
    for (key, amount, result) in answers {
        let reply = answered(result, &format!("deposit {key} during the overload"));
        match reply.status {
            200 | 202 => {
                let settled = bank.settle(&alice.token, reply.pair()).await;
                assert_eq!(outcome(&settled), "completed", "{key}: {}", settled.1);
                let id = settled.1["requestId"].as_str().unwrap().to_owned();
                completed.insert(id, amount);
            }
            503 => {
                assert_busy(&reply, &format!("deposit {key} during the overload"));
                busy.push((key, amount));
            }
            status => panic!("deposit {key} during the overload: {status} {}", reply.text),
        }
    }
    eprintln!(
        "overload: {} completed, {} shed, {reads} reads ({} refused)",
        completed.len(),
        busy.len(),
        refused_reads.len()
    );
    assert!(
        !busy.is_empty(),
        "{CALLS} concurrent deposits against a limit of 4: none shed"
    );
    assert!(!completed.is_empty(), "no deposit got through the overload");
    let shed = bank
        .ops
        .metric("gateway", "onlinebank_shed_total", &[])
        .await
        .unwrap();
    assert!(
        shed.is_some_and(|n| n >= 1.0),
        "onlinebank_shed_total after {} shed calls: {shed:?}",
        busy.len()
    );

    // Exactly the acknowledged deposits applied, once each; every store agrees.
    let snapshot = bank.ops.drained(SETTLE).await;
    let expected = OPENING + completed.values().sum::<i64>();
    assert_eq!(snapshot.accounts["1001"].balance, expected, "{snapshot:?}");
    bank.wait_balance(&alice.token, "1001", expected).await;
    let in_ledger = ledger_deposits(&bank, &alice, "1001").await;
    assert_eq!(
        in_ledger, completed,
        "the ledger must hold exactly the acknowledged deposits"
    );

    // "Busy" meant nothing happened: a shed deposit retried with its key applies once.
    let mut expected = expected;
    for (key, amount) in busy.iter().take(10) {
        let (result, _) = timed_deposit(&bank, &alice, "1001", *amount, Some(key)).await;
        let reply = answered(result, &format!("retry of shed deposit {key}"));
        assert_eq!(reply.status, 200, "retry of shed {key}: {}", reply.text);
        expected += amount;
        assert_eq!(reply.body["balance"], expected, "{key}: {}", reply.text);
    }
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, expected, "{snapshot:?}");

    // Reads have their own limit: write overload must not refuse them.
    assert!(
        refused_reads.is_empty(),
        "{} of {reads} reads were refused during the write overload, e.g.:\n{}",
        refused_reads.len(),
        refused_reads
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// rolling restart

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_two_request_instances_one_at_a_time_under_a_stream_of_deposits_fails_no_call() {
    const OPENING: i64 = 1_000;
    let mut cluster = Cluster::start_scaled(&[], 2).await;
    let mut customers = Vec::new();
    for c in 0..3 {
        let customer = cluster.customer(&format!("c{c}@rolling")).await;
        cluster
            .open_ok(&customer, &format!("{}001", c + 1), OPENING)
            .await;
        customers.push(customer);
    }
    cluster.ops.drained(SETTLE).await;

    let sent: Arc<Mutex<Vec<SentDeposit>>> = Arc::new(Mutex::new(Vec::new()));
    let completed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for (client, customer) in customers.iter().enumerate() {
        let api = cluster.api.clone();
        let customer = customer.clone();
        let (sent, completed, stop) = (sent.clone(), completed.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let no = format!("{}001", client + 1);
            let mut rng = StdRng::seed_from_u64(client as u64 + 11);
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let key = format!("roll-{client}-{n}");
                let amount = rng.random_range(1..=100);
                let sent_at = Instant::now();
                let (result, _) = timed_deposit(&api, &customer, &no, amount, Some(&key)).await;
                let deposit =
                    SentDeposit::answered(client, no.clone(), amount, key, sent_at, result);
                if deposit.completed() {
                    completed.fetch_add(1, Ordering::SeqCst);
                }
                sent.lock().unwrap().push(deposit);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    wait_for_progress(
        &completed,
        20,
        "the stream to get going",
        Duration::from_secs(30),
    )
    .await;
    for instance in ["request", "request#2"] {
        let status = cluster[instance].terminate(EXIT_TIMEOUT).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "{instance} after SIGTERM: {status:?} (want exit code 0)\n{}",
            cluster[instance].log()
        );
        wait_for_progress(
            &completed,
            10,
            &format!("deposits while {instance} is down"),
            Duration::from_secs(30),
        )
        .await;
        cluster.restart(instance).await;
        let ops = cluster.ops.clone();
        eventually(
            &format!("{instance} ready and served deposits again"),
            Duration::from_secs(20),
            || async {
                let (status, _) = ops.plain(instance, "/health/ready").await?;
                let served = ops
                    .metric(
                        instance,
                        "onlinebank_http_requests_total",
                        &[
                            ("method", "POST"),
                            ("route", "/api/v1/requests"),
                            ("status", "200"),
                        ],
                    )
                    .await?;
                match (status, served) {
                    (200, Some(n)) if n >= 3.0 => Ok(()),
                    other => Err(format!("ready/served: {other:?}")),
                }
            },
        )
        .await;
    }
    wait_for_progress(
        &completed,
        10,
        "deposits after the rolling restart",
        Duration::from_secs(30),
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.expect("a client task panicked");
    }

    let mut sent = sent.lock().unwrap().clone();
    let failed: Vec<String> = sent
        .iter()
        .filter(|s| s.id.is_none())
        .map(|s| format!("{} ({} won): {}", s.key, s.amount, s.answer_text()))
        .collect();
    eprintln!(
        "rolling restart: {} deposits, {} failed",
        sent.len(),
        failed.len()
    );

    // Resolve failed calls by their keys, so the books can be checked whatever happened.
    for s in sent.iter_mut().filter(|s| s.id.is_none()) {
        let customer = &customers[s.customer];
        let reply = eventually(&format!("resolving {}", s.key), SETTLE, || async {
            let (result, _) =
                timed_deposit(&cluster, customer, &s.account, s.amount, Some(&s.key)).await;
            match result {
                Ok(reply) if reply.status == 200 => Ok(reply),
                Ok(reply) => Err(format!("{} {}", reply.status, reply.text)),
                Err(error) => Err(error),
            }
        })
        .await;
        s.id = reply.body["requestId"].as_str().map(str::to_owned);
    }
    let snapshot = cluster.ops.drained(SETTLE).await;
    let mut by_account = SentDeposit::by_account(&sent);
    for (client, customer) in customers.iter().enumerate() {
        let no = format!("{}001", client + 1);
        let mine: BTreeMap<String, i64> = by_account
            .remove(no.as_str())
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.id.clone().unwrap_or_default(), s.amount))
            .collect();
        let expected = OPENING + mine.values().sum::<i64>();
        assert_eq!(
            snapshot.accounts[&no].balance, expected,
            "{no}: {snapshot:?}"
        );
        assert_eq!(ledger_deposits(&cluster, customer, &no).await, mine, "{no}");
    }
    assert!(
        failed.is_empty(),
        "a rolling restart must fail no client call, yet {} of {} deposits failed:\n{}",
        failed.len(),
        sent.len(),
        failed.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// impatient clients

/// Sends a whole `POST /api/v1/requests` over a raw socket and closes it after `linger`,
/// without reading the answer.
async fn send_and_hang_up(address: &str, token: &str, key: &str, body: &Value, linger: Duration) {
    let body = body.to_string();
    let request = format!(
        "POST /api/v1/requests HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nIdempotency-Key: {key}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(CALL_TIMEOUT, tokio::net::TcpStream::connect(address)).await
    else {
        panic!("connecting to {address} failed");
    };
    stream
        .write_all(request.as_bytes())
        .await
        .expect("sending the request");
    tokio::time::sleep(linger).await;
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_hanging_up_mid_request_leave_nothing_pending_and_nothing_half_done() {
    const OPENING: i64 = 5_000;
    const CLIENTS: i64 = 60;
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@impatient").await;
    bank.open_ok(&alice, "1001", OPENING).await;
    bank.ops.drained(SETTLE).await;
    let address = bank
        .base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();

    // Hang up at different stages: before the step-up, during it, while waiting for the outcome.
    let lingers = [0, 1, 2, 3, 5, 8, 12, 20, 35, 60];
    futures::future::join_all((0..CLIENTS).map(|i| {
        let address = &address;
        let alice = &alice;
        async move {
            let body = money("deposit", "1001", 100 + i, &alice.pw);
            let linger = Duration::from_millis(lingers[i as usize % lingers.len()]);
            send_and_hang_up(address, &alice.token, &format!("hang-{i}"), &body, linger).await;
        }
    }))
    .await;

    // Once drained, nothing is pending and every store agrees ...
    let snapshot = bank.ops.drained(SETTLE).await;
    // ... and the balance is the opening plus exactly the deposits the bank completed.
    let requests = all_requests(&bank, &alice).await;
    let mut completed: BTreeMap<String, i64> = BTreeMap::new();
    for request in &requests {
        assert_eq!(request["status"], "completed", "left behind: {request}");
        if request["type"] == "deposit" {
            completed.insert(
                request["requestId"].as_str().unwrap().to_owned(),
                request["amount"].as_i64().unwrap(),
            );
        }
    }
    let expected = OPENING + completed.values().sum::<i64>();
    assert_eq!(snapshot.accounts["1001"].balance, expected, "{snapshot:?}");
    assert_eq!(snapshot.ledger["1001"], expected, "{snapshot:?}");
    assert_eq!(snapshot.mypage["1001"].balance, expected, "{snapshot:?}");
    assert_eq!(
        ledger_deposits(&bank, &alice, "1001").await,
        completed,
        "the ledger must hold exactly the completed deposits"
    );
    eprintln!(
        "impatient clients: {} of {CLIENTS} deposits completed after their client hung up",
        completed.len()
    );

    // A patient retry of every key: each deposit ends applied exactly once.
    let mut by_key = BTreeMap::new();
    for i in 0..CLIENTS {
        let key = format!("hang-{i}");
        let (result, _) = timed_deposit(&bank, &alice, "1001", 100 + i, Some(&key)).await;
        let reply = answered(result, &format!("retry of {key}"));
        assert_eq!(reply.status, 200, "retry of {key}: {}", reply.text);
        let id = reply.body["requestId"].as_str().unwrap().to_owned();
        by_key.insert(id, 100 + i);
    }
    let snapshot = bank.ops.drained(SETTLE).await;
    let all: i64 = (0..CLIENTS).map(|i| 100 + i).sum();
    assert_eq!(
        snapshot.accounts["1001"].balance,
        OPENING + all,
        "after retrying every key: {snapshot:?}"
    );
    assert_eq!(ledger_deposits(&bank, &alice, "1001").await, by_key);
}

// ---------------------------------------------------------------------------------------------
// graceful shutdown, metrics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_turns_readiness_503_for_the_drain_delay_finishes_in_flight_deposits_and_exits_0()
{
    let mut cluster = Cluster::start().await;
    let alice = cluster.customer("alice@sigterm").await;
    cluster.open_ok(&alice, "1001", 1_000).await;
    cluster.ops.drained(SETTLE).await;

    // Three deposits in flight in request: account frozen, so they wait for their outcome.
    cluster["account"].signal("STOP");
    let in_flight: Vec<_> = [10, 20, 30]
        .into_iter()
        .map(|amount| {
            let api = cluster.api.clone();
            let alice = alice.clone();
            tokio::spawn(async move { timed_deposit(&api, &alice, "1001", amount, None).await })
        })
        .collect();
    let ops = cluster.ops.clone();
    eventually(
        "three deposits in flight",
        Duration::from_secs(10),
        || async {
            match ops.pending().await? {
                3 => Ok(()),
                pending => Err(format!("{pending} requests pending")),
            }
        },
    )
    .await;

    cluster["request"].signal("TERM");
    // Not ready at once (the listener still answers during the drain delay), still live.
    let deadline = Instant::now() + Duration::from_millis(800);
    loop {
        match cluster.ops.plain("request", "/health/ready").await {
            Ok((503, _)) => break,
            Ok((200, _)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("/health/ready right after SIGTERM: {other:?} (want 503)"),
        }
    }
    let live = cluster.ops.plain("request", "/health/live").await;
    assert!(
        matches!(live, Ok((200, _))),
        "/health/live during the drain delay: {live:?}"
    );
    // Every answer during the drain delay closes its connection, so that no client reuses one
    // the listener is about to close (a call sent on it then would be lost).
    let url = format!("{}/health/live", cluster.ops.urls["request"]);
    let answer = reqwest::get(&url).await.expect("GET /health/live");
    assert_eq!(
        answer
            .headers()
            .get("connection")
            .and_then(|v| v.to_str().ok()),
        Some("close"),
        "Connection header during the drain delay: {:?}",
        answer.headers()
    );
    let still = cluster.ops.plain("request", "/health/ready").await;
    assert!(
        matches!(still, Ok((503, _))),
        "/health/ready during the drain delay: {still:?}"
    );

    // The in-flight deposits finish once account moves again; then the process exits 0.
    cluster["account"].signal("CONT");
    for (task, amount) in in_flight.into_iter().zip([10, 20, 30]) {
        let (result, _) = task.await.expect("deposit task");
        let reply = answered(result, "an in-flight deposit during shutdown");
        assert_eq!(
            (reply.status, reply.body["status"].as_str()),
            (200, Some("completed")),
            "in-flight deposit of {amount} during shutdown: {}",
            reply.text
        );
    }
    let status = cluster["request"].wait_exit(EXIT_TIMEOUT).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "request after SIGTERM: {status:?} (want exit code 0)\n{}",
        cluster["request"].log()
    );

    // With request gone the gateway says busy (nothing happened); back up, the books agree.
    let (result, _) = timed_deposit(&cluster, &alice, "1001", 1, None).await;
    assert_busy(
        &answered(result, "a deposit with request stopped"),
        "a deposit with request stopped",
    );
    cluster.restart("request").await;
    let snapshot = cluster.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, 1_060, "{snapshot:?}");
    assert_eq!(ledger_deposits(&cluster, &alice, "1001").await.len(), 3);
}

#[tokio::test]
async fn every_role_answers_prometheus_text_with_http_requests_total_on_metrics() {
    let cluster = Cluster::start().await;
    for role in ROLES {
        let (status, body) = cluster.ops.plain(role, "/health/ready").await.unwrap();
        assert_eq!(status, 200, "{role} ready: {body}");
    }
    for role in ROLES {
        let (text, content_type) = cluster
            .ops
            .metrics(role)
            .await
            .unwrap_or_else(|error| panic!("{role}: {error}"));
        assert!(
            content_type.starts_with("text/plain"),
            "{role} /metrics content type {content_type:?}"
        );
        assert!(
            text.contains("# TYPE onlinebank_http_requests_total counter"),
            "{role} /metrics:\n{text}"
        );
        let ready_calls = metric_value(
            &text,
            "onlinebank_http_requests_total",
            &[
                ("role", role),
                ("route", "/health/ready"),
                ("status", "200"),
            ],
        );
        assert!(
            ready_calls.is_some_and(|n| n >= 1.0),
            "{role}: onlinebank_http_requests_total for /health/ready: {ready_calls:?}\n{text}"
        );
        // Every series is the bank's own: no name without the prefix.
        let foreign: Vec<&str> = text
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .filter(|line| !line.starts_with("onlinebank_"))
            .collect();
        assert!(foreign.is_empty(), "{role}: unprefixed series {foreign:?}");
        assert!(
            text.contains("onlinebank_http_request_duration_seconds"),
            "{role} /metrics without the latency histogram:\n{text}"
        );
    }
    assert_eq!(
        breaker_state(&cluster.ops, "request").await,
        Some(0.0),
        "request exports its step-up breaker, closed"
    );
}

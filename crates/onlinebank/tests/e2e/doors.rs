//! The doors under attack: strangers stalling bodies and flooding logins take nothing from
//! customers; bodies, headers and idle connections are timed out; past the connection cap the
//! idle ones go first; encoded dot segments and slashes never reach an internal route; and the
//! operators' `/metrics` is only on the admin listener.
//!
//! Raw TCP is used where an HTTP client would repair the request (reqwest resolves `%2e%2e`
//! itself) or could not hold it half-sent.

use crate::support::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `host:port` of a base URL.
fn address(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

/// Sends one raw HTTP/1.1 request (`Connection: close`) and reads the whole answer: its status
/// and body.
async fn raw_get(base: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut stream = TcpStream::connect(address(base)).await.expect("connect");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: bank\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("an answer within 10 s")
        .expect("read");
    parse_answer(&answer)
}

fn parse_answer(answer: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The strangers' address: another host than the customers' (any 127.x.y.z is this machine).
/// Connections are shared per client address, so a customer behind the attacker's own address
/// shares the attacker's share; these tests are about strangers elsewhere.
const STRANGER: [u8; 4] = [127, 0, 0, 9];

/// Opens a connection from the strangers' address that sends the headers of a login and one
/// byte of its 100-byte body.
async fn stalled_login(base: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind((std::net::IpAddr::from(STRANGER), 0).into())
        .expect("bind the strangers' address");
    let mut stream = socket
        .connect(address(base).parse().expect("an address"))
        .await
        .expect("connect");
    stream
        .write_all(
            b"POST /api/v1/sessions HTTP/1.1\r\nHost: bank\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
        )
        .await
        .expect("write");
    stream
}

/// Whether the server closed `stream` (reads EOF) within `within`.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn strangers_stalling_bodies_and_flooding_logins_take_nothing_from_a_customers_deposits() {
    let bank = TestBank::start().await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 0).await;
    let (status, body) = bank.register("bob@test", "Bob", "bob-password").await;
    assert_eq!(status, 201, "{body}");

    // 300 connections that hold a login's body half-sent ...
    let mut stalled = Vec::new();
    for _ in 0..300 {
        stalled.push(stalled_login(&bank.api.base).await);
    }
    // ... and 300 strangers guessing passwords, all at once.
    let strangers = bank.with_http(
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(STRANGER))
            .pool_max_idle_per_host(0)
            .build()
            .expect("a client"),
    );
    let flood = tokio::spawn(async move {
        let guesses = (0..300).map(|n| {
            let strangers = strangers.clone();
            async move {
                // A connection past the strangers' share is closed at once: status 0.
                strangers
                    .post_req("/api/v1/sessions")
                    .json(serde_json::json!({"userId": format!("stranger{n}@test"), "password": "wrong-password"}))
                    .try_send()
                    .await
                    .map_or(0, |reply| reply.status)
            }
        });
        futures::future::join_all(guesses).await
    });

    // Meanwhile the logged-in customer's deposits all succeed: not one 503.
    let mut deposited = 0;
    for n in 0..30 {
        let reply = bank.deposit(&alice.token, &alice.pw, "1001", 10).await;
        assert_eq!(reply.0, 200, "deposit #{n} during the attack: {}", reply.1);
        deposited += 10;
    }
    // And a real customer can log in within a few seconds (retrying a busy answer).
    let started = Instant::now();
    let login = eventually("bob to log in", Duration::from_secs(10), || async {
        let reply = bank.login("bob@test", "bob-password").await;
        match reply.0 {
            200 => Ok(reply),
            503 => Err(format!("busy: {}", reply.1)),
            _ => panic!("bob's login: {} {}", reply.0, reply.1),
        }
    })
    .await;
    assert!(login.1["token"].is_string(), "{}", login.1);
    eprintln!("bob logged in after {:?}", started.elapsed());

    let statuses = flood.await.expect("the strangers' flood");
    assert!(
        statuses
            .iter()
            .all(|status| [0, 401, 429, 503].contains(status)),
        "strangers got: {statuses:?}"
    );
    drop(stalled);
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, deposited, "{snapshot:?}");
}

#[tokio::test]
async fn a_body_that_never_arrives_is_answered_408_and_its_connection_closed() {
    let bank = TestBank::start_with(&["--body-timeout-ms", "500"]).await;
    let mut stream = stalled_login(&bank.api.base).await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers a stalled body within 10 s")
        .expect("read");
    let (status, body) = parse_answer(&answer);
    assert_eq!(status, 408, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
}

#[tokio::test]
async fn stalled_headers_and_idle_keep_alive_connections_are_closed() {
    let bank =
        TestBank::start_with(&["--header-timeout-ms", "700", "--idle-timeout-ms", "700"]).await;
    // Headers that never end.
    let mut half = TcpStream::connect(address(&bank.api.base))
        .await
        .expect("connect");
    half.write_all(b"GET /health/live HTTP/1.1\r\nHost: bank\r\n")
        .await
        .expect("write");
    assert!(
        closed_by_server(&mut half, Duration::from_secs(5)).await,
        "a connection stalled mid-headers stayed open"
    );
    // A keep-alive connection after its call.
    let mut idle = TcpStream::connect(address(&bank.api.base))
        .await
        .expect("connect");
    idle.write_all(b"GET /health/live HTTP/1.1\r\nHost: bank\r\n\r\n")
        .await
        .expect("write");
    let mut buffer = [0u8; 1024];
    let read = idle.read(&mut buffer).await.expect("an answer");
    assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"));
    assert!(
        closed_by_server(&mut idle, Duration::from_secs(5)).await,
        "an idle keep-alive connection stayed open"
    );
}

#[tokio::test]
async fn past_the_connection_cap_idle_connections_go_first_and_a_new_customer_is_served() {
    // 512 open files: the bank caps its connections at 384.
    let bank = TestBank::start_with_env(&[], &[("NOFILE", "512")]).await;
    let mut idle = Vec::new();
    for _ in 0..600 {
        match TcpStream::connect(address(&bank.api.base)).await {
            Ok(stream) => idle.push(stream),
            Err(error) => panic!("connect #{}: {error}", idle.len()),
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A new customer, on fresh connections, gets everything done.
    let fresh = bank.unpooled();
    let carol = fresh.customer("carol@test").await;
    fresh.open_ok(&carol, "3001", 100).await;
    let reply = fresh.deposit(&carol.token, &carol.pw, "3001", 50).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 150, "{}", reply.1);
    let account = fresh.wait_balance(&carol.token, "3001", 150).await;
    assert_eq!(account["accountNo"], "3001");
    // Some of the idle connections were closed to make room.
    let mut closed = 0;
    for stream in idle.iter_mut() {
        if closed_by_server(stream, Duration::from_millis(1)).await {
            closed += 1;
        }
    }
    assert!(closed > 0, "no idle connection was closed past the cap");
    let log = bank.log();
    let accept_errors = log.matches("accept failed").count();
    assert!(
        accept_errors <= 3,
        "accept errors logged {accept_errors} times:\n{}",
        log.lines()
            .filter(|l| l.contains("accept"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Paths that tried to climb out of a public route, encoded in every way the attack run used.
const CLIMBING_PATHS: [&str; 10] = [
    "/api/v1/accounts/%2e%2e/%2e%2e/%2e%2e/internal/v1/accounts",
    "/api/v1/accounts/%2E%2E/%2E%2E/%2E%2E/internal/v1/accounts",
    "/api/v1/accounts/%252e%252e/%252e%252e/%252e%252e/internal/v1/accounts",
    "/api/v1/accounts/..%2f..%2f..%2finternal%2fv1%2faccounts",
    "/api/v1/accounts/1001%2f..%2f..%2f..%2finternal%2fv1%2faccounts",
    "/api/v1/accounts/../../../internal/v1/accounts",
    "/api/v1/requests/%2e%2e%2f%2e%2e%2f%2e%2e%2finternal%2fv1%2faccounts",
    "/api/v1/requests/%2e%2e/%2e%2e/%2e%2e/metrics",
    "/requests/%2e%2e/internal/v1/accounts",
    "/api/v1/accounts/1001%2ftransactions",
];

#[tokio::test]
async fn encoded_dot_segments_and_slashes_never_reach_an_internal_route_in_serve_mode() {
    let cluster = Cluster::start().await;
    let alice = cluster.customer("alice@test").await;
    cluster.open_ok(&alice, "1001", 100).await;
    cluster.wait_balance(&alice.token, "1001", 100).await;
    let bearer = format!("Bearer {}", alice.token);
    let key = cluster.ops.token.clone();
    for path in CLIMBING_PATHS {
        for headers in [
            vec![("authorization", bearer.as_str())],
            vec![
                ("authorization", bearer.as_str()),
                (onlinebank_core::http::INTERNAL_HEADER, key.as_str()),
            ],
        ] {
            let (status, body) = raw_get(&cluster.api.base, path, &headers).await;
            assert_eq!(status, 400, "{path} with {} headers: {body}", headers.len());
            let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
            assert_eq!(body["error"]["code"], "invalid_path", "{path}: {body}");
        }
    }
    // The gateway never serves internal routes, key or not.
    let (status, _) = raw_get(
        &cluster.api.base,
        onlinebank_core::internal::ACCOUNTS,
        &[(onlinebank_core::http::INTERNAL_HEADER, key.as_str())],
    )
    .await;
    assert_eq!(status, 404);
    // An ordinary call with a harmless escape is routed as its decoded path.
    let (status, body) = raw_get(
        &cluster.api.base,
        "/api/v1/accounts/%31001",
        &[("authorization", bearer.as_str())],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"accountNo\":\"1001\""), "{body}");
}

#[tokio::test]
async fn metrics_are_served_on_the_admin_listener_never_on_the_public_port() {
    let bank = TestBank::start().await;
    let (status, body) = bank.get("/metrics", None).await;
    assert_eq!(status, 404, "/metrics on the public port: {body}");
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    let (status, _) = bank.get("/health/ready", None).await;
    assert_eq!(status, 200, "/health/ready stays on the public port");
    let (text, _) = bank.ops.metrics("gateway").await.expect("admin /metrics");
    assert!(text.contains("onlinebank_http_requests_total"), "{text}");
    let admin = bank.ops.admin["gateway"].clone();
    let admin_api = Api::new(&admin);
    assert_eq!(admin_api.get("/health/ready", None).await.0, 200);
    assert_eq!(admin_api.get("/health/live", None).await.0, 200);

    let cluster = Cluster::start().await;
    for role in ROLES {
        let (status, _) = cluster.ops.plain(role, "/metrics").await.expect("GET");
        assert_eq!(status, 404, "{role} serves /metrics on its main port");
        cluster.ops.metrics(role).await.expect("admin /metrics");
    }
}

#[tokio::test]
async fn strangers_flooding_legacy_requests_with_wrong_credentials_take_no_customers_write_slot() {
    // Few write slots, so that strangers holding them would show at once.
    let bank = TestBank::start_with(&["--max-in-flight-writes", "8"]).await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 0).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..64)
        .map(|worker| {
            let strangers = bank.unpooled();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                let mut guess = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    guess += 1;
                    let body = serde_json::json!({"accountNo": "1001", "requestId": "01",
                        "requestName": "Deposit", "amountOfMoney": 10,
                        "userId": format!("stranger{worker}-{guess}@test"), "userName": "x",
                        "userPassword": "wrong-password"});
                    statuses.push(strangers.post("/requests", None, body).await.0);
                }
                statuses
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut deposited = 0;
    for n in 0..40 {
        let reply = bank.deposit(&alice.token, &alice.pw, "1001", 10).await;
        assert_eq!(reply.0, 200, "deposit #{n} during the flood: {}", reply.1);
        deposited += 10;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut statuses = Vec::new();
    for worker in workers {
        statuses.extend(worker.await.expect("a stranger"));
    }
    assert!(
        statuses
            .iter()
            .all(|status| [0, 401, 429, 503].contains(status)),
        "strangers got: {statuses:?}"
    );
    eprintln!("strangers made {} legacy calls", statuses.len());
    let snapshot = bank.ops.drained(SETTLE).await;
    assert_eq!(snapshot.accounts["1001"].balance, deposited, "{snapshot:?}");
}

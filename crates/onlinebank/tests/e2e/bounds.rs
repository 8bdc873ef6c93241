//! What a stranger can make the bank hold, at most (docs/architecture.md, "The doors"): made-up
//! methods never become metrics, request heads are cut at 16 KiB, the memory of stalled
//! connections is bounded and given back, HTTP/1.1 framing is strict (RFC 9112), one client
//! cannot take the connection cap, a customer's kept-alive connection is not the first closed,
//! and the probes have connections of their own.
//!
//! Raw TCP throughout: an HTTP client would repair or refuse to send what these tests send.

use crate::support::*;
use std::net::IpAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const MIB: u64 = 1024;

fn address(base: &str) -> std::net::SocketAddr {
    base.trim_start_matches("http://")
        .parse()
        .expect("a base URL of an IP address and a port")
}

fn local(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// A connection to `base` from the loopback address `from` (any 127.x.y.z is this machine).
async fn connect_from(base: &str, from: IpAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind((from, 0).into())
        .expect("bind a loopback address");
    socket.connect(address(base)).await.expect("connect")
}

/// Takes one whole answer (head and `content-length` body) off the front of `pending`: its
/// status and body; `None` while it has not all arrived.
fn take_answer(pending: &mut Vec<u8>) -> Option<(u16, String)> {
    let end = find(pending, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&pending[..end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    if pending.len() < end + 4 + length {
        return None;
    }
    let body = String::from_utf8_lossy(&pending[end + 4..end + 4 + length]).into_owned();
    pending.drain(..end + 4 + length);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or(0);
    Some((status, body))
}

/// Reads one answer from `stream`; `None` on EOF, error or 30 s of silence.
async fn read_answer(
    stream: &mut (impl AsyncReadExt + Unpin),
    pending: &mut Vec<u8>,
) -> Option<(u16, String)> {
    loop {
        if let Some(answer) = take_answer(pending) {
            return Some(answer);
        }
        let mut buffer = [0u8; 16 * 1024];
        match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => pending.extend_from_slice(&buffer[..n]),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Sends `requests` pipelined on one connection and reads their answers' statuses.
async fn pipelined(base: &str, requests: Vec<Vec<u8>>) -> Vec<u16> {
    let stream = TcpStream::connect(address(base)).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let count = requests.len();
    let writing = tokio::spawn(async move {
        for request in requests {
            if writer.write_all(&request).await.is_err() {
                break;
            }
        }
        writer
    });
    let mut pending = Vec::new();
    let mut statuses = Vec::new();
    while statuses.len() < count {
        match read_answer(&mut reader, &mut pending).await {
            Some((status, _)) => statuses.push(status),
            None => break,
        }
    }
    drop(writing.await);
    statuses
}

/// Lets the allocator settle, then the bank's RSS in KiB.
async fn settled_rss(bank: &TestBank) -> u64 {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    bank.rss_kib()
}

#[tokio::test]
async fn made_up_methods_are_answered_501_and_never_grow_metrics_or_memory() {
    let bank = TestBank::start().await;
    let (_, before) = bank.ops.metrics("gateway").await.expect("metrics");
    let rss_before = settled_rss(&bank).await;

    // 20,000 distinct 8-character methods, and 200 of 7,000 characters, over 8 connections.
    let mut tasks = Vec::new();
    for connection in 0..8u32 {
        let base = bank.api.base.clone();
        tasks.push(tokio::spawn(async move {
            let mut requests: Vec<Vec<u8>> = (0..2_500u32)
                .map(|n| {
                    format!("Q{connection}{n:06}X /api/v1/ping HTTP/1.1\r\nHost: bank\r\n\r\n")
                        .into_bytes()
                })
                .collect();
            requests.extend((0..25u32).map(|n| {
                let method = format!("L{connection}{n:04}{}", "M".repeat(7_000));
                format!("{method} /api/v1/ping HTTP/1.1\r\nHost: bank\r\n\r\n").into_bytes()
            }));
            pipelined(&base, requests).await
        }));
    }
    for task in tasks {
        let statuses = task.await.expect("a connection's task");
        assert_eq!(statuses.len(), 2_525, "every made-up method is answered");
        assert!(
            statuses.iter().all(|status| *status == 501),
            "{:?}",
            &statuses[..5]
        );
    }

    let (_, after) = bank.ops.metrics("gateway").await.expect("metrics");
    assert!(
        !after.contains("Q0000001X") && !after.contains("MMMM"),
        "a made-up method became a label"
    );
    assert!(
        after.len() < before.len() + 64 * 1024,
        "/metrics grew from {} to {} bytes",
        before.len(),
        after.len()
    );
    let rss_after = settled_rss(&bank).await;
    assert!(
        rss_after < rss_before + 64 * MIB,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    // Methods the bank knows still get their ordinary answers.
    let statuses = pipelined(
        &bank.api.base,
        vec![
            b"GET /api/v1/ping HTTP/1.1\r\nHost: bank\r\n\r\n".to_vec(),
            b"PUT /api/v1/ping HTTP/1.1\r\nHost: bank\r\ncontent-length: 0\r\n\r\n".to_vec(),
        ],
    )
    .await;
    assert_eq!(statuses, vec![200, 405]);
}

/// Opens a connection that sends `pad` bytes of header lines and never ends its head.
async fn unfinished_head(base: &str, pad: usize) -> TcpStream {
    let mut stream = TcpStream::connect(address(base)).await.expect("connect");
    let mut head = b"GET /api/v1/ping HTTP/1.1\r\nHost: bank\r\n".to_vec();
    let line = format!("X-Pad: {}\r\n", "p".repeat(990));
    while head.len() < pad {
        head.extend_from_slice(line.as_bytes());
    }
    // The server may close the connection before all is written (that is the point).
    let _ = stream.write_all(&head).await;
    stream
}

#[tokio::test]
async fn unfinished_heads_are_cut_at_16_kib_and_hold_little_memory() {
    let bank = TestBank::start_with(&[
        "--header-timeout-ms",
        "60000",
        "--max-connections-per-client",
        "2000",
    ])
    .await;
    let rss_before = settled_rss(&bank).await;

    // 500 heads of 300 KB each, never finished: each is answered 431 once it passes 16 KiB.
    let mut refused = 0;
    for _ in 0..500 {
        let mut stream = unfinished_head(&bank.api.base, 300 * 1024).await;
        let mut pending = Vec::new();
        if let Some((status, body)) = read_answer(&mut stream, &mut pending).await {
            assert_eq!(status, 431, "{body}");
            assert!(body.contains("headers_too_large"), "{body}");
            refused += 1;
        }
    }
    assert_eq!(refused, 500, "every oversized head is answered 431");

    // 1,000 heads of 15 KB, held open unfinished: the bank holds at most the head limit of each.
    let mut held = Vec::new();
    for _ in 0..1_000 {
        held.push(unfinished_head(&bank.api.base, 15 * 1024).await);
    }
    let rss_during = settled_rss(&bank).await;
    assert!(
        rss_during < rss_before + 64 * MIB,
        "1,000 unfinished heads: RSS {rss_before} -> {rss_during} KiB"
    );
    drop(held);
    let (status, _) = bank.api.get("/api/v1/ping", None).await;
    assert_eq!(status, 200);
}

/// A login whose head is whole (12 KB of it) and whose 60,000-byte body stops after 30,000.
async fn stalled_body(base: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address(base)).await.expect("connect");
    let pad = format!("X-Pad: {}\r\n", "p".repeat(990)).repeat(12);
    let head = format!(
        "POST /api/v1/sessions HTTP/1.1\r\nHost: bank\r\ncontent-type: application/json\r\n\
         content-length: 60000\r\n{pad}\r\n"
    );
    let mut request = head.into_bytes();
    request.extend(std::iter::repeat_n(b' ', 30_000));
    let _ = stream.write_all(&request).await;
    stream
}

#[tokio::test]
async fn stalled_bodies_of_one_client_hold_bounded_memory_that_is_given_back() {
    let bank = TestBank::start_with(&["--body-timeout-ms", "60000"]).await;
    let rss_before = settled_rss(&bank).await;
    // 1,500 complete heads with stalled bodies from one address: its share (256) is held, the
    // rest refused at once.
    let mut held = Vec::new();
    for _ in 0..1_500 {
        held.push(stalled_body(&bank.api.base).await);
    }
    let rss_during = settled_rss(&bank).await;
    eprintln!("1,500 stalled bodies of one client: RSS {rss_before} -> {rss_during} KiB");
    // Measured ~130 KiB a held connection in this debug build (+33 MiB for 256); the bound
    // leaves room for a busy machine and still fails the code before the share (+166 MiB).
    assert!(
        rss_during < rss_before + 96 * MIB,
        "1,500 stalled bodies: RSS {rss_before} -> {rss_during} KiB"
    );
    drop(held);
    let (status, _) = bank.api.get("/api/v1/ping", None).await;
    assert_eq!(status, 200);
    // The allocator gives freed memory back within seconds, also while the bank is idle.
    let mut rss_after = bank.rss_kib();
    for _ in 0..30 {
        if rss_after < rss_before + 24 * MIB {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_after = bank.rss_kib();
    }
    eprintln!("after they closed: RSS {rss_after} KiB");
    assert!(
        rss_after < rss_before + 24 * MIB,
        "memory not given back within 30 s: RSS {rss_before} -> {rss_during} -> {rss_after} KiB"
    );
}

/// Sends one raw request and reads one answer; also whether the server then closed.
async fn raw_once(base: &str, request: &[u8]) -> (u16, String, bool) {
    let mut stream = TcpStream::connect(address(base)).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut pending = Vec::new();
    let (status, body) = read_answer(&mut stream, &mut pending)
        .await
        .unwrap_or_else(|| panic!("no answer to {:?}", String::from_utf8_lossy(request)));
    let closed = read_answer(&mut stream, &mut pending).await.is_none();
    (status, body, closed)
}

#[tokio::test]
async fn requests_framed_outside_rfc_9112_are_refused_with_400_and_the_connection_closed() {
    let bank = TestBank::start().await;
    let login = r#"{"userId":"x@test","password":"wrong-password"}"#;
    let chunked = |coding: &str| {
        format!(
            "POST /api/v1/sessions HTTP/1.1\r\nHost: bank\r\ncontent-type: application/json\r\n\
             Transfer-Encoding: {coding}\r\n\r\n{:x}\r\n{login}\r\n0\r\n\r\n",
            login.len()
        )
    };
    let refused = [
        chunked("gzip, chunked"),
        chunked("chunked\r\nTransfer-Encoding: chunked"),
        chunked("chunked\r\nContent-Length: 5"),
        "GET /api/v1/ping HTTP/1.1\nHost: bank\n\n".to_owned(),
        "GET /api/v1/ping HTTP/1.1\r\nHost: bank\n\r\n".to_owned(),
        "GET /api/v1/ping HTTP/1.1\r\n\r\n".to_owned(),
        "GET /api/v1/ping HTTP/1.1\r\nHost: bank\r\nHost: evil\r\n\r\n".to_owned(),
        "GET /api/v1/ping HTTP/1.1\r\nHost: bank\r\nX-A: 1\r\n folded\r\n\r\n".to_owned(),
        "POST /api/v1/sessions HTTP/1.1\r\nHost: bank\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}".to_owned(),
    ];
    for request in refused {
        let (status, body, closed) = raw_once(&bank.api.base, request.as_bytes()).await;
        assert_eq!(status, 400, "{request:?}: {body}");
        assert!(body.contains("invalid_framing"), "{request:?}: {body}");
        assert!(closed, "{request:?}: the connection stays open");
    }
    // A malformed chunk, found while the body is read: 400 too (not 413), connection closed.
    let bad_chunk =
        "POST /api/v1/sessions HTTP/1.1\r\nHost: bank\r\ncontent-type: application/json\r\n\
                     Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n";
    let (status, body, closed) = raw_once(&bank.api.base, bad_chunk.as_bytes()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_framing"), "{body}");
    assert!(closed, "the connection stays open after a malformed chunk");
    // Well-framed: a chunked login is read (401: wrong password), HTTP/1.0 needs no Host.
    let (status, body, _) = raw_once(&bank.api.base, chunked("chunked").as_bytes()).await;
    assert_eq!(status, 401, "{body}");
    let (status, body, _) = raw_once(&bank.api.base, b"GET /api/v1/ping HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 200, "{body}");
}

/// A login of `from` whose body stops after one of its 100 bytes.
async fn stalled_login_from(base: &str, from: IpAddr) -> TcpStream {
    let mut stream = connect_from(base, from).await;
    let _ = stream
        .write_all(
            b"POST /api/v1/sessions HTTP/1.1\r\nHost: bank\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
        )
        .await;
    stream
}

#[tokio::test]
async fn one_client_cannot_take_the_connection_cap_and_the_probes_have_their_own() {
    let bank =
        TestBank::start_with(&["--max-connections", "300", "--body-timeout-ms", "3000"]).await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 0).await;
    let base = bank.api.base.clone();
    // A stranger keeps 300 stalled bodies coming (each refilled when the 408 closes it).
    let stop = tokio_util::sync::CancellationToken::new();
    let flood = tokio::spawn({
        let (base, stop) = (base.clone(), stop.clone());
        async move {
            let mut held = Vec::new();
            while !stop.is_cancelled() {
                while held.len() < 300 {
                    held.push(stalled_login_from(&base, local(1)).await);
                }
                tokio::time::sleep(Duration::from_millis(1_000)).await;
                held.clear();
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A customer from another address: reads, deposits and logins all answer.
    let http = reqwest::Client::builder()
        .local_address(local(2))
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let customer = bank.api.with_http(http);
    let admin = bank.ops.admin["gateway"].clone();
    let probes = reqwest::Client::builder()
        .local_address(local(3))
        .build()
        .expect("client");
    for n in 0..10 {
        let reply = customer.deposit(&alice.token, &alice.pw, "1001", 10).await;
        assert_eq!(reply.0, 200, "deposit #{n} during the flood: {}", reply.1);
        let (status, body) = customer.account(&alice.token, "1001").await;
        assert_eq!(status, 200, "read #{n}: {body}");
        let (status, body) = customer.login("alice@test", &alice.pw).await;
        assert_eq!(status, 200, "login #{n}: {body}");
        let live = probes
            .get(format!("{admin}/health/live"))
            .send()
            .await
            .map(|answer| answer.status().as_u16());
        assert_eq!(live.ok(), Some(200), "liveness probe #{n} during the flood");
    }
    stop.cancel();
    drop(flood.await);
}

#[tokio::test]
async fn a_burst_of_idle_connections_does_not_close_a_customers_kept_alive_one() {
    let bank =
        TestBank::start_with(&["--max-connections", "100", "--idle-timeout-ms", "30000"]).await;
    let ping = b"GET /api/v1/ping HTTP/1.1\r\nHost: bank\r\n\r\n";
    let mut customer = connect_from(&bank.api.base, local(2)).await;
    let mut pending = Vec::new();
    customer.write_all(ping).await.expect("write");
    assert_eq!(
        read_answer(&mut customer, &mut pending).await.map(|a| a.0),
        Some(200)
    );
    // Bursts of idle connections from ten addresses, 20 each: twice the cap.
    let mut idle = Vec::new();
    for round in 0..2u8 {
        for from in 10..20u8 {
            for _ in 0..10 {
                if let Ok(stream) = tokio::time::timeout(
                    Duration::from_secs(5),
                    connect_from(&bank.api.base, local(from + round * 10)),
                )
                .await
                {
                    idle.push(stream);
                }
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    customer.write_all(ping).await.expect("write");
    let answer = read_answer(&mut customer, &mut pending).await;
    assert_eq!(
        answer.map(|a| a.0),
        Some(200),
        "the customer's kept-alive connection was closed to make room for idle strangers"
    );
}

/// `count` concurrent wrong logins from `from`, each with the `X-Forwarded-For` that `forwarded`
/// gives it; their statuses.
async fn login_flood(
    bank: &TestBank,
    from: IpAddr,
    count: usize,
    forwarded: impl Fn(usize) -> String,
) -> Vec<u16> {
    let http = reqwest::Client::builder()
        .local_address(from)
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let api = bank.api.with_http(http);
    let calls = (0..count).map(|n| {
        let (api, forwarded) = (api.clone(), forwarded(n));
        async move {
            api.post_req("/api/v1/sessions")
                .header("x-forwarded-for", &forwarded)
                .json(serde_json::json!({"userId": format!("guess{n}@test"), "password": "wrong-password"}))
                .try_send()
                .await
                .map_or(0, |reply| reply.status)
        }
    });
    futures::future::join_all(calls).await
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_has_the_share_and_elsewhere_the_header_is_not_believed(
) {
    // 127.0.0.1 is the proxy; shares of 2 logins at once per client, a short wait for a place.
    let bank = TestBank::start_with(&[
        "--trusted-proxies",
        "127.0.0.1/32",
        "--max-in-flight-per-client",
        "2",
        "--public-wait-ms",
        "100",
    ])
    .await;
    let carol = bank.customer("carol@test").await;
    // One stranger behind the proxy floods; a customer behind the same proxy logs in meanwhile.
    let flood = login_flood(&bank, local(1), 60, |_| "203.0.113.7".to_owned());
    let customer = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        bank.api
            .post_req("/api/v1/sessions")
            .header("x-forwarded-for", "198.51.100.2")
            .json(serde_json::json!({"userId": "carol@test", "password": carol.pw}))
            .try_send()
            .await
            .map_or(0, |reply| reply.status)
    };
    let (flooded, carol_login) = tokio::join!(flood, customer);
    assert!(
        flooded.contains(&503),
        "one forwarded client got more than its share: {flooded:?}"
    );
    assert_eq!(
        carol_login, 200,
        "the stranger's flood took the customer's share"
    );
    // An untrusted address cannot make up clients: each call naming another forwarded client
    // still counts in that address's one share.
    let spoofed = login_flood(&bank, local(3), 60, |n| format!("198.51.100.{}", n + 10)).await;
    assert!(
        spoofed.contains(&503),
        "X-Forwarded-For from an untrusted address was believed: {spoofed:?}"
    );
}

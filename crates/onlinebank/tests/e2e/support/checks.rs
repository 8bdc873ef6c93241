//! Assertions on answers, polling with a deadline, and small helpers (files, a seeded random
//! source: rand's `StdRng`).

use super::*;
use serde_json::Value;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use rand::{rngs::StdRng, Rng, SeedableRng};

/// Asserts a success status and returns the body.
#[track_caller]
pub fn expect_ok(reply: &(u16, Value), status: u16) -> &Value {
    assert_eq!(
        reply.0, status,
        "expected {status}, got {} {}",
        reply.0, reply.1
    );
    &reply.1
}

/// Asserts the error shape `{"error":{"code","message"}}` with this status and code.
#[track_caller]
pub fn expect_error(reply: &(u16, Value), status: u16, code: &str) {
    let (got, body) = reply;
    assert_eq!(
        (*got, body["error"]["code"].as_str()),
        (status, Some(code)),
        "expected {status} {code}, got {got} {body}"
    );
    assert!(
        body["error"]["message"].is_string(),
        "error without message: {body}"
    );
}

/// Asserts a compensated request: the error with `requestId` beside it, and that
/// `GET /api/v1/requests/{id}` answers 404 `request_cancelled` with the reason.
pub async fn expect_compensated(
    api: &Api,
    token: &str,
    reply: &(u16, Value),
    status: u16,
    reason: &str,
) -> String {
    expect_error(reply, status, reason);
    let id = reply.1["requestId"]
        .as_str()
        .unwrap_or_else(|| panic!("no requestId beside the error: {}", reply.1))
        .to_owned();
    let (got, body) = api.get_request(token, &id).await;
    assert_eq!(got, 404, "GET /api/v1/requests/{id} after {reason}: {body}");
    assert_eq!(
        body["error"]["code"], "request_cancelled",
        "GET request {id}: {body}"
    );
    assert_eq!(body["reason"], reason, "GET request {id}: {body}");
    assert_eq!(body["requestId"], id.as_str(), "GET request {id}: {body}");
    id
}

/// Waits until `counter` has grown by `n` from now: a stream of operations is making progress.
pub async fn wait_for_progress(
    counter: &std::sync::atomic::AtomicUsize,
    n: usize,
    what: &str,
    timeout: Duration,
) {
    use std::sync::atomic::Ordering;
    let target = counter.load(Ordering::SeqCst) + n;
    eventually(what, timeout, || async {
        let now = counter.load(Ordering::SeqCst);
        if now >= target {
            Ok(())
        } else {
            Err(format!("{now} completed, want {target}"))
        }
    })
    .await
}

/// Polls `probe` until it answers `Ok`, at most `timeout`; fails with the last `Err`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(20);
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) => {
                if Instant::now() >= deadline {
                    panic!("timed out after {timeout:?} waiting for {what}; last: {last}");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(250));
            }
        }
    }
}

/// Every file under a directory, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The items of a list answer.
#[track_caller]
pub fn items(body: &Value) -> Vec<Value> {
    body["items"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("expected {{items:[...]}}, got {body}"))
}

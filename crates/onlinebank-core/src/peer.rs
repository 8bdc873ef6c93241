//! One way to call another role: through its router when it runs in this process (`up`), else
//! over HTTP, balanced over every instance of the role.
//!
//! Calls take turns over the instances, those that are available first: an instance is
//! available when its `/health/ready` answered 200 at the last check (every 500 ms, for roles
//! with several instances) and it has not refused a connection in the last two seconds. A call
//! that could not be delivered to one instance (the connection was refused) goes to the next:
//! that instance never saw it. A read (GET, HEAD) that failed after it was sent goes to the next
//! too; a write that failed after it was sent is never resent here: it may have been applied.
//! Gateway and request both call their peers through this.

use crate::role::{Role, RoleMap};
use crate::settings::Peers;
use axum::body::Bytes;
use http::{HeaderMap, HeaderName, Method, StatusCode};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tower::util::ServiceExt;

/// The routers of the roles that run in this process, so that a call from one role to another
/// in the same process (`up`) is handed to the peer's router directly: the same HTTP request
/// and answer, the same handlers, middleware, load shedding and timeouts, without a loopback
/// connection. Empty in `serve`, where every peer is another process.
#[derive(Clone, Default)]
pub struct LocalRoles {
    routers: Arc<RoleMap<std::sync::OnceLock<axum::Router>>>,
}

impl fmt::Debug for LocalRoles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local: Vec<&str> = Role::ALL
            .into_iter()
            .filter(|role| self.get(*role).is_some())
            .map(Role::as_str)
            .collect();
        write!(f, "LocalRoles({local:?})")
    }
}

impl LocalRoles {
    /// Registers `role`'s router (once; later registrations are ignored).
    pub fn register(&self, role: Role, router: axum::Router) {
        let _ = self.routers.get(role).set(router);
    }

    /// The router of `role`, if it runs in this process.
    pub fn get(&self, role: Role) -> Option<axum::Router> {
        self.routers.get(role).get().cloned()
    }
}

/// How long an instance that refused a connection is tried last.
const SIT_OUT: Duration = Duration::from_secs(2);
/// How often the instances of a role with several are checked.
const READINESS_EVERY: Duration = Duration::from_millis(500);

/// One role's instances.
#[derive(Debug)]
pub struct Instances {
    urls: Vec<String>,
    /// Whether each instance passed its last readiness check.
    ready: Vec<AtomicBool>,
    /// Per instance, until when (ms since `epoch`) it sits out after refusing a connection.
    down_until: Vec<AtomicU64>,
    next: AtomicUsize,
    epoch: Instant,
}

impl Instances {
    pub fn new(urls: &[String]) -> Self {
        let urls: Vec<String> = urls
            .iter()
            .map(|url| url.trim_end_matches('/').to_owned())
            .collect();
        Self {
            ready: urls.iter().map(|_| AtomicBool::new(true)).collect(),
            down_until: urls.iter().map(|_| AtomicU64::new(0)).collect(),
            urls,
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
        }
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Every instance once, starting with the next in turn; available ones first.
    pub fn order(&self) -> Vec<usize> {
        let count = self.urls.len();
        if count == 0 {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let now = self.now();
        let (mut available, resting): (Vec<usize>, Vec<usize>) = (0..count)
            .map(|offset| (start + offset) % count)
            .partition(|index| {
                self.ready[*index].load(Ordering::Relaxed)
                    && self.down_until[*index].load(Ordering::Relaxed) <= now
            });
        available.extend(resting);
        available
    }

    /// The instance refused a connection: it goes last for a while.
    pub fn down(&self, index: usize) {
        let until = self.now() + u64::try_from(SIT_OUT.as_millis()).unwrap_or(u64::MAX);
        self.down_until[index].store(until, Ordering::Relaxed);
    }

    /// The instance answered.
    pub fn up(&self, index: usize) {
        self.down_until[index].store(0, Ordering::Relaxed);
    }

    /// Records a readiness check; returns whether it changed.
    fn set_ready(&self, index: usize, ready: bool) -> bool {
        self.ready[index].swap(ready, Ordering::Relaxed) != ready
    }
}

/// A role's answer, read whole.
#[derive(Debug)]
pub struct PeerAnswer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl PeerAnswer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

impl axum::response::IntoResponse for PeerAnswer {
    fn into_response(self) -> axum::response::Response {
        let mut response = axum::response::Response::new(axum::body::Body::from(self.body));
        *response.status_mut() = self.status;
        for (name, value) in &self.headers {
            if forwardable(name) {
                response.headers_mut().append(name.clone(), value.clone());
            }
        }
        response
    }
}

/// Why a call has no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerFailure {
    /// No instance took the call (none configured, every connection refused, or a read failed
    /// on each): nothing happened.
    NotDelivered,
    /// The call was sent and then its answer was lost: a write may or may not have been
    /// applied. `timed_out`: it ran past its timeout.
    Lost { timed_out: bool },
}

/// Headers that describe one connection, not the message: never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
];

/// Whether a header travels with a call or an answer from one role to another.
pub fn forwardable(name: &HeaderName) -> bool {
    !HOP_BY_HOP.contains(&name.as_str()) && name != http::header::CONTENT_LENGTH
}

/// Calls other roles (see the module docs).
#[derive(Debug)]
pub struct PeerClient {
    http: reqwest::Client,
    /// Roles in this process (`up`): called through their routers, without a socket.
    local: LocalRoles,
    roles: RoleMap<Instances>,
}

impl PeerClient {
    pub fn new(http: reqwest::Client, peers: &Peers, local: LocalRoles) -> Self {
        Self {
            http,
            local,
            roles: RoleMap::from_fn(|role| Instances::new(peers.of(role))),
        }
    }

    pub fn instances(&self, role: Role) -> &Instances {
        self.roles.get(role)
    }

    /// Checks every instance of every role with more than one instance, until `shutdown`.
    pub async fn watch_readiness(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            for (_, instances) in self.roles.iter().filter(|(_, i)| i.urls.len() > 1) {
                for (index, url) in instances.urls.iter().enumerate() {
                    let ready = matches!(
                        self.http
                            .get(format!("{url}/health/ready"))
                            .timeout(Duration::from_millis(300))
                            .send()
                            .await,
                        Ok(response) if response.status().is_success()
                    );
                    if instances.set_ready(index, ready) {
                        tracing::info!(instance = %url, ready, "instance readiness changed");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(READINESS_EVERY) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Calls `role` at `path` (with its query), within `timeout` in all.
    pub async fn call(
        &self,
        role: Role,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Result<PeerAnswer, PeerFailure> {
        // The call being served goes on: its request id, and this hop as the trace's parent.
        let headers = &crate::trace::outgoing(headers);
        if let Some(router) = self.local.get(role) {
            return call_local(router, role, method, path, headers, body, timeout).await;
        }
        let idempotent = method == Method::GET || method == Method::HEAD;
        let deadline = tokio::time::Instant::now() + timeout;
        let instances = self.roles.get(role);
        for index in instances.order() {
            let base = &instances.urls[index];
            let mut outgoing = self
                .http
                .request(method.clone(), format!("{base}{path}"))
                .body(body.clone());
            for (name, value) in headers {
                if forwardable(name) {
                    outgoing = outgoing.header(name, value);
                }
            }
            let sent = tokio::time::timeout_at(deadline, async {
                let response = outgoing.send().await?;
                let status = response.status();
                let headers = response.headers().clone();
                Ok::<_, reqwest::Error>(PeerAnswer {
                    status,
                    headers,
                    body: response.bytes().await?,
                })
            })
            .await;
            match sent {
                Ok(Ok(answer)) => {
                    instances.up(index);
                    return Ok(answer);
                }
                Ok(Err(error)) if error.is_connect() => {
                    // The instance never saw the call: trying another is always safe.
                    tracing::warn!(%role, instance = %base, %error, "role refused the connection; trying the next instance");
                    instances.down(index);
                }
                Ok(Err(error)) if idempotent && !error.is_timeout() => {
                    tracing::warn!(%role, instance = %base, %error, "role failed a read; trying the next instance");
                }
                Ok(Err(error)) => {
                    // A write was sent: it may have been applied. Never resend it here.
                    tracing::warn!(%role, instance = %base, %error, "call to a role failed");
                    return Err(PeerFailure::Lost {
                        timed_out: error.is_timeout(),
                    });
                }
                Err(_) => {
                    tracing::warn!(%role, instance = %base, "call to a role timed out");
                    return Err(PeerFailure::Lost { timed_out: true });
                }
            }
        }
        Err(PeerFailure::NotDelivered)
    }
}

/// Calls a role of this process through its router: the same request and answer as over HTTP,
/// with the same timeout.
async fn call_local(
    router: axum::Router,
    role: Role,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
    timeout: Duration,
) -> Result<PeerAnswer, PeerFailure> {
    let mut request = http::Request::builder().method(method).uri(path);
    for (name, value) in headers {
        if forwardable(name) {
            request = request.header(name, value);
        }
    }
    let request = match request.body(axum::body::Body::from(body)) {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(%role, %error, "a call to a role could not be built");
            return Err(PeerFailure::NotDelivered);
        }
    };
    let answer = tokio::time::timeout(timeout, async {
        let response = match router.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        axum::body::to_bytes(body, usize::MAX)
            .await
            .map(|body| PeerAnswer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
    })
    .await;
    match answer {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(error)) => {
            tracing::warn!(%role, %error, "reading a role's answer failed");
            Err(PeerFailure::Lost { timed_out: false })
        }
        Err(_) => {
            tracing::warn!(%role, "role timed out");
            Err(PeerFailure::Lost { timed_out: true })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};

    #[test]
    fn instances_take_turns_and_one_that_refused_or_is_unready_goes_last() {
        let instances = Instances::new(&[
            "http://a/".to_owned(),
            "http://b".to_owned(),
            "http://c".to_owned(),
        ]);
        assert_eq!(instances.urls(), ["http://a", "http://b", "http://c"]);
        assert_eq!(instances.order(), [0, 1, 2]);
        assert_eq!(instances.order(), [1, 2, 0]);
        instances.down(2);
        assert_eq!(instances.order(), [0, 1, 2]);
        assert_eq!(instances.order(), [0, 1, 2], "c sits out: a takes its turn");
        instances.up(2);
        assert_eq!(instances.order(), [1, 2, 0]);
        assert!(instances.set_ready(1, false));
        assert!(!instances.set_ready(1, false), "no change");
        assert_eq!(instances.order(), [2, 0, 1], "unready b goes last");
        assert!(Instances::new(&[]).order().is_empty());
    }

    /// A client whose request role runs in this process as `router`.
    fn local_request_role(router: axum::Router) -> PeerClient {
        let local = LocalRoles::default();
        local.register(Role::Request, router);
        // Nothing listens there: a call that left the process would be refused.
        let peers = Peers::default().with(Role::Request, &["http://127.0.0.1:9"]);
        PeerClient::new(reqwest::Client::new(), &peers, local)
    }

    #[tokio::test]
    async fn a_local_role_gets_the_call_with_its_headers_and_body_and_its_answer_comes_back() {
        let client = local_request_role(axum::Router::new().route(
            "/echo",
            post(|headers: HeaderMap, body: String| async move {
                let key = headers
                    .get("idempotency-key")
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                (StatusCode::CREATED, [("x-key", key)], body)
            }),
        ));
        let mut headers = HeaderMap::new();
        headers.insert("idempotency-key", http::HeaderValue::from_static("k-1"));
        let answer = client
            .call(
                Role::Request,
                Method::POST,
                "/echo?x=1",
                &headers,
                Bytes::from_static(b"hello"),
                Duration::from_millis(200),
            )
            .await;
        let Ok(answer) = answer else {
            panic!("the local call failed")
        };
        assert_eq!(answer.status, StatusCode::CREATED);
        assert_eq!(answer.headers.get("x-key").unwrap(), "k-1");
        assert_eq!(&answer.body[..], b"hello");
    }

    #[tokio::test]
    async fn a_local_role_past_the_timeout_is_lost_with_timed_out() {
        let slow = || async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        };
        let client = local_request_role(axum::Router::new().route("/slow", get(slow)));
        let answer = client
            .call(
                Role::Request,
                Method::GET,
                "/slow",
                &HeaderMap::new(),
                Bytes::new(),
                Duration::from_millis(200),
            )
            .await;
        assert_eq!(answer.err(), Some(PeerFailure::Lost { timed_out: true }));
    }

    #[tokio::test]
    async fn a_role_nobody_serves_is_not_delivered() {
        let peers =
            Peers::default().with(Role::Auth, &["http://127.0.0.1:9", "http://127.0.0.1:9/"]);
        let client = PeerClient::new(reqwest::Client::new(), &peers, LocalRoles::default());
        for method in [Method::GET, Method::POST] {
            let answer = client
                .call(
                    Role::Auth,
                    method,
                    "/x",
                    &HeaderMap::new(),
                    Bytes::new(),
                    Duration::from_secs(2),
                )
                .await;
            assert_eq!(answer.err(), Some(PeerFailure::NotDelivered));
        }
        let nobody = client
            .call(
                Role::Mypage,
                Method::GET,
                "/x",
                &HeaderMap::new(),
                Bytes::new(),
                Duration::from_secs(1),
            )
            .await;
        assert_eq!(nobody.err(), Some(PeerFailure::NotDelivered));
    }
}

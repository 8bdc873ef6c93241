//! Forwarding calls to a role's instances over pooled keep-alive connections.
//!
//! Each role may have several instances; calls go round-robin over the instances whose
//! `/health/ready` answered 200 at the last check (every 500 ms; all of them if none did). A call
//! that cannot reach an instance is tried on the next one when it is safe to: always for reads
//! (GET), and for writes only when the connection was never made, so the instance never saw it.
//! That is what lets a role restart, one instance at a time, without a failed client call.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, Method, StatusCode};
use onlinebank_core::http::MAX_BODY_BYTES;
use onlinebank_core::role::LocalRoles;
use onlinebank_core::settings::Peers;
use onlinebank_core::{ApiError, Role};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower::util::ServiceExt;

/// One role's instances.
#[derive(Debug)]
struct Instances {
    urls: Vec<String>,
    /// Whether each instance passed its last readiness check.
    ready: Vec<AtomicBool>,
    next: AtomicUsize,
}

impl Instances {
    /// The instances to try for one call, in order: ready ones first, round-robin.
    fn order(&self) -> Vec<&str> {
        let count = self.urls.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let rotated = (0..count).map(|offset| (start + offset) % count);
        let (ready, unready): (Vec<usize>, Vec<usize>) =
            rotated.partition(|index| self.ready[*index].load(Ordering::Relaxed));
        ready
            .into_iter()
            .chain(unready)
            .map(|index| self.urls[index].as_str())
            .collect()
    }
}

/// Every role's instances and the shared HTTP client.
#[derive(Debug)]
pub struct Upstreams {
    http: reqwest::Client,
    roles: Vec<(Role, Instances)>,
    /// Roles in this process (`up`): called through their routers, without a socket.
    local: LocalRoles,
    /// The longest a call to a role may take (the HTTP client has the same timeout).
    timeout: Duration,
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

/// Headers only the bank's roles may set (the internal key among them): a client's are dropped
/// before its call goes anywhere.
const INTERNAL_PREFIX: &str = "x-onlinebank-";

fn forwardable(name: &HeaderName) -> bool {
    !HOP_BY_HOP.contains(&name.as_str()) && name != http::header::CONTENT_LENGTH
}

/// Removes every internal header a client sent.
pub fn strip_internal_headers(headers: &mut HeaderMap) {
    let internal: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(INTERNAL_PREFIX))
        .cloned()
        .collect();
    for name in internal {
        headers.remove(name);
    }
}

pub async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is too large",
            )
        })
}

/// A call that broke after the role may have acted on it: a read can simply be tried again
/// (busy); a write's outcome is unknown (the client resolves it with its Idempotency-Key).
fn broken_call(idempotent: bool, status: StatusCode) -> ApiError {
    if idempotent {
        ApiError::busy()
    } else {
        ApiError::outcome_unknown(status)
    }
}

/// A role's answer, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        for (name, value) in &self.headers {
            if forwardable(name) {
                response.headers_mut().append(name.clone(), value.clone());
            }
        }
        response
    }
}

impl Upstreams {
    pub fn new(http: reqwest::Client, peers: &Peers, local: LocalRoles, timeout: Duration) -> Self {
        let roles = Role::ALL
            .into_iter()
            .map(|role| {
                let urls = peers
                    .of(role)
                    .iter()
                    .map(|url| url.trim_end_matches('/').to_owned())
                    .collect();
                let ready = (0..peers.of(role).len())
                    .map(|_| AtomicBool::new(true))
                    .collect();
                (
                    role,
                    Instances {
                        urls,
                        ready,
                        next: AtomicUsize::new(0),
                    },
                )
            })
            .collect();
        Self {
            http,
            roles,
            local,
            timeout,
        }
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
                    let was = instances.ready[index].swap(ready, Ordering::Relaxed);
                    if was != ready {
                        tracing::info!(instance = %url, ready, "instance readiness changed");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    fn instances(&self, role: Role) -> Option<&Instances> {
        self.roles
            .iter()
            .find(|(candidate, _)| *candidate == role)
            .map(|(_, instances)| instances)
    }

    /// Forwards a client's call to `role` and answers what it answered.
    pub async fn forward(&self, role: Role, request: Request) -> Response {
        let (mut parts, body) = request.into_parts();
        strip_internal_headers(&mut parts.headers);
        let body = match read_body(body).await {
            Ok(body) => body,
            Err(error) => return error.into_response(),
        };
        let path = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str().to_owned())
            .unwrap_or_else(|| parts.uri.path().to_owned());
        match self
            .call(role, parts.method, &path, &parts.headers, body)
            .await
        {
            Ok(answer) => answer.into_response(),
            Err(error) => error.into_response(),
        }
    }

    /// Calls `role` at `path`; tries the next instance when one cannot be reached.
    pub async fn call(
        &self,
        role: Role,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Answer, ApiError> {
        if let Some(router) = self.local.get(role) {
            return self
                .call_local(router, role, method, path, headers, body)
                .await;
        }
        let instances = self
            .instances(role)
            .filter(|instances| !instances.urls.is_empty())
            .ok_or_else(ApiError::busy)?;
        let idempotent = method == Method::GET || method == Method::HEAD;
        for base in instances.order() {
            let mut outgoing = self
                .http
                .request(method.clone(), format!("{base}{path}"))
                .body(body.clone());
            for (name, value) in headers {
                if forwardable(name) {
                    outgoing = outgoing.header(name, value);
                }
            }
            match outgoing.send().await {
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    return match response.bytes().await {
                        Ok(body) => Ok(Answer {
                            status,
                            headers,
                            body,
                        }),
                        Err(error) => {
                            tracing::warn!(%role, %error, "reading a role's answer failed");
                            Err(broken_call(idempotent, StatusCode::BAD_GATEWAY))
                        }
                    };
                }
                Err(error) if error.is_connect() => {
                    // The instance never saw the call: trying another is always safe.
                    tracing::warn!(%role, instance = base, %error, "role unreachable");
                }
                Err(error) if idempotent => {
                    tracing::warn!(%role, instance = base, %error, "role failed a read");
                    if error.is_timeout() {
                        break;
                    }
                }
                Err(error) => {
                    // The write was sent: it may have been applied. Never resend it here.
                    tracing::warn!(%role, instance = base, %error, "role failed a write");
                    return Err(ApiError::outcome_unknown(if error.is_timeout() {
                        StatusCode::GATEWAY_TIMEOUT
                    } else {
                        StatusCode::BAD_GATEWAY
                    }));
                }
            }
        }
        // Every instance was unreachable: nothing happened.
        Err(ApiError::busy())
    }

    /// Calls a role of this process through its router: the same request and answer as over
    /// HTTP, with the same timeout.
    async fn call_local(
        &self,
        router: axum::Router,
        role: Role,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Answer, ApiError> {
        let idempotent = method == Method::GET || method == Method::HEAD;
        let mut request = http::Request::builder().method(method).uri(path);
        for (name, value) in headers {
            if forwardable(name) {
                request = request.header(name, value);
            }
        }
        let request = request
            .body(Body::from(body))
            .map_err(|error| ApiError::validation(format!("bad request: {error}")))?;
        let response = match tokio::time::timeout(self.timeout, router.oneshot(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(never)) => match never {},
            Err(_) => {
                tracing::warn!(%role, "role timed out");
                return Err(broken_call(idempotent, StatusCode::GATEWAY_TIMEOUT));
            }
        };
        let (parts, body) = response.into_parts();
        match axum::body::to_bytes(body, usize::MAX).await {
            Ok(body) => Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            }),
            Err(error) => {
                tracing::warn!(%role, %error, "reading a role's answer failed");
                Err(broken_call(idempotent, StatusCode::BAD_GATEWAY))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};

    /// Upstreams whose request role runs in this process as `router`.
    fn local_request_role(router: axum::Router) -> Upstreams {
        let local = LocalRoles::default();
        local.register(Role::Request, router);
        let peers = Peers {
            // Nothing listens there: a call that left the process would be refused.
            request: vec!["http://127.0.0.1:9".to_owned()],
            ..Peers::default()
        };
        Upstreams::new(
            reqwest::Client::new(),
            &peers,
            local,
            Duration::from_millis(200),
        )
    }

    #[tokio::test]
    async fn a_local_role_gets_the_call_with_its_headers_and_body_and_its_answer_comes_back() {
        let upstreams = local_request_role(axum::Router::new().route(
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
        let answer = upstreams
            .call(
                Role::Request,
                Method::POST,
                "/echo?x=1",
                &headers,
                Bytes::from_static(b"hello"),
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
    async fn a_local_role_past_the_timeout_is_busy_for_a_read_and_unknown_for_a_write() {
        let slow = || async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        };
        let upstreams =
            local_request_role(axum::Router::new().route("/slow", get(slow).post(slow)));
        let headers = HeaderMap::new();
        let read = upstreams
            .call(Role::Request, Method::GET, "/slow", &headers, Bytes::new())
            .await;
        assert!(matches!(read, Err(error) if error.code == "service_busy"));
        let write = upstreams
            .call(Role::Request, Method::POST, "/slow", &headers, Bytes::new())
            .await;
        assert!(matches!(
            write,
            Err(error) if error.code == "outcome_unknown" && error.status == StatusCode::GATEWAY_TIMEOUT
        ));
    }
}

//! Forwarding clients' calls to the roles, through the one peer client
//! ([`onlinebank_core::peer`]): balancing, readiness and retries live there; this module strips
//! what a client may not send, bounds the body and turns a call without an answer into the
//! client's error (a read: busy; a write whose answer was lost: outcome unknown).

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, Method, StatusCode};
use onlinebank_core::http::MAX_BODY_BYTES;
pub use onlinebank_core::peer::PeerAnswer;
use onlinebank_core::peer::{PeerClient, PeerFailure};
use onlinebank_core::{ApiError, ErrorCode, Role};
use std::sync::Arc;
use std::time::Duration;

/// The roles behind the gateway, and the longest a call to one may take.
#[derive(Debug)]
pub struct Upstreams {
    peers: Arc<PeerClient>,
    timeout: Duration,
}

/// Headers only the bank's roles may set (the internal key among them): a client's are dropped
/// before its call goes anywhere.
const INTERNAL_PREFIX: &str = "x-onlinebank-";

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
                ErrorCode::PayloadTooLarge,
                "the request body is too large",
            )
        })
}

/// What the client hears of a call without an answer: nothing happened (busy), or, for a write
/// that was sent, its outcome is unknown (the client resolves it with its Idempotency-Key).
fn failed(failure: PeerFailure, idempotent: bool) -> ApiError {
    match failure {
        PeerFailure::NotDelivered => ApiError::busy(),
        PeerFailure::Lost { .. } if idempotent => ApiError::busy(),
        PeerFailure::Lost { timed_out } => ApiError::outcome_unknown(if timed_out {
            StatusCode::GATEWAY_TIMEOUT
        } else {
            StatusCode::BAD_GATEWAY
        }),
    }
}

impl Upstreams {
    pub fn new(peers: Arc<PeerClient>, timeout: Duration) -> Self {
        Self { peers, timeout }
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

    /// Calls `role` at `path`; a call without an answer is the client's error.
    pub async fn call(
        &self,
        role: Role,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<PeerAnswer, ApiError> {
        let idempotent = method == Method::GET || method == Method::HEAD;
        self.peers
            .call(role, method, path, headers, body, self.timeout)
            .await
            .map_err(|failure| failed(failure, idempotent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    use onlinebank_core::settings::Peers;
    use onlinebank_core::LocalRoles;

    /// Upstreams whose request role runs in this process as `router`.
    fn local_request_role(router: axum::Router) -> Upstreams {
        let local = LocalRoles::default();
        local.register(Role::Request, router);
        // Nothing listens there: a call that left the process would be refused.
        let peers = Peers::default().with(Role::Request, &["http://127.0.0.1:9"]);
        Upstreams::new(
            Arc::new(PeerClient::new(reqwest::Client::new(), &peers, local)),
            Duration::from_millis(200),
        )
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

//! The synchronous step-up call to auth, bounded by a timeout and guarded by a circuit breaker:
//! when auth keeps failing or timing out, calls are refused at once for a while (the client gets
//! 503 `service_busy` in milliseconds instead of after a timeout).
//!
//! With several auth instances (`--auth-url A,B,...`) calls take turns over them; an instance
//! that refuses the connection is skipped for a moment and the same call goes to the next one
//! (safe: a refused connection carried nothing). Any other failure (a timeout, an error after
//! sending) is not retried: auth may have recorded the verification.

use crate::breaker::{Admission, Breaker, BreakerConfig, State};
use std::sync::Arc;
use std::time::Instant;

use onlinebank_core::http::INTERNAL_HEADER;
use onlinebank_core::role::LocalRoles;
use onlinebank_core::{Reason, Role};
use serde_json::json;
use std::time::Duration;
use tower::util::ServiceExt;
use uuid::Uuid;

/// auth's answer to a step-up, or why there was none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Verified,
    /// auth refused: wrong password, locked out, or no valid session.
    Refused {
        reason: Reason,
        session_expired: bool,
        retry_after: Option<u64>,
    },
    /// No answer in time, or auth unreachable or failing: nothing may happen.
    Unavailable,
}

#[derive(Debug, Clone)]
pub struct StepUpClient {
    http: reqwest::Client,
    /// auth in this process (`up`): called through its router, without a socket.
    local: LocalRoles,
    auth: Arc<Instances>,
    internal_token: String,
    timeout: Duration,
    breaker: Arc<Breaker>,
}

fn breaker_transition(state: State) {
    metrics::gauge!("breaker_state", "target" => "auth").set(state.gauge());
    metrics::counter!("breaker_transitions_total", "target" => "auth", "to" => state.as_str())
        .increment(1);
    match state {
        State::Open => tracing::warn!("step-up breaker opened: auth is failing or slow"),
        State::HalfOpen => tracing::info!("step-up breaker half-open: trying auth again"),
        State::Closed => tracing::info!("step-up breaker closed: auth answers again"),
    }
}

impl StepUpClient {
    pub fn new(
        http: reqwest::Client,
        local: LocalRoles,
        auth_urls: Vec<String>,
        internal_token: String,
        timeout: Duration,
        breaker: BreakerConfig,
    ) -> Self {
        metrics::gauge!("breaker_state", "target" => "auth").set(State::Closed.gauge());
        Self {
            http,
            local,
            auth: Arc::new(Instances::new(auth_urls)),
            internal_token,
            timeout,
            breaker: Arc::new(Breaker::new(breaker, breaker_transition)),
        }
    }

    /// Whether the breaker would refuse a call now (answer busy without doing any work).
    pub fn is_refusing(&self) -> bool {
        self.breaker.would_refuse(Instant::now())
    }

    /// Calls auth through the breaker.
    pub async fn verify(
        &self,
        customer_id: &str,
        session_id: &str,
        password: &str,
        request_id: Uuid,
        action: &str,
    ) -> Verdict {
        let Some(admission) = self.breaker.admit(Instant::now()) else {
            tracing::debug!(request = %request_id, "step-up refused by the open breaker");
            return Verdict::Unavailable;
        };
        let verdict = self
            .call(customer_id, session_id, password, request_id, action)
            .await;
        self.record(admission, &verdict);
        verdict
    }

    fn record(&self, admission: Admission, verdict: &Verdict) {
        let success = !matches!(verdict, Verdict::Unavailable);
        self.breaker.record(admission, success, Instant::now());
    }

    async fn call(
        &self,
        customer_id: &str,
        session_id: &str,
        password: &str,
        request_id: Uuid,
        action: &str,
    ) -> Verdict {
        let body = json!({
            "customerId": customer_id,
            "sessionId": session_id,
            "password": password,
            "requestId": request_id,
            "action": action,
        });
        if let Some(auth) = self.local.get(Role::Auth) {
            return self.call_local(auth, body, request_id).await;
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        for index in self.auth.order() {
            let url = &self.auth.urls[index];
            let call = self
                .http
                .post(format!("{url}/internal/v1/step-up"))
                .header(INTERNAL_HEADER, &self.internal_token)
                .timeout(self.timeout)
                .json(&body)
                .send();
            match tokio::time::timeout_at(deadline, call).await {
                Ok(Ok(response)) => {
                    self.auth.up(index);
                    return verdict(response.status().as_u16(), response.headers(), request_id);
                }
                Ok(Err(error)) if error.is_connect() => {
                    tracing::warn!(request = %request_id, auth = %url, error = %error, "auth refused the connection; trying the next instance");
                    self.auth.down(index);
                }
                Ok(Err(error)) => {
                    tracing::warn!(request = %request_id, error = %error, "step-up call failed");
                    return Verdict::Unavailable;
                }
                Err(_) => {
                    tracing::warn!(request = %request_id, "step-up call timed out");
                    return Verdict::Unavailable;
                }
            }
        }
        tracing::warn!(request = %request_id, "no auth instance accepted the connection");
        Verdict::Unavailable
    }

    /// The step-up through auth's router in this process, with the same timeout.
    async fn call_local(
        &self,
        auth: axum::Router,
        body: serde_json::Value,
        request_id: Uuid,
    ) -> Verdict {
        let request = http::Request::post("/internal/v1/step-up")
            .header(INTERNAL_HEADER, &self.internal_token)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(body.to_string()));
        let request = match request {
            Ok(request) => request,
            Err(error) => {
                tracing::warn!(request = %request_id, %error, "step-up call failed");
                return Verdict::Unavailable;
            }
        };
        match tokio::time::timeout(self.timeout, auth.oneshot(request)).await {
            Ok(Ok(response)) => verdict(response.status().as_u16(), response.headers(), request_id),
            Ok(Err(never)) => match never {},
            Err(_) => {
                tracing::warn!(request = %request_id, "step-up call timed out");
                Verdict::Unavailable
            }
        }
    }
}

/// auth's instances: called in turns; one that refused a connection sits out for a moment.
#[derive(Debug)]
struct Instances {
    urls: Vec<String>,
    next: std::sync::atomic::AtomicUsize,
    /// Per instance, until when (ms since `epoch`) it is skipped.
    down_until: Vec<std::sync::atomic::AtomicU64>,
    epoch: Instant,
}

/// How long an instance that refused a connection is skipped.
const SIT_OUT: Duration = Duration::from_secs(2);

impl Instances {
    fn new(urls: Vec<String>) -> Self {
        let urls: Vec<String> = urls
            .into_iter()
            .map(|url| url.trim_end_matches('/').to_owned())
            .collect();
        let down_until = urls
            .iter()
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect();
        Self {
            urls,
            next: Default::default(),
            down_until,
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Every instance once, starting with the next in turn; those sitting out go last.
    fn order(&self) -> Vec<usize> {
        use std::sync::atomic::Ordering;
        let count = self.urls.len();
        if count == 0 {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let now = self.now();
        let (mut ready, resting): (Vec<usize>, Vec<usize>) = (0..count)
            .map(|offset| (start + offset) % count)
            .partition(|index| self.down_until[*index].load(Ordering::Relaxed) <= now);
        ready.extend(resting);
        ready
    }

    fn down(&self, index: usize) {
        let until = self.now() + u64::try_from(SIT_OUT.as_millis()).unwrap_or(u64::MAX);
        self.down_until[index].store(until, std::sync::atomic::Ordering::Relaxed);
    }

    fn up(&self, index: usize) {
        self.down_until[index].store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What auth's answer to a step-up means.
fn verdict(status: u16, headers: &http::HeaderMap, request_id: Uuid) -> Verdict {
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok());
    match status {
        200 => Verdict::Verified,
        401 => Verdict::Refused {
            reason: Reason::StepUpFailed,
            session_expired: true,
            retry_after: None,
        },
        403 => Verdict::Refused {
            reason: Reason::StepUpFailed,
            session_expired: false,
            retry_after: None,
        },
        429 => Verdict::Refused {
            reason: Reason::LockedOut,
            session_expired: false,
            retry_after,
        },
        status => {
            tracing::warn!(request = %request_id, status, "step-up answered an error");
            Verdict::Unavailable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use http::StatusCode;

    #[test]
    fn instances_take_turns_and_one_that_refused_goes_last_for_a_while() {
        let instances = Instances::new(vec![
            "http://a/".into(),
            "http://b".into(),
            "http://c".into(),
        ]);
        assert_eq!(instances.urls, ["http://a", "http://b", "http://c"]);
        assert_eq!(instances.order(), [0, 1, 2]);
        assert_eq!(instances.order(), [1, 2, 0]);
        instances.down(2);
        assert_eq!(instances.order(), [0, 1, 2]);
        assert_eq!(instances.order(), [0, 1, 2], "c sits out: a takes its turn");
        instances.up(2);
        assert_eq!(instances.order(), [1, 2, 0]);
        assert!(Instances::new(Vec::new()).order().is_empty());
    }

    /// A client whose auth is `auth`, registered as running in this process.
    fn client_with_local_auth(auth: axum::Router) -> StepUpClient {
        let local = LocalRoles::default();
        local.register(Role::Auth, auth);
        StepUpClient::new(
            reqwest::Client::new(),
            local,
            // Nothing listens there: a call that left the process would fail as unreachable.
            vec!["http://127.0.0.1:9".to_owned()],
            "internal".to_owned(),
            Duration::from_millis(200),
            BreakerConfig::default(),
        )
    }

    async fn verify(client: &StepUpClient) -> Verdict {
        client
            .verify("c", "s", "pw", Uuid::now_v7(), "deposit")
            .await
    }

    #[tokio::test]
    async fn a_local_auth_is_called_through_its_router_with_the_internal_header() {
        let auth = axum::Router::new().route(
            "/internal/v1/step-up",
            post(|headers: http::HeaderMap, body: String| async move {
                let internal = headers.get(INTERNAL_HEADER).and_then(|v| v.to_str().ok());
                let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                if internal == Some("internal") && json["password"] == "pw" {
                    StatusCode::OK
                } else {
                    StatusCode::FORBIDDEN
                }
            }),
        );
        assert_eq!(
            verify(&client_with_local_auth(auth)).await,
            Verdict::Verified
        );
    }

    #[tokio::test]
    async fn a_local_lockout_keeps_its_retry_after() {
        let auth = axum::Router::new().route(
            "/internal/v1/step-up",
            post(|| async { (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "42")]) }),
        );
        assert_eq!(
            verify(&client_with_local_auth(auth)).await,
            Verdict::Refused {
                reason: Reason::LockedOut,
                session_expired: false,
                retry_after: Some(42),
            }
        );
    }

    #[tokio::test]
    async fn a_local_auth_slower_than_the_timeout_is_unavailable_at_the_timeout() {
        let auth = axum::Router::new().route(
            "/internal/v1/step-up",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                StatusCode::OK
            }),
        );
        let client = client_with_local_auth(auth);
        let started = std::time::Instant::now();
        assert_eq!(verify(&client).await, Verdict::Unavailable);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "gave up at the timeout, not after auth answered"
        );
    }
}

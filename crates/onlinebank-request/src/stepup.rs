//! The synchronous step-up call to auth, bounded by a timeout and guarded by a circuit breaker:
//! when auth keeps failing or timing out, calls are refused at once for a while (the client gets
//! 503 `service_busy` in milliseconds instead of after a timeout).
//!
//! auth is called through the one peer client ([`onlinebank_core::peer`]): with several auth
//! instances (`--auth-url A,B,...`) calls take turns over the ready ones; one that refuses the
//! connection is skipped for a moment and the same call goes to the next one (safe: a refused
//! connection carried nothing). Any other failure (a timeout, an error after sending) is not
//! retried: auth may have recorded the verification.

use crate::breaker::{Admission, Breaker, State};
use onlinebank_core::settings::BreakerSettings;
use std::sync::Arc;
use std::time::Instant;

use onlinebank_core::event::WriteKind;
use onlinebank_core::http::INTERNAL_HEADER;
use onlinebank_core::ids::CustomerId;
use onlinebank_core::ids::RequestId;
use onlinebank_core::internal::{self, StepUpRequest};
use onlinebank_core::peer::{PeerClient, PeerFailure};
use onlinebank_core::{Reason, Role};
use std::time::Duration;

/// auth's answer to a step-up, or why there was none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepUpVerdict {
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
    /// auth's instances, or auth in this process (`up`).
    peers: Arc<PeerClient>,
    /// Every step-up's headers: the JSON content type and the internal token, built once.
    headers: http::HeaderMap,
    timeout: Duration,
    breaker: Arc<Breaker>,
}

fn breaker_transition(state: State) {
    metrics::gauge!("onlinebank_breaker_state", "target" => "auth").set(state.gauge());
    metrics::counter!("onlinebank_breaker_transitions_total", "target" => "auth", "to" => state.as_str())
        .increment(1);
    match state {
        State::Open => tracing::warn!("step-up breaker opened: auth is failing or slow"),
        State::HalfOpen => tracing::info!("step-up breaker half-open: trying auth again"),
        State::Closed => tracing::info!("step-up breaker closed: auth answers again"),
    }
}

impl StepUpClient {
    pub fn new(
        peers: Arc<PeerClient>,
        internal_token: &str,
        timeout: Duration,
        breaker: BreakerSettings,
    ) -> anyhow::Result<Self> {
        metrics::gauge!("onlinebank_breaker_state", "target" => "auth").set(State::Closed.gauge());
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        headers.insert(
            INTERNAL_HEADER,
            http::HeaderValue::from_str(internal_token)?,
        );
        Ok(Self {
            peers,
            headers,
            timeout,
            breaker: Arc::new(Breaker::new(breaker, breaker_transition)),
        })
    }

    /// Whether the breaker would refuse a call now (answer busy without doing any work).
    pub fn is_refusing(&self) -> bool {
        self.breaker.would_refuse(Instant::now())
    }

    /// Calls auth through the breaker.
    pub async fn verify(
        &self,
        customer_id: &CustomerId,
        session_id: &str,
        password: &str,
        request_id: RequestId,
        action: WriteKind,
    ) -> StepUpVerdict {
        let Some(admission) = self.breaker.admit(Instant::now()) else {
            tracing::debug!(request = %request_id, "step-up refused by the open breaker");
            return StepUpVerdict::Unavailable;
        };
        let step_up = StepUpRequest {
            customer_id: customer_id.clone(),
            session_id: session_id.to_owned(),
            password: password.to_owned(),
            request_id,
            action,
        };
        let verdict = self.call(&step_up).await;
        self.record(admission, &verdict);
        verdict
    }

    fn record(&self, admission: Admission, verdict: &StepUpVerdict) {
        let success = !matches!(verdict, StepUpVerdict::Unavailable);
        self.breaker.record(admission, success, Instant::now());
    }

    async fn call(&self, step_up: &StepUpRequest) -> StepUpVerdict {
        let request_id = step_up.request_id;
        let body = match serde_json::to_vec(step_up) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(request = %request_id, %error, "step-up body not encoded");
                return StepUpVerdict::Unavailable;
            }
        };
        let answer = self
            .peers
            .call(
                Role::Auth,
                http::Method::POST,
                internal::STEP_UP,
                &self.headers,
                body.into(),
                self.timeout,
            )
            .await;
        match answer {
            Ok(answer) => verdict(answer.status.as_u16(), &answer.headers, request_id),
            Err(PeerFailure::NotDelivered) => {
                tracing::warn!(request = %request_id, "no auth instance took the step-up");
                StepUpVerdict::Unavailable
            }
            Err(PeerFailure::Lost { timed_out }) => {
                tracing::warn!(request = %request_id, timed_out, "step-up call failed");
                StepUpVerdict::Unavailable
            }
        }
    }
}

/// What auth's answer to a step-up means.
fn verdict(status: u16, headers: &http::HeaderMap, request_id: RequestId) -> StepUpVerdict {
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok());
    match status {
        200 => StepUpVerdict::Verified,
        401 => StepUpVerdict::Refused {
            reason: Reason::StepUpFailed,
            session_expired: true,
            retry_after: None,
        },
        403 => StepUpVerdict::Refused {
            reason: Reason::StepUpFailed,
            session_expired: false,
            retry_after: None,
        },
        429 => StepUpVerdict::Refused {
            reason: Reason::LockedOut,
            session_expired: false,
            retry_after,
        },
        status => {
            tracing::warn!(request = %request_id, status, "step-up answered an error");
            StepUpVerdict::Unavailable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use http::StatusCode;

    /// A client whose auth is `auth`, registered as running in this process.
    fn client_with_local_auth(auth: axum::Router) -> StepUpClient {
        let local = onlinebank_core::LocalRoles::default();
        local.register(Role::Auth, auth);
        // Nothing listens there: a call that left the process would fail as unreachable.
        let peers =
            onlinebank_core::settings::Peers::default().with(Role::Auth, &["http://127.0.0.1:9"]);
        StepUpClient::new(
            Arc::new(PeerClient::new(reqwest::Client::new(), &peers, local)),
            "internal",
            Duration::from_millis(200),
            BreakerSettings::default(),
        )
        .unwrap()
    }

    async fn verify(client: &StepUpClient) -> StepUpVerdict {
        client
            .verify(
                &CustomerId::parse("c").unwrap(),
                "s",
                "pw",
                RequestId::generate(),
                WriteKind::Deposit,
            )
            .await
    }

    #[tokio::test]
    async fn a_local_auth_is_called_through_its_router_with_the_internal_header() {
        let auth = axum::Router::new().route(
            internal::STEP_UP,
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
            StepUpVerdict::Verified
        );
    }

    #[tokio::test]
    async fn a_local_lockout_keeps_its_retry_after() {
        let auth = axum::Router::new().route(
            internal::STEP_UP,
            post(|| async { (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "42")]) }),
        );
        assert_eq!(
            verify(&client_with_local_auth(auth)).await,
            StepUpVerdict::Refused {
                reason: Reason::LockedOut,
                session_expired: false,
                retry_after: Some(42),
            }
        );
    }

    #[tokio::test]
    async fn a_local_auth_slower_than_the_timeout_is_unavailable_at_the_timeout() {
        let auth = axum::Router::new().route(
            internal::STEP_UP,
            post(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                StatusCode::OK
            }),
        );
        let client = client_with_local_auth(auth);
        let started = std::time::Instant::now();
        assert_eq!(verify(&client).await, StepUpVerdict::Unavailable);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "gave up at the timeout, not after auth answered"
        );
    }
}

//! The synchronous step-up call to auth, bounded by a timeout.

use onlinebank_core::http::INTERNAL_HEADER;
use onlinebank_core::Reason;
use serde_json::json;
use std::time::Duration;
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
    auth_url: String,
    internal_token: String,
    timeout: Duration,
}

impl StepUpClient {
    pub fn new(
        http: reqwest::Client,
        auth_url: String,
        internal_token: String,
        timeout: Duration,
    ) -> Self {
        Self {
            http,
            auth_url,
            internal_token,
            timeout,
        }
    }

    pub async fn verify(
        &self,
        customer_id: &str,
        session_id: &str,
        password: &str,
        request_id: Uuid,
        action: &str,
    ) -> Verdict {
        let call = self
            .http
            .post(format!("{}/internal/v1/step-up", self.auth_url))
            .header(INTERNAL_HEADER, &self.internal_token)
            .timeout(self.timeout)
            .json(&json!({
                "customerId": customer_id,
                "sessionId": session_id,
                "password": password,
                "requestId": request_id,
                "action": action,
            }))
            .send();
        let response = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                tracing::warn!(request = %request_id, error = %error, "step-up call failed");
                return Verdict::Unavailable;
            }
            Err(_) => {
                tracing::warn!(request = %request_id, "step-up call timed out");
                return Verdict::Unavailable;
            }
        };
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok());
        match response.status().as_u16() {
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
}

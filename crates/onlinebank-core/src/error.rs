//! The one error type every HTTP handler returns, and its JSON shape:
//! `{"error":{"code":"...","message":"..."}}` plus, for a failed request, its `requestId`.
//!
//! Internal detail (database errors, I/O) goes to the log; the client only sees a code.

use crate::reason::Reason;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderValue, StatusCode};
use serde_json::json;
use uuid::Uuid;

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The request this error concerns, answered beside the error object.
    pub request_id: Option<Uuid>,
    /// Seconds after which the client may retry (sets `Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            request_id: None,
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::bad_request("invalid_request", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// The gateway lost its connection to a role after a write was sent: it may or may not have
    /// been applied. Retrying with the same Idempotency-Key is safe.
    pub fn outcome_unknown(status: StatusCode) -> Self {
        Self::new(
            status,
            "outcome_unknown",
            "the request may or may not have been applied; retry with the same Idempotency-Key \
             or look it up with GET /api/v1/requests",
        )
        .with_retry_after(1)
    }

    /// 503 `service_busy` with `Retry-After`: the customer should come back shortly.
    pub fn busy() -> Self {
        Self::from_reason(Reason::ServiceBusy)
    }

    /// 503 `storage_unavailable` with `Retry-After`: the disk is full or failing; nothing was
    /// written, and the role reports not ready until it can write again.
    pub fn storage_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "the bank cannot store anything right now, nothing was changed; please try again shortly",
        )
        .with_retry_after(5)
    }

    /// A 500 whose detail is logged, never answered.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error, the request may be retried",
        )
    }

    /// The answer for a failed request: what the customer is told ([`Reason::answered`]).
    pub fn from_reason(reason: Reason) -> Self {
        let reason = reason.answered();
        let mut error = Self::new(reason.status(), reason.code(), reason.message());
        if reason.is_transient() {
            error.retry_after = Some(1);
        }
        if reason == Reason::LockedOut {
            error.retry_after = Some(60);
        }
        error
    }

    pub fn with_request_id(mut self, request_id: Uuid) -> Self {
        self.request_id = Some(request_id);
        self
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The JSON body of this error.
    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({"error": {"code": self.code, "message": self.message}});
        if let Some(request_id) = self.request_id {
            body["requestId"] = json!(request_id);
        }
        body
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was never read: this connection cannot carry another call.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<crate::db::Error> for ApiError {
    fn from(error: crate::db::Error) -> Self {
        if error.is_storage_full() {
            tracing::warn!(error = %error, "storage unavailable");
            return Self::storage_unavailable();
        }
        if error.is_busy() {
            tracing::warn!(error = %error, "database busy");
            return Self::busy();
        }
        Self::internal(error)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        crate::db::Error::from(error).into()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        Self::internal(format!("{error:#}"))
    }
}

impl<E: Into<ApiError>> From<crate::db::GroupError<E>> for ApiError {
    fn from(error: crate::db::GroupError<E>) -> Self {
        match error {
            crate::db::GroupError::Job(error) => error.into(),
            crate::db::GroupError::Commit(error) if error.is_storage_full() => {
                Self::storage_unavailable()
            }
            crate::db::GroupError::Commit(error) if error.is_busy() => Self::busy(),
            crate::db::GroupError::Commit(error) => Self::internal(error),
            crate::db::GroupError::Closed => Self::busy(),
        }
    }
}

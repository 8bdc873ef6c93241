//! The one error type every HTTP handler returns, and its JSON shape:
//! `{"error":{"code":"...","message":"..."}}` plus, for a failed request, its `requestId`.
//!
//! Internal detail (database errors, I/O) goes to the log; the client only sees a code.

use crate::ids::RequestId;
use crate::money::Won;
use crate::reason::Reason;
use crate::reason::Refusal;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderValue, StatusCode};
use serde_json::json;

/// Every error code the HTTP API answers (docs/api.md's table): a failed request's [`Reason`]
/// (as [`Reason::answered`] tells it), or one of the protocol's own. No code is spelled anywhere
/// else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Why a request did not complete.
    Reason(Reason),
    /// Missing, unknown or malformed fields.
    InvalidRequest,
    MalformedJson,
    UnsupportedMediaType,
    PayloadTooLarge,
    /// A dot segment, an encoded slash or a non-UTF-8 path.
    InvalidPath,
    /// The body did not arrive in time.
    RequestTimeout,
    MethodNotAllowed,
    /// A method the bank serves on no route (501).
    NotImplemented,
    /// A request head over its limits: 16 KiB in all, 8 KiB a line, 100 fields (431).
    HeadersTooLarge,
    /// A request line (method and target) over 8 KiB (414).
    UriTooLong,
    /// A request whose framing breaks RFC 9112: a transfer coding other than `chunked`, two
    /// `Host` or `Content-Length` fields, line endings other than CRLF (400).
    InvalidFraming,
    /// No such route.
    NotFound,
    /// No valid bearer token (or legacy credentials).
    Unauthorized,
    /// An internal endpoint without the internal token.
    Forbidden,
    SessionExpired,
    InvalidCredentials,
    CustomerExists,
    IdempotencyKeyReused,
    IdempotencyKeyInFlight,
    /// The gateway lost a role's answer after sending a write.
    OutcomeUnknown,
    /// The disk is full or failing.
    StorageUnavailable,
    /// `GET /api/v1/requests/{id}` of a cancelled request.
    RequestCancelled,
    RequestNotFound,
    /// The process has not finished starting.
    Starting,
    Internal,
}

impl ErrorCode {
    /// The protocol's own codes (the reasons are [`Reason::ALL`]).
    pub const PROTOCOL: [ErrorCode; 25] = [
        ErrorCode::InvalidRequest,
        ErrorCode::MalformedJson,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::PayloadTooLarge,
        ErrorCode::InvalidPath,
        ErrorCode::RequestTimeout,
        ErrorCode::MethodNotAllowed,
        ErrorCode::NotImplemented,
        ErrorCode::HeadersTooLarge,
        ErrorCode::UriTooLong,
        ErrorCode::InvalidFraming,
        ErrorCode::NotFound,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::SessionExpired,
        ErrorCode::InvalidCredentials,
        ErrorCode::CustomerExists,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::IdempotencyKeyInFlight,
        ErrorCode::OutcomeUnknown,
        ErrorCode::StorageUnavailable,
        ErrorCode::RequestCancelled,
        ErrorCode::RequestNotFound,
        ErrorCode::Starting,
        ErrorCode::Internal,
    ];

    /// The code on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Reason(reason) => reason.code(),
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::NotImplemented => "not_implemented",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::UriTooLong => "uri_too_long",
            ErrorCode::InvalidFraming => "invalid_framing",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::SessionExpired => "session_expired",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::CustomerExists => "customer_exists",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::IdempotencyKeyInFlight => "idempotency_key_in_flight",
            ErrorCode::OutcomeUnknown => "outcome_unknown",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::RequestCancelled => "request_cancelled",
            ErrorCode::RequestNotFound => "request_not_found",
            ErrorCode::Starting => "starting",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl From<Reason> for ErrorCode {
    fn from(reason: Reason) -> Self {
        ErrorCode::Reason(reason)
    }
}

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// The request this error concerns, answered beside the error object.
    pub request_id: Option<RequestId>,
    /// Seconds after which the client may retry (sets `Retry-After`).
    pub retry_after: Option<u64>,
    /// For `daily_limit_exceeded`: the won that may still leave the account today, answered
    /// in the error object as `allowedToday`.
    pub allowed_today: Option<Won>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            request_id: None,
            retry_after: None,
            allowed_today: None,
        }
    }

    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::bad_request(ErrorCode::InvalidRequest, message)
    }

    /// 401 `session_expired`: the session behind the token ended (found at the step-up).
    pub fn session_expired() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::SessionExpired,
            "the session has ended, please log in again",
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "a valid bearer token is required",
        )
    }

    pub fn not_found(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// The gateway lost its connection to a role after a write was sent: it may or may not have
    /// been applied. Retrying with the same Idempotency-Key is safe.
    pub fn outcome_unknown(status: StatusCode) -> Self {
        Self::new(
            status,
            ErrorCode::OutcomeUnknown,
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
            ErrorCode::StorageUnavailable,
            "the bank cannot store anything right now, nothing was changed; please try again shortly",
        )
        .with_retry_after(5)
    }

    /// A 500 whose detail is logged, never answered.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error, the request may be retried",
        )
    }

    /// The answer for a failed request: what the customer is told ([`Reason::answered`]).
    pub fn from_reason(reason: Reason) -> Self {
        let reason = reason.answered();
        let mut error = Self::new(reason.status(), reason.into(), reason.message());
        if reason.is_transient() {
            error.retry_after = Some(1);
        }
        if reason == Reason::LockedOut {
            error.retry_after = Some(60);
        }
        error
    }

    /// The answer for a refused request, with what the customer can still do.
    pub fn from_refusal(refusal: Refusal) -> Self {
        let mut error = Self::from_reason(refusal.reason);
        if let Some(allowed) = refusal.allowed_today {
            error.message = format!(
                "{}: {} won may still leave it today",
                error.message,
                allowed.won()
            );
            error.allowed_today = Some(allowed);
        }
        error
    }

    pub fn with_request_id(mut self, request_id: RequestId) -> Self {
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
        let mut body = json!({"error": {"code": self.code.as_str(), "message": self.message}});
        if let Some(allowed) = self.allowed_today {
            body["error"]["allowedToday"] = json!(allowed);
        }
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

/// Calls refused for want of storage or for a busy database: a full disk refuses every write
/// for as long as it lasts, so these are logged once per period with a count, not once a call.
static REFUSED_FOR_STORAGE: std::sync::LazyLock<std::sync::Mutex<crate::log_limit::LogLimit>> =
    std::sync::LazyLock::new(|| {
        std::sync::Mutex::new(crate::log_limit::LogLimit::new(
            "storage unavailable: a call was refused",
            "storage available again",
            "http",
        ))
    });
static REFUSED_FOR_BUSY: std::sync::LazyLock<std::sync::Mutex<crate::log_limit::LogLimit>> =
    std::sync::LazyLock::new(|| {
        std::sync::Mutex::new(crate::log_limit::LogLimit::new(
            "database busy: a call was refused",
            "database free again",
            "http",
        ))
    });

fn note_refusal(
    limit: &std::sync::LazyLock<std::sync::Mutex<crate::log_limit::LogLimit>>,
    error: &crate::db::Error,
) {
    limit
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .failed(error);
}

impl From<crate::db::Error> for ApiError {
    fn from(error: crate::db::Error) -> Self {
        if error.is_storage_full() {
            note_refusal(&REFUSED_FOR_STORAGE, &error);
            return Self::storage_unavailable();
        }
        if error.is_busy() {
            note_refusal(&REFUSED_FOR_BUSY, &error);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code the API can answer, each once.
    fn every_code() -> Vec<ErrorCode> {
        let mut codes: Vec<ErrorCode> = ErrorCode::PROTOCOL.to_vec();
        for reason in Reason::ALL {
            let answered = ErrorCode::Reason(reason.answered());
            if !codes.contains(&answered) {
                codes.push(answered);
            }
        }
        codes
    }

    #[test]
    fn every_code_is_distinct_and_in_the_api_documentation() {
        let docs = include_str!("../../../docs/api.md");
        let mut seen = std::collections::HashSet::new();
        for code in every_code() {
            assert!(seen.insert(code.as_str()), "{code} twice");
            assert!(
                docs.contains(&format!("| `{code}` |")),
                "{code} is not in docs/api.md's table of error codes"
            );
        }
    }

    #[test]
    fn the_api_documentation_lists_no_code_the_api_cannot_answer() {
        let docs = include_str!("../../../docs/api.md");
        let known: Vec<&str> = every_code().into_iter().map(ErrorCode::as_str).collect();
        // The rows of the table of codes: "| `code` | status | when |".
        let documented: Vec<&str> = docs
            .lines()
            .filter_map(|line| line.strip_prefix("| `")?.split_once("` | ")?.0.into())
            .filter(|code| code.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .collect();
        assert!(documented.len() >= known.len(), "{documented:?}");
        for code in documented {
            assert!(
                known.contains(&code),
                "docs/api.md lists {code}, no ErrorCode answers it"
            );
        }
    }

    #[test]
    fn the_body_carries_the_code_on_the_wire() {
        let error = ApiError::from_reason(Reason::NotOwner);
        assert_eq!(error.code, "account_not_found");
        assert_eq!(error.body()["error"]["code"], "account_not_found");
        let busy = ApiError::busy();
        assert_eq!(busy.code, ErrorCode::Reason(Reason::ServiceBusy));
        assert_eq!(busy.retry_after, Some(1));
    }

    /// A daily-limit refusal answers the won still allowed today, in the message and as
    /// `allowedToday`; other refusals have no such field.
    #[test]
    fn a_daily_limit_refusal_says_what_is_left() {
        let allowed = Won::from_stored(400).unwrap();
        let error = ApiError::from_refusal(Refusal {
            reason: Reason::DailyLimitExceeded,
            allowed_today: Some(allowed),
        });
        let body = error.body();
        assert_eq!(error.status, StatusCode::CONFLICT);
        assert_eq!(body["error"]["code"], "daily_limit_exceeded");
        assert_eq!(body["error"]["allowedToday"], 400);
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("400 won"));
        let other = ApiError::from_refusal(Reason::InsufficientFunds.into()).body();
        assert!(other["error"].get("allowedToday").is_none(), "{other}");
    }
}

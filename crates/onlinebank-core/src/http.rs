//! HTTP plumbing every role shares: JSON bodies with clear errors, the bearer-token extractor,
//! the internal-call guard, health endpoints, the peer client and the server loop.

use crate::error::{ApiError, ErrorCode};
use crate::token::{Claims, TokenKey};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Largest request body any role accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Header carrying the internal token on role-to-role calls.
pub const INTERNAL_HEADER: &str = "x-onlinebank-internal";

/// A JSON body whose rejections become our error shape (400/413/415 with a code).
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "expected content-type: application/json",
        ),
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::bad_request(ErrorCode::MalformedJson, "the body is not valid JSON")
        }
        JsonRejection::JsonDataError(error) => {
            ApiError::validation(format!("invalid request body: {}", error.body_text()))
        }
        JsonRejection::BytesRejection(_) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            "the request body is too large",
        ),
        other => ApiError::bad_request(ErrorCode::InvalidRequest, other.body_text()),
    }
}

/// The verified bearer of a request: the customer and their session.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Claims);

impl Authenticated {
    pub fn customer_id(&self) -> &str {
        &self.0.sub
    }

    pub fn session_id(&self) -> &str {
        &self.0.sid
    }
}

/// Extracts the bearer token of a request, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl<S> FromRequestParts<S> for Authenticated
where
    TokenKey: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let key = TokenKey::from_ref(state);
        let token = bearer_token(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        key.verify(token, crate::time::now_ms())
            .map(Authenticated)
            .map_err(|_| ApiError::unauthorized())
    }
}

/// Middleware for `/internal` routes: the caller must present the shared internal token.
pub async fn require_internal(
    axum::extract::State(expected): axum::extract::State<Arc<str>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(INTERNAL_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let matches = crate::secret::verify_hmac_sha256(
        b"internal-compare",
        presented.as_bytes(),
        &crate::secret::hmac_sha256(b"internal-compare", expected.as_bytes()),
    );
    if !matches {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "internal endpoint",
        )
        .into_response();
    }
    next.run(request).await
}

/// Refuses calls beyond `limit` at once with 503 `service_busy` instead of queueing them.
pub async fn shed(
    axum::extract::State((role, limit)): axum::extract::State<(
        &'static str,
        Arc<tokio::sync::Semaphore>,
    )>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = limit.try_acquire() else {
        metrics::counter!("onlinebank_shed_total", "role" => role).increment(1);
        return ApiError::busy().into_response();
    };
    next.run(request).await
}

/// Whether a role is ready to serve: false while starting and once draining.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A role's own readiness check (database and bus reachable).
pub type ReadyCheck = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> + Send + Sync,
>;

/// The liveness route every role's listener serves.
pub const HEALTH_LIVE: &str = "/health/live";
/// The readiness route every role's listener serves.
pub const HEALTH_READY: &str = "/health/ready";

/// `/health/live` (the runtime answers) and `/health/ready` (started, not draining, and the
/// role's own check passes within a second) for a role.
pub fn health_router(role: &'static str, readiness: Readiness, check: ReadyCheck) -> Router {
    Router::new()
        .route(
            HEALTH_LIVE,
            get(move || async move { Json(json!({"status": "live", "role": role})) }),
        )
        .route(
            HEALTH_READY,
            get(move || {
                let readiness = readiness.clone();
                let check = check.clone();
                async move {
                    let healthy = readiness.is_ready()
                        && tokio::time::timeout(Duration::from_secs(1), check())
                            .await
                            .unwrap_or(false);
                    if healthy {
                        (
                            StatusCode::OK,
                            Json(json!({"status": "ready", "role": role})),
                        )
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            Json(json!({"status": "not_ready", "role": role})),
                        )
                    }
                }
            }),
        )
}

/// A list's `limit` query parameter: 1 to 100, default 20.
pub fn page_limit(raw: Option<&str>) -> Result<i64, ApiError> {
    match raw {
        None => Ok(20),
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|limit| (1..=100).contains(limit))
            .ok_or_else(|| ApiError::validation("limit must be an integer from 1 to 100")),
    }
}

/// The answer for routes that do not exist.
pub async fn not_found() -> ApiError {
    ApiError::not_found(ErrorCode::NotFound, "no such route")
}

/// One pooled HTTP client for role-to-role calls (keep-alive, no per-request connection setup).
pub fn peer_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(256)
        // Shorter than any role's idle timeout, so a pooled connection is never one the peer is
        // closing at that moment.
        .pool_idle_timeout(Duration::from_secs(4))
        .tcp_nodelay(true)
        .build()?)
}

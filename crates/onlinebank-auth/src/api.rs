//! auth's HTTP handlers.

use crate::password::{hash_password, verify_against_dummy, verify_password};
use crate::store::{self, Inserted};
use crate::AuthState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{middleware, Json, Router};
use onlinebank_core::http::{require_internal, JsonBody};
use onlinebank_core::ids::CustomerId;
use onlinebank_core::time::{ms_to_rfc3339, now_ms};
use onlinebank_core::token::Claims;
use onlinebank_core::{ApiError, Reason};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub(crate) fn router(state: AuthState) -> Router {
    let internal_token: Arc<str> = state.settings.internal_token().into();
    let internal = Router::new()
        .route("/internal/v1/step-up", post(step_up))
        .route_layer(middleware::from_fn_with_state(
            internal_token,
            require_internal,
        ));
    Router::new()
        .route("/api/v1/customers", post(register))
        .route("/api/v1/sessions", post(login))
        .merge(internal)
        .with_state(state)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RegisterBody {
    user_id: String,
    name: String,
    password: String,
}

fn check_password_shape(password: &str) -> Result<(), ApiError> {
    let length = password.chars().count();
    if !(4..=128).contains(&length) {
        return Err(ApiError::validation("password must be 4 to 128 characters"));
    }
    Ok(())
}

/// Runs argon2 work on the blocking pool, at most one job per core at a time.
async fn argon2_job<T: Send + 'static>(
    state: &AuthState,
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let _slot = tokio::time::timeout(Duration::from_secs(2), state.argon2_slots.acquire())
        .await
        .map_err(|_| ApiError::busy())?
        .map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(job)
        .await
        .map_err(ApiError::internal)
}

async fn register(
    State(state): State<AuthState>,
    JsonBody(body): JsonBody<RegisterBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let user_id = CustomerId::parse(&body.user_id)
        .map_err(|error| ApiError::validation(error.to_string()))?;
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::validation("name must be 1 to 100 characters"));
    }
    check_password_shape(&body.password)?;
    let password = body.password;
    let hash = argon2_job(&state, move || hash_password(&password)).await??;
    match store::insert_customer(&state.db.write, user_id.as_str(), &name, &hash).await? {
        Inserted::Yes => {
            tracing::info!(customer = %user_id, "customer registered");
            Ok((
                StatusCode::CREATED,
                Json(
                    json!({"userId": user_id, "name": name, "createdAt": ms_to_rfc3339(now_ms())}),
                ),
            ))
        }
        Inserted::AlreadyExists => Err(ApiError::new(
            StatusCode::CONFLICT,
            "customer_exists",
            "a customer with this user id already exists",
        )),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LoginBody {
    user_id: String,
    password: String,
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "user id or password is wrong",
    )
}

fn locked_out(locked_until: i64, now: i64) -> ApiError {
    let seconds = u64::try_from((locked_until - now) / 1000 + 1).unwrap_or(1);
    ApiError::from_reason(Reason::LockedOut).with_retry_after(seconds)
}

async fn login(
    State(state): State<AuthState>,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Json<Value>, ApiError> {
    let Some(customer) = store::customer(&state.db.read, &body.user_id).await? else {
        let password = body.password;
        argon2_job(&state, move || verify_against_dummy(&password)).await?;
        return Err(invalid_credentials());
    };
    let now = now_ms();
    if customer.locked_until > now {
        return Err(locked_out(customer.locked_until, now));
    }
    let password = body.password.clone();
    let phc = customer.password_hash.clone();
    let valid = argon2_job(&state, move || verify_password(&password, &phc)).await?;
    if !valid {
        let lock_until = now + millis(state.settings.lockout_duration);
        let threshold = i64::from(state.settings.lockout_threshold);
        if store::record_failure(&state.db.write, &customer.user_id, threshold, lock_until).await? {
            tracing::warn!(customer = %customer.user_id, "customer locked out after failed logins");
        }
        return Err(invalid_credentials());
    }
    if customer.failed_attempts > 0 {
        store::reset_failures(&state.db.write, &customer.user_id).await?;
    }
    let session_id = uuid::Uuid::new_v4().to_string();
    let expires_at = now + millis(state.settings.token_ttl);
    let verifier = state.step_up.verifier(&session_id, &body.password);
    store::insert_session(
        &state.db.write,
        &session_id,
        &customer.user_id,
        &verifier,
        now,
        expires_at,
    )
    .await?;
    let token = state.token_key.sign(&Claims {
        sub: customer.user_id.clone(),
        sid: session_id,
        iat: now,
        exp: expires_at,
    });
    tracing::info!(customer = %customer.user_id, "session opened");
    Ok(Json(json!({
        "token": token,
        "expiresAt": ms_to_rfc3339(expires_at),
        "userId": customer.user_id,
        "name": customer.name,
    })))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StepUpBody {
    customer_id: String,
    session_id: String,
    password: String,
    request_id: String,
    action: String,
}

/// Verifies a step-up password against the caller's session, records the verification and
/// answers. The request role acts only on an OK that arrives within its timeout.
async fn step_up(
    State(state): State<AuthState>,
    JsonBody(body): JsonBody<StepUpBody>,
) -> Result<Json<Value>, ApiError> {
    let now = now_ms();
    let session = store::session(&state.db.read, &body.session_id)
        .await?
        .filter(|session| session.user_id == body.customer_id && session.expires_at > now)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "session_expired",
                "the session has ended, please log in again",
            )
        })?;
    let customer = store::customer(&state.db.read, &body.customer_id)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    let audit = |outcome: &'static str| {
        store::audit_step_up(
            &state.db.write,
            &body.request_id,
            &body.customer_id,
            &body.session_id,
            &body.action,
            outcome,
        )
    };
    if customer.locked_until > now {
        audit("locked_out").await?;
        return Err(locked_out(customer.locked_until, now));
    }
    if !state
        .step_up
        .check(&body.session_id, &body.password, &session.verifier)
    {
        let lock_until = now + millis(state.settings.lockout_duration);
        let threshold = i64::from(state.settings.lockout_threshold);
        if store::record_failure(&state.db.write, &customer.user_id, threshold, lock_until).await? {
            tracing::warn!(customer = %customer.user_id, "customer locked out after failed step-ups");
        }
        audit("failed").await?;
        return Err(ApiError::from_reason(Reason::StepUpFailed));
    }
    if customer.failed_attempts > 0 {
        store::reset_failures(&state.db.write, &customer.user_id).await?;
    }
    audit("verified").await?;
    Ok(Json(json!({"verified": true})))
}

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
    match store::insert_customer(&state.db, user_id.as_str(), &name, &hash).await? {
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
    let Some(customer) = store::customer(&state.db, &body.user_id).await? else {
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
        if record_attempt(&state, &customer.user_id, Attempt::Failed, None).await? {
            tracing::warn!(customer = %customer.user_id, "customer locked out after failed logins");
        }
        return Err(invalid_credentials());
    }
    if customer.failed_attempts > 0 {
        record_attempt(
            &state,
            &customer.user_id,
            Attempt::Succeeded { had_failures: true },
            None,
        )
        .await?;
    }
    let session_id = uuid::Uuid::new_v4().to_string();
    let expires_at = now + millis(state.settings.token_ttl);
    let verifier = state.step_up.verifier(&session_id, &body.password);
    store::insert_session(
        &state.db,
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
    let session = store::session(&state.db, &body.session_id)
        .await?
        .filter(|session| session.user_id == body.customer_id && session.expires_at > now)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "session_expired",
                "the session has ended, please log in again",
            )
        })?;
    let customer = store::customer(&state.db, &body.customer_id)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    let audit = Audit {
        request_id: body.request_id.clone(),
        session_id: body.session_id.clone(),
        action: body.action.clone(),
    };
    if customer.locked_until > now {
        record_attempt(&state, &customer.user_id, Attempt::WhileLocked, Some(audit)).await?;
        return Err(locked_out(customer.locked_until, now));
    }
    if !state
        .step_up
        .check(&body.session_id, &body.password, &session.verifier)
    {
        if record_attempt(&state, &customer.user_id, Attempt::Failed, Some(audit)).await? {
            tracing::warn!(customer = %customer.user_id, "customer locked out after failed step-ups");
        }
        return Err(ApiError::from_reason(Reason::StepUpFailed));
    }
    let had_failures = customer.failed_attempts > 0;
    record_attempt(
        &state,
        &customer.user_id,
        Attempt::Succeeded { had_failures },
        Some(audit),
    )
    .await?;
    Ok(Json(json!({"verified": true})))
}

/// How a login or step-up attempt went, for the lockout count and the audit.
#[derive(Debug, Clone, Copy)]
enum Attempt {
    Succeeded { had_failures: bool },
    Failed,
    WhileLocked,
}

/// The step-up being audited.
struct Audit {
    request_id: String,
    session_id: String,
    action: String,
}

/// Records an attempt (lockout count, and the step-up audit if any) through group commit, so
/// concurrent step-ups share one fsync. Returns whether this attempt locked the customer.
async fn record_attempt(
    state: &AuthState,
    user_id: &str,
    attempt: Attempt,
    audit: Option<Audit>,
) -> Result<bool, ApiError> {
    let user_id = user_id.to_owned();
    let threshold = i64::from(state.settings.lockout_threshold);
    let lock_until = now_ms() + millis(state.settings.lockout_duration);
    let locked = state
        .db
        .write(move |mut conn| async move {
            let result = async {
                let (locked, outcome) = match attempt {
                    Attempt::Failed => (
                        store::record_failure(&mut conn, &user_id, threshold, lock_until).await?,
                        "failed",
                    ),
                    Attempt::Succeeded { had_failures } => {
                        if had_failures {
                            store::reset_failures(&mut conn, &user_id).await?;
                        }
                        (false, "verified")
                    }
                    Attempt::WhileLocked => (false, "locked_out"),
                };
                if let Some(audit) = &audit {
                    store::audit_step_up(
                        &mut conn,
                        &audit.request_id,
                        &user_id,
                        &audit.session_id,
                        &audit.action,
                        outcome,
                    )
                    .await?;
                }
                Ok::<bool, onlinebank_core::db::Error>(locked)
            }
            .await;
            (conn, result)
        })
        .await?;
    Ok(locked)
}

//! auth's HTTP handlers.

use crate::lockout::{admit, Attempt, Decision, LockoutRule};
use crate::password::{hash_password, verify_against_dummy, verify_password, StepUpCheck};
use crate::store::{self, Inserted};
use crate::AuthState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{middleware, Json, Router};
use onlinebank_core::http::{require_internal, Authenticated, JsonBody};
use onlinebank_core::ids::CustomerId;
use onlinebank_core::internal::{
    self, LegacySessionAnswer, LegacySessionRequest, RevokedPage, RevokedQuery, RevokedSession,
    StepUpAnswer, StepUpRequest,
};
use onlinebank_core::time::{ms_to_rfc3339, now_ms};
use onlinebank_core::token::Claims;
use onlinebank_core::{ApiError, ErrorCode, Reason};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub(crate) fn router(state: AuthState) -> Router {
    let internal_token: Arc<str> = state.settings.internal_token().into();
    let internal = Router::new()
        .route(internal::STEP_UP, post(step_up))
        .route(internal::SESSIONS_REVOKED, get(revoked))
        .route(internal::LEGACY_SESSIONS, post(legacy_login))
        .route_layer(middleware::from_fn_with_state(
            internal_token,
            require_internal,
        ));
    Router::new()
        .route("/api/v1/customers", post(register))
        .route("/api/v1/sessions", post(login))
        .route("/api/v1/sessions/current", delete(logout))
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

/// Runs argon2 work on the blocking pool on its own budget: a bounded queue, a bounded wait, and
/// at most half the cores at a time.
async fn argon2_job<T: Send + 'static>(
    state: &AuthState,
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let Ok(_waiting) = state.argon2_queue.try_acquire() else {
        metrics::counter!("onlinebank_shed_total", "role" => "auth", "why" => "argon2")
            .increment(1);
        return Err(ApiError::busy());
    };
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
            ErrorCode::CustomerExists,
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
        ErrorCode::InvalidCredentials,
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
    // One login per id at a time: a burst of guesses is refused from the stored lock once it is
    // reached, without hashing. Known and unknown ids take exactly the same path.
    let turn = state.login_turns.take(&body.user_id).await;
    let opened = full_login(&state, body.user_id, &body.password, turn).await?;
    Ok(Json(json!({
        "token": opened.token,
        "expiresAt": ms_to_rfc3339(opened.expires_at),
        "userId": opened.customer.user_id,
        "name": opened.customer.name,
    })))
}

/// `POST /internal/v1/legacy-sessions` (the gateway, for credentials in a legacy request): the
/// token of the last session these credentials opened while they are remembered (see
/// [`crate::legacy`]), else a full login. The lockout is read on every call.
async fn legacy_login(
    State(state): State<AuthState>,
    JsonBody(body): JsonBody<LegacySessionRequest>,
) -> Result<Json<LegacySessionAnswer>, ApiError> {
    let user_id = body.user_id;
    if let Some(token) = remembered(&state, &user_id, &body.password).await? {
        return Ok(Json(LegacySessionAnswer { token }));
    }
    // Concurrent first requests of one customer queue here; the first one's check is then
    // remembered for the others (one argon2id, not one each).
    let turn = state.login_turns.take(&user_id).await;
    if let Some(token) = remembered(&state, &user_id, &body.password).await? {
        return Ok(Json(LegacySessionAnswer { token }));
    }
    metrics::counter!("onlinebank_legacy_logins_total", "how" => "argon2").increment(1);
    let opened = match full_login(&state, user_id.clone(), &body.password, turn).await {
        Ok(opened) => opened,
        Err(error) => {
            state.legacy.forget(&user_id);
            return Err(error);
        }
    };
    state.legacy.remember(
        &opened.customer.user_id,
        &opened.customer.password_hash,
        &body.password,
        opened.token.clone(),
        opened.expires_at,
        now_ms(),
    );
    Ok(Json(LegacySessionAnswer {
        token: opened.token,
    }))
}

/// The remembered token of these credentials, if any; `locked_out` if the id is locked. Reads
/// the stored hash, the lock and the failure count every time (see [`crate::legacy`]).
async fn remembered(
    state: &AuthState,
    user_id: &str,
    password: &str,
) -> Result<Option<String>, ApiError> {
    if CustomerId::parse(user_id).is_err() {
        return Ok(None);
    }
    let now = now_ms();
    let Some((phc, locked_until, failures)) = store::credentials(&state.db, user_id).await? else {
        return Ok(None);
    };
    if let Err(locked_until) = admit(locked_until, now) {
        state.legacy.forget(user_id);
        return Err(locked_out(locked_until, now));
    }
    // With failures counted, a right password must reset the count as a login does: the full
    // path records it.
    if failures > 0 {
        return Ok(None);
    }
    let token = state.legacy.token(user_id, &phc, password, now);
    if token.is_some() {
        metrics::counter!("onlinebank_legacy_logins_total", "how" => "remembered").increment(1);
    }
    Ok(token)
}

/// A session opened by a full login.
struct Opened {
    token: String,
    expires_at: i64,
    customer: store::CustomerRow,
}

/// The full login: lockout, argon2id (or the same work for an unknown id), the attempt counted,
/// a new session.
async fn full_login(
    state: &AuthState,
    user_id: String,
    password: &str,
    _turn: crate::turns::Turn,
) -> Result<Opened, ApiError> {
    if CustomerId::parse(&user_id).is_err() {
        // No customer can have this id; the same work and answer as any wrong password.
        let password = password.to_owned();
        argon2_job(state, move || verify_against_dummy(&password)).await?;
        return Err(invalid_credentials());
    }
    let now = now_ms();
    if let Err(locked_until) = admit(store::locked_until(&state.db, &user_id).await?, now) {
        return Err(locked_out(locked_until, now));
    }
    let customer = store::customer(&state.db, &user_id).await?;
    let plain = password;
    let password = password.to_owned();
    let phc = customer
        .as_ref()
        .map(|customer| customer.password_hash.clone());
    let valid = argon2_job(state, move || match phc {
        Some(phc) => verify_password(&password, &phc),
        None => {
            verify_against_dummy(&password);
            false
        }
    })
    .await?;
    let Some(customer) = customer.filter(|_| valid) else {
        return match record_attempt(state, &user_id, Attempt::Failed, None).await? {
            Decision::Locked(until) => Err(locked_out(until, now_ms())),
            Decision::Refused { locked_now } => {
                if locked_now {
                    tracing::warn!(user = %user_id, "locked out after failed logins");
                }
                Err(invalid_credentials())
            }
            Decision::Accepted => Err(invalid_credentials()),
        };
    };
    let session_id = uuid::Uuid::new_v4().to_string();
    let now = now_ms();
    let expires_at = now + millis(state.settings.auth.token_ttl);
    let verifier = state.step_up.verifier(&session_id, plain);
    let session = store::NewSession {
        session_id: &session_id,
        user_id: &customer.user_id,
        verifier: &verifier,
        expires_at,
    };
    if let Err(locked_until) =
        store::open_session(&state.db, session, lockout_rule(state), now).await?
    {
        return Err(locked_out(locked_until, now));
    }
    let token = state.token_key.sign(&Claims {
        sub: customer.user_id.clone(),
        sid: session_id,
        iat: now,
        exp: expires_at,
    });
    tracing::info!(customer = %customer.user_id, "session opened");
    Ok(Opened {
        token,
        expires_at,
        customer,
    })
}

/// `DELETE /api/v1/sessions/current`: ends the caller's session. Step-ups with it fail at once;
/// the gateway refuses its token within its revocation poll (see docs/api.md).
async fn logout(
    State(state): State<AuthState>,
    caller: Authenticated,
) -> Result<StatusCode, ApiError> {
    let revoked =
        store::revoke_session(&state.db, caller.session_id(), caller.customer_id()).await?;
    if revoked {
        tracing::info!(customer = %caller.customer_id(), "session ended");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Sessions revoked since `since` (epoch ms), for the gateway's token check.
async fn revoked(
    State(state): State<AuthState>,
    axum::extract::Query(query): axum::extract::Query<RevokedQuery>,
) -> Result<Json<RevokedPage>, ApiError> {
    let now = now_ms();
    // The gateway reads a full page as "there are more" (its PAGE_SIZE is the same 1000).
    let items = store::revoked_since(&state.db, query.since.unwrap_or(0), now, 1000)
        .await?
        .into_iter()
        .map(|revoked| RevokedSession {
            session_id: revoked.session_id,
            revoked_at: revoked.revoked_at,
            expires_at: revoked.expires_at,
        })
        .collect();
    Ok(Json(RevokedPage { items, now }))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Verifies a step-up password against the caller's session, records the verification and
/// answers. The request role acts only on an OK that arrives within its timeout.
async fn step_up(
    State(state): State<AuthState>,
    JsonBody(body): JsonBody<StepUpRequest>,
) -> Result<Json<StepUpAnswer>, ApiError> {
    let now = now_ms();
    let session = store::session(&state.db, &body.session_id)
        .await?
        .filter(|session| session.user_id == body.customer_id.as_str() && session.expires_at > now)
        .ok_or_else(ApiError::session_expired)?;
    let mut audit = Audit {
        request_id: body.request_id.to_string(),
        session_id: body.session_id.clone(),
        action: body.action.as_str().to_owned(),
        new_verifier: None,
    };
    let user_id = session.user_id;
    if let Err(locked_until) = admit(session.locked_until, now) {
        let attempt = Attempt::WhileLocked(locked_until);
        record_attempt(&state, &user_id, attempt, Some(audit)).await?;
        return Err(locked_out(locked_until, now));
    }
    // Held until the attempt is recorded, when argon2id decides (see `recheck_with_argon2`).
    let mut _turn = None;
    let attempt = match state
        .step_up
        .check(&body.session_id, &body.password, &session.verifier)
    {
        StepUpCheck::Matches => Attempt::Succeeded,
        StepUpCheck::Wrong => Attempt::Failed,
        StepUpCheck::OtherPepper => {
            let (rechecked, turn) =
                recheck_with_argon2(&state, &user_id, &body.session_id, &body.password).await?;
            _turn = Some(turn);
            match rechecked {
                Rechecked::Right(new_verifier) => {
                    audit.new_verifier = new_verifier;
                    Attempt::Succeeded
                }
                Rechecked::Wrong => Attempt::Failed,
                Rechecked::Locked(until) => {
                    let attempt = Attempt::WhileLocked(until);
                    record_attempt(&state, &user_id, attempt, Some(audit)).await?;
                    return Err(locked_out(until, now_ms()));
                }
            }
        }
    };
    match record_attempt(&state, &user_id, attempt, Some(audit)).await? {
        Decision::Accepted => Ok(Json(StepUpAnswer { verified: true })),
        Decision::Refused { locked_now } => {
            if locked_now {
                tracing::warn!(customer = %user_id, "customer locked out after failed step-ups");
            }
            Err(ApiError::from_reason(Reason::StepUpFailed))
        }
        Decision::Locked(until) => Err(locked_out(until, now_ms())),
    }
}

/// How argon2id judged a step-up password the session's verifier could not.
enum Rechecked {
    /// The right password; the session's verifier under this process's pepper, when argon2id
    /// decided (`None`: a concurrent step-up had already rekeyed the session).
    Right(Option<Vec<u8>>),
    /// A wrong password.
    Wrong,
    /// The id is locked until then; no argon2id was spent.
    Locked(i64),
}

/// Checks a step-up password with argon2id against the customer's stored hash, for a session
/// whose verifier was made under another pepper (see [`crate::password`]).
///
/// It takes the id's login turn (returned: hold it until the attempt is recorded) and reads the
/// lock again once it has it, as a login does: concurrent step-ups and logins of one id are
/// evaluated one at a time and stop at the lock, so wrong passwords cost at most the lockout
/// threshold's worth of argon2id per id and window.
async fn recheck_with_argon2(
    state: &AuthState,
    user_id: &str,
    session_id: &str,
    password: &str,
) -> Result<(Rechecked, crate::turns::Turn), ApiError> {
    let turn = state.login_turns.take(user_id).await;
    let now = now_ms();
    // Read again with the turn: the session and the lock as the attempt before this one left
    // them. A concurrent step-up of the same session may have rekeyed it meanwhile; then the
    // HMAC decides, and argon2id runs once per session, not once per waiting step-up.
    let session = store::session(&state.db, session_id)
        .await?
        .ok_or_else(ApiError::session_expired)?;
    if let Err(locked_until) = admit(session.locked_until, now) {
        return Ok((Rechecked::Locked(locked_until), turn));
    }
    match state.step_up.check(session_id, password, &session.verifier) {
        StepUpCheck::Matches => return Ok((Rechecked::Right(None), turn)),
        StepUpCheck::Wrong => return Ok((Rechecked::Wrong, turn)),
        StepUpCheck::OtherPepper => {}
    }
    let Some(customer) = store::customer(&state.db, user_id).await? else {
        return Ok((Rechecked::Wrong, turn));
    };
    let candidate = password.to_owned();
    let valid = argon2_job(state, move || {
        verify_password(&candidate, &customer.password_hash)
    })
    .await?;
    metrics::counter!("onlinebank_step_up_rechecks_total", "valid" => if valid { "yes" } else { "no" })
        .increment(1);
    let rechecked = if valid {
        Rechecked::Right(Some(state.step_up.verifier(session_id, password)))
    } else {
        Rechecked::Wrong
    };
    Ok((rechecked, turn))
}

/// The step-up being audited.
pub struct Audit {
    pub request_id: String,
    pub session_id: String,
    pub action: String,
    /// The session's verifier under this process's pepper, when argon2id just accepted the
    /// password for a verifier made under another: written in the same write, if accepted.
    pub new_verifier: Option<Vec<u8>>,
}

/// The lockout rule of the settings.
fn lockout_rule(state: &AuthState) -> LockoutRule {
    LockoutRule {
        threshold: i64::from(state.settings.auth.lockout.threshold),
        window: millis(state.settings.auth.lockout.duration),
    }
}

/// Records an attempt (lockout count, and the step-up audit if any) through group commit, so
/// concurrent step-ups share one fsync, and decides its answer in the same write (see
/// [`crate::lockout::decide`]): a failure counts only while the id is not locked, a success is
/// accepted only while it is not locked.
async fn record_attempt(
    state: &AuthState,
    user_id: &str,
    attempt: Attempt,
    audit: Option<Audit>,
) -> Result<Decision, ApiError> {
    let user_id = user_id.to_owned();
    let now = now_ms();
    let rule = lockout_rule(state);
    let decision = state
        .db
        .write(move |conn| {
            Box::pin(async move {
                record_attempt_on(conn, &user_id, attempt, audit.as_ref(), rule, now).await
            })
        })
        .await?;
    Ok(decision)
}

/// [`record_attempt`]'s write: the attempt decided on the id's lockout record read in this
/// write, the record and the audit written with it.
pub async fn record_attempt_on(
    conn: &mut onlinebank_core::db::Conn,
    user_id: &str,
    attempt: Attempt,
    audit: Option<&Audit>,
    rule: LockoutRule,
    now: i64,
) -> Result<Decision, onlinebank_core::db::Error> {
    let decision = match attempt {
        Attempt::Failed => store::record_failure(conn, user_id, rule, now).await?,
        Attempt::Succeeded | Attempt::WhileLocked(_) => {
            store::decide_attempt(conn, user_id, attempt, rule, now).await?
        }
    };
    if let Some(audit) = audit {
        write_audit(conn, user_id, audit, decision).await?;
    }
    Ok(decision)
}

/// Writes a step-up's audit, and the session's new verifier if it was accepted with one, in the
/// caller's write.
async fn write_audit(
    conn: &mut onlinebank_core::db::Conn,
    user_id: &str,
    audit: &Audit,
    decision: Decision,
) -> Result<(), onlinebank_core::db::Error> {
    if let (Decision::Accepted, Some(verifier)) = (decision, &audit.new_verifier) {
        store::replace_verifier(conn, &audit.session_id, verifier).await?;
    }
    let outcome = match decision {
        Decision::Accepted => "verified",
        Decision::Refused { .. } => "failed",
        Decision::Locked(_) => "locked_out",
    };
    store::audit_step_up(
        conn,
        &audit.request_id,
        user_id,
        &audit.session_id,
        &audit.action,
        outcome,
    )
    .await
}

//! The auth role: customers, their argon2id password hashes, sessions and tokens, step-up
//! verification with its audit, and lockout after repeated failures.
//!
//! Public API (through the gateway): `POST /api/v1/customers`, `POST /api/v1/sessions`,
//! `DELETE /api/v1/sessions/current`.
//! Internal API: `POST /internal/v1/step-up` (request), `GET /internal/v1/sessions/revoked`
//! and `POST /internal/v1/legacy-sessions` (gateway).

mod api;

/// The parts of the auth role the deterministic simulator (`onlinebank-sim`) runs as they are:
/// opening a session, the step-up's read, its HMAC check and its deciding write (lockout and
/// audit), on a connection.
pub mod sim {
    pub use crate::api::{record_attempt_on, Audit};
    pub use crate::lockout::{admit, Attempt, Decision, LockoutRule};
    pub use crate::password::{StepUpCheck, StepUpKeys};
    pub use crate::store::{open_session_on, session_on, NewSession, SessionRow};
}
pub mod legacy;
mod lockout;
pub mod password;
mod store;
mod turns;

use axum::extract::FromRef;
use onlinebank_core::token::TokenKey;
use onlinebank_core::{RoleContext, Settings};
use password::StepUpKeys;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Shared state of the auth handlers.
#[derive(Clone)]
pub(crate) struct AuthState {
    db: onlinebank_core::db::Db,
    settings: Arc<Settings>,
    token_key: TokenKey,
    step_up: StepUpKeys,
    /// argon2 work (sign-up, login, unknown ids' dummy check) at once: half the cores, so
    /// strangers' logins can never take the CPU that customers' money requests need.
    argon2_slots: Arc<Semaphore>,
    /// argon2 jobs waiting for a slot at once; beyond, an immediate 503.
    argon2_queue: Arc<Semaphore>,
    /// One login at a time per user id (see [`turns`]).
    login_turns: Arc<turns::Turns>,
    /// Legacy credentials that recently passed argon2id (see [`legacy`]).
    legacy: Arc<legacy::LegacyVerifiers>,
}

impl FromRef<AuthState> for TokenKey {
    fn from_ref(state: &AuthState) -> Self {
        state.token_key.clone()
    }
}

/// argon2 jobs that may wait for a slot at once (each waits at most two seconds).
const ARGON2_QUEUE: usize = 64;

/// Opens auth's database, applies migrations and returns its router.
pub async fn build(ctx: &RoleContext) -> anyhow::Result<onlinebank_core::RoleParts> {
    let settings = ctx.settings.clone();
    let db = ctx
        .open_db(onlinebank_core::Role::Auth, &migrations())
        .await?;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let state = AuthState {
        db: db.clone(),
        token_key: settings.token_key(),
        step_up: step_up_keys(&settings),
        settings,
        argon2_slots: Arc::new(Semaphore::new((cores / 2).max(1))),
        argon2_queue: Arc::new(Semaphore::new(ARGON2_QUEUE)),
        login_turns: Arc::default(),
        legacy: Arc::default(),
    };
    Ok(onlinebank_core::RoleParts {
        router: api::router(state),
        db: Some(db),
    })
}

/// The step-up keys: made per process when the secret sits in the data directory, so that a copy
/// of it holds nothing to test guesses against faster than argon2id; derived from the secret when
/// it is given from outside (`--token-secret`), so that replicas check each other's sessions.
fn step_up_keys(settings: &Settings) -> StepUpKeys {
    if settings.secret_on_disk {
        StepUpKeys::per_process()
    } else {
        StepUpKeys::derived(settings.secret.derive("onlinebank step-up v1"))
    }
}

/// Creates a customer unless it exists (for `up --demo`). Returns whether it was created.
pub async fn ensure_customer(
    settings: &Settings,
    user_id: &str,
    name: &str,
    password: &str,
) -> anyhow::Result<bool> {
    let db =
        onlinebank_core::db::Db::open(&settings.database_url(onlinebank_core::Role::Auth), "auth")
            .await?;
    db.migrate(&migrations()).await?;
    let password = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || password::hash_password(&password)).await??;
    let outcome = store::insert_customer(&db, user_id, name, &hash).await?;
    Ok(outcome == store::Inserted::Yes)
}

/// auth's migrations, for each engine (see [`onlinebank_core::db::migrate`]).
pub fn migrations() -> onlinebank_core::db::Migrations {
    onlinebank_core::expand_migrations![
        (1, "init", "0001_init.sql"),
        (
            2,
            "lockouts and revocations",
            "0002_lockouts_and_revocations.sql"
        ),
    ]
}

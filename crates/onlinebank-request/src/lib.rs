//! The request role: the customers' requests and the saga that carries them out.
//!
//! `POST /api/v1/requests` validates, applies the Idempotency-Key, stores the request PENDING,
//! and runs the [`saga`]: step-up with auth (timeout), then AUTHORIZED + AuthCertified in one
//! transaction, then a bounded wait for the account's outcome. The [`outcomes`] consumer
//! completes requests (COMPLETED with the balance after) or compensates them (deleted, reason
//! kept), and a sweeper compensates requests whose step-up was cut short by a crash.

mod api;
mod breaker;
mod outcomes;
mod saga;
mod stepup;
mod store;
mod waiters;

use axum::extract::FromRef;
use onlinebank_bus::outbox::Relay;
use onlinebank_bus::wiring::Wiring;
use onlinebank_bus::Bus;
use onlinebank_core::token::TokenKey;
use onlinebank_core::{Role, RoleContext, Settings};
use std::sync::Arc;
use std::time::Duration;

/// The parts of the request role the deterministic simulator (`onlinebank-sim`) runs as they are:
/// the record (key and request), the saga's writes, the outcome consumer and the sweeper's read
/// and write, on a connection.
pub mod sim {
    pub use crate::api::record;
    pub use crate::outcomes::{interrupt_on, projection, sweep_grace};
    pub use crate::saga::{certify_on, refuse_on};
    pub use crate::store::{
        cancel, insert_pending, stale_pending_on, standing_on, Compensation, KeyClaim, RequestRow,
        RequestStatus, Standing,
    };
}

#[derive(Clone)]
pub(crate) struct RequestState {
    db: onlinebank_core::db::Db,
    settings: Arc<Settings>,
    token_key: TokenKey,
    step_up: stepup::StepUpClient,
    relay: Relay,
    waiters: waiters::Waiters,
}

impl FromRef<RequestState> for TokenKey {
    fn from_ref(state: &RequestState) -> Self {
        state.token_key.clone()
    }
}

pub async fn build(ctx: &RoleContext, bus: &Bus) -> anyhow::Result<onlinebank_core::RoleParts> {
    let settings = ctx.settings.clone();
    // Every auth instance given (`--auth-url A,B`): step-ups take turns over them.
    settings.peers.first(Role::Auth)?;
    let wiring = Wiring::new(ctx, bus, Role::Request);
    let db = wiring.open_db(&migrations()).await?;
    let peers = ctx.peers(Duration::from_secs(10))?;
    let relay = wiring.publish(&db, &[onlinebank_core::event::TOPIC_REQUESTS]);
    let state = RequestState {
        step_up: stepup::StepUpClient::new(
            peers,
            &settings.internal_token(),
            settings.request.step_up_timeout,
            settings.request.breaker.clone(),
        )?,
        token_key: settings.token_key(),
        db: db.clone(),
        relay,
        waiters: waiters::Waiters::default(),
        settings: settings.clone(),
    };
    outcomes::start(&wiring, &state);
    let quiet = quiet_probe(&wiring, &state);
    Ok(onlinebank_core::RoleParts {
        router: api::router(state, settings.internal_token().into()).merge(
            onlinebank_core::quiet::router(quiet, settings.internal_token().into()),
        ),
        db: Some(db),
    })
}

/// `GET /internal/quiet`: the outbox's unsent events, the outcome consumer's lag, and every
/// request not yet COMPLETED (a compensated request is deleted, so it counts no more).
fn quiet_probe(wiring: &Wiring, state: &RequestState) -> onlinebank_core::quiet::QuietProbe {
    let role = wiring.quiet(outcomes::CONSUMES, Some(&state.relay));
    let db = state.db.clone();
    Arc::new(move || {
        let (role, db) = (role.clone(), db.clone());
        Box::pin(async move {
            let mut quiet = role.measure().await?;
            quiet.pending_requests = store::count_unfinished(&db).await?;
            Ok(quiet)
        })
    })
}

/// request's migrations, for each engine (see [`onlinebank_core::db::migrate`]).
pub fn migrations() -> onlinebank_core::db::Migrations {
    onlinebank_core::expand_migrations![
        (1, "init", "0001_init.sql"),
        (2, "allowed today", "0002_allowed_today.sql"),
        (3, "transfer target", "0003_transfer_target.sql"),
    ]
}

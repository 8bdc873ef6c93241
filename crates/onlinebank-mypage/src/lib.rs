//! The mypage role: the read model, and every read customers make.
//!
//! It consumes account events into its own tables (balances, status, version, transactions) and
//! answers balance and history from them alone, so reads keep working with every write-side
//! service down. Each answer carries the account `version` it reflects. Updates apply only
//! forward: an event older than the row's version changes nothing.

mod api;
mod projection;
mod statement;

use axum::extract::FromRef;
use onlinebank_bus::wiring::{Consumes, Wiring};
use onlinebank_bus::Bus;
use onlinebank_core::db::Db;
use onlinebank_core::event::TOPIC_ACCOUNTS;
use onlinebank_core::token::TokenKey;
use onlinebank_core::{Role, RoleContext};

#[derive(Clone)]
pub(crate) struct MypageState {
    db: Db,
    token_key: TokenKey,
    /// The bank's time zone: where a statement's days begin and end.
    time_zone: onlinebank_core::time::BankTimeZone,
}

impl FromRef<MypageState> for TokenKey {
    fn from_ref(state: &MypageState) -> Self {
        state.token_key.clone()
    }
}

/// The account outcomes, up to 512 per transaction.
const CONSUMES: Consumes = Consumes {
    topics: &[TOPIC_ACCOUNTS],
    batch: 512,
};

pub async fn build(ctx: &RoleContext, bus: &Bus) -> anyhow::Result<onlinebank_core::RoleParts> {
    let wiring = Wiring::new(ctx, bus, Role::Mypage);
    let db = wiring.open_db(&migrations()).await?;
    wiring.consume(&db, CONSUMES, projection::ReadModel);
    let settings = &ctx.settings;
    let state = MypageState {
        db: db.clone(),
        token_key: settings.token_key(),
        time_zone: settings.account.time_zone,
    };
    Ok(onlinebank_core::RoleParts {
        router: api::router(
            state,
            settings.internal_token().into(),
            settings.max_in_flight_reads,
        )
        .merge(onlinebank_core::quiet::router(
            wiring.quiet(CONSUMES, None).probe(),
            settings.internal_token().into(),
        )),
        db: Some(db),
    })
}

/// mypage's consumer group, the topics it reads and its projection (the real
/// [`onlinebank_bus::handler::EventHandler`]), for the deterministic simulator.
pub fn projection() -> (
    &'static str,
    &'static [&'static str],
    impl onlinebank_bus::handler::EventHandler,
) {
    (
        Role::Mypage.as_str(),
        CONSUMES.topics,
        projection::ReadModel,
    )
}

/// mypage's migrations, for each engine (see [`onlinebank_core::db::migrate`]).
pub fn migrations() -> onlinebank_core::db::Migrations {
    onlinebank_core::expand_migrations![
        (1, "init", "0001_init.sql"),
        (2, "transfer counterpart", "0002_transfer_counterpart.sql"),
    ]
}

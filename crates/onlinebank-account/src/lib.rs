//! The account role: accounts and balances, the source of truth.
//!
//! It consumes AuthCertified from the request role and, for a whole batch in ONE database
//! transaction, checks owner, status, funds and limits ([`domain::decide`]), updates balances,
//! records each event id in its inbox and writes each outcome (MoneyDeposited, MoneyWithdrawn,
//! AccountOpened, AccountClosed or AccountRequestCancelled) to its outbox. Requests for one
//! account are applied one after another, in bus order, so concurrent withdrawals cannot
//! overdraw.

pub mod domain;
mod store;

use anyhow::Context;
use axum::extract::State;
use axum::routing::get;
use axum::{middleware, Json, Router};
use onlinebank_bus::outbox::Relay;
use onlinebank_bus::projection::{self, Projection};
use onlinebank_bus::Bus;
use onlinebank_core::db::{BoxFuture, Conn, Db};
use onlinebank_core::event::{
    AccountChanged, AccountRequestCancelled, AuthCertified, Envelope, Event, TOPIC_ACCOUNTS,
    TOPIC_REQUESTS,
};
use onlinebank_core::http::require_internal;
use onlinebank_core::{ApiError, Role, RoleContext};
use serde_json::{json, Value};
use std::sync::Arc;

/// Events applied per transaction at most.
const BATCH: usize = 256;

/// Opens account's database, starts its consumer and relay, and returns its router.
pub async fn build(ctx: &RoleContext, bus: &Bus) -> anyhow::Result<onlinebank_core::RoleParts> {
    let settings = ctx.settings.clone();
    let db =
        onlinebank_core::db::Db::open(&settings.database_url(Role::Account), "account").await?;
    onlinebank_bus::schema::migrate(
        &db,
        &sqlx::migrate!("migrations/sqlite"),
        &sqlx::migrate!("migrations/postgres"),
    )
    .await
    .context("migrating the account database")?;

    let relay = Relay::new("account", &[TOPIC_ACCOUNTS], db.clone(), bus.clone());
    ctx.tasks.spawn(relay.clone().run(ctx.shutdown.clone()));
    ctx.tasks.spawn(projection::run(
        bus.clone(),
        "account",
        &[TOPIC_REQUESTS],
        BATCH,
        ctx.shutdown.clone(),
        db.clone(),
        Accounts {
            max_amount: settings.max_amount,
            relay,
        },
    ));

    let internal_token: Arc<str> = settings.internal_token().into();
    Ok(onlinebank_core::RoleParts {
        db: Some(db.clone()),
        router: Router::new()
            .route("/internal/v1/accounts", get(list_accounts))
            .route_layer(middleware::from_fn_with_state(
                internal_token,
                require_internal,
            ))
            .with_state(db.clone()),
    })
}

/// The account role's projection: each certified request decided and applied, its outcome in the
/// outbox of the same transaction.
#[derive(Clone)]
struct Accounts {
    max_amount: i64,
    relay: Relay,
}

impl Projection for Accounts {
    fn apply<'c>(
        &'c self,
        conn: &'c mut Conn,
        _envelope: &'c Envelope,
        event: Event,
    ) -> BoxFuture<'c, anyhow::Result<()>> {
        Box::pin(async move {
            match event {
                Event::AuthCertified(request) => apply(conn, request, self.max_amount).await,
                _ => Ok(()),
            }
        })
    }

    /// The outcomes are committed: the relay ships them now.
    fn committed(&self, _batch: &[Envelope]) {
        self.relay.wake();
    }
}

async fn apply(tx: &mut Conn, request: AuthCertified, max_amount: i64) -> anyhow::Result<()> {
    let current = store::load(tx, &request.account_no).await?;
    let outcome = match domain::decide(current.as_ref(), &request, max_amount) {
        Ok(change) => {
            store::save(tx, &change.after, current.is_none()).await?;
            tracing::debug!(
                account = %request.account_no,
                request = %request.request_id,
                kind = request.kind.as_str(),
                amount = change.amount,
                balance = change.after.balance.won(),
                "request applied"
            );
            let changed = AccountChanged {
                request_id: request.request_id,
                customer_id: request.customer_id.clone(),
                account_no: request.account_no.clone(),
                amount: change.amount,
                balance: change.after.balance,
                version: change.after.version,
            };
            Event::account_changed(request.kind, changed)
        }
        Err(reason) => {
            tracing::debug!(
                account = %request.account_no,
                request = %request.request_id,
                kind = request.kind.as_str(),
                reason = reason.code(),
                "request refused"
            );
            Event::AccountRequestCancelled(AccountRequestCancelled {
                request_id: request.request_id,
                customer_id: request.customer_id.clone(),
                kind: request.kind,
                account_no: request.account_no.clone(),
                amount: request.amount,
                reason,
                message: reason.legacy_message().to_owned(),
            })
        }
    };
    onlinebank_bus::outbox::enqueue(tx, outcome).await?;
    Ok(())
}

async fn list_accounts(State(db): State<Db>) -> Result<Json<Value>, ApiError> {
    let accounts = store::all(&mut db.read().await?).await?;
    let items: Vec<Value> = accounts
        .into_iter()
        .map(|account| {
            json!({
                "accountNo": account.account_no,
                "customerId": account.customer_id,
                "balance": account.balance.won(),
                "status": account.status.as_str(),
                "version": account.version,
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

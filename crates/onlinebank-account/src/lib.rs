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
use onlinebank_bus::{consumer, Bus, Delivery};
use onlinebank_core::db::{Conn, Db};
use onlinebank_core::event::{AccountChanged, AccountRequestCancelled, Event, TOPIC_REQUESTS};
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
    db.migrate(
        &sqlx::migrate!("migrations/sqlite"),
        &sqlx::migrate!("migrations/postgres"),
    )
    .await
    .context("migrating the account database")?;
    onlinebank_bus::outbox::ensure_schema(&db).await?;

    let relay = Relay::new("account", db.clone(), bus.clone());
    ctx.tasks.spawn(relay.clone().run(ctx.shutdown.clone()));
    let max_amount = settings.max_amount;
    let consumer_db = db.clone();
    ctx.tasks.spawn(consumer::run(
        bus.clone(),
        "account",
        &[TOPIC_REQUESTS],
        BATCH,
        ctx.shutdown.clone(),
        move |batch| {
            let pool = consumer_db.clone();
            let relay = relay.clone();
            async move {
                apply_batch(&pool, batch, max_amount).await?;
                relay.wake();
                Ok(())
            }
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

/// Applies a batch of request events in one transaction.
async fn apply_batch(
    db: &onlinebank_core::db::Db,
    batch: Vec<Delivery>,
    max_amount: i64,
) -> anyhow::Result<()> {
    db.write(move |conn| Box::pin(async move { apply(conn, &batch, max_amount).await }))
        .await
        .map_err(|error| anyhow::anyhow!("applying requests: {error}"))
}

async fn apply(tx: &mut Conn, batch: &[Delivery], max_amount: i64) -> anyhow::Result<()> {
    for delivery in batch {
        let Some((envelope, event)) = delivery.decode() else {
            continue;
        };
        if !onlinebank_bus::inbox::first_delivery(tx, &envelope.id.to_string()).await? {
            continue;
        }
        let Event::AuthCertified(request) = event else {
            continue;
        };
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
                    balance: change.after.balance.won(),
                    version: change.after.version,
                };
                match request.kind {
                    onlinebank_core::event::WriteKind::Open => Event::AccountOpened(changed),
                    onlinebank_core::event::WriteKind::Deposit => Event::MoneyDeposited(changed),
                    onlinebank_core::event::WriteKind::Withdraw => Event::MoneyWithdrawn(changed),
                    onlinebank_core::event::WriteKind::Close => Event::AccountClosed(changed),
                }
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
    }
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

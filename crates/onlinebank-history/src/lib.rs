//! The history role: the bank's append-only transaction ledger, built from account events.
//!
//! One entry per account change (open, deposit, withdraw, close), written with the event's id in
//! the inbox in one transaction, so a redelivered event is recorded once. The database refuses
//! updates and deletes of entries. Operators read per-account sums at `/internal/v1/ledger`;
//! customers read their transactions from mypage.

use anyhow::Context;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{middleware, Json, Router};
use onlinebank_bus::{consumer, Bus, Delivery};
use onlinebank_core::args;
use onlinebank_core::db::{Conn, Db};
use onlinebank_core::event::{AccountChanged, Event, TOPIC_ACCOUNTS};
use onlinebank_core::http::require_internal;
use onlinebank_core::{ApiError, Role, RoleContext};
use serde_json::{json, Value};
use std::sync::Arc;

const BATCH: usize = 512;

pub async fn build(ctx: &RoleContext, bus: &Bus) -> anyhow::Result<onlinebank_core::RoleParts> {
    let settings = ctx.settings.clone();
    let db =
        onlinebank_core::db::Db::open(&settings.database_url(Role::History), "history").await?;
    db.migrate(
        &sqlx::migrate!("migrations/sqlite"),
        &sqlx::migrate!("migrations/postgres"),
    )
    .await
    .context("migrating the history database")?;
    onlinebank_bus::outbox::ensure_schema(&db).await?;
    let consumer_db = db.clone();
    ctx.tasks.spawn(consumer::run(
        bus.clone(),
        "history",
        &[TOPIC_ACCOUNTS],
        BATCH,
        ctx.shutdown.clone(),
        move |batch| {
            let pool = consumer_db.clone();
            async move { append_batch(&pool, batch).await }
        },
    ));
    let internal_token: Arc<str> = settings.internal_token().into();
    Ok(onlinebank_core::RoleParts {
        db: Some(db.clone()),
        router: Router::new()
            .route("/internal/v1/ledger", get(ledger_sums))
            .route("/internal/v1/ledger/{account_no}", get(ledger_entries))
            .route_layer(middleware::from_fn_with_state(
                internal_token,
                require_internal,
            ))
            .with_state(db.clone()),
    })
}

async fn append_batch(db: &Db, batch: Vec<Delivery>) -> anyhow::Result<()> {
    db.write(move |conn| Box::pin(async move { append(conn, &batch).await }))
        .await
        .map_err(|error| anyhow::anyhow!("appending to the ledger: {error}"))
}

async fn append(conn: &mut Conn, batch: &[Delivery]) -> anyhow::Result<()> {
    for delivery in batch {
        let Some((envelope, event)) = delivery.decode() else {
            continue;
        };
        let event_id = envelope.id.to_string();
        if !onlinebank_bus::inbox::first_delivery(conn, &event_id).await? {
            continue;
        }
        let (kind, change, signed): (&str, AccountChanged, fn(i64) -> i64) = match event {
            Event::AccountOpened(change) => ("open", change, |a| a),
            Event::MoneyDeposited(change) => ("deposit", change, |a| a),
            Event::MoneyWithdrawn(change) => ("withdraw", change, |a: i64| -a),
            Event::AccountClosed(change) => ("close", change, |_| 0),
            _ => continue,
        };
        let request_id = change.request_id.to_string();
        conn.execute(
            "INSERT INTO ledger (event_id, request_id, account_no, customer_id, kind, amount,
                                 signed_amount, balance_after, version, occurred_at, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT DO NOTHING",
            args![
                &event_id,
                &request_id,
                &change.account_no,
                &change.customer_id,
                kind,
                change.amount,
                signed(change.amount),
                change.balance,
                change.version,
                &envelope.occurred_at,
                onlinebank_core::time::now_ms()
            ],
        )
        .await?;
    }
    Ok(())
}

async fn ledger_sums(State(db): State<Db>) -> Result<Json<Value>, ApiError> {
    let rows: Vec<(String, i64, i64)> = db
        .read()
        .await?
        .fetch_all(
            "SELECT account_no, CAST(SUM(signed_amount) AS BIGINT), COUNT(*) FROM ledger GROUP BY account_no ORDER BY account_no",
            &[],
        )
        .await?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(|(account_no, sum, entries)| json!({"accountNo": account_no, "sum": sum, "entries": entries}))
        .collect();
    Ok(Json(json!({ "items": items })))
}

async fn ledger_entries(
    State(db): State<Db>,
    Path(account_no): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rows: Vec<(String, String, i64, i64, i64, String)> = db
        .read()
        .await?
        .fetch_all(
            "SELECT request_id, kind, amount, balance_after, version, occurred_at FROM ledger
             WHERE account_no = $1 ORDER BY version",
            args![&account_no],
        )
        .await?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(
            |(request_id, kind, amount, balance_after, version, occurred_at)| {
                json!({"requestId": request_id, "type": kind, "amount": amount,
                   "balanceAfter": balance_after, "version": version, "occurredAt": occurred_at})
            },
        )
        .collect();
    Ok(Json(json!({ "accountNo": account_no, "items": items })))
}

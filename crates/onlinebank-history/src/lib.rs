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
use onlinebank_bus::projection::{self, Projection};
use onlinebank_bus::Bus;
use onlinebank_core::args;
use onlinebank_core::db::{BoxFuture, Conn, Db};
use onlinebank_core::event::{Envelope, Event, WriteKind, TOPIC_ACCOUNTS};
use onlinebank_core::http::require_internal;
use onlinebank_core::{ApiError, Role, RoleContext};
use serde_json::{json, Value};
use std::sync::Arc;

const BATCH: usize = 512;

pub async fn build(ctx: &RoleContext, bus: &Bus) -> anyhow::Result<onlinebank_core::RoleParts> {
    let settings = ctx.settings.clone();
    let db =
        onlinebank_core::db::Db::open(&settings.database_url(Role::History), "history").await?;
    onlinebank_bus::schema::migrate(
        &db,
        &sqlx::migrate!("migrations/sqlite"),
        &sqlx::migrate!("migrations/postgres"),
    )
    .await
    .context("migrating the history database")?;
    ctx.tasks.spawn(projection::run(
        bus.clone(),
        "history",
        &[TOPIC_ACCOUNTS],
        BATCH,
        ctx.shutdown.clone(),
        db.clone(),
        Ledger,
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

/// The ledger's projection: one entry per account change.
#[derive(Clone)]
struct Ledger;

impl Projection for Ledger {
    fn apply<'c>(
        &'c self,
        conn: &'c mut Conn,
        envelope: &'c Envelope,
        event: Event,
    ) -> BoxFuture<'c, anyhow::Result<()>> {
        Box::pin(append(conn, envelope, event))
    }
}

async fn append(conn: &mut Conn, envelope: &Envelope, event: Event) -> anyhow::Result<()> {
    let Some((kind, change)) = event.as_account_change() else {
        return Ok(());
    };
    let signed = match kind {
        WriteKind::Open | WriteKind::Deposit => change.amount,
        WriteKind::Withdraw => -change.amount,
        WriteKind::Close => 0,
    };
    conn.execute(
        "INSERT INTO ledger (event_id, request_id, account_no, customer_id, kind, amount,
                             signed_amount, balance_after, version, occurred_at, recorded_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT DO NOTHING",
        args![
            &envelope.id.to_string(),
            &change.request_id.to_string(),
            &change.account_no,
            &change.customer_id,
            kind.as_str(),
            change.amount,
            signed,
            change.balance.won(),
            change.version,
            &envelope.occurred_at,
            onlinebank_core::time::now_ms()
        ],
    )
    .await?;
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

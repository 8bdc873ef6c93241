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
use onlinebank_bus::quiet::RoleQuiet;
use onlinebank_bus::Bus;
use onlinebank_core::args;
use onlinebank_core::db::{BoxFuture, Conn, Db};
use onlinebank_core::event::{Envelope, WriteKind, TOPIC_ACCOUNTS};
use onlinebank_core::http::require_internal;
use onlinebank_core::internal::{self, LedgerSum, LedgerSums};
use onlinebank_core::{ApiError, Role, RoleContext};
use serde_json::{json, Value};
use std::sync::Arc;

const BATCH: usize = 512;

pub async fn build(ctx: &RoleContext, bus: &Bus) -> anyhow::Result<onlinebank_core::RoleParts> {
    let settings = ctx.settings.clone();
    let db =
        onlinebank_core::db::Db::open(&settings.database_url(Role::History), "history").await?;
    onlinebank_bus::schema::migrate(&db, &migrations())
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
            .route(internal::LEDGER, get(ledger_sums))
            .route("/internal/v1/ledger/{account_no}", get(ledger_entries))
            .route_layer(middleware::from_fn_with_state(
                internal_token.clone(),
                require_internal,
            ))
            .with_state(db.clone())
            .merge(onlinebank_core::quiet::router(
                RoleQuiet::consumer(bus, "history", &[TOPIC_ACCOUNTS]).probe(),
                internal_token,
            )),
    })
}

/// The ledger's projection: one entry per account change.
#[derive(Clone)]
struct Ledger;

impl Projection for Ledger {
    fn apply<'c>(
        &'c self,
        conn: &'c mut Conn,
        events: &'c [Envelope],
    ) -> BoxFuture<'c, anyhow::Result<()>> {
        Box::pin(append(conn, events))
    }
}

/// One ledger entry per account change of the batch, in ONE statement.
async fn append(conn: &mut Conn, events: &[Envelope]) -> anyhow::Result<()> {
    let now = onlinebank_core::time::now_ms();
    let entries: Vec<_> = events
        .iter()
        .filter_map(|envelope| {
            let (kind, change) = envelope.event.as_account_change()?;
            let signed = match kind {
                WriteKind::Open | WriteKind::Deposit => change.amount.won(),
                WriteKind::Withdraw => -change.amount.won(),
                WriteKind::Close => 0,
            };
            Some((
                envelope.id,
                change.request_id,
                change.account_no.as_str(),
                change.customer_id.as_str(),
                kind.as_str(),
                change.amount,
                signed,
                change.balance.won(),
                change.version,
                envelope.occurred_at.as_str(),
            ))
        })
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO ledger (event_id, request_id, account_no, customer_id, kind, amount,
                             signed_amount, balance_after, version, occurred_at, recorded_at)
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4,
                CAST(value ->> 5 AS BIGINT), CAST(value ->> 6 AS BIGINT),
                CAST(value ->> 7 AS BIGINT), CAST(value ->> 8 AS BIGINT), value ->> 9, $1
         FROM {} WHERE true ORDER BY key
         ON CONFLICT DO NOTHING",
        conn.engine().json_rows("$2")
    );
    let entries = onlinebank_core::db::json_rows(&entries)?;
    conn.execute(&sql, args![now, entries.as_str()]).await?;
    Ok(())
}

async fn ledger_sums(State(db): State<Db>) -> Result<Json<LedgerSums>, ApiError> {
    let rows: Vec<(String, i64, i64)> = db
        .read()
        .await?
        .fetch_all(
            "SELECT account_no, CAST(SUM(signed_amount) AS BIGINT), COUNT(*) FROM ledger GROUP BY account_no ORDER BY account_no",
            &[],
        )
        .await?;
    let items = rows
        .into_iter()
        .map(|(account_no, sum, entries)| LedgerSum {
            account_no,
            sum,
            entries,
        })
        .collect();
    Ok(Json(LedgerSums { items }))
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

/// history's migrations, for each engine (see [`onlinebank_core::db::migrate`]).
pub fn migrations() -> onlinebank_core::db::Migrations {
    use onlinebank_core::db::{Migration, Migrations};
    const SQLITE: &[Migration] = &[Migration::expand(
        1,
        "init",
        include_str!("../migrations/sqlite/0001_init.sql"),
    )];
    const POSTGRES: &[Migration] = &[Migration::expand(
        1,
        "init",
        include_str!("../migrations/postgres/0001_init.sql"),
    )];
    Migrations::new(SQLITE, POSTGRES)
}

//! The history role: the bank's append-only transaction ledger, built from account events.
//!
//! One entry per account change (open, deposit, withdraw, close, and a transfer's transfer_out,
//! transfer_in and transfer_reversed), written with the event's id in
//! the inbox in one transaction, so a redelivered event is recorded once. The database refuses
//! updates and deletes of entries. Operators read per-account sums at `/internal/v1/ledger` and
//! one account's entries at `/internal/v1/ledger/{account_no}`; customers read their
//! transactions from mypage.

mod store;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use onlinebank_bus::handler::EventHandler;
use onlinebank_bus::wiring::{Consumes, Wiring};
use onlinebank_bus::Bus;
use onlinebank_core::args;
use onlinebank_core::db::{BoxFuture, Conn, Db};
use onlinebank_core::event::{Envelope, TOPIC_ACCOUNTS};
use onlinebank_core::internal::{self, LedgerSum, LedgerSums};
use onlinebank_core::{ApiError, Role, RoleContext};
use serde_json::{json, Value};
use store::LedgerEntry;

/// The account outcomes, up to 512 per transaction.
const CONSUMES: Consumes = Consumes {
    topics: &[TOPIC_ACCOUNTS],
    batch: 512,
};

pub async fn build(ctx: &RoleContext, bus: &Bus) -> anyhow::Result<onlinebank_core::RoleParts> {
    let wiring = Wiring::new(ctx, bus, Role::History);
    let db = wiring.open_db(&migrations()).await?;
    wiring.consume(&db, CONSUMES, Ledger);
    Ok(onlinebank_core::RoleParts {
        db: Some(db.clone()),
        router: ctx
            .internal(
                Router::new()
                    .route(internal::LEDGER, get(ledger_sums))
                    .route(internal::LEDGER_OF, get(ledger_entries)),
            )
            .with_state(db)
            .merge(onlinebank_core::quiet::router(
                wiring.quiet(CONSUMES, None).probe(),
                ctx.settings.internal_token().into(),
            )),
    })
}

/// The ledger's projection: one entry per account change.
#[derive(Clone)]
struct Ledger;

/// history's consumer group, the topics it reads and its projection (the real [`EventHandler`]),
/// for the deterministic simulator.
pub fn projection() -> (&'static str, &'static [&'static str], impl EventHandler) {
    (Role::History.as_str(), CONSUMES.topics, Ledger)
}

impl EventHandler for Ledger {
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
    store::append(conn, &entries(events)).await?;
    Ok(())
}

/// The ledger entries of `events`, in their order: one per account change, none for anything
/// else.
fn entries(events: &[Envelope]) -> Vec<LedgerEntry<'_>> {
    events
        .iter()
        .filter_map(|envelope| {
            let entry = envelope.event.entry()?;
            Some(LedgerEntry {
                event_id: envelope.id,
                request_id: entry.request_id,
                account_no: entry.account_no,
                customer_id: entry.customer_id,
                kind: entry.kind,
                amount: entry.amount,
                signed_amount: entry.kind.signed(entry.amount),
                balance_after: entry.balance,
                version: entry.version,
                occurred_at: envelope.occurred_at.as_str(),
                counterpart_account_no: entry.counterpart,
            })
        })
        .collect()
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
    type Stored = (String, String, i64, i64, i64, String, Option<String>);
    let rows: Vec<Stored> = db
        .read()
        .await?
        .fetch_all(
            "SELECT request_id, kind, amount, balance_after, version, occurred_at,
                    counterpart_account_no FROM ledger
             WHERE account_no = $1 ORDER BY version",
            args![&account_no],
        )
        .await?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(
            |(request_id, kind, amount, balance_after, version, occurred_at, counterpart)| {
                let mut item = json!({"requestId": request_id, "type": kind, "amount": amount,
                   "balanceAfter": balance_after, "version": version, "occurredAt": occurred_at});
                if let Some(counterpart) = counterpart {
                    item["counterpartAccountNo"] = json!(counterpart);
                }
                item
            },
        )
        .collect();
    Ok(Json(json!({ "accountNo": account_no, "items": items })))
}

/// history's migrations, for each engine (see [`onlinebank_core::db::migrate`]).
pub fn migrations() -> onlinebank_core::db::Migrations {
    onlinebank_core::expand_migrations![
        (1, "init", "0001_init.sql"),
        (2, "transfer entries", "0002_transfer_entries.sql"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use onlinebank_core::event::{AccountChanged, AccountRequestCancelled, Event, WriteKind};
    use onlinebank_core::ids::{AccountNo, CustomerId, RequestId};
    use onlinebank_core::money::{Balance, Won};
    use onlinebank_core::Reason;

    fn change(kind: WriteKind, amount: i64, balance: i64, version: i64) -> Envelope {
        let change = AccountChanged {
            request_id: RequestId::generate(),
            customer_id: CustomerId::parse("1@sk.com").unwrap(),
            account_no: AccountNo::parse("1001").unwrap(),
            amount: Won::from_stored(amount).unwrap(),
            balance: Balance::try_from(balance).unwrap(),
            version,
        };
        Event::account_changed(kind, change)
            .unwrap()
            .into_envelope(version)
    }

    /// Every account change is one entry, in order, adding what it moved to the balance: the
    /// entries of an account sum to its balance; a refusal is no entry.
    #[test]
    fn each_change_is_one_signed_entry_and_nothing_else_is() {
        let refused = Event::AccountRequestCancelled(AccountRequestCancelled {
            request_id: RequestId::generate(),
            customer_id: CustomerId::parse("1@sk.com").unwrap(),
            kind: WriteKind::Withdraw,
            account_no: AccountNo::parse("1001").unwrap(),
            amount: Won::from_stored(999).unwrap(),
            reason: Reason::InsufficientFunds,
            message: String::new(),
            allowed_today: None,
        })
        .into_envelope(3);
        let events = [
            change(WriteKind::Open, 100, 100, 1),
            change(WriteKind::Deposit, 50, 150, 2),
            refused,
            change(WriteKind::Withdraw, 150, 0, 3),
            change(WriteKind::Close, 0, 0, 4),
        ];
        let entries = entries(&events);
        let signed: Vec<i64> = entries.iter().map(|e| e.signed_amount).collect();
        assert_eq!(signed, [100, 50, -150, 0]);
        let versions: Vec<i64> = entries.iter().map(|e| e.version).collect();
        assert_eq!(versions, [1, 2, 3, 4]);
        assert_eq!(entries[1].event_id, events[1].id);
        assert_eq!(entries[3].balance_after.won(), signed.iter().sum::<i64>());
    }
}

//! Folding account events into the read model: a batch's changes in two statements (the
//! accounts' latest state, their transactions), whatever the batch's size.

use onlinebank_bus::projection::Projection;
use onlinebank_core::args;
use onlinebank_core::db::{json_rows, BoxFuture, Conn, Error};
use onlinebank_core::event::{AccountChanged, AccountRequestCancelled, Envelope, Event, WriteKind};
use serde_json::{json, Value};
use std::collections::HashMap;

/// The read model's projection of account events.
#[derive(Clone)]
pub struct ReadModel;

impl Projection for ReadModel {
    fn apply<'c>(
        &'c self,
        conn: &'c mut Conn,
        events: &'c [(Envelope, Event)],
    ) -> BoxFuture<'c, anyhow::Result<()>> {
        Box::pin(apply(conn, events))
    }
}

async fn apply(conn: &mut Conn, events: &[(Envelope, Event)]) -> anyhow::Result<()> {
    let mut changes = Vec::with_capacity(events.len());
    for (envelope, event) in events {
        let at = envelope.occurred_at.as_str();
        if let Some((kind, change)) = event.as_account_change() {
            changes.push((kind, change, at));
        } else if let Event::AccountRequestCancelled(cancelled) = event {
            // It names the account's last request: the changes before it go first.
            apply_changes(conn, &changes).await?;
            changes.clear();
            apply_cancelled(conn, cancelled, at).await?;
        }
    }
    apply_changes(conn, &changes).await?;
    Ok(())
}

/// Account changes in bus order: every one in the transactions, each account's newest in its
/// row (a row is only ever moved to a newer version).
async fn apply_changes(
    conn: &mut Conn,
    changes: &[(WriteKind, &AccountChanged, &str)],
) -> Result<(), Error> {
    if changes.is_empty() {
        return Ok(());
    }
    // One row per account (PostgreSQL refuses to upsert a row twice in one statement): the
    // newest change, opened at the batch's first change of the account if the row is new.
    let mut newest: HashMap<&str, (usize, &str)> = HashMap::new();
    for (index, (_, change, at)) in changes.iter().enumerate() {
        newest
            .entry(change.account_no.as_str())
            .and_modify(|(kept, _)| {
                if changes[*kept].1.version < change.version {
                    *kept = index;
                }
            })
            .or_insert((index, at));
    }
    let mut accounts: Vec<(usize, &str)> = newest.into_values().collect();
    accounts.sort_unstable();
    let accounts: Vec<Value> = accounts
        .into_iter()
        .map(|(index, opened_at)| {
            let (kind, change, at) = changes[index];
            json!([
                change.account_no,
                change.customer_id,
                change.balance.won(),
                status(kind),
                change.version,
                opened_at,
                at,
                change.request_id.to_string(),
                kind.as_str(),
                change.amount,
            ])
        })
        .collect();
    let rows = conn.engine().json_rows("$1");
    conn.execute(
        &format!(
            "INSERT INTO accounts_view (account_no, customer_id, balance, status, version, opened_at,
                 updated_at, last_request_id, last_request_kind, last_request_amount,
                 last_request_status, last_request_at)
             SELECT value ->> 0, value ->> 1, CAST(value ->> 2 AS BIGINT), value ->> 3,
                    CAST(value ->> 4 AS BIGINT), value ->> 5, value ->> 6, value ->> 7,
                    value ->> 8, CAST(value ->> 9 AS BIGINT), 'RequestCompleted', value ->> 6
             FROM {rows} WHERE true
             ON CONFLICT (account_no) DO UPDATE SET
                 balance = excluded.balance, status = excluded.status, version = excluded.version,
                 updated_at = excluded.updated_at, last_request_id = excluded.last_request_id,
                 last_request_kind = excluded.last_request_kind,
                 last_request_amount = excluded.last_request_amount,
                 last_request_status = excluded.last_request_status,
                 last_request_at = excluded.last_request_at
             WHERE excluded.version > accounts_view.version"
        ),
        args![json_rows(accounts).as_str()],
    )
    .await?;
    let transactions: Vec<Value> = changes
        .iter()
        .map(|(kind, change, at)| {
            json!([
                change.account_no,
                change.version,
                change.request_id.to_string(),
                kind.as_str(),
                change.amount,
                change.balance.won(),
                at,
            ])
        })
        .collect();
    conn.execute(
        &format!(
            "INSERT INTO transactions_view (account_no, version, request_id, kind, amount,
                 balance_after, occurred_at)
             SELECT value ->> 0, CAST(value ->> 1 AS BIGINT), value ->> 2, value ->> 3,
                    CAST(value ->> 4 AS BIGINT), CAST(value ->> 5 AS BIGINT), value ->> 6
             FROM {rows} WHERE true
             ON CONFLICT DO NOTHING"
        ),
        args![json_rows(transactions).as_str()],
    )
    .await?;
    Ok(())
}

fn status(kind: WriteKind) -> &'static str {
    if kind == WriteKind::Close {
        "closed"
    } else {
        "open"
    }
}

/// Shown in the legacy view as the account's last request; never touches money.
async fn apply_cancelled(
    conn: &mut Conn,
    cancelled: &AccountRequestCancelled,
    at: &str,
) -> Result<(), Error> {
    let request_id = cancelled.request_id.to_string();
    conn.execute(
        "UPDATE accounts_view SET last_request_id = $1, last_request_kind = $2,
            last_request_amount = $3, last_request_status = 'RequestCancelled',
            last_request_at = $4
         WHERE account_no = $5 AND customer_id = $6",
        args![
            &request_id,
            cancelled.kind.as_str(),
            cancelled.amount,
            at,
            &cancelled.account_no,
            &cancelled.customer_id
        ],
    )
    .await?;
    Ok(())
}

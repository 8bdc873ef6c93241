//! Folding account events into the read model: a batch's changes in two statements (the
//! accounts' latest state, their transactions), whatever the batch's size.

use onlinebank_bus::projection::Projection;
use onlinebank_core::args;
use onlinebank_core::db::{json_rows, BoxFuture, Conn, Error};
use onlinebank_core::event::{AccountChanged, AccountRequestCancelled, Envelope, Event, WriteKind};
use std::collections::HashMap;

/// The read model's projection of account events.
#[derive(Clone)]
pub struct ReadModel;

impl Projection for ReadModel {
    fn apply<'c>(
        &'c self,
        conn: &'c mut Conn,
        events: &'c [Envelope],
    ) -> BoxFuture<'c, anyhow::Result<()>> {
        Box::pin(apply(conn, events))
    }
}

async fn apply(conn: &mut Conn, events: &[Envelope]) -> anyhow::Result<()> {
    let mut changes = Vec::with_capacity(events.len());
    for envelope in events {
        let (event, at) = (&envelope.event, envelope.occurred_at.as_str());
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
    let accounts: Vec<_> = accounts
        .into_iter()
        .map(|(index, opened_at)| {
            let (kind, change, at) = changes[index];
            (
                change.account_no.as_str(),
                change.customer_id.as_str(),
                change.balance.won(),
                status(kind),
                change.version,
                opened_at,
                at,
                change.request_id,
                kind.as_str(),
                change.amount,
            )
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
        args![json_rows(&accounts)?.as_str()],
    )
    .await?;
    let transactions: Vec<_> = changes
        .iter()
        .map(|(kind, change, at)| {
            (
                change.account_no.as_str(),
                change.version,
                change.request_id,
                kind.as_str(),
                change.amount,
                change.balance.won(),
                at,
            )
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
        args![json_rows(&transactions)?.as_str()],
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

#[cfg(test)]
mod tests {
    use super::*;
    use onlinebank_core::db::Db;
    use onlinebank_core::event::{AccountChanged, Event};
    use onlinebank_core::ids::{AccountNo, CustomerId};
    use onlinebank_core::money::{Balance, Won};
    use onlinebank_core::Reason;
    use uuid::Uuid;

    fn change(kind: WriteKind, account: &str, amount: i64, balance: i64, version: i64) -> Event {
        let change = AccountChanged {
            request_id: Uuid::now_v7(),
            customer_id: CustomerId::parse("1@sk.com").unwrap(),
            account_no: AccountNo::parse(account).unwrap(),
            amount: Won::from_stored(amount).unwrap(),
            balance: Balance::ZERO
                .deposit(onlinebank_core::money::Amount::parse(balance, i64::MAX).unwrap())
                .unwrap(),
            version,
        };
        Event::account_changed(kind, change)
    }

    fn cancelled(account: &str) -> Event {
        Event::AccountRequestCancelled(AccountRequestCancelled {
            request_id: Uuid::now_v7(),
            customer_id: CustomerId::parse("1@sk.com").unwrap(),
            kind: WriteKind::Withdraw,
            account_no: AccountNo::parse(account).unwrap(),
            amount: Won::from_stored(999).unwrap(),
            reason: Reason::InsufficientFunds,
            message: String::new(),
        })
    }

    async fn apply_batch(db: &Db, events: Vec<Event>) {
        let events: Vec<Envelope> = events
            .into_iter()
            .map(|event| event.into_envelope(1))
            .collect();
        db.write(move |conn| Box::pin(async move { apply(conn, &events).await }))
            .await
            .unwrap();
    }

    /// A batch's changes land as if applied one by one: each account's row at its newest
    /// version (an older change arriving later moves nothing back), every transaction kept, and
    /// a refusal after the changes shown as the account's last request.
    #[tokio::test]
    async fn a_batch_leaves_each_account_at_its_newest_change_with_every_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("m.db").display().to_string(), "m")
            .await
            .unwrap();
        db.migrate(&crate::migrations()).await.unwrap();
        apply_batch(
            &db,
            vec![
                change(WriteKind::Open, "1001", 100, 100, 1),
                change(WriteKind::Open, "2002", 7, 7, 1),
                change(WriteKind::Deposit, "1001", 50, 150, 2),
                cancelled("1001"),
                change(WriteKind::Deposit, "2002", 3, 10, 2),
            ],
        )
        .await;
        // Late and out of order: version 1 again, then the next one.
        apply_batch(
            &db,
            vec![
                change(WriteKind::Withdraw, "2002", 4, 6, 3),
                change(WriteKind::Open, "2002", 7, 7, 1),
            ],
        )
        .await;
        let mut conn = db.read().await.unwrap();
        let rows: Vec<(String, i64, i64, String, String)> = conn
            .fetch_all(
                "SELECT account_no, balance, version, last_request_kind, last_request_status
                 FROM accounts_view ORDER BY account_no",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            rows,
            [
                (
                    "1001".into(),
                    150,
                    2,
                    "withdraw".into(),
                    "RequestCancelled".into()
                ),
                (
                    "2002".into(),
                    6,
                    3,
                    "withdraw".into(),
                    "RequestCompleted".into()
                ),
            ]
        );
        let transactions: Vec<(String, i64, i64)> = conn
            .fetch_all(
                "SELECT account_no, version, balance_after FROM transactions_view
                 ORDER BY account_no, version",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            transactions,
            [
                ("1001".into(), 1, 100),
                ("1001".into(), 2, 150),
                ("2002".into(), 1, 7),
                ("2002".into(), 2, 10),
                ("2002".into(), 3, 6),
            ]
        );
    }
}

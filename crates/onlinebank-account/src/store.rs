//! account's store (SQLite or PostgreSQL, one portable SQL).

use crate::domain::{Account, Status};
use onlinebank_core::args;
use onlinebank_core::db::{json_rows, Conn, Error, FromRow, Row};
use onlinebank_core::ids::{AccountNo, CustomerId};

const COLUMNS: &str = "account_no, customer_id, balance, status, version";

impl FromRow for Account {
    fn from_row(row: &Row<'_>) -> Result<Self, Error> {
        Ok(Account {
            account_no: row.parsed(0, "account number", |raw| AccountNo::parse(raw).ok())?,
            customer_id: row.parsed(1, "account's customer id", |raw| {
                CustomerId::parse(raw).ok()
            })?,
            balance: row.balance(2)?,
            status: row.parsed(3, "account status", Status::parse)?,
            version: row.get(4)?,
        })
    }
}

/// The stored accounts among `account_nos`, in ONE statement.
pub async fn load_all(conn: &mut Conn, account_nos: &[&str]) -> Result<Vec<Account>, Error> {
    if account_nos.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: Vec<(&str,)> = account_nos
        .iter()
        .map(|account_no| (*account_no,))
        .collect();
    conn.fetch_all(
        &format!(
            "SELECT {COLUMNS} FROM accounts WHERE {}",
            conn.engine().json_key_in("account_no", "$1", 0)
        ),
        args![json_rows(&wanted)?.as_str()],
    )
    .await
}

/// Writes the accounts' new states, in two statements at most: `created` are new, each of
/// `updated` applies only over the version it was decided on (`.1`); if one does not, nothing is
/// kept (the caller's transaction fails with [`Error::Conflict`]).
pub async fn save_all(
    conn: &mut Conn,
    created: &[&Account],
    updated: &[(&Account, i64)],
) -> Result<(), Error> {
    let now = onlinebank_core::time::now_ms();
    let row = |account: &'_ Account, extra: i64| {
        (
            account.account_no.as_str().to_owned(),
            account.customer_id.as_str().to_owned(),
            account.balance.won(),
            account.status.as_str(),
            account.version,
            extra,
        )
    };
    if !created.is_empty() {
        let rows: Vec<_> = created.iter().map(|account| row(account, now)).collect();
        conn.execute(
            &format!(
                "INSERT INTO accounts (account_no, customer_id, balance, status, version, opened_at, updated_at)
                 SELECT rows.value ->> 0, rows.value ->> 1, CAST(rows.value ->> 2 AS BIGINT),
                        rows.value ->> 3, CAST(rows.value ->> 4 AS BIGINT), $1, $1
                 FROM {}",
                conn.engine().json_rows("$2")
            ),
            args![now, json_rows(&rows)?.as_str()],
        )
        .await?;
    }
    if !updated.is_empty() {
        let rows: Vec<_> = updated
            .iter()
            .map(|(account, decided_on)| row(account, *decided_on))
            .collect();
        let changed = conn
            .execute(
                &format!(
                    "UPDATE accounts SET balance = CAST(rows.value ->> 2 AS BIGINT),
                         status = rows.value ->> 3, version = CAST(rows.value ->> 4 AS BIGINT),
                         updated_at = $1
                     FROM {}
                     WHERE accounts.account_no = rows.value ->> 0 {}
                       AND accounts.version = CAST(rows.value ->> 5 AS BIGINT)",
                    conn.engine().json_rows("$2"),
                    conn.engine()
                        .json_join_by_index("accounts.account_no", "$2", 0)
                ),
                args![now, json_rows(&rows)?.as_str()],
            )
            .await?;
        if changed != updated.len() as u64 {
            return Err(Error::Conflict(format!(
                "{} of {} accounts changed concurrently",
                updated.len() as u64 - changed.min(updated.len() as u64),
                updated.len()
            )));
        }
    }
    Ok(())
}

pub async fn all(conn: &mut Conn) -> Result<Vec<Account>, Error> {
    conn.fetch_all(
        &format!("SELECT {COLUMNS} FROM accounts ORDER BY account_no"),
        &[],
    )
    .await
}

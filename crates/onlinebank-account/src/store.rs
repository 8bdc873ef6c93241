//! account's store (SQLite or PostgreSQL, one portable SQL).

use crate::domain::{Account, Status};
use onlinebank_core::args;
use onlinebank_core::db::{Conn, Error, FromRow, Row};
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

pub async fn load(conn: &mut Conn, account_no: &AccountNo) -> Result<Option<Account>, Error> {
    conn.fetch_optional(
        &format!("SELECT {COLUMNS} FROM accounts WHERE account_no = $1"),
        args![account_no],
    )
    .await
}

/// Writes the account's new state. An update only applies over the version it was decided on.
pub async fn save(conn: &mut Conn, account: &Account, is_new: bool) -> Result<(), Error> {
    let now = onlinebank_core::time::now_ms();
    if is_new {
        conn.execute(
            "INSERT INTO accounts (account_no, customer_id, balance, status, version, opened_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            args![
                &account.account_no,
                &account.customer_id,
                account.balance.won(),
                account.status.as_str(),
                account.version,
                now,
                now
            ],
        )
        .await?;
        return Ok(());
    }
    let changed = conn
        .execute(
            "UPDATE accounts SET balance = $1, status = $2, version = $3, updated_at = $4
             WHERE account_no = $5 AND version = $6",
            args![
                account.balance.won(),
                account.status.as_str(),
                account.version,
                now,
                &account.account_no,
                account.version - 1
            ],
        )
        .await?;
    if changed != 1 {
        return Err(Error::Conflict(format!(
            "account {} changed concurrently",
            account.account_no
        )));
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

//! account's SQLite store.

use crate::domain::{Account, Status};
use onlinebank_core::money::Balance;
use sqlx::{AnyConnection, AnyPool};

type Row = (String, String, i64, String, i64);

fn from_row(
    (account_no, customer_id, balance, status, version): Row,
) -> Result<Account, sqlx::Error> {
    let balance =
        Balance::from_stored(balance).map_err(|error| sqlx::Error::Decode(Box::new(error)))?;
    Ok(Account {
        account_no,
        customer_id,
        balance,
        status: Status::parse(&status),
        version,
    })
}

pub async fn load(
    conn: &mut AnyConnection,
    account_no: &str,
) -> Result<Option<Account>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT account_no, customer_id, balance, status, version FROM accounts WHERE account_no = $1",
    )
    .bind(account_no)
    .fetch_optional(conn)
    .await?;
    row.map(from_row).transpose()
}

/// Writes the account's new state. An update only applies over the version it was decided on.
pub async fn save(
    conn: &mut AnyConnection,
    account: &Account,
    is_new: bool,
) -> Result<(), sqlx::Error> {
    let now = onlinebank_core::time::now_ms();
    if is_new {
        sqlx::query(
            "INSERT INTO accounts (account_no, customer_id, balance, status, version, opened_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&account.account_no)
        .bind(&account.customer_id)
        .bind(account.balance.won())
        .bind(account.status.as_str())
        .bind(account.version)
        .bind(now)
        .bind(now)
        .execute(conn)
        .await?;
        return Ok(());
    }
    let result = sqlx::query(
        "UPDATE accounts SET balance = $1, status = $2, version = $3, updated_at = $4
         WHERE account_no = $5 AND version = $6",
    )
    .bind(account.balance.won())
    .bind(account.status.as_str())
    .bind(account.version)
    .bind(now)
    .bind(&account.account_no)
    .bind(account.version - 1)
    .execute(conn)
    .await?;
    if result.rows_affected() != 1 {
        return Err(sqlx::Error::Protocol(format!(
            "account {} changed concurrently",
            account.account_no
        )));
    }
    Ok(())
}

pub async fn all(pool: &AnyPool) -> Result<Vec<Account>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT account_no, customer_id, balance, status, version FROM accounts ORDER BY account_no",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(from_row).collect()
}

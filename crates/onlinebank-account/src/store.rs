//! account's store (SQLite or PostgreSQL, one portable SQL).

use crate::domain::{Account, Status};
use onlinebank_core::args;
use onlinebank_core::batch_row;
use onlinebank_core::db::batch::BatchRow;
use onlinebank_core::db::{json_rows, Conn, Error, FromRow, Row};
use onlinebank_core::ids::{AccountNo, CustomerId};
use onlinebank_core::money::Balance;

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

batch_row! {
    /// An account asked for by [`load_all`].
    struct Wanted<'a> {
        account_no: &'a str => Text,
    }
}

batch_row! {
    /// A new account written by [`save_all`].
    struct NewAccount<'a> {
        account_no: &'a AccountNo => Text,
        customer_id: &'a CustomerId => Text,
        balance: Balance => BigInt,
        status: &'static str => Text,
        version: i64 => BigInt,
    }
}

batch_row! {
    /// An account's new state written by [`save_all`] over the version it was decided on.
    struct AccountUpdate<'a> {
        account_no: &'a AccountNo => Text,
        balance: Balance => BigInt,
        status: &'static str => Text,
        version: i64 => BigInt,
        decided_on: i64 => BigInt,
    }
}

/// The stored accounts among `account_nos`, in ONE statement.
pub async fn load_all(conn: &mut Conn, account_nos: &[&str]) -> Result<Vec<Account>, Error> {
    if account_nos.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: Vec<Wanted> = account_nos
        .iter()
        .map(|account_no| Wanted { account_no })
        .collect();
    conn.fetch_all(
        &format!(
            "SELECT {COLUMNS} FROM accounts WHERE {}",
            conn.engine()
                .json_key_in("account_no", "$1", const { Wanted::field("account_no") })
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
    if !created.is_empty() {
        let rows: Vec<_> = created
            .iter()
            .map(|account| NewAccount {
                account_no: &account.account_no,
                customer_id: &account.customer_id,
                balance: account.balance,
                status: account.status.as_str(),
                version: account.version,
            })
            .collect();
        conn.execute(
            &format!(
                "INSERT INTO accounts ({}, opened_at, updated_at) SELECT {}, $1, $1 FROM {}",
                NewAccount::columns(),
                NewAccount::select(),
                conn.engine().json_rows("$2")
            ),
            args![now, json_rows(&rows)?.as_str()],
        )
        .await?;
    }
    if !updated.is_empty() {
        let rows: Vec<_> = updated
            .iter()
            .map(|(account, decided_on)| AccountUpdate {
                account_no: &account.account_no,
                balance: account.balance,
                status: account.status.as_str(),
                version: account.version,
                decided_on: *decided_on,
            })
            .collect();
        let account_no = const { AccountUpdate::field("account_no") };
        let changed = conn
            .execute(
                &format!(
                    "UPDATE accounts SET balance = {}, status = {}, version = {}, updated_at = $1
                     FROM {}
                     WHERE accounts.account_no = {} {}
                       AND accounts.version = {}",
                    const { AccountUpdate::field("balance") }.read(),
                    const { AccountUpdate::field("status") }.read(),
                    const { AccountUpdate::field("version") }.read(),
                    conn.engine().json_rows("$2"),
                    account_no.read(),
                    conn.engine()
                        .json_join_by_index("accounts.account_no", "$2", account_no),
                    const { AccountUpdate::field("decided_on") }.read(),
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

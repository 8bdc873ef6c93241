//! account's store (SQLite or PostgreSQL, one portable SQL).

use crate::domain::{Account, Outflow, Status};
use onlinebank_core::args;
use onlinebank_core::batch_row;
use onlinebank_core::db::batch::BatchRow;
use onlinebank_core::db::{json_rows, Conn, Error, FromRow, Row};
use onlinebank_core::ids::{AccountNo, CustomerId};
use onlinebank_core::money::{Balance, Won};
use onlinebank_core::time::Day;

const COLUMNS: &str =
    "account_no, customer_id, balance, status, version, outflow_day, outflow_won, in_flight";

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
            outflow: outflow(row)?,
            in_flight: in_flight(row.get(7)?)?,
        })
    }
}

/// The stored won in flight: never negative.
fn in_flight(raw: i64) -> Result<Won, Error> {
    Won::from_stored(raw).map_err(|_| Error::Decode(format!("stored money in flight {raw}")))
}

/// The stored day's outflow: both columns or neither.
fn outflow(row: &Row<'_>) -> Result<Option<Outflow>, Error> {
    let day = row.parsed_opt(5, "outflow day", Day::parse)?;
    let won: Option<i64> = row.get(6)?;
    Ok(match (day, won) {
        (Some(day), Some(won)) => Some(Outflow {
            day,
            won: Won::from_stored(won)
                .map_err(|_| Error::Decode(format!("stored outflow {won}")))?,
        }),
        _ => None,
    })
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
        outflow_day: Option<String> => Text,
        outflow_won: Option<Won> => BigInt,
        in_flight: Won => BigInt,
    }
}

batch_row! {
    /// An account's new state written by [`save_all`] over the version it was decided on.
    struct AccountUpdate<'a> {
        account_no: &'a AccountNo => Text,
        balance: Balance => BigInt,
        status: &'static str => Text,
        version: i64 => BigInt,
        outflow_day: Option<String> => Text,
        outflow_won: Option<Won> => BigInt,
        in_flight_change: i64 => BigInt,
        decided_on: i64 => BigInt,
    }
}

/// An account's new state over the state it was decided on.
#[derive(Debug, Clone, Copy)]
pub struct Update<'a> {
    pub after: &'a Account,
    pub loaded: &'a Account,
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
/// `updated` applies only over the version it was decided on; if one does not, nothing is kept
/// (the caller's transaction fails with [`Error::Conflict`]). Money in flight is written as the
/// change from the loaded state (the second leg of a transfer releases it without moving the
/// source's version).
pub async fn save_all(
    conn: &mut Conn,
    created: &[&Account],
    updated: &[Update<'_>],
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
                outflow_day: account.outflow.map(|o| o.day.to_string()),
                outflow_won: account.outflow.map(|o| o.won),
                // Opened and transferring out in the same batch: its money is in flight already.
                in_flight: account.in_flight,
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
            .map(|Update { after, loaded }| AccountUpdate {
                account_no: &after.account_no,
                balance: after.balance,
                status: after.status.as_str(),
                version: after.version,
                outflow_day: after.outflow.map(|o| o.day.to_string()),
                outflow_won: after.outflow.map(|o| o.won),
                in_flight_change: after.in_flight.won() - loaded.in_flight.won(),
                decided_on: loaded.version,
            })
            .collect();
        let account_no = const { AccountUpdate::field("account_no") };
        let changed = conn
            .execute(
                &format!(
                    "UPDATE accounts SET balance = {}, status = {}, version = {}, outflow_day = {},
                         outflow_won = {}, in_flight = accounts.in_flight + {}, updated_at = $1
                     FROM {}
                     WHERE accounts.account_no = {} {}
                       AND accounts.version = {}",
                    const { AccountUpdate::field("balance") }.read(),
                    const { AccountUpdate::field("status") }.read(),
                    const { AccountUpdate::field("version") }.read(),
                    const { AccountUpdate::field("outflow_day") }.read(),
                    const { AccountUpdate::field("outflow_won") }.read(),
                    const { AccountUpdate::field("in_flight_change") }.read(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use onlinebank_core::db::Db;

    fn account(no: &str, customer: &str, balance: i64, status: Status, version: i64) -> Account {
        Account {
            account_no: AccountNo::parse(no).unwrap(),
            customer_id: CustomerId::parse(customer).unwrap(),
            balance: Balance::try_from(balance).unwrap(),
            status,
            version,
            outflow: None,
            in_flight: Won::ZERO,
        }
    }

    type Stored = (
        String,
        String,
        i64,
        String,
        i64,
        Option<String>,
        Option<i64>,
        i64,
    );

    /// The accounts as a plain SELECT reads them.
    async fn stored(conn: &mut Conn) -> Vec<Stored> {
        conn.fetch_all(
            &format!("SELECT {COLUMNS} FROM accounts ORDER BY account_no"),
            &[],
        )
        .await
        .unwrap()
    }

    fn fields(account: &Account) -> Stored {
        (
            account.account_no.to_string(),
            account.customer_id.to_string(),
            account.balance.won(),
            account.status.as_str().to_owned(),
            account.version,
            account.outflow.map(|o| o.day.to_string()),
            account.outflow.map(|o| o.won.won()),
            account.in_flight.won(),
        )
    }

    /// Accounts created and updated by [`save_all`] read back by a plain SELECT and by
    /// [`load_all`], text with quotes and unicode intact; an update over a version that is not
    /// the stored one keeps nothing.
    async fn accounts_round_trip(db: Db) {
        db.migrate(&crate::migrations()).await.unwrap();
        let plain = account("1001", "1@sk.com", 100, Status::Open, 1);
        let quoted = account("110-000000002", "o'\"né\"@例え.jp", 7, Status::Open, 1);
        let mut moved = plain.clone();
        moved.balance = Balance::try_from(9_000_000_000_000).unwrap();
        moved.version = 2;
        moved.outflow = Some(Outflow {
            day: Day::parse("2026-12-07").unwrap(),
            won: Won::from_stored(4_999_999).unwrap(),
        });
        moved.in_flight = Won::from_stored(250).unwrap();
        let mut closed = quoted.clone();
        closed.status = Status::Closed;
        closed.version = 2;
        let created = [plain.clone(), quoted.clone()];
        let updated = [moved.clone(), closed.clone()];
        let loaded_at = created.clone();
        let (after_create, after_update, mut loaded) = db
            .write(move |conn| {
                Box::pin(async move {
                    save_all(conn, &[&created[0], &created[1]], &[]).await?;
                    let after_create = stored(conn).await;
                    let updates = [
                        Update {
                            after: &updated[0],
                            loaded: &loaded_at[0],
                        },
                        Update {
                            after: &updated[1],
                            loaded: &loaded_at[1],
                        },
                    ];
                    save_all(conn, &[], &updates).await?;
                    let after_update = stored(conn).await;
                    let loaded = load_all(conn, &["110-000000002", "1001", "9999"]).await?;
                    Ok::<_, Error>((after_create, after_update, loaded))
                })
            })
            .await
            .unwrap();
        assert_eq!(after_create, [fields(&plain), fields(&quoted)]);
        assert_eq!(after_update, [fields(&moved), fields(&closed)]);
        loaded.sort_by(|a, b| a.account_no.cmp(&b.account_no));
        assert_eq!(loaded, [moved.clone(), closed]);
        let stale = db
            .write(move |conn| {
                Box::pin(async move {
                    let update = Update {
                        after: &moved,
                        loaded: &plain,
                    };
                    save_all(conn, &[], &[update]).await
                })
            })
            .await;
        assert!(matches!(
            stale,
            Err(onlinebank_core::db::GroupError::Job(Error::Conflict(_)))
        ));
    }

    #[tokio::test]
    async fn accounts_round_trip_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("account.db").display().to_string();
        accounts_round_trip(Db::open(&url, "account").await.unwrap()).await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (ONLINEBANK_TEST_POSTGRES): ./.ci/run runs it"]
    async fn accounts_round_trip_on_postgres() {
        accounts_round_trip(onlinebank_core::db::testing::postgres_db("account", "account").await)
            .await;
    }
}

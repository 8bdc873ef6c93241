//! Folding account events into the read model: a batch's changes in two statements (the
//! accounts' latest state, their transactions), whatever the batch's size.

use onlinebank_bus::handler::EventHandler;
use onlinebank_core::args;
use onlinebank_core::batch_row;
use onlinebank_core::db::batch::BatchRow;
use onlinebank_core::db::{json_rows, BoxFuture, Conn, Error};
use onlinebank_core::event::{
    AccountRequestCancelled, AccountStatus, Entry, EntryKind, Envelope, Event,
};
use onlinebank_core::ids::RequestId;
use onlinebank_core::ids::{AccountNo, CustomerId};
use onlinebank_core::money::{Balance, Won};
use std::collections::HashMap;

batch_row! {
    /// An account's latest state, its last request completed by it.
    struct AccountView<'a> {
        account_no: &'a AccountNo => Text,
        customer_id: &'a CustomerId => Text,
        balance: Balance => BigInt,
        status: AccountStatus => Text,
        version: i64 => BigInt,
        opened_at: &'a str => Text,
        updated_at: &'a str => Text,
        last_request_id: RequestId => Text,
        last_request_kind: EntryKind => Text,
        last_request_amount: Won => BigInt,
    }
}

batch_row! {
    /// One of an account's transactions.
    struct TransactionView<'a> {
        account_no: &'a AccountNo => Text,
        version: i64 => BigInt,
        request_id: RequestId => Text,
        kind: EntryKind => Text,
        amount: Won => BigInt,
        balance_after: Balance => BigInt,
        occurred_at: &'a str => Text,
        counterpart_account_no: Option<&'a AccountNo> => Text,
    }
}

/// The read model's projection of account events.
#[derive(Clone)]
pub struct ReadModel;

impl EventHandler for ReadModel {
    fn apply<'c>(
        &'c self,
        conn: &'c mut Conn,
        events: &'c [Envelope],
    ) -> BoxFuture<'c, anyhow::Result<()>> {
        Box::pin(apply(conn, events))
    }
}

/// What a batch of events does to the read model, decided without I/O.
#[derive(Debug)]
enum Step<'e> {
    /// Account changes in bus order: each account's newest state (one row per account) and
    /// every transaction.
    Changes {
        accounts: Vec<AccountView<'e>>,
        transactions: Vec<TransactionView<'e>>,
    },
    /// A refused request, shown as the account's last request.
    Cancelled {
        cancelled: &'e AccountRequestCancelled,
        at: &'e str,
    },
}

/// One item of an account's history with its time, as a batch gathers them.
#[derive(Debug, Clone, Copy)]
struct Change<'e> {
    entry: Entry<'e>,
    at: &'e str,
}

async fn apply(conn: &mut Conn, events: &[Envelope]) -> anyhow::Result<()> {
    for step in plan(events) {
        match step {
            Step::Changes {
                accounts,
                transactions,
            } => {
                upsert_accounts(conn, &accounts).await?;
                insert_transactions(conn, &transactions).await?;
            }
            Step::Cancelled { cancelled, at } => apply_cancelled(conn, cancelled, at).await?,
        }
    }
    Ok(())
}

/// The read model's writes for `events`, in order. A cancellation names the account's last
/// request, so the changes before it are written first.
fn plan(events: &[Envelope]) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    let mut changes: Vec<Change<'_>> = Vec::with_capacity(events.len());
    for envelope in events {
        let (event, at) = (&envelope.event, envelope.occurred_at.as_str());
        if let Some(entry) = event.entry() {
            changes.push(Change { entry, at });
        } else if let Event::AccountRequestCancelled(cancelled) = event {
            steps.extend(fold(&changes));
            changes.clear();
            steps.push(Step::Cancelled { cancelled, at });
        }
    }
    steps.extend(fold(&changes));
    steps
}

/// Account changes in bus order as rows: every one in the transactions, each account's newest
/// in its row (a row is only ever moved to a newer version); none for no changes.
fn fold<'e>(changes: &[Change<'e>]) -> Option<Step<'e>> {
    if changes.is_empty() {
        return None;
    }
    // One row per account (PostgreSQL refuses to upsert a row twice in one statement): the
    // newest change, opened at the batch's first change of the account if the row is new.
    let mut newest: HashMap<&str, (usize, &str)> = HashMap::new();
    for (index, Change { entry, at }) in changes.iter().enumerate() {
        newest
            .entry(entry.account_no.as_str())
            .and_modify(|(kept, _)| {
                if changes[*kept].entry.version < entry.version {
                    *kept = index;
                }
            })
            .or_insert((index, at));
    }
    let mut accounts: Vec<(usize, &str)> = newest.into_values().collect();
    accounts.sort_unstable();
    let accounts = accounts
        .into_iter()
        .map(|(index, opened_at)| account_view(changes[index], opened_at))
        .collect();
    let transactions = changes
        .iter()
        .map(|&change| transaction_view(change))
        .collect();
    Some(Step::Changes {
        accounts,
        transactions,
    })
}

fn account_view<'e>(Change { entry, at }: Change<'e>, opened_at: &'e str) -> AccountView<'e> {
    AccountView {
        account_no: entry.account_no,
        customer_id: entry.customer_id,
        balance: entry.balance,
        status: status(entry.kind),
        version: entry.version,
        opened_at,
        updated_at: at,
        last_request_id: entry.request_id,
        last_request_kind: entry.kind,
        last_request_amount: entry.amount,
    }
}

fn transaction_view(Change { entry, at }: Change<'_>) -> TransactionView<'_> {
    TransactionView {
        account_no: entry.account_no,
        version: entry.version,
        request_id: entry.request_id,
        kind: entry.kind,
        amount: entry.amount,
        balance_after: entry.balance,
        occurred_at: at,
        counterpart_account_no: entry.counterpart,
    }
}

/// Moves each account's row to its state in `accounts` (at most one per account), unless the
/// row is already at that version or newer; ONE statement.
async fn upsert_accounts(conn: &mut Conn, accounts: &[AccountView<'_>]) -> Result<(), Error> {
    conn.execute(
        &format!(
            "INSERT INTO accounts_view ({}, last_request_status, last_request_at)
             SELECT {}, 'RequestCompleted', {} FROM {} WHERE true
             ON CONFLICT (account_no) DO UPDATE SET
                 balance = excluded.balance, status = excluded.status, version = excluded.version,
                 updated_at = excluded.updated_at, last_request_id = excluded.last_request_id,
                 last_request_kind = excluded.last_request_kind,
                 last_request_amount = excluded.last_request_amount,
                 last_request_status = excluded.last_request_status,
                 last_request_at = excluded.last_request_at
             WHERE excluded.version > accounts_view.version",
            AccountView::columns(),
            AccountView::select(),
            const { AccountView::field("updated_at") }.read(),
            conn.engine().json_rows("$1")
        ),
        args![json_rows(accounts)?.as_str()],
    )
    .await?;
    Ok(())
}

/// Records `transactions` (one already recorded is skipped); ONE statement.
async fn insert_transactions(
    conn: &mut Conn,
    transactions: &[TransactionView<'_>],
) -> Result<(), Error> {
    conn.execute(
        &format!(
            "INSERT INTO transactions_view ({}) SELECT {} FROM {} WHERE true
             ON CONFLICT DO NOTHING",
            TransactionView::columns(),
            TransactionView::select(),
            conn.engine().json_rows("$1")
        ),
        args![json_rows(transactions)?.as_str()],
    )
    .await?;
    Ok(())
}

fn status(kind: EntryKind) -> AccountStatus {
    if kind == EntryKind::Close {
        AccountStatus::Closed
    } else {
        AccountStatus::Open
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
            EntryKind::of_write(cancelled.kind).as_str(),
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
    use onlinebank_core::event::{AccountChanged, Event, WriteKind};
    use onlinebank_core::ids::RequestId;
    use onlinebank_core::ids::{AccountNo, CustomerId};
    use onlinebank_core::money::{Balance, Won};
    use onlinebank_core::Reason;
    use std::sync::LazyLock;

    fn change(kind: WriteKind, account: &str, amount: i64, balance: i64, version: i64) -> Event {
        let change = AccountChanged {
            request_id: RequestId::generate(),
            customer_id: CustomerId::parse("1@sk.com").unwrap(),
            account_no: AccountNo::parse(account).unwrap(),
            amount: Won::from_stored(amount).unwrap(),
            balance: Balance::try_from(balance).unwrap(),
            version,
        };
        Event::account_changed(kind, change).unwrap()
    }

    fn cancelled(account: &str) -> Event {
        Event::AccountRequestCancelled(AccountRequestCancelled {
            request_id: RequestId::generate(),
            customer_id: CustomerId::parse("1@sk.com").unwrap(),
            kind: WriteKind::Withdraw,
            account_no: AccountNo::parse(account).unwrap(),
            amount: Won::from_stored(999).unwrap(),
            reason: Reason::InsufficientFunds,
            message: String::new(),
            allowed_today: None,
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

    /// A batch planned without a database: the changes before a refusal are written before
    /// it; one row per account, at its newest change, opened at its first change of the batch;
    /// every change a transaction; a close leaves the row closed.
    #[test]
    fn a_batch_is_planned_as_rows_in_order_without_io() {
        let events: Vec<Envelope> = [
            change(WriteKind::Open, "1001", 100, 100, 1),
            change(WriteKind::Deposit, "1001", 50, 150, 2),
            cancelled("1001"),
            change(WriteKind::Withdraw, "1001", 150, 0, 3),
            change(WriteKind::Close, "1001", 0, 0, 4),
        ]
        .into_iter()
        .map(|event| event.into_envelope(1))
        .collect();
        let steps = plan(&events);
        assert_eq!(steps.len(), 3, "{steps:?}");
        let Step::Changes {
            accounts,
            transactions,
        } = &steps[0]
        else {
            panic!("changes first: {steps:?}")
        };
        assert_eq!(accounts.len(), 1);
        assert_eq!(
            (
                accounts[0].version,
                accounts[0].status,
                accounts[0].opened_at
            ),
            (2, AccountStatus::Open, events[0].occurred_at.as_str())
        );
        assert_eq!(transactions.len(), 2);
        assert!(matches!(steps[1], Step::Cancelled { .. }), "{steps:?}");
        let Step::Changes {
            accounts,
            transactions,
        } = &steps[2]
        else {
            panic!("changes last: {steps:?}")
        };
        assert_eq!(
            (accounts[0].version, accounts[0].status),
            (4, AccountStatus::Closed)
        );
        assert_eq!(
            transactions.iter().map(|t| t.version).collect::<Vec<_>>(),
            [3, 4]
        );
        assert!(plan(&[]).is_empty());
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

    // The rows borrow their ids, and a write job is `'static`.
    static FIRST: LazyLock<AccountNo> = LazyLock::new(|| AccountNo::parse("1001").unwrap());
    static SECOND: LazyLock<AccountNo> =
        LazyLock::new(|| AccountNo::parse("110-000000002").unwrap());
    static PLAIN: LazyLock<CustomerId> = LazyLock::new(|| CustomerId::parse("1@sk.com").unwrap());
    static QUOTED: LazyLock<CustomerId> =
        LazyLock::new(|| CustomerId::parse("o'\"né\"@例え.jp").unwrap());

    type ViewTexts = (String, String, String, String, String, String, String);
    type ViewRest = (i64, i64, i64, String, String);

    /// The accounts' rows as a plain SELECT reads them: text fields, then the others.
    async fn stored_accounts(db: &Db) -> (Vec<ViewTexts>, Vec<ViewRest>) {
        let mut conn = db.read().await.unwrap();
        let texts = conn
            .fetch_all(
                "SELECT account_no, customer_id, status, opened_at, updated_at, last_request_id,
                        last_request_kind
                 FROM accounts_view ORDER BY account_no",
                &[],
            )
            .await
            .unwrap();
        let rest = conn
            .fetch_all(
                "SELECT balance, version, last_request_amount, last_request_status, last_request_at
                 FROM accounts_view ORDER BY account_no",
                &[],
            )
            .await
            .unwrap();
        (texts, rest)
    }

    /// What [`stored_accounts`] reads of `views` (in account order).
    fn account_fields(views: &[&AccountView]) -> (Vec<ViewTexts>, Vec<ViewRest>) {
        views
            .iter()
            .map(|view| {
                let texts = (
                    view.account_no.to_string(),
                    view.customer_id.to_string(),
                    view.status.as_str().to_owned(),
                    view.opened_at.to_owned(),
                    view.updated_at.to_owned(),
                    view.last_request_id.to_string(),
                    view.last_request_kind.as_str().to_owned(),
                );
                let rest = (
                    view.balance.won(),
                    view.version,
                    view.last_request_amount.won(),
                    "RequestCompleted".to_owned(),
                    view.updated_at.to_owned(),
                );
                (texts, rest)
            })
            .unzip()
    }

    /// Rows written by [`upsert_accounts`] and [`insert_transactions`] read back by a plain
    /// SELECT, text with quotes and unicode intact; an older version moves no account row and
    /// a recorded transaction is not recorded again.
    async fn views_round_trip(db: Db) {
        db.migrate(&crate::migrations()).await.unwrap();
        let (first, second, plain, quoted) = (&*FIRST, &*SECOND, &*PLAIN, &*QUOTED);
        let view = |account_no, customer_id, balance, version, at| AccountView {
            account_no,
            customer_id,
            balance: Balance::try_from(balance).unwrap(),
            status: AccountStatus::Open,
            version,
            opened_at: "2026-12-07T05:00:00Z",
            updated_at: at,
            last_request_id: RequestId::generate(),
            last_request_kind: EntryKind::Deposit,
            last_request_amount: Won::try_from(balance).unwrap(),
        };
        let opened = [
            view(first, plain, 100, 2, "at 'noon' \"例\" 🙂"),
            view(second, quoted, 7, 1, "2026-12-07T05:00:01Z"),
        ];
        let later = [
            view(first, plain, 9_000_000_000_000, 1, "older"),
            view(second, quoted, 8, 2, "2026-12-07T05:00:02Z"),
        ];
        let transaction = |account_no, version, kind, at| TransactionView {
            account_no,
            version,
            request_id: RequestId::generate(),
            kind,
            amount: Won::try_from(5).unwrap(),
            balance_after: Balance::try_from(105).unwrap(),
            occurred_at: at,
            counterpart_account_no: None,
        };
        let transactions = [
            transaction(first, 1, EntryKind::Open, "at 'noon' \"例\" 🙂"),
            transaction(second, 2, EntryKind::Withdraw, "2026-12-07T05:00:02Z"),
        ];
        for (views, transactions) in [(&opened, &transactions), (&later, &transactions)] {
            let views: Vec<AccountView<'static>> = views.to_vec();
            let transactions = transactions.to_vec();
            db.write(move |conn| {
                Box::pin(async move {
                    upsert_accounts(conn, &views).await?;
                    insert_transactions(conn, &transactions).await
                })
            })
            .await
            .unwrap();
        }
        assert_eq!(
            stored_accounts(&db).await,
            account_fields(&[&opened[0], &later[1]])
        );
        type Stored = (String, i64, String, String, i64, i64, String);
        let stored: Vec<Stored> = db
            .read()
            .await
            .unwrap()
            .fetch_all(
                "SELECT account_no, version, request_id, kind, amount, balance_after, occurred_at
                 FROM transactions_view ORDER BY account_no",
                &[],
            )
            .await
            .unwrap();
        let sent: Vec<Stored> = transactions
            .iter()
            .map(|row| {
                (
                    row.account_no.to_string(),
                    row.version,
                    row.request_id.to_string(),
                    row.kind.as_str().to_owned(),
                    row.amount.won(),
                    row.balance_after.won(),
                    row.occurred_at.to_owned(),
                )
            })
            .collect();
        assert_eq!(stored, sent);
    }

    #[tokio::test]
    async fn views_round_trip_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("mypage.db").display().to_string();
        views_round_trip(Db::open(&url, "mypage").await.unwrap()).await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (ONLINEBANK_TEST_POSTGRES): ./.ci/run runs it"]
    async fn views_round_trip_on_postgres() {
        views_round_trip(onlinebank_core::db::testing::postgres_db("mypage", "mypage").await).await;
    }
}

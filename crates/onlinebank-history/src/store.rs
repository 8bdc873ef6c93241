//! history's store: the ledger's entries (SQLite or PostgreSQL, one portable SQL).

use onlinebank_core::args;
use onlinebank_core::batch_row;
use onlinebank_core::db::batch::BatchRow;
use onlinebank_core::db::{json_rows, Conn, Error};
use onlinebank_core::event::EntryKind;
use onlinebank_core::ids::RequestId;
use onlinebank_core::ids::{AccountNo, CustomerId};
use onlinebank_core::money::{Balance, Won};
use uuid::Uuid;

batch_row! {
    /// One ledger entry: an account change, `signed_amount` being what it adds to the balance.
    pub struct LedgerEntry<'a> {
        pub event_id: Uuid => Text,
        pub request_id: RequestId => Text,
        pub account_no: &'a AccountNo => Text,
        pub customer_id: &'a CustomerId => Text,
        pub kind: EntryKind => Text,
        pub amount: Won => BigInt,
        pub signed_amount: i64 => BigInt,
        pub balance_after: Balance => BigInt,
        pub version: i64 => BigInt,
        pub occurred_at: &'a str => Text,
        pub counterpart_account_no: Option<&'a AccountNo> => Text,
    }
}

/// Appends `entries`, in their order, in ONE statement; an entry already recorded (same event)
/// is skipped.
pub async fn append(conn: &mut Conn, entries: &[LedgerEntry<'_>]) -> Result<(), Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO ledger ({}, recorded_at)
         SELECT {}, $1 FROM {} WHERE true ORDER BY rows.key
         ON CONFLICT DO NOTHING",
        LedgerEntry::columns(),
        LedgerEntry::select(),
        conn.engine().json_rows("$2")
    );
    let now = onlinebank_core::time::now_ms();
    conn.execute(&sql, args![now, json_rows(entries)?.as_str()])
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use onlinebank_core::db::Db;
    use std::sync::LazyLock;

    // The entries borrow their ids, and a write job is `'static`.
    static ACCOUNT: LazyLock<AccountNo> =
        LazyLock::new(|| AccountNo::parse("110-000000001").unwrap());
    static PLAIN: LazyLock<CustomerId> = LazyLock::new(|| CustomerId::parse("1@sk.com").unwrap());
    static QUOTED: LazyLock<CustomerId> =
        LazyLock::new(|| CustomerId::parse("o'\"né\"@例え.jp").unwrap());

    /// A stored entry's text fields, then its numbers.
    type Texts = (String, String, String, String, String, String);
    type Numbers = (i64, i64, i64, i64);

    /// Entries written by [`append`] read back by a plain SELECT, text with quotes and unicode
    /// intact; appending one again changes nothing.
    async fn entries_round_trip(db: Db) {
        db.migrate(&crate::migrations()).await.unwrap();
        let (account_no, plain, quoted) = (&*ACCOUNT, &*PLAIN, &*QUOTED);
        let entry = |customer_id, kind, amount, signed_amount, balance, version, at| LedgerEntry {
            event_id: Uuid::now_v7(),
            request_id: RequestId::generate(),
            account_no,
            customer_id,
            kind,
            amount: Won::try_from(amount).unwrap(),
            signed_amount,
            balance_after: Balance::try_from(balance).unwrap(),
            version,
            occurred_at: at,
            counterpart_account_no: None,
        };
        let entries = vec![
            entry(
                plain,
                EntryKind::Open,
                100,
                100,
                100,
                1,
                "2026-12-07T05:00:00Z",
            ),
            entry(
                quoted,
                EntryKind::Withdraw,
                30,
                -30,
                70,
                2,
                "at 'noon' \"例\" 🙂",
            ),
        ];
        for _ in 0..2 {
            let entries = entries.clone();
            db.write(move |conn| Box::pin(async move { append(conn, &entries).await }))
                .await
                .unwrap();
        }
        let mut conn = db.read().await.unwrap();
        let texts: Vec<Texts> = conn
            .fetch_all(
                "SELECT event_id, request_id, account_no, customer_id, kind, occurred_at
                 FROM ledger ORDER BY entry_id",
                &[],
            )
            .await
            .unwrap();
        let numbers: Vec<Numbers> = conn
            .fetch_all(
                "SELECT amount, signed_amount, balance_after, version FROM ledger ORDER BY entry_id",
                &[],
            )
            .await
            .unwrap();
        let sent: (Vec<Texts>, Vec<Numbers>) = entries
            .iter()
            .map(|entry| {
                let texts = (
                    entry.event_id.to_string(),
                    entry.request_id.to_string(),
                    entry.account_no.to_string(),
                    entry.customer_id.to_string(),
                    entry.kind.as_str().to_owned(),
                    entry.occurred_at.to_owned(),
                );
                let numbers = (
                    entry.amount.won(),
                    entry.signed_amount,
                    entry.balance_after.won(),
                    entry.version,
                );
                (texts, numbers)
            })
            .unzip();
        assert_eq!((texts, numbers), sent);
    }

    #[tokio::test]
    async fn entries_round_trip_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("history.db").display().to_string();
        entries_round_trip(Db::open(&url, "history").await.unwrap()).await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (ONLINEBANK_TEST_POSTGRES): ./.ci/run runs it"]
    async fn entries_round_trip_on_postgres() {
        entries_round_trip(onlinebank_core::db::testing::postgres_db("history", "history").await)
            .await;
    }
}

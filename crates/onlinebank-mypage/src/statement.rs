//! `GET /api/v1/accounts/{no}/statement?from=YYYY-MM-DD&to=YYYY-MM-DD&format=json|csv`: an
//! account's items between two days of the bank's calendar (`--time-zone`), both included, with
//! the balance before the first, each item's running balance and the balance after the last.
//! The CSV opens in a spreadsheet as it is: a header row, UTF-8 with a byte order mark.

use crate::api::own_account;
use crate::MypageState;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use onlinebank_core::args;
use onlinebank_core::db::{Conn, Error, FromRow, Row};
use onlinebank_core::event::EntryKind;
use onlinebank_core::http::Authenticated;
use onlinebank_core::ids::{AccountNo, RequestId};
use onlinebank_core::money::Won;
use onlinebank_core::time::{rfc3339, BankTimeZone, Day};
use onlinebank_core::ApiError;
use serde::{Deserialize, Serialize};

/// The longest range a statement covers, in days.
const MAX_DAYS: i64 = 366;
/// The most items one statement holds; a range with more is refused (ask for a shorter one).
const MAX_ITEMS: i64 = 10_000;

#[derive(Deserialize)]
pub(crate) struct StatementQuery {
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

/// What a statement is asked for, checked.
struct Range {
    from: Day,
    to: Day,
    csv: bool,
}

impl StatementQuery {
    fn range(&self) -> Result<Range, ApiError> {
        let day = |raw: &Option<String>, name: &str| {
            raw.as_deref()
                .and_then(Day::parse)
                .ok_or_else(|| ApiError::validation(format!("{name} must be a date, YYYY-MM-DD")))
        };
        let (from, to) = (day(&self.from, "from")?, day(&self.to, "to")?);
        let days = to.days_since(from);
        if !(0..MAX_DAYS).contains(&days) {
            return Err(ApiError::validation(format!(
                "to must be on or after from, at most {MAX_DAYS} days later"
            )));
        }
        let csv = match self.format.as_deref() {
            None | Some("json") => false,
            Some("csv") => true,
            Some(_) => return Err(ApiError::validation("format must be json or csv")),
        };
        Ok(Range { from, to, csv })
    }
}

/// One item of a statement: an account change and the balance after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Item {
    request_id: RequestId,
    #[serde(rename = "type")]
    kind: EntryKind,
    amount: Won,
    /// What the item added to the balance (negative for money out).
    signed_amount: i64,
    running_balance: i64,
    version: i64,
    occurred_at: String,
    /// A transfer's other account.
    #[serde(skip_serializing_if = "Option::is_none")]
    counterpart_account_no: Option<AccountNo>,
}

impl FromRow for Item {
    fn from_row(row: &Row<'_>) -> Result<Self, Error> {
        let kind = row.parsed(1, "transaction kind", EntryKind::parse)?;
        let amount: i64 = row.get(2)?;
        let amount = Won::from_stored(amount)
            .map_err(|_| Error::Decode(format!("stored amount {amount}")))?;
        Ok(Self {
            request_id: row.parsed(0, "request id", |raw| raw.parse::<RequestId>().ok())?,
            kind,
            amount,
            signed_amount: kind.signed(amount),
            running_balance: row.get(3)?,
            version: row.get(4)?,
            occurred_at: row.get(5)?,
            counterpart_account_no: row
                .parsed_opt(6, "counterpart account", |raw| AccountNo::parse(raw).ok())?,
        })
    }
}

/// An account's statement.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Statement {
    account_no: AccountNo,
    from: String,
    to: String,
    time_zone: String,
    opening_balance: i64,
    closing_balance: i64,
    items: Vec<Item>,
}

impl Statement {
    /// The statement of `items` (in version order) after a balance of `before` (the balance
    /// after the account's last item before the range, 0 if none).
    fn new(
        account_no: AccountNo,
        range: &Range,
        zone: BankTimeZone,
        before: i64,
        items: Vec<Item>,
    ) -> Self {
        let opening_balance = items
            .first()
            .map_or(before, |first| first.running_balance - first.signed_amount);
        let closing_balance = items
            .last()
            .map_or(opening_balance, |last| last.running_balance);
        Self {
            account_no,
            from: range.from.to_string(),
            to: range.to.to_string(),
            time_zone: zone.to_string(),
            opening_balance,
            closing_balance,
            items,
        }
    }

    /// The statement as CSV: a byte order mark, a header row, the opening balance, the items
    /// and the closing balance; times in the bank's time zone.
    fn csv(&self, zone: BankTimeZone) -> Result<Vec<u8>, ApiError> {
        let mut out = csv::Writer::from_writer(b"\xEF\xBB\xBF".to_vec());
        let local = |at: &str| {
            chrono::DateTime::parse_from_rfc3339(at)
                .map(|at| zone.local_text(at.to_utc()))
                .unwrap_or_else(|_| at.to_owned())
        };
        let rows = std::iter::once(
            [
                "time",
                "description",
                "amount",
                "balance",
                "request_id",
                "counterpart_account_no",
            ]
            .map(String::from),
        )
        .chain(std::iter::once(balance_row(
            format!("{} 00:00:00", self.from),
            "opening balance",
            self.opening_balance,
        )))
        .chain(self.items.iter().map(|item| {
            [
                local(&item.occurred_at),
                item.kind.as_str().to_owned(),
                item.signed_amount.to_string(),
                item.running_balance.to_string(),
                item.request_id.to_string(),
                item.counterpart_account_no
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            ]
        }))
        .chain(std::iter::once(balance_row(
            format!("{} 23:59:59", self.to),
            "closing balance",
            self.closing_balance,
        )));
        for row in rows {
            out.write_record(&row).map_err(ApiError::internal)?;
        }
        out.into_inner().map_err(ApiError::internal)
    }
}

/// A CSV row that states a balance (no amount, no request).
fn balance_row(time: String, what: &str, balance: i64) -> [String; 6] {
    [
        time,
        what.to_owned(),
        String::new(),
        balance.to_string(),
        String::new(),
        String::new(),
    ]
}

/// The items of `account_no` between `start` and `end` (RFC 3339 texts, end excluded) in
/// version order, at most [`MAX_ITEMS`] + 1, and the balance after its last item before.
async fn read(
    conn: &mut Conn,
    account_no: &AccountNo,
    start: &str,
    end: &str,
) -> Result<(i64, Vec<Item>), ApiError> {
    let items: Vec<Item> = conn
        .fetch_all(
            "SELECT request_id, kind, amount, balance_after, version, occurred_at,
                    counterpart_account_no
             FROM transactions_view
             WHERE account_no = $1 AND occurred_at >= $2 AND occurred_at < $3
             ORDER BY version LIMIT $4",
            args![account_no, start, end, MAX_ITEMS + 1],
        )
        .await?;
    let before: Option<i64> = conn
        .scalar(
            "SELECT balance_after FROM transactions_view
             WHERE account_no = $1 AND occurred_at < $2 ORDER BY version DESC LIMIT 1",
            args![account_no, start],
        )
        .await?;
    Ok((before.unwrap_or(0), items))
}

pub(crate) async fn statement(
    State(state): State<MypageState>,
    bearer: Authenticated,
    Path(account_no): Path<String>,
    Query(query): Query<StatementQuery>,
) -> Result<Response, ApiError> {
    let range = query.range()?;
    let zone = state.time_zone;
    let end = range
        .to
        .next()
        .ok_or_else(|| ApiError::validation("to is past the calendar's end"))?;
    let (start, end) = (
        rfc3339(zone.start_of(range.from)),
        rfc3339(zone.start_of(end)),
    );
    // The account and its items from one snapshot: the balances always agree.
    let mut conn = state.db.read_together().await?;
    let account = own_account(&mut conn, &bearer, &account_no).await?;
    let (before, items) = read(&mut conn, &account.account_no, &start, &end).await?;
    if items.len() as i64 > MAX_ITEMS {
        return Err(ApiError::validation(format!(
            "more than {MAX_ITEMS} items in this range: ask for a shorter one"
        )));
    }
    let statement = Statement::new(account.account_no, &range, zone, before, items);
    if !range.csv {
        return Ok(Json(statement).into_response());
    }
    let filename = format!(
        "attachment; filename=\"statement-{}-{}-{}.csv\"",
        statement.account_no, statement.from, statement.to
    );
    let body = statement.csv(zone)?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, filename),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kind: EntryKind, amount: i64, running_balance: i64, version: i64) -> Item {
        let amount = Won::from_stored(amount).unwrap();
        Item {
            request_id: RequestId::generate(),
            kind,
            amount,
            signed_amount: kind.signed(amount),
            running_balance,
            version,
            occurred_at: "2026-12-07T01:02:03.000Z".to_owned(),
            counterpart_account_no: None,
        }
    }

    fn range() -> Range {
        Range {
            from: Day::parse("2026-12-07").unwrap(),
            to: Day::parse("2026-12-08").unwrap(),
            csv: false,
        }
    }

    /// The opening balance is the first item's balance before it; each running balance is the
    /// one before plus the item; the closing balance is the last one's, or the opening one.
    #[test]
    fn balances_reconcile_from_opening_to_closing() {
        let items = vec![
            item(EntryKind::Deposit, 500, 1_500, 3),
            item(EntryKind::Withdraw, 200, 1_300, 4),
        ];
        let no = AccountNo::parse("1001").unwrap();
        let statement = Statement::new(no.clone(), &range(), BankTimeZone::default(), 999, items);
        assert_eq!(
            (statement.opening_balance, statement.closing_balance),
            (1_000, 1_300)
        );
        let empty = Statement::new(no, &range(), BankTimeZone::default(), 700, Vec::new());
        assert_eq!((empty.opening_balance, empty.closing_balance), (700, 700));
    }

    /// The CSV starts with a byte order mark and a header row; times are local to the bank.
    #[test]
    fn the_csv_opens_in_a_spreadsheet() {
        let no = AccountNo::parse("1001").unwrap();
        let mut transfer = item(EntryKind::TransferIn, 50, 850, 3);
        transfer.counterpart_account_no = Some(AccountNo::parse("2002").unwrap());
        let items = vec![item(EntryKind::Withdraw, 200, 800, 2), transfer];
        let statement = Statement::new(no, &range(), BankTimeZone::default(), 0, items);
        let csv = statement.csv(BankTimeZone::default()).unwrap();
        let text = String::from_utf8(csv).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("\u{feff}time,description,amount,balance,request_id,counterpart_account_no")
        );
        assert_eq!(
            lines.next(),
            Some("2026-12-07 00:00:00,opening balance,,1000,,")
        );
        let withdrawal = lines.next().unwrap_or_default();
        assert!(
            withdrawal.starts_with("2026-12-07 10:02:03,withdraw,-200,800,"),
            "{withdrawal}"
        );
        assert!(withdrawal.ends_with(','), "{withdrawal}");
        let transfer = lines.next().unwrap_or_default();
        assert!(
            transfer.starts_with("2026-12-07 10:02:03,transfer_in,50,850,")
                && transfer.ends_with(",2002"),
            "{transfer}"
        );
        assert_eq!(
            lines.next(),
            Some("2026-12-08 23:59:59,closing balance,,850,,")
        );
    }

    #[test]
    fn ranges_are_checked() {
        let query = |from: &str, to: &str, format: Option<&str>| StatementQuery {
            from: Some(from.to_owned()),
            to: Some(to.to_owned()),
            format: format.map(str::to_owned),
        };
        assert!(query("2026-12-01", "2026-12-31", None).range().is_ok());
        assert!(
            query("2026-12-01", "2026-12-01", Some("csv"))
                .range()
                .unwrap()
                .csv
        );
        for bad in [
            query("2026-12-02", "2026-12-01", None),
            query("2026-01-01", "2027-01-02", None),
            query("yesterday", "2026-12-01", None),
            query("2026-12-01", "2026-12-01", Some("pdf")),
        ] {
            let error = bad.range().err().map(|e| e.code.as_str().to_owned());
            assert_eq!(error.as_deref(), Some("invalid_request"));
        }
    }
}

//! mypage's HTTP handlers: every customer read, from the read model only.

use crate::MypageState;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use onlinebank_core::args;
use onlinebank_core::command::{Command, ReadKind, RequestBody};
use onlinebank_core::db::{Conn, Error, FromRow, Row};
use onlinebank_core::event::{AccountStatus, EntryKind};
use onlinebank_core::http::{require_internal, shed, Authenticated, JsonBody};
use onlinebank_core::ids::RequestId;
use onlinebank_core::ids::{AccountNo, CustomerId};
use onlinebank_core::internal;
use onlinebank_core::money::Balance;
use onlinebank_core::{ApiError, Reason};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::Semaphore;

pub(crate) fn router(
    state: MypageState,
    internal_token: Arc<str>,
    max_in_flight_reads: usize,
) -> Router {
    let internal = Router::new()
        .route(internal::ACCOUNTS, get(all_accounts))
        .route_layer(middleware::from_fn_with_state(
            internal_token,
            require_internal,
        ));
    Router::new()
        .route(
            "/api/v1/ping",
            get(|| async { Json(json!({"pong": true})) }),
        )
        .route("/api/v1/accounts", get(my_accounts))
        .route("/api/v1/accounts/{account_no}", get(account_detail))
        .route(
            "/api/v1/accounts/{account_no}/transactions",
            get(account_transactions),
        )
        .route(
            "/api/v1/accounts/{account_no}/statement",
            get(crate::statement::statement),
        )
        .route("/api/v1/requests", post(read_request))
        .route_layer(middleware::from_fn_with_state(
            ("mypage", Arc::new(Semaphore::new(max_in_flight_reads))),
            shed,
        ))
        .merge(internal)
        .with_state(state)
}

pub(crate) struct AccountRow {
    pub(crate) account_no: AccountNo,
    customer_id: CustomerId,
    balance: Balance,
    status: String,
    version: i64,
    opened_at: String,
    updated_at: String,
    last_request_id: Option<RequestId>,
    last_request_kind: Option<EntryKind>,
    last_request_amount: Option<i64>,
    last_request_status: Option<String>,
    last_request_at: Option<String>,
}

const ACCOUNT_COLUMNS: &str =
    "account_no, customer_id, balance, status, version, opened_at, updated_at,
    last_request_id, last_request_kind, last_request_amount, last_request_status, last_request_at";

impl FromRow for AccountRow {
    fn from_row(row: &Row<'_>) -> Result<Self, Error> {
        Ok(Self {
            account_no: row.parsed(0, "account number", |raw| AccountNo::parse(raw).ok())?,
            customer_id: row.parsed(1, "customer id", |raw| CustomerId::parse(raw).ok())?,
            balance: row.balance(2)?,
            status: row.get(3)?,
            version: row.get(4)?,
            opened_at: row.get(5)?,
            updated_at: row.get(6)?,
            last_request_id: row
                .parsed_opt(7, "request id", |raw| raw.parse::<RequestId>().ok())?,
            last_request_kind: row.parsed_opt(8, "request kind", EntryKind::parse)?,
            last_request_amount: row.get(9)?,
            last_request_status: row.get(10)?,
            last_request_at: row.get(11)?,
        })
    }
}

impl AccountRow {
    /// The account as listed: number, balance, status, version and times.
    fn summary(&self) -> AccountSummary<'_> {
        AccountSummary {
            account_no: &self.account_no,
            balance: self.balance,
            status: &self.status,
            version: self.version,
            opened_at: &self.opened_at,
            updated_at: &self.updated_at,
        }
    }

    /// `GET /api/v1/accounts/{no}`: the account, its last request and recent transactions.
    fn detail<'a>(&'a self, recent: &'a [TransactionRow]) -> AccountDetail<'a> {
        AccountDetail {
            summary: self.summary(),
            transactions: recent,
            last_request: self.last_request_id.map(|request_id| LastRequest {
                request_id,
                kind: self.last_request_kind,
                amount: self.last_request_amount,
                status: self.last_request_status.as_deref(),
                at: self.last_request_at.as_deref(),
            }),
        }
    }
}

/// An account as listed, serialised straight from its row.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AccountSummary<'a> {
    account_no: &'a AccountNo,
    balance: Balance,
    status: &'a str,
    version: i64,
    opened_at: &'a str,
    updated_at: &'a str,
}

/// The answer to `GET /api/v1/accounts/{no}`, serialised straight from the rows.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AccountDetail<'a> {
    #[serde(flatten)]
    summary: AccountSummary<'a>,
    transactions: &'a [TransactionRow],
    last_request: Option<LastRequest<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LastRequest<'a> {
    request_id: RequestId,
    #[serde(rename = "type")]
    kind: Option<EntryKind>,
    amount: Option<i64>,
    status: Option<&'a str>,
    at: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TransactionRow {
    request_id: RequestId,
    #[serde(rename = "type")]
    kind: EntryKind,
    amount: i64,
    balance_after: Balance,
    version: i64,
    occurred_at: String,
    /// A transfer's other account.
    #[serde(skip_serializing_if = "Option::is_none")]
    counterpart_account_no: Option<AccountNo>,
}

impl FromRow for TransactionRow {
    fn from_row(row: &Row<'_>) -> Result<Self, Error> {
        Ok(Self {
            request_id: row.parsed(0, "request id", |raw| raw.parse::<RequestId>().ok())?,
            kind: row.parsed(1, "transaction kind", EntryKind::parse)?,
            amount: row.get(2)?,
            balance_after: row.balance(3)?,
            version: row.get(4)?,
            occurred_at: row.get(5)?,
            counterpart_account_no: row
                .parsed_opt(6, "counterpart account", |raw| AccountNo::parse(raw).ok())?,
        })
    }
}

fn account_not_found() -> ApiError {
    ApiError::not_found(Reason::AccountNotFound.into(), "account not found")
}

/// The caller's own account, or 404 whether it is missing or someone else's.
pub(crate) async fn own_account(
    conn: &mut Conn,
    bearer: &Authenticated,
    account_no: &str,
) -> Result<AccountRow, ApiError> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts_view WHERE account_no = $1");
    let row: Option<AccountRow> = conn.fetch_optional(&sql, args![account_no]).await?;
    row.filter(|row| row.customer_id.as_str() == bearer.customer_id())
        .ok_or_else(account_not_found)
}

/// Newest-first transactions of an account, `limit` at most, older than version `before`.
async fn transactions(
    conn: &mut Conn,
    account_no: &AccountNo,
    limit: i64,
    before: Option<i64>,
) -> Result<(Vec<TransactionRow>, Option<i64>), ApiError> {
    let mut rows: Vec<TransactionRow> = conn
        .fetch_all(
            "SELECT request_id, kind, amount, balance_after, version, occurred_at,
                    counterpart_account_no FROM transactions_view
             WHERE account_no = $1 AND version < $2 ORDER BY version DESC LIMIT $3",
            args![account_no, before.unwrap_or(i64::MAX), limit + 1],
        )
        .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let next = if more {
        rows.last().map(|row| row.version)
    } else {
        None
    };
    Ok((rows, next))
}

async fn my_accounts(
    State(state): State<MypageState>,
    bearer: Authenticated,
) -> Result<Json<Value>, ApiError> {
    let sql = format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts_view WHERE customer_id = $1 ORDER BY opened_at, account_no"
    );
    let rows: Vec<AccountRow> = state
        .db
        .read()
        .await?
        .fetch_all(&sql, args![bearer.customer_id()])
        .await?;
    let items: Vec<AccountSummary> = rows.iter().map(AccountRow::summary).collect();
    Ok(Json(json!({"items": items, "next": null})))
}

async fn account_detail(
    State(state): State<MypageState>,
    bearer: Authenticated,
    Path(account_no): Path<String>,
) -> Result<Response, ApiError> {
    // The account and its latest transactions from one snapshot: they always agree.
    let mut conn = state.db.read_together().await?;
    let account = own_account(&mut conn, &bearer, &account_no).await?;
    let (recent, _) = transactions(&mut conn, &account.account_no, 10, None).await?;
    Ok(Json(account.detail(&recent)).into_response())
}

#[derive(Deserialize)]
struct PageQuery {
    limit: Option<String>,
    before: Option<String>,
}

async fn account_transactions(
    State(state): State<MypageState>,
    bearer: Authenticated,
    Path(account_no): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = onlinebank_core::http::page_limit(page.limit.as_deref())?;
    let before =
        match page.before.as_deref() {
            None | Some("") => None,
            Some(raw) => Some(raw.parse::<i64>().map_err(|_| {
                ApiError::validation("before must be a cursor from a previous page")
            })?),
        };
    let mut conn = state.db.read_together().await?;
    let account = own_account(&mut conn, &bearer, &account_no).await?;
    let (rows, next) = transactions(&mut conn, &account.account_no, limit, before).await?;
    Ok(Json(
        json!({"items": rows, "next": next.map(|v| v.to_string())}),
    ))
}

/// `POST /api/v1/requests` of type balance or history (the gateway routes those here).
async fn read_request(
    State(state): State<MypageState>,
    bearer: Authenticated,
    JsonBody(body): JsonBody<RequestBody>,
) -> Result<Json<Value>, ApiError> {
    let Ok(Command::Read { kind, account_no }) = body.parse(i64::MAX) else {
        return Err(ApiError::validation(
            "only balance and history are answered here",
        ));
    };
    // A history's balance and transactions from one snapshot; a balance is one read.
    let mut conn = match kind {
        ReadKind::History => state.db.read_together().await?,
        ReadKind::Balance => state.db.read().await?,
    };
    let account = own_account(&mut conn, &bearer, account_no.as_str()).await?;
    let mut answer = json!({
        "requestId": RequestId::generate(),
        "type": kind.as_str(),
        "status": "completed",
        "accountNo": account.account_no,
        "balance": account.balance,
        "version": account.version,
        "accountStatus": account.status,
        "updatedAt": account.updated_at,
        "completedAt": onlinebank_core::time::now_rfc3339(),
    });
    if kind == ReadKind::History {
        let (rows, _) = transactions(&mut conn, &account.account_no, 100, None).await?;
        answer["transactions"] = json!(rows);
    }
    Ok(Json(answer))
}

async fn all_accounts(
    State(state): State<MypageState>,
) -> Result<Json<internal::AccountsAnswer>, ApiError> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts_view ORDER BY account_no");
    let rows: Vec<AccountRow> = state.db.read().await?.fetch_all(&sql, &[]).await?;
    let items = rows
        .into_iter()
        .map(|row| {
            let status = AccountStatus::parse(&row.status).ok_or_else(|| {
                ApiError::internal(format!(
                    "account {} has status {:?}",
                    row.account_no, row.status
                ))
            })?;
            Ok(internal::ListedAccount {
                account_no: row.account_no,
                customer_id: row.customer_id,
                balance: row.balance,
                status,
                version: row.version,
                in_flight: onlinebank_core::money::Won::ZERO,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(Json(internal::AccountsAnswer { items }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use onlinebank_core::db::Db;

    /// The read model's rows hold domain types: a stored value that does not parse is an error,
    /// never a default or a number shown as it is.
    #[tokio::test]
    async fn a_stored_value_that_does_not_parse_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("m.db").display().to_string(), "m")
            .await
            .unwrap();
        db.migrate(&crate::migrations()).await.unwrap();
        let rows = [
            ("1001", "1@sk.com", 5, None),
            ("10 01", "1@sk.com", 5, None),
            ("1002", "1@sk.com", -1, None),
            ("1003", "1@sk.com", 5, Some("teleport")),
        ];
        for (no, customer, balance, kind) in rows {
            db.write(move |conn| {
                Box::pin(async move {
                    conn.execute(
                        "INSERT INTO accounts_view (account_no, customer_id, balance, status,
                         version, opened_at, updated_at, last_request_id, last_request_kind)
                         VALUES ($1, $2, $3, 'open', 1, 't', 't', $4, $5)",
                        args![
                            no,
                            customer,
                            balance,
                            kind.map(|_| "00000000-0000-0000-0000-000000000000"),
                            kind
                        ],
                    )
                    .await
                })
            })
            .await
            .unwrap();
        }
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts_view WHERE account_no = $1");
        let mut conn = db.read().await.unwrap();
        let good: Option<AccountRow> = conn.fetch_optional(&sql, args!["1001"]).await.unwrap();
        assert_eq!(good.map(|row| row.balance.won()), Some(5));
        for bad in ["10 01", "1002", "1003"] {
            let row: Result<Option<AccountRow>, Error> =
                conn.fetch_optional(&sql, args![bad]).await;
            assert!(matches!(row, Err(Error::Decode(_))), "{bad}");
        }
    }
}

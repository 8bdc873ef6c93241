//! The bodies of the public API. The roles build most answers as JSON values (`json!`), so
//! these types describe them; they are never built (hence `dead_code` is allowed: the derive
//! is their only use).
#![allow(dead_code)]

use serde::Serialize;
use std::borrow::Cow;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// Every error code, as an enumeration of [`super::error_codes`].
pub(crate) struct ErrorCode;

impl PartialSchema for ErrorCode {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A stable error code (docs/api.md's table); each response lists those it answers",
            ))
            .enum_values(Some(super::error_codes()))
            .into()
    }
}

impl ToSchema for ErrorCode {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorCode")
    }
}

/// The error object.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErrorObject {
    #[schema(value_type = ErrorCode)]
    code: String,
    message: String,
    /// For `daily_limit_exceeded`: the won that may still leave the account today.
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_today: Option<i64>,
}

/// Every error's body: `{"error":{"code","message"}}`, with the request's id when a request was
/// created and then refused.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErrorBody {
    error: ErrorObject,
    /// The request this error concerns.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    /// `GET /api/v1/requests/{id}` of a cancelled request: why it was refused (an error code).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Beside `reason` for `daily_limit_exceeded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_today: Option<i64>,
}

/// `POST /api/v1/customers`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SignUp {
    /// 1-64 printable characters, no spaces.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[^\s\x00-\x1f\x7f]+$")]
    user_id: String,
    /// 1-100 characters.
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    /// 4-128 characters.
    #[schema(min_length = 4, max_length = 128)]
    password: String,
}

/// A new customer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Customer {
    user_id: String,
    name: String,
    /// RFC 3339.
    created_at: String,
}

/// `POST /api/v1/sessions`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct LogIn {
    user_id: String,
    password: String,
}

/// A session: its bearer token.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Session {
    /// Sent as `Authorization: Bearer <token>`.
    token: String,
    /// RFC 3339.
    expires_at: String,
    user_id: String,
    name: String,
}

/// A request's type.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RequestType {
    Open,
    Close,
    Deposit,
    Withdraw,
    Transfer,
    Balance,
    History,
}

/// The body of `POST /api/v1/requests` (`onlinebank_core::command::RequestBody`): which fields a
/// type needs is in docs/api.md; a missing one answers 400 `invalid_request`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RequestBody {
    #[serde(rename = "type")]
    kind: RequestType,
    /// The account (every type but `transfer`).
    #[schema(
        pattern = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,30}[A-Za-z0-9])?$",
        max_length = 32
    )]
    account_no: Option<String>,
    /// A transfer's source: one of the caller's accounts.
    #[schema(
        pattern = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,30}[A-Za-z0-9])?$",
        max_length = 32
    )]
    from_account_no: Option<String>,
    /// A transfer's target: anyone's account.
    #[schema(
        pattern = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,30}[A-Za-z0-9])?$",
        max_length = 32
    )]
    to_account_no: Option<String>,
    /// Won: 1 to the per-transaction limit (an opening deposit may be 0).
    #[schema(minimum = 0)]
    amount: Option<i64>,
    /// The customer's password (step-up) for writes.
    password: Option<String>,
}

/// A request's status.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RequestStatus {
    Pending,
    Completed,
}

/// A request as answered (a write, a `balance` or `history` read, or `GET /api/v1/requests/{id}`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RequestAnswer {
    request_id: String,
    #[serde(rename = "type")]
    kind: RequestType,
    status: RequestStatus,
    account_no: String,
    /// Won.
    amount: Option<i64>,
    /// The balance after the request (a transfer: the source's), won.
    balance: Option<i64>,
    version: Option<i64>,
    from_account_no: Option<String>,
    to_account_no: Option<String>,
    created_at: Option<String>,
    completed_at: Option<String>,
    /// `balance` and `history`: the account's status.
    account_status: Option<String>,
    updated_at: Option<String>,
    /// `history`: the newest transactions (up to 100).
    transactions: Option<Vec<Transaction>>,
}

/// A page of the caller's requests, newest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct RequestPage {
    items: Vec<RequestAnswer>,
    /// The cursor of the next page (`before`), or null.
    next: Option<String>,
}

/// An account's change.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TransactionType {
    Open,
    Deposit,
    Withdraw,
    Close,
    TransferOut,
    TransferIn,
    TransferReversed,
}

/// One transaction of an account.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Transaction {
    request_id: String,
    #[serde(rename = "type")]
    kind: TransactionType,
    /// Won.
    amount: i64,
    /// Won.
    balance_after: i64,
    version: i64,
    occurred_at: String,
    /// A transfer's other account.
    #[serde(skip_serializing_if = "Option::is_none")]
    counterpart_account_no: Option<String>,
}

/// A page of an account's transactions, newest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct TransactionPage {
    items: Vec<Transaction>,
    /// The cursor of the next page (`before`), or null.
    next: Option<String>,
}

/// An account's status.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AccountStatus {
    Open,
    Closed,
}

/// An account as listed.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AccountSummary {
    account_no: String,
    /// Won.
    balance: i64,
    status: AccountStatus,
    version: i64,
    opened_at: String,
    updated_at: String,
}

/// The caller's accounts.
#[derive(Serialize, ToSchema)]
pub(crate) struct AccountList {
    items: Vec<AccountSummary>,
    /// Always null: every account is on the one page.
    next: Option<String>,
}

/// The last request on an account.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LastRequest {
    request_id: String,
    #[serde(rename = "type")]
    kind: Option<TransactionType>,
    /// Won.
    amount: Option<i64>,
    status: Option<String>,
    at: Option<String>,
}

/// One account, its last request and its 10 newest transactions.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AccountDetail {
    account_no: String,
    /// Won.
    balance: i64,
    status: AccountStatus,
    version: i64,
    opened_at: String,
    updated_at: String,
    transactions: Vec<Transaction>,
    last_request: Option<LastRequest>,
}

/// One item of a statement.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatementItem {
    request_id: String,
    #[serde(rename = "type")]
    kind: TransactionType,
    /// Won.
    amount: i64,
    /// The amount with its sign: what it did to the balance, won.
    signed_amount: i64,
    /// Won.
    running_balance: i64,
    version: i64,
    occurred_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    counterpart_account_no: Option<String>,
}

/// An account's statement between two days of the bank's calendar.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Statement {
    account_no: String,
    /// YYYY-MM-DD.
    from: String,
    /// YYYY-MM-DD.
    to: String,
    time_zone: String,
    /// Won.
    opening_balance: i64,
    /// Won.
    closing_balance: i64,
    items: Vec<StatementItem>,
}

/// A statement's format.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StatementFormat {
    Json,
    Csv,
}

/// `GET /api/v1/ping`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Pong {
    pong: bool,
}

/// A health answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    /// `live`, `ready` or `not_ready`.
    status: String,
    role: String,
}

/// `GET /health/ready`'s 503: the role's own answer (`not_ready`), or the process's while it
/// starts (`starting`).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum NotReady {
    Health(Health),
    Starting(ErrorBody),
}

/// A HAL link.
#[derive(Serialize, ToSchema)]
pub(crate) struct Link {
    href: String,
}

/// A legacy answer's links.
#[derive(Serialize, ToSchema)]
pub(crate) struct LegacyLinks {
    #[serde(rename = "self")]
    this: Link,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<Link>,
}

/// A legacy request in the original shape (an answer of `POST /requests`, a row of
/// `GET /requests`, `GET /requests/{id}`). A refused one has `requestStatus`
/// "RequestCancelled", the legacy `message` and the `error` object.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LegacyAnswer {
    account_no: Option<String>,
    request_id: Option<String>,
    request_name: Option<String>,
    /// The amount, or the balance for "03"; won.
    amount_of_money: Option<i64>,
    /// Won.
    balance: Option<i64>,
    /// "RequestCompleted", "RequestPending" or "RequestCancelled".
    request_status: Option<String>,
    id: Option<String>,
    user_id: Option<String>,
    user_name: Option<String>,
    /// "04": the account's transactions.
    transactions: Option<Vec<Transaction>>,
    /// A refused request's legacy message ("Account Not Exist", "Not Sufficient", ...).
    message: Option<String>,
    error: Option<ErrorObject>,
    #[serde(rename = "_links")]
    links: Option<LegacyLinks>,
}

/// An account's view row in the original shape.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LegacyMypage {
    account_no: Option<String>,
    last_request_id: Option<String>,
    last_request_name: Option<String>,
    /// Won.
    request_money: Option<i64>,
    /// The balance, won.
    amount_of_money: Option<i64>,
    request_status: Option<String>,
    last_modified_date: Option<String>,
    status: Option<String>,
    version: Option<i64>,
    #[serde(rename = "_links")]
    links: Option<LegacyLinks>,
}

/// `GET /requests`'s embedded rows.
#[derive(Serialize, ToSchema)]
pub(crate) struct EmbeddedRequests {
    requests: Vec<LegacyAnswer>,
}

/// A Spring Data REST page.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HalPageInfo {
    size: i64,
    total_elements: i64,
    total_pages: i64,
    number: i64,
}

/// `GET /requests`: the caller's requests as a Spring Data REST (HAL) page.
#[derive(Serialize, ToSchema)]
pub(crate) struct LegacyRequestPage {
    #[serde(rename = "_embedded")]
    embedded: EmbeddedRequests,
    #[serde(rename = "_links")]
    #[schema(value_type = Object)]
    links: String,
    page: HalPageInfo,
}

/// `findByAccountNo`'s embedded rows.
#[derive(Serialize, ToSchema)]
pub(crate) struct EmbeddedMypages {
    mypages: Vec<LegacyMypage>,
}

/// `GET /mypages/search/findByAccountNo`: the account's view row, if it is the caller's.
#[derive(Serialize, ToSchema)]
pub(crate) struct LegacyMypageSearch {
    #[serde(rename = "_embedded")]
    embedded: EmbeddedMypages,
    #[serde(rename = "_links")]
    #[schema(value_type = Object)]
    links: String,
}

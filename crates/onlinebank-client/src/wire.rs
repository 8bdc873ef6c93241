//! The public JSON of docs/api.md as the client speaks it: one struct per request body and per
//! answer body. These are the client's own types, not the server's: they hold what a client sends
//! and reads, and an answer's fields a client does not use are ignored.
//!
//! Answers decode leniently (a missing field is its default) so that one odd field never hides
//! the rest of an answer; what a field's absence means is the reader's decision.

use serde::{Deserialize, Deserializer, Serialize};

/// `POST /api/v1/customers`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignUp<'a> {
    pub user_id: &'a str,
    pub name: &'a str,
    pub password: &'a str,
}

/// `POST /api/v1/sessions`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Login<'a> {
    pub user_id: &'a str,
    pub password: &'a str,
}

/// The answer to a login: the bearer token and when its session ends.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NewSession {
    pub token: String,
    pub expires_at: String,
}

/// The writes `POST /api/v1/requests` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteKind {
    Open,
    Deposit,
    Withdraw,
    Close,
    /// From one of the customer's accounts to any account.
    Transfer,
}

impl WriteKind {
    pub const ALL: [WriteKind; 5] = [
        WriteKind::Open,
        WriteKind::Deposit,
        WriteKind::Withdraw,
        WriteKind::Close,
        WriteKind::Transfer,
    ];

    /// The name on the wire: `open`, `deposit`, `withdraw`, `close`, `transfer`.
    pub fn name(self) -> &'static str {
        match self {
            WriteKind::Open => "open",
            WriteKind::Deposit => "deposit",
            WriteKind::Withdraw => "withdraw",
            WriteKind::Close => "close",
            WriteKind::Transfer => "transfer",
        }
    }

    /// The kind named `name`, if it is one.
    pub fn parse(name: &str) -> Option<WriteKind> {
        WriteKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// How a write of this kind and `amount` moves its account's balance (a transfer's: the
    /// source's).
    pub fn signed(self, amount: i64) -> i64 {
        EntryKind::of_write(self).signed(amount)
    }
}

/// The kinds of an account's transactions: a write's change, or a leg of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Open,
    Deposit,
    Withdraw,
    Close,
    TransferOut,
    TransferIn,
    /// A transfer out whose target could not take it: the money came back.
    TransferReversed,
}

impl EntryKind {
    pub const ALL: [EntryKind; 7] = [
        EntryKind::Open,
        EntryKind::Deposit,
        EntryKind::Withdraw,
        EntryKind::Close,
        EntryKind::TransferOut,
        EntryKind::TransferIn,
        EntryKind::TransferReversed,
    ];

    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            EntryKind::Open => "open",
            EntryKind::Deposit => "deposit",
            EntryKind::Withdraw => "withdraw",
            EntryKind::Close => "close",
            EntryKind::TransferOut => "transfer_out",
            EntryKind::TransferIn => "transfer_in",
            EntryKind::TransferReversed => "transfer_reversed",
        }
    }

    /// The kind named `name`, if it is one.
    pub fn parse(name: &str) -> Option<EntryKind> {
        EntryKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The item a write of `kind` makes on its own account.
    pub fn of_write(kind: WriteKind) -> EntryKind {
        match kind {
            WriteKind::Open => EntryKind::Open,
            WriteKind::Deposit => EntryKind::Deposit,
            WriteKind::Withdraw => EntryKind::Withdraw,
            WriteKind::Close => EntryKind::Close,
            WriteKind::Transfer => EntryKind::TransferOut,
        }
    }

    /// How an item of this kind and `amount` moves the balance: open, deposit, transfer_in and
    /// transfer_reversed add, withdraw and transfer_out subtract, close moves nothing.
    pub fn signed(self, amount: i64) -> i64 {
        match self {
            EntryKind::Open
            | EntryKind::Deposit
            | EntryKind::TransferIn
            | EntryKind::TransferReversed => amount,
            EntryKind::Withdraw | EntryKind::TransferOut => -amount,
            EntryKind::Close => 0,
        }
    }
}

/// A write: the body of `POST /api/v1/requests` for open, deposit, withdraw, close and
/// transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Write<'a> {
    #[serde(rename = "type")]
    pub kind: WriteKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_no: Option<&'a str>,
    /// A transfer's source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_account_no: Option<&'a str>,
    /// A transfer's target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_account_no: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    /// The step-up password.
    pub password: &'a str,
}

impl<'a> Write<'a> {
    /// Open an account: its number and opening deposit are optional.
    pub fn open(account_no: Option<&'a str>, amount: Option<i64>, password: &'a str) -> Self {
        Self {
            kind: WriteKind::Open,
            account_no,
            from_account_no: None,
            to_account_no: None,
            amount,
            password,
        }
    }

    /// A deposit or a withdrawal (`kind`) of `amount` on `account_no`.
    pub fn money(kind: WriteKind, account_no: &'a str, amount: i64, password: &'a str) -> Self {
        Self {
            kind,
            account_no: Some(account_no),
            from_account_no: None,
            to_account_no: None,
            amount: Some(amount),
            password,
        }
    }

    /// A transfer of `amount` from `from` (the customer's) to `to` (anyone's).
    pub fn transfer(from: &'a str, to: &'a str, amount: i64, password: &'a str) -> Self {
        Self {
            kind: WriteKind::Transfer,
            account_no: None,
            from_account_no: Some(from),
            to_account_no: Some(to),
            amount: Some(amount),
            password,
        }
    }

    /// Close an account.
    pub fn close(account_no: &'a str, password: &'a str) -> Self {
        Self {
            kind: WriteKind::Close,
            account_no: Some(account_no),
            from_account_no: None,
            to_account_no: None,
            amount: None,
            password,
        }
    }

    /// The body as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// The reads `POST /api/v1/requests` answers at once, without step-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadKind {
    /// The account's balance.
    Balance,
    /// The balance and the newest transactions.
    History,
}

/// A read: the body of `POST /api/v1/requests` for balance and history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Read<'a> {
    #[serde(rename = "type")]
    pub kind: ReadKind,
    pub account_no: &'a str,
}

impl<'a> Read<'a> {
    /// The balance of `account_no`.
    pub fn balance(account_no: &'a str) -> Self {
        Self {
            kind: ReadKind::Balance,
            account_no,
        }
    }

    /// The history of `account_no`.
    pub fn history(account_no: &'a str) -> Self {
        Self {
            kind: ReadKind::History,
            account_no,
        }
    }
}

/// The answer to a [`Read`]: the account as the read model holds it, and for a history its
/// newest transactions (at most 100, newest first).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ReadAnswer {
    pub request_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<ReadKind>,
    pub status: Option<Status>,
    pub account_no: Option<String>,
    pub balance: Option<i64>,
    pub version: Option<i64>,
    /// `open` or `closed`.
    pub account_status: Option<String>,
    pub updated_at: Option<String>,
    pub completed_at: Option<String>,
    /// A history's transactions (`None` for a balance).
    pub transactions: Option<Vec<Transaction>>,
}

/// The original system's deposit: the body of `POST /requests`, credentials included.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LegacyDeposit<'a> {
    pub account_no: &'a str,
    /// The legacy request code: `01` is a deposit.
    pub request_id: &'a str,
    pub request_name: &'a str,
    pub amount_of_money: i64,
    pub user_id: &'a str,
    pub user_name: &'a str,
    pub user_password: &'a str,
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Completed,
    /// A status this client does not know.
    #[serde(other)]
    Other,
}

/// A request: the 200 and 202 answers to a write, and `GET /api/v1/requests/{id}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Request {
    pub request_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub status: Option<Status>,
    pub account_no: Option<String>,
    /// A transfer's source (its `accountNo` too).
    pub from_account_no: Option<String>,
    /// A transfer's target.
    pub to_account_no: Option<String>,
    pub amount: Option<i64>,
    pub balance: Option<i64>,
    pub created_at: Option<String>,
    /// Why a compensated request failed (beside a 404 `request_cancelled` error).
    pub reason: Option<String>,
    /// The error beside which a compensated request's id is answered.
    pub error: Option<ErrorDetail>,
}

impl Request {
    pub fn is_completed(&self) -> bool {
        self.status == Some(Status::Completed)
    }
}

/// The original system's answer to `POST /requests`: its request id is `id`, and a completed
/// one says `"requestStatus": "RequestCompleted"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LegacyRequest {
    pub id: Option<String>,
    pub request_status: Option<String>,
    pub balance: Option<i64>,
    pub error: Option<ErrorDetail>,
}

/// An account: `GET /api/v1/accounts/{no}` and an item of `GET /api/v1/accounts`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Account {
    pub account_no: String,
    pub balance: Option<i64>,
    pub status: String,
    pub version: Option<i64>,
    pub opened_at: Option<String>,
    pub updated_at: Option<String>,
    /// `GET /api/v1/accounts/{no}` only: the newest transactions (at most 10, newest first).
    pub transactions: Vec<Transaction>,
}

/// One transaction of an account: an item of `GET /api/v1/accounts/{no}/transactions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Transaction {
    pub request_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub amount: Option<i64>,
    pub balance_after: Option<i64>,
    pub version: Option<i64>,
    pub occurred_at: Option<String>,
    /// A transfer's other account.
    pub counterpart_account_no: Option<String>,
}

/// `GET /api/v1/accounts/{no}/statement` (JSON): the balance before the range, every item with
/// its running balance, the balance after.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Statement {
    pub account_no: String,
    pub from: String,
    pub to: String,
    pub time_zone: String,
    pub opening_balance: i64,
    pub closing_balance: i64,
    pub items: Vec<StatementItem>,
}

/// One item of a [`Statement`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StatementItem {
    pub request_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub amount: i64,
    /// What the item added to the balance (negative for money out).
    pub signed_amount: i64,
    pub running_balance: i64,
    pub version: i64,
    pub occurred_at: String,
    /// A transfer's other account.
    pub counterpart_account_no: Option<String>,
}

/// One page of a list: its items, newest first, and the cursor of the next page (`None`: last).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    #[serde(default = "Vec::new")]
    pub items: Vec<T>,
    #[serde(default, deserialize_with = "cursor")]
    pub next: Option<String>,
}

impl<T> Default for Page<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            next: None,
        }
    }
}

/// A cursor is opaque: a string, or a number read as its digits.
fn cursor<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(
        match Option::<serde_json::Value>::deserialize(deserializer)? {
            Some(serde_json::Value::String(cursor)) => Some(cursor),
            Some(serde_json::Value::Number(cursor)) => Some(cursor.to_string()),
            _ => None,
        },
    )
}

/// The error body every failure answers: `{"error":{"code","message"}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The `error` object: a stable code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    #[serde(default)]
    pub message: Option<String>,
}

/// The error codes a client decides on; every other code is kept as it was answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(from = "String")]
pub enum ErrorCode {
    /// 503: nothing happened, retry shortly.
    ServiceBusy,
    /// 502/504: the write may or may not have happened.
    OutcomeUnknown,
    /// 409: the same key is still running.
    IdempotencyKeyInFlight,
    /// 404 from `GET /api/v1/requests/{id}`: the request failed and was compensated.
    RequestCancelled,
    /// 401: no valid bearer token.
    Unauthorized,
    /// 401: the session behind the token ended.
    SessionExpired,
    /// 409 from sign-up: the user id is taken.
    CustomerExists,
    /// Any other code, as answered.
    Other(String),
}

impl ErrorCode {
    /// The code as answered.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::ServiceBusy => "service_busy",
            ErrorCode::OutcomeUnknown => "outcome_unknown",
            ErrorCode::IdempotencyKeyInFlight => "idempotency_key_in_flight",
            ErrorCode::RequestCancelled => "request_cancelled",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::SessionExpired => "session_expired",
            ErrorCode::CustomerExists => "customer_exists",
            ErrorCode::Other(code) => code,
        }
    }
}

impl From<String> for ErrorCode {
    fn from(code: String) -> Self {
        match code.as_str() {
            "service_busy" => ErrorCode::ServiceBusy,
            "outcome_unknown" => ErrorCode::OutcomeUnknown,
            "idempotency_key_in_flight" => ErrorCode::IdempotencyKeyInFlight,
            "request_cancelled" => ErrorCode::RequestCancelled,
            "unauthorized" => ErrorCode::Unauthorized,
            "session_expired" => ErrorCode::SessionExpired,
            "customer_exists" => ErrorCode::CustomerExists,
            _ => ErrorCode::Other(code),
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decodes an answer body as `T`; a body that is not JSON, or not `T`, is `T::default()`.
pub fn decode<T: Default + for<'de> Deserialize<'de>>(body: &serde_json::Value) -> T {
    T::deserialize(body).unwrap_or_default()
}

/// The error detail of an answer body, if it has one.
pub fn error_of(body: &serde_json::Value) -> Option<ErrorDetail> {
    ErrorBody::deserialize(body).ok().map(|body| body.error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_are_written_as_the_contract_names_them() {
        let deposit = Write::money(WriteKind::Deposit, "1001", 5, "pw");
        assert_eq!(
            deposit.to_json(),
            json!({"type":"deposit","accountNo":"1001","amount":5,"password":"pw"})
        );
        assert_eq!(
            Write::open(None, None, "pw").to_json(),
            json!({"type":"open","password":"pw"})
        );
        assert_eq!(
            Write::close("1", "pw").to_json(),
            json!({"type":"close","accountNo":"1","password":"pw"})
        );
        let signup = SignUp {
            user_id: "u",
            name: "n",
            password: "p",
        };
        assert_eq!(
            serde_json::to_value(signup).unwrap(),
            json!({"userId":"u","name":"n","password":"p"})
        );
    }

    #[test]
    fn reads_and_their_answers_are_named_as_the_server_names_them() {
        assert_eq!(
            serde_json::to_value(Read::balance("1001")).unwrap(),
            json!({"type":"balance","accountNo":"1001"})
        );
        assert_eq!(
            serde_json::to_value(Read::history("1001")).unwrap(),
            json!({"type":"history","accountNo":"1001"})
        );
        // As mypage answers a history read (crates/onlinebank-mypage/src/api.rs, read_request).
        let history: ReadAnswer = decode(&json!({
            "requestId": "r", "type": "history", "status": "completed", "accountNo": "1001",
            "balance": 7, "version": 2, "accountStatus": "open",
            "updatedAt": "2024-07-01T00:00:00Z", "completedAt": "2024-07-01T00:00:01Z",
            "transactions": [{"requestId": "o", "type": "open", "amount": 7, "balanceAfter": 7,
                              "version": 1, "occurredAt": "2024-07-01T00:00:00Z"}],
        }));
        assert_eq!(history.kind, Some(ReadKind::History));
        assert_eq!(history.status, Some(Status::Completed));
        assert_eq!((history.balance, history.version), (Some(7), Some(2)));
        assert_eq!(history.account_status.as_deref(), Some("open"));
        assert_eq!(
            history.completed_at.as_deref(),
            Some("2024-07-01T00:00:01Z")
        );
        let transactions = history.transactions.unwrap_or_default();
        assert_eq!(transactions.len(), 1);
        assert_eq!(transactions[0].balance_after, Some(7));
        assert_eq!(
            transactions[0].occurred_at.as_deref(),
            Some("2024-07-01T00:00:00Z")
        );
        let balance: ReadAnswer = decode(&json!({"type": "balance", "balance": 7}));
        assert_eq!(balance.balance, Some(7));
        assert!(balance.transactions.is_none());
        // As mypage answers `GET /api/v1/accounts/{no}` (AccountDetail there).
        let account: Account = decode(&json!({
            "accountNo": "1001", "balance": 7, "status": "open", "version": 2,
            "openedAt": "2024-07-01T00:00:00Z", "updatedAt": "2024-07-01T00:00:01Z",
            "transactions": [{"requestId": "o", "type": "open", "amount": 7}],
            "lastRequest": null,
        }));
        assert_eq!((account.balance, account.version), (Some(7), Some(2)));
        assert_eq!(account.opened_at.as_deref(), Some("2024-07-01T00:00:00Z"));
        assert_eq!(account.transactions[0].kind.as_deref(), Some("open"));
    }

    #[test]
    fn answers_are_read_by_name() {
        let error = error_of(&json!({"error":{"code":"service_busy","message":"m"}})).unwrap();
        assert_eq!(error.code, ErrorCode::ServiceBusy);
        let other = error_of(&json!({"error":{"code":"insufficient_funds"}})).unwrap();
        assert_eq!(other.code.as_str(), "insufficient_funds");
        assert_eq!(error_of(&json!("oops")), None);
        let page: Page<Transaction> =
            serde_json::from_value(json!({"items":[{"type":"open","amount":1}],"next":7})).unwrap();
        assert_eq!(page.next.as_deref(), Some("7"));
        assert_eq!(page.items[0].amount, Some(1));
        let request: Request = decode(&json!({"status":"completed","balance":3}));
        assert!(request.is_completed());
        assert_eq!(WriteKind::parse("withdraw"), Some(WriteKind::Withdraw));
        assert_eq!(WriteKind::Withdraw.signed(5), -5);
        assert_eq!(WriteKind::Close.signed(5), 0);
    }
}

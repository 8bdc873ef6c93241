//! The internal HTTP calls between roles, each typed once: its path, the body or query it takes
//! and the answer it gives. The caller and the callee use the same structs, so the JSON on the
//! wire is written in one place.
//!
//! Every internal call carries the internal token ([`crate::http::INTERNAL_HEADER`]).

use crate::event::{AccountStatus, WriteKind};
use crate::ids::{AccountNo, CustomerId, RequestId};
use crate::money::{Balance, Won};
use serde::{Deserialize, Serialize};

/// `POST` (auth): verifies a step-up password, [`StepUpRequest`] in, [`StepUpAnswer`] out (200),
/// 401 for a session that is gone, 403 for a wrong password, 429 with `retry-after` when locked.
pub const STEP_UP: &str = "/internal/v1/step-up";
/// `GET` (auth): sessions revoked since [`RevokedQuery::since`], a [`RevokedPage`].
pub const SESSIONS_REVOKED: &str = "/internal/v1/sessions/revoked";
/// `POST` (auth): a session for a legacy request's credentials, [`LegacySessionRequest`] in,
/// [`LegacySessionAnswer`] out.
pub const LEGACY_SESSIONS: &str = "/internal/v1/legacy-sessions";
/// `GET` (account and mypage): every account, an [`AccountsAnswer`].
pub const ACCOUNTS: &str = "/internal/v1/accounts";
/// `GET` (history): each account's ledger sum, a [`LedgerSums`].
pub const LEDGER: &str = "/internal/v1/ledger";
/// `GET` (history): one account's ledger entries, oldest first; the path of an account is
/// [`ledger_of`].
pub const LEDGER_OF: &str = "/internal/v1/ledger/{account_no}";
/// `GET` (request): the requests not yet finished, a [`PendingAnswer`].
pub const REQUESTS_PENDING: &str = "/internal/v1/requests/pending";

/// The path of [`LEDGER_OF`] for account `no`.
pub fn ledger_of(no: &AccountNo) -> String {
    LEDGER_OF.replace("{account_no}", no.as_str())
}

/// A step-up: the request role asks auth whether `password` is the session's customer's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepUpRequest {
    pub customer_id: CustomerId,
    pub session_id: String,
    pub password: String,
    /// The request the step-up is for (recorded by auth for audit).
    pub request_id: RequestId,
    /// What the request does.
    pub action: WriteKind,
}

/// auth's answer to a step-up it accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUpAnswer {
    pub verified: bool,
}

/// The query of [`SESSIONS_REVOKED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RevokedQuery {
    /// Epoch ms; revocations at or after it (all when absent).
    pub since: Option<i64>,
}

impl RevokedQuery {
    /// The path and query of this call.
    pub fn path(self) -> String {
        match self.since {
            Some(since) => format!("{SESSIONS_REVOKED}?since={since}"),
            None => SESSIONS_REVOKED.to_owned(),
        }
    }
}

/// A session ended by logout, with its token's expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokedSession {
    pub session_id: String,
    /// Epoch ms.
    pub revoked_at: i64,
    /// Epoch ms; past it the token is refused anyway.
    pub expires_at: i64,
}

/// auth's answer to [`SESSIONS_REVOKED`]: at most a page of revocations, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedPage {
    pub items: Vec<RevokedSession>,
    /// auth's clock when it read the page (epoch ms): the page holds every revocation it had
    /// committed by then.
    pub now: i64,
}

/// The credentials of a legacy request (Basic authentication or its body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LegacySessionRequest {
    pub user_id: String,
    pub password: String,
}

/// auth's answer to [`LEGACY_SESSIONS`]: the token to call the bank with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacySessionAnswer {
    pub token: String,
}

/// One account as [`ACCOUNTS`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedAccount {
    pub account_no: AccountNo,
    pub customer_id: CustomerId,
    pub balance: Balance,
    pub status: AccountStatus,
    pub version: i64,
    /// The account role's list only: won of transfers out debited and not yet credited or
    /// reversed (money conservation counts it beside the balances).
    #[serde(default, skip_serializing_if = "nothing_in_flight")]
    pub in_flight: Won,
}

fn nothing_in_flight(won: &Won) -> bool {
    won.is_zero()
}

/// The answer of [`ACCOUNTS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountsAnswer {
    pub items: Vec<ListedAccount>,
}

/// One account's ledger: the sum of its signed amounts and its number of entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerSum {
    pub account_no: String,
    pub sum: i64,
    pub entries: i64,
}

/// The answer of [`LEDGER`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerSums {
    pub items: Vec<LedgerSum>,
}

/// A live request's status as its customer reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LiveStatus {
    Pending,
    Completed,
}

/// Where an unfinished request is in its saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PendingStage {
    /// Recorded, step-up not (yet) verified.
    Pending,
    /// Step-up verified; waiting for the account's outcome.
    Authorized,
}

/// One request not finished yet, as [`REQUESTS_PENDING`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingRequest {
    pub request_id: RequestId,
    #[serde(rename = "type")]
    pub kind: WriteKind,
    /// Always [`LiveStatus::Pending`]: its customer reads it as pending until it completes.
    pub status: LiveStatus,
    pub account_no: AccountNo,
    pub amount: Won,
    /// RFC 3339.
    pub created_at: String,
    pub stage: PendingStage,
    pub customer_id: CustomerId,
}

/// The answer of [`REQUESTS_PENDING`]: the unfinished requests, oldest first, and how many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAnswer {
    pub count: usize,
    pub items: Vec<PendingRequest>,
}

impl PendingAnswer {
    /// The answer listing `items`.
    pub fn of(items: Vec<PendingRequest>) -> Self {
        Self {
            count: items.len(),
            items,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON of each call is the one its callers and callees always exchanged.
    #[test]
    fn the_wire_is_unchanged() {
        let request_id = uuid::Uuid::parse_str("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
            .unwrap()
            .into();
        let step_up = StepUpRequest {
            customer_id: CustomerId::parse("1@sk.com").unwrap(),
            session_id: "s".into(),
            password: "pw".into(),
            request_id,
            action: WriteKind::Deposit,
        };
        assert_eq!(
            serde_json::to_value(&step_up).unwrap(),
            serde_json::json!({"customerId": "1@sk.com", "sessionId": "s", "password": "pw",
                               "requestId": request_id, "action": "deposit"})
        );
        assert_eq!(
            serde_json::to_string(&StepUpAnswer { verified: true }).unwrap(),
            r#"{"verified":true}"#
        );
        assert_eq!(
            RevokedQuery { since: Some(5) }.path(),
            "/internal/v1/sessions/revoked?since=5"
        );
        let page = RevokedPage {
            items: vec![RevokedSession {
                session_id: "s".into(),
                revoked_at: 1,
                expires_at: 2,
            }],
            now: 3,
        };
        assert_eq!(
            serde_json::to_string(&page).unwrap(),
            r#"{"items":[{"sessionId":"s","revokedAt":1,"expiresAt":2}],"now":3}"#
        );
        let listed = ListedAccount {
            account_no: AccountNo::parse("1001").unwrap(),
            customer_id: CustomerId::parse("1@sk.com").unwrap(),
            balance: Balance::from_stored(5).unwrap(),
            status: AccountStatus::Closed,
            version: 2,
            in_flight: Won::ZERO,
        };
        assert_eq!(
            serde_json::to_value(&listed).unwrap(),
            serde_json::json!({"accountNo": "1001", "customerId": "1@sk.com", "balance": 5,
                               "status": "closed", "version": 2})
        );
        assert_eq!(
            ledger_of(&AccountNo::parse("1001").unwrap()),
            "/internal/v1/ledger/1001"
        );
    }

    /// The pending list is the JSON its readers (the e2e tests, operators) always read.
    #[test]
    fn the_pending_list_is_unchanged() {
        let request_id: RequestId = uuid::Uuid::parse_str("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
            .unwrap()
            .into();
        let pending = PendingAnswer::of(vec![PendingRequest {
            request_id,
            kind: WriteKind::Deposit,
            status: LiveStatus::Pending,
            account_no: AccountNo::parse("1001").unwrap(),
            amount: Won::from_stored(5).unwrap(),
            created_at: "2024-07-01T00:00:00.000Z".into(),
            stage: PendingStage::Authorized,
            customer_id: CustomerId::parse("1@sk.com").unwrap(),
        }]);
        let json = serde_json::json!({"count": 1, "items": [{
            "requestId": request_id, "type": "deposit", "status": "pending",
            "accountNo": "1001", "amount": 5, "createdAt": "2024-07-01T00:00:00.000Z",
            "stage": "AUTHORIZED", "customerId": "1@sk.com"}]});
        assert_eq!(serde_json::to_value(&pending).unwrap(), json);
        assert_eq!(
            serde_json::from_value::<PendingAnswer>(json).unwrap(),
            pending
        );
        assert_eq!(
            serde_json::to_value(PendingStage::Pending).unwrap(),
            "PENDING"
        );
        assert_eq!(
            serde_json::to_value(LiveStatus::Completed).unwrap(),
            "completed"
        );
    }
}

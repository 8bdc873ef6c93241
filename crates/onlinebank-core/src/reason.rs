//! Why a request did not complete: one stable code per reason, its HTTP status and messages.

use crate::money::Won;
use http::StatusCode;
use serde::{Deserialize, Serialize};

/// Why a request did not complete, with what the customer needs to act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    /// For `daily_limit_exceeded`: the won that may still leave the account today.
    pub allowed_today: Option<Won>,
}

impl From<Reason> for Refusal {
    fn from(reason: Reason) -> Self {
        Self {
            reason,
            allowed_today: None,
        }
    }
}

/// A stable, machine-readable reason for a failed (compensated) request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    AccountNotFound,
    InsufficientFunds,
    AccountClosed,
    BalanceNotZero,
    AccountExists,
    NotOwner,
    InvalidAmount,
    BalanceOverflow,
    StepUpFailed,
    LockedOut,
    ServiceBusy,
    Interrupted,
    /// The account's withdrawals today would pass its daily limit.
    DailyLimitExceeded,
}

impl Reason {
    /// Every reason, for whoever must have a word for each (the web page's texts, tests).
    pub const ALL: [Reason; 13] = [
        Reason::AccountNotFound,
        Reason::InsufficientFunds,
        Reason::AccountClosed,
        Reason::BalanceNotZero,
        Reason::AccountExists,
        Reason::NotOwner,
        Reason::InvalidAmount,
        Reason::BalanceOverflow,
        Reason::StepUpFailed,
        Reason::LockedOut,
        Reason::ServiceBusy,
        Reason::Interrupted,
        Reason::DailyLimitExceeded,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reason::AccountNotFound => "account_not_found",
            Reason::InsufficientFunds => "insufficient_funds",
            Reason::AccountClosed => "account_closed",
            Reason::BalanceNotZero => "balance_not_zero",
            Reason::AccountExists => "account_exists",
            Reason::NotOwner => "not_owner",
            Reason::InvalidAmount => "invalid_amount",
            Reason::BalanceOverflow => "balance_overflow",
            Reason::StepUpFailed => "step_up_failed",
            Reason::LockedOut => "locked_out",
            Reason::ServiceBusy => "service_busy",
            Reason::Interrupted => "interrupted",
            Reason::DailyLimitExceeded => "daily_limit_exceeded",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(code.to_owned())).ok()
    }

    /// The status a client gets when its request failed for this reason.
    pub fn status(self) -> StatusCode {
        match self {
            Reason::AccountNotFound | Reason::NotOwner => StatusCode::NOT_FOUND,
            Reason::InsufficientFunds
            | Reason::AccountClosed
            | Reason::BalanceNotZero
            | Reason::AccountExists
            | Reason::BalanceOverflow
            | Reason::DailyLimitExceeded => StatusCode::CONFLICT,
            Reason::InvalidAmount => StatusCode::BAD_REQUEST,
            Reason::StepUpFailed => StatusCode::FORBIDDEN,
            Reason::LockedOut => StatusCode::TOO_MANY_REQUESTS,
            Reason::ServiceBusy | Reason::Interrupted => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A human message for the customer.
    pub fn message(self) -> &'static str {
        match self {
            Reason::AccountNotFound => "account not found",
            Reason::InsufficientFunds => "insufficient funds",
            Reason::AccountClosed => "account is closed",
            Reason::BalanceNotZero => "account balance must be zero to close it",
            Reason::AccountExists => "account already exists",
            Reason::NotOwner => "account not found",
            Reason::InvalidAmount => "invalid amount",
            Reason::BalanceOverflow => "balance would exceed the maximum",
            Reason::StepUpFailed => "step-up authentication failed",
            Reason::LockedOut => "too many failed attempts, try again later",
            Reason::ServiceBusy => "busy, please try again shortly",
            Reason::Interrupted => "the request was interrupted, please try again",
            Reason::DailyLimitExceeded => "the account's daily limit would be exceeded",
        }
    }

    /// The original Spring system's message for the same failure.
    pub fn legacy_message(self) -> &'static str {
        match self {
            Reason::AccountNotFound | Reason::NotOwner => "Account Not Exist",
            Reason::InsufficientFunds => "Not Sufficient",
            Reason::AccountExists => "Account Exist",
            Reason::AccountClosed => "Account Closed",
            Reason::BalanceNotZero => "Balance Not Zero",
            Reason::InvalidAmount => "Invalid Amount",
            Reason::BalanceOverflow => "Balance Overflow",
            Reason::StepUpFailed => "Auth Failed",
            Reason::LockedOut => "Locked Out",
            Reason::ServiceBusy | Reason::Interrupted => "Busy",
            Reason::DailyLimitExceeded => "Daily Limit Exceeded",
        }
    }

    /// The reason a customer is told. Someone else's account answers exactly like a missing one,
    /// so nobody can learn which account numbers exist; events and stores keep `not_owner`.
    pub fn answered(self) -> Self {
        match self {
            Reason::NotOwner => Reason::AccountNotFound,
            other => other,
        }
    }

    /// Whether the client should simply try again (nothing happened, the key is released).
    pub fn is_transient(self) -> bool {
        matches!(self, Reason::ServiceBusy | Reason::Interrupted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for reason in Reason::ALL {
            assert_eq!(Reason::parse(reason.code()), Some(reason));
            let json = serde_json::to_string(&reason).unwrap();
            assert_eq!(json, format!("\"{}\"", reason.code()));
        }
    }
}

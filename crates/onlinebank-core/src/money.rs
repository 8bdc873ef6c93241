//! Money in the currency's minor unit (KRW: won) as `i64`, with every operation checked.
//!
//! An [`Amount`] can only hold a value that a single transaction may move: strictly positive and
//! at most the configured per-transaction limit. [`Won`] is what a request or an event records as
//! moved, 0 included (an open without a deposit, a close). A [`Balance`] is never negative. Arithmetic that
//! would overflow or go below zero returns an error instead of wrapping.

use serde::{Deserialize, Serialize};

/// The default per-transaction limit: 10,000,000,000 won.
pub const DEFAULT_MAX_AMOUNT: i64 = 10_000_000_000;

/// Why a value is not a valid amount or balance change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount must be greater than zero")]
    NotPositive,
    #[error("amount must not be negative")]
    Negative,
    #[error("amount exceeds the per-transaction limit")]
    OverLimit,
    #[error("insufficient funds")]
    InsufficientFunds,
    #[error("balance would overflow")]
    Overflow,
}

/// A strictly positive amount of won, at most the per-transaction limit it was parsed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Amount(i64);

impl Amount {
    /// Parses a raw value against the per-transaction limit.
    pub fn parse(raw: i64, max_amount: i64) -> Result<Self, MoneyError> {
        if raw <= 0 {
            return Err(MoneyError::NotPositive);
        }
        if raw > max_amount {
            return Err(MoneyError::OverLimit);
        }
        Ok(Self(raw))
    }

    pub fn won(self) -> i64 {
        self.0
    }
}

/// A non-negative number of won a request or an event records as moved: the [`Amount`] of a
/// deposit or a withdrawal, an open's opening amount (0 without a deposit), 0 for a close. On the
/// wire and in SQL it is the plain number; a negative one does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Won(i64);

impl Won {
    pub const ZERO: Won = Won(0);

    /// Wraps a recorded number of won; a negative one is refused.
    pub fn from_stored(raw: i64) -> Result<Self, MoneyError> {
        if raw < 0 {
            return Err(MoneyError::Negative);
        }
        Ok(Self(raw))
    }

    pub fn won(self) -> i64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// The amount a movement of these won is, under the per-transaction limit.
    pub fn amount(self, max_amount: i64) -> Result<Amount, MoneyError> {
        Amount::parse(self.0, max_amount)
    }
}

impl From<Amount> for Won {
    fn from(amount: Amount) -> Self {
        Self(amount.0)
    }
}

impl TryFrom<i64> for Won {
    type Error = MoneyError;
    fn try_from(raw: i64) -> Result<Self, Self::Error> {
        Self::from_stored(raw)
    }
}

impl From<Won> for i64 {
    fn from(value: Won) -> Self {
        value.0
    }
}

impl From<Won> for crate::db::Arg<'_> {
    fn from(value: Won) -> Self {
        crate::db::Arg::Int(value.0)
    }
}

/// A non-negative account balance in won. On the wire it is the plain number; a negative one
/// does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Balance(i64);

impl TryFrom<i64> for Balance {
    type Error = MoneyError;
    fn try_from(raw: i64) -> Result<Self, Self::Error> {
        Self::from_stored(raw)
    }
}

impl From<Balance> for i64 {
    fn from(value: Balance) -> Self {
        value.0
    }
}

impl Balance {
    pub const ZERO: Balance = Balance(0);

    /// Wraps a stored balance; a negative stored value is corruption and is refused.
    pub fn from_stored(raw: i64) -> Result<Self, MoneyError> {
        if raw < 0 {
            return Err(MoneyError::InsufficientFunds);
        }
        Ok(Self(raw))
    }

    pub fn won(self) -> i64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn deposit(self, amount: Amount) -> Result<Self, MoneyError> {
        self.0
            .checked_add(amount.0)
            .map(Self)
            .ok_or(MoneyError::Overflow)
    }

    pub fn withdraw(self, amount: Amount) -> Result<Self, MoneyError> {
        match self.0.checked_sub(amount.0) {
            Some(left) if left >= 0 => Ok(Self(left)),
            _ => Err(MoneyError::InsufficientFunds),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amount_must_be_positive_and_within_limit() {
        assert_eq!(Amount::parse(0, 100), Err(MoneyError::NotPositive));
        assert_eq!(Amount::parse(-5, 100), Err(MoneyError::NotPositive));
        assert_eq!(Amount::parse(101, 100), Err(MoneyError::OverLimit));
        assert_eq!(Amount::parse(100, 100).map(Amount::won), Ok(100));
        assert_eq!(Amount::parse(1, 100).map(Amount::won), Ok(1));
    }

    #[test]
    fn withdraw_never_goes_negative() {
        let balance = Balance::from_stored(50).unwrap();
        assert_eq!(
            balance.withdraw(Amount::parse(51, 100).unwrap()),
            Err(MoneyError::InsufficientFunds)
        );
        assert_eq!(
            balance
                .withdraw(Amount::parse(50, 100).unwrap())
                .map(Balance::won),
            Ok(0)
        );
    }

    #[test]
    fn deposit_overflow_is_an_error_not_a_wrap() {
        let balance = Balance::from_stored(i64::MAX - 1).unwrap();
        assert_eq!(
            balance.deposit(Amount::parse(2, 100).unwrap()),
            Err(MoneyError::Overflow)
        );
    }

    #[test]
    fn won_is_a_plain_number_never_negative_and_an_amount_under_the_limit() {
        let won = Won::from_stored(70).unwrap();
        assert_eq!(serde_json::to_string(&won).unwrap(), "70");
        assert_eq!(serde_json::from_str::<Won>("0").unwrap(), Won::ZERO);
        assert!(serde_json::from_str::<Won>("-1").is_err());
        assert_eq!(won.amount(100).map(Amount::won), Ok(70));
        assert_eq!(won.amount(69), Err(MoneyError::OverLimit));
        assert_eq!(Won::ZERO.amount(100), Err(MoneyError::NotPositive));
        assert_eq!(Won::from(Amount::parse(5, 100).unwrap()).won(), 5);
    }

    #[test]
    fn negative_stored_balance_is_refused() {
        assert!(Balance::from_stored(-1).is_err());
    }

    #[test]
    fn balance_is_a_plain_number_on_the_wire_and_never_negative() {
        let balance = Balance::from_stored(1500).unwrap();
        assert_eq!(serde_json::to_string(&balance).unwrap(), "1500");
        assert_eq!(serde_json::from_str::<Balance>("1500").unwrap(), balance);
        assert!(serde_json::from_str::<Balance>("-1").is_err());
    }
}

//! Identifiers that can only hold valid values: account numbers, customer ids, request ids.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("account number must be 1 to 32 characters of digits, letters or '-'")]
    AccountNo,
    #[error("user id must be 1 to 64 printable characters without spaces")]
    CustomerId,
}

/// An account number: 1..=32 ASCII letters, digits or '-', not starting or ending with '-'.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountNo(String);

impl AccountNo {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let valid_chars = raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if raw.is_empty()
            || raw.len() > 32
            || !valid_chars
            || raw.starts_with('-')
            || raw.ends_with('-')
        {
            return Err(IdError::AccountNo);
        }
        Ok(Self(raw.to_owned()))
    }

    /// A bank-assigned number: `110-` followed by 9 random digits, e.g. `110-482910375`.
    pub fn generate() -> Self {
        let digits = u64::from_le_bytes(crate::ambient::random_bytes::<8>()) % 1_000_000_000;
        Self(format!("110-{digits:09}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AccountNo {
    type Error = IdError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<AccountNo> for String {
    fn from(value: AccountNo) -> Self {
        value.0
    }
}

impl fmt::Display for AccountNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A customer's id, the `userId` they registered with (often an e-mail address).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CustomerId(String);

impl CustomerId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let printable = raw.chars().all(|c| !c.is_control() && !c.is_whitespace());
        if raw.is_empty() || raw.chars().count() > 64 || !printable {
            return Err(IdError::CustomerId);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CustomerId {
    type Error = IdError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<CustomerId> for String {
    fn from(value: CustomerId) -> Self {
        value.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A customer request's id: a UUIDv7 given when the request is recorded, carried by its events,
/// its ledger and history rows and its answer (`requestId`). On the wire, the UUID's text.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct RequestId(uuid::Uuid);

impl RequestId {
    /// A new id, ordered by creation time (UUIDv7).
    pub fn generate() -> Self {
        Self(crate::ambient::uuid_v7())
    }

    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl From<uuid::Uuid> for RequestId {
    fn from(value: uuid::Uuid) -> Self {
        Self(value)
    }
}

impl std::str::FromStr for RequestId {
    type Err = uuid::Error;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(raw).map(Self)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_numbers_are_checked() {
        assert!(AccountNo::parse("1001").is_ok());
        assert!(AccountNo::parse("110-123456789").is_ok());
        assert!(AccountNo::parse("").is_err());
        assert!(AccountNo::parse("-12").is_err());
        assert!(AccountNo::parse("12 3").is_err());
        assert!(AccountNo::parse("1'; drop table").is_err());
        assert!(AccountNo::parse(&"1".repeat(33)).is_err());
    }

    #[test]
    fn generated_account_numbers_parse() {
        for _ in 0..100 {
            let generated = AccountNo::generate();
            assert_eq!(AccountNo::parse(generated.as_str()), Ok(generated));
        }
    }

    #[test]
    fn customer_ids_are_checked() {
        assert!(CustomerId::parse("1@sk.com").is_ok());
        assert!(CustomerId::parse("").is_err());
        assert!(CustomerId::parse("a b").is_err());
        assert!(CustomerId::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn request_ids_are_uuid_text_on_the_wire() {
        let id = RequestId::generate();
        let text = serde_json::to_string(&id).unwrap();
        assert_eq!(text, format!("\"{}\"", id.as_uuid()));
        assert_eq!(serde_json::from_str::<RequestId>(&text).unwrap(), id);
        assert_eq!(id.to_string().parse::<RequestId>().unwrap(), id);
        assert!("not-a-uuid".parse::<RequestId>().is_err());
    }
}

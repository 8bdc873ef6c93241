//! The body of `POST /api/v1/requests`, parsed into a command that can only hold valid values.

use crate::error::ApiError;
use crate::event::WriteKind;
use crate::ids::AccountNo;
use crate::money::{Amount, MoneyError, Won};
use crate::reason::Reason;
use serde::Deserialize;
use serde_json::Value;

/// The raw body, as the client sent it. Fields are optional here so that each missing or
/// malformed one gets its own precise error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestBody {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub account_no: Option<String>,
    /// A transfer's source (instead of `accountNo`).
    pub from_account_no: Option<String>,
    /// A transfer's target.
    pub to_account_no: Option<String>,
    pub amount: Option<Value>,
    pub password: Option<String>,
}

/// The reads a request can ask for; answered by mypage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    Balance,
    History,
}

impl ReadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadKind::Balance => "balance",
            ReadKind::History => "history",
        }
    }
}

/// Every `type` a `POST /api/v1/requests` can carry: a write (the request role's) or a read
/// (mypage's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    Write(WriteKind),
    Read(ReadKind),
}

impl RequestType {
    /// The type named `raw`, if it is one.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "balance" => Some(RequestType::Read(ReadKind::Balance)),
            "history" => Some(RequestType::Read(ReadKind::History)),
            other => WriteKind::parse(other).map(RequestType::Write),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::Write(kind) => kind.as_str(),
            RequestType::Read(kind) => kind.as_str(),
        }
    }

    /// Balance and history: answered by the read side, never a money movement.
    pub fn is_read(self) -> bool {
        matches!(self, RequestType::Read(_))
    }
}

/// A valid request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Write {
        kind: WriteKind,
        /// None only for `open` without a number: the bank assigns one. A transfer's source.
        account_no: Option<AccountNo>,
        /// A transfer's target (None for every other kind).
        to_account_no: Option<AccountNo>,
        /// For `open` the opening amount (may be 0), for `close` 0.
        amount: Won,
        password: String,
    },
    Read {
        kind: ReadKind,
        account_no: AccountNo,
    },
}

fn invalid_amount(message: &str) -> ApiError {
    ApiError::from_reason(Reason::InvalidAmount).with_message(message)
}

fn parse_amount(raw: Option<&Value>, max_amount: i64, allow_zero: bool) -> Result<Won, ApiError> {
    let Some(raw) = raw else {
        return if allow_zero {
            Ok(Won::ZERO)
        } else {
            Err(invalid_amount("amount is required"))
        };
    };
    let Some(won) = raw.as_i64() else {
        return Err(invalid_amount(
            "amount must be an integer number of won within the per-transaction limit",
        ));
    };
    if allow_zero && won == 0 {
        return Ok(Won::ZERO);
    }
    Amount::parse(won, max_amount)
        .map(Won::from)
        .map_err(|error| match error {
            MoneyError::OverLimit => invalid_amount("amount exceeds the per-transaction limit"),
            _ => invalid_amount("amount must be greater than zero"),
        })
}

fn parse_account_no(raw: Option<&str>) -> Result<AccountNo, ApiError> {
    parse_named_account_no("accountNo", raw)
}

fn parse_named_account_no(field: &str, raw: Option<&str>) -> Result<AccountNo, ApiError> {
    let raw = raw.ok_or_else(|| ApiError::validation(format!("{field} is required")))?;
    AccountNo::parse(raw).map_err(|error| ApiError::validation(format!("{field}: {error}")))
}

impl RequestBody {
    pub fn parse(&self, max_amount: i64) -> Result<Command, ApiError> {
        let kind = self
            .kind
            .as_deref()
            .ok_or_else(|| ApiError::validation("type is required"))?;
        let kind = match RequestType::parse(kind) {
            Some(RequestType::Read(kind)) => {
                return Ok(Command::Read {
                    kind,
                    account_no: parse_account_no(self.account_no.as_deref())?,
                })
            }
            Some(RequestType::Write(kind)) => kind,
            None => return Err(ApiError::validation(
                "type must be one of open, close, deposit, withdraw, transfer, balance, history",
            )),
        };
        let (account_no, to_account_no) = self.accounts(kind)?;
        let amount = match kind {
            WriteKind::Open => parse_amount(self.amount.as_ref(), max_amount, true)?,
            WriteKind::Deposit | WriteKind::Withdraw | WriteKind::Transfer => {
                parse_amount(self.amount.as_ref(), max_amount, false)?
            }
            WriteKind::Close => Won::ZERO,
        };
        let password = match self.password.as_deref() {
            Some(password) if !password.is_empty() && password.len() <= 512 => password.to_owned(),
            _ => {
                return Err(ApiError::validation(
                    "password is required for step-up authentication",
                ))
            }
        };
        Ok(Command::Write {
            kind,
            account_no,
            to_account_no,
            amount,
            password,
        })
    }

    /// The write's account (None: an open without a number) and a transfer's target. A transfer
    /// names `fromAccountNo` and `toAccountNo`, two different accounts; every other write only
    /// `accountNo`.
    fn accounts(
        &self,
        kind: WriteKind,
    ) -> Result<(Option<AccountNo>, Option<AccountNo>), ApiError> {
        if kind != WriteKind::Transfer {
            if self.from_account_no.is_some() || self.to_account_no.is_some() {
                return Err(ApiError::validation(
                    "fromAccountNo and toAccountNo belong to a transfer",
                ));
            }
            return Ok(match (kind, self.account_no.as_deref()) {
                (WriteKind::Open, None) => (None, None),
                (_, raw) => (Some(parse_account_no(raw)?), None),
            });
        }
        if self.account_no.is_some() {
            return Err(ApiError::validation(
                "a transfer names fromAccountNo and toAccountNo, not accountNo",
            ));
        }
        let from = parse_named_account_no("fromAccountNo", self.from_account_no.as_deref())?;
        let to = parse_named_account_no("toAccountNo", self.to_account_no.as_deref())?;
        if from == to {
            return Err(ApiError::validation(
                "fromAccountNo and toAccountNo must be different accounts",
            ));
        }
        Ok((Some(from), Some(to)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(value: Value) -> RequestBody {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn deposits_need_account_amount_and_password() {
        let command = body(json!({"type":"deposit","accountNo":"1001","amount":5,"password":"pw"}))
            .parse(100)
            .unwrap();
        assert_eq!(
            command,
            Command::Write {
                kind: WriteKind::Deposit,
                account_no: Some(AccountNo::parse("1001").unwrap()),
                to_account_no: None,
                amount: Won::from_stored(5).unwrap(),
                password: "pw".into()
            }
        );
        for bad in [
            json!({"type":"deposit","accountNo":"1001","password":"pw"}),
            json!({"type":"deposit","accountNo":"1001","amount":0,"password":"pw"}),
            json!({"type":"deposit","accountNo":"1001","amount":-1,"password":"pw"}),
            json!({"type":"deposit","accountNo":"1001","amount":101,"password":"pw"}),
            json!({"type":"deposit","accountNo":"1001","amount":1.5,"password":"pw"}),
            json!({"type":"deposit","accountNo":"1001","amount":"5","password":"pw"}),
            json!({"type":"withdraw","accountNo":"1001","amount":1e30,"password":"pw"}),
        ] {
            let error = body(bad).parse(100).unwrap_err();
            assert_eq!(error.code, "invalid_amount");
        }
        let error = body(json!({"type":"deposit","accountNo":"1001","amount":5}))
            .parse(100)
            .unwrap_err();
        assert_eq!(error.code, "invalid_request");
    }

    #[test]
    fn transfers_name_two_different_accounts_an_amount_and_a_password() {
        let command = body(json!({"type":"transfer","fromAccountNo":"1001","toAccountNo":"2002","amount":5,"password":"pw"}))
            .parse(100)
            .unwrap();
        assert_eq!(
            command,
            Command::Write {
                kind: WriteKind::Transfer,
                account_no: Some(AccountNo::parse("1001").unwrap()),
                to_account_no: Some(AccountNo::parse("2002").unwrap()),
                amount: Won::from_stored(5).unwrap(),
                password: "pw".into()
            }
        );
        for bad in [
            json!({"type":"transfer","fromAccountNo":"1001","toAccountNo":"1001","amount":5,"password":"pw"}),
            json!({"type":"transfer","toAccountNo":"2002","amount":5,"password":"pw"}),
            json!({"type":"transfer","fromAccountNo":"1001","amount":5,"password":"pw"}),
            json!({"type":"transfer","accountNo":"1001","toAccountNo":"2002","amount":5,"password":"pw"}),
            json!({"type":"deposit","accountNo":"1001","toAccountNo":"2002","amount":5,"password":"pw"}),
            json!({"type":"transfer","fromAccountNo":"1001","toAccountNo":"bad no","amount":5,"password":"pw"}),
        ] {
            assert_eq!(
                body(bad.clone()).parse(100).unwrap_err().code,
                "invalid_request",
                "{bad}"
            );
        }
        let no_amount = json!({"type":"transfer","fromAccountNo":"1001","toAccountNo":"2002","amount":0,"password":"pw"});
        assert_eq!(
            body(no_amount).parse(100).unwrap_err().code,
            "invalid_amount"
        );
    }

    #[test]
    fn open_may_omit_number_and_amount() {
        let command = body(json!({"type":"open","password":"pw"}))
            .parse(100)
            .unwrap();
        assert!(matches!(
            command,
            Command::Write {
                account_no: None,
                amount: Won::ZERO,
                ..
            }
        ));
    }

    #[test]
    fn reads_need_only_the_account() {
        let command = body(json!({"type":"balance","accountNo":"1001"}))
            .parse(100)
            .unwrap();
        assert!(matches!(
            command,
            Command::Read {
                kind: ReadKind::Balance,
                ..
            }
        ));
        assert_eq!(
            body(json!({"type":"transfer"}))
                .parse(100)
                .unwrap_err()
                .code,
            "invalid_request"
        );
        assert_eq!(
            body(json!({})).parse(100).unwrap_err().code,
            "invalid_request"
        );
        assert_eq!(
            body(json!({"type":"balance","accountNo":"bad no"}))
                .parse(100)
                .unwrap_err()
                .code,
            "invalid_request"
        );
    }
}

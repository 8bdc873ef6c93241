//! The account's rules, as a pure function: given the account as it is and a certified request,
//! the account as it will be, or the reason the request is refused.

use onlinebank_core::event::{AuthCertified, WriteKind};
use onlinebank_core::ids::{AccountNo, CustomerId};
use onlinebank_core::money::{Balance, MoneyError, Won};
use onlinebank_core::Reason;

/// An account's status (core's, shared with the read model and the internal listing).
pub use onlinebank_core::event::AccountStatus as Status;

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub account_no: AccountNo,
    pub customer_id: CustomerId,
    pub balance: Balance,
    pub status: Status,
    pub version: i64,
}

/// What applying a request does to the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub after: Account,
    /// Won moved (opening amount for open, 0 for close).
    pub amount: Won,
}

fn money_reason(error: MoneyError) -> Reason {
    match error {
        MoneyError::NotPositive | MoneyError::Negative | MoneyError::OverLimit => {
            Reason::InvalidAmount
        }
        MoneyError::InsufficientFunds => Reason::InsufficientFunds,
        MoneyError::Overflow => Reason::BalanceOverflow,
    }
}

/// Decides the outcome of `request` on `current` (None: no such account).
pub fn decide(
    current: Option<&Account>,
    request: &AuthCertified,
    max_amount: i64,
) -> Result<Change, Reason> {
    if request.kind == WriteKind::Open {
        if current.is_some() {
            return Err(Reason::AccountExists);
        }
        let balance = if request.amount.is_zero() {
            Balance::ZERO
        } else {
            let amount = request.amount.amount(max_amount).map_err(money_reason)?;
            Balance::ZERO.deposit(amount).map_err(money_reason)?
        };
        return Ok(Change {
            after: Account {
                account_no: request.account_no.clone(),
                customer_id: request.customer_id.clone(),
                balance,
                status: Status::Open,
                version: 1,
            },
            amount: request.amount,
        });
    }
    let account = current.ok_or(Reason::AccountNotFound)?;
    if account.customer_id != request.customer_id {
        return Err(Reason::NotOwner);
    }
    if account.status == Status::Closed {
        return Err(Reason::AccountClosed);
    }
    let (balance, status, amount) = match request.kind {
        WriteKind::Deposit => {
            let amount = request.amount.amount(max_amount).map_err(money_reason)?;
            let balance = account.balance.deposit(amount).map_err(money_reason)?;
            debug_assert_eq!(balance.won() - account.balance.won(), amount.won());
            (balance, Status::Open, Won::from(amount))
        }
        WriteKind::Withdraw => {
            let amount = request.amount.amount(max_amount).map_err(money_reason)?;
            let balance = account.balance.withdraw(amount).map_err(money_reason)?;
            debug_assert_eq!(account.balance.won() - balance.won(), amount.won());
            (balance, Status::Open, Won::from(amount))
        }
        WriteKind::Close => {
            if !account.balance.is_zero() {
                return Err(Reason::BalanceNotZero);
            }
            (account.balance, Status::Closed, Won::ZERO)
        }
        WriteKind::Open => return Err(Reason::AccountExists),
    };
    Ok(Change {
        after: Account {
            balance,
            status,
            version: account.version + 1,
            ..account.clone()
        },
        amount,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use onlinebank_core::ids::RequestId;

    const MAX: i64 = 1_000_000;

    fn request(kind: WriteKind, amount: i64) -> AuthCertified {
        AuthCertified {
            request_id: RequestId::generate(),
            customer_id: CustomerId::parse("alice").unwrap(),
            kind,
            account_no: AccountNo::parse("1001").unwrap(),
            amount: Won::from_stored(amount).unwrap(),
        }
    }

    fn account(balance: i64, status: Status) -> Account {
        Account {
            account_no: AccountNo::parse("1001").unwrap(),
            customer_id: CustomerId::parse("alice").unwrap(),
            balance: Balance::from_stored(balance).unwrap(),
            status,
            version: 4,
        }
    }

    #[test]
    fn open_creates_version_one_with_the_opening_amount() {
        let change = decide(None, &request(WriteKind::Open, 500), MAX).unwrap();
        assert_eq!(change.after.balance.won(), 500);
        assert_eq!(change.after.version, 1);
        assert_eq!(
            decide(None, &request(WriteKind::Open, 0), MAX)
                .unwrap()
                .amount,
            Won::ZERO
        );
        assert_eq!(
            decide(
                Some(&account(0, Status::Open)),
                &request(WriteKind::Open, 0),
                MAX
            ),
            Err(Reason::AccountExists)
        );
        assert_eq!(
            decide(None, &request(WriteKind::Open, MAX + 1), MAX),
            Err(Reason::InvalidAmount)
        );
    }

    #[test]
    fn deposit_and_withdraw_move_the_balance_and_version() {
        let open = account(100, Status::Open);
        let deposited = decide(Some(&open), &request(WriteKind::Deposit, 50), MAX).unwrap();
        assert_eq!(
            (deposited.after.balance.won(), deposited.after.version),
            (150, 5)
        );
        let withdrawn = decide(Some(&open), &request(WriteKind::Withdraw, 100), MAX).unwrap();
        assert_eq!(withdrawn.after.balance.won(), 0);
    }

    #[test]
    fn refusals_carry_their_reason() {
        let open = account(100, Status::Open);
        let closed = account(0, Status::Closed);
        assert_eq!(
            decide(None, &request(WriteKind::Deposit, 1), MAX),
            Err(Reason::AccountNotFound)
        );
        assert_eq!(
            decide(Some(&open), &request(WriteKind::Withdraw, 101), MAX),
            Err(Reason::InsufficientFunds)
        );
        assert_eq!(
            decide(Some(&closed), &request(WriteKind::Deposit, 1), MAX),
            Err(Reason::AccountClosed)
        );
        assert_eq!(
            decide(Some(&open), &request(WriteKind::Close, 0), MAX),
            Err(Reason::BalanceNotZero)
        );
        assert_eq!(
            decide(Some(&open), &request(WriteKind::Deposit, 0), MAX),
            Err(Reason::InvalidAmount)
        );
        assert_eq!(
            decide(Some(&open), &request(WriteKind::Deposit, MAX + 1), MAX),
            Err(Reason::InvalidAmount)
        );
        let mut foreign = request(WriteKind::Deposit, 1);
        foreign.customer_id = CustomerId::parse("mallory").unwrap();
        assert_eq!(decide(Some(&open), &foreign, MAX), Err(Reason::NotOwner));
    }

    #[test]
    fn close_needs_zero_and_keeps_the_account_readable() {
        let change = decide(
            Some(&account(0, Status::Open)),
            &request(WriteKind::Close, 0),
            MAX,
        )
        .unwrap();
        assert_eq!(change.after.status, Status::Closed);
        assert_eq!(change.after.version, 5);
    }

    #[test]
    fn overflow_is_refused() {
        let rich = account(i64::MAX - 1, Status::Open);
        assert_eq!(
            decide(Some(&rich), &request(WriteKind::Deposit, 2), MAX),
            Err(Reason::BalanceOverflow)
        );
    }
}

//! The account's rules, as a pure function: given the account as it is, a certified request and
//! the bank's calendar day it was certified on, the account as it will be, or the reason the
//! request is refused.

use onlinebank_core::event::{AuthCertified, WriteKind};
use onlinebank_core::ids::{AccountNo, CustomerId};
use onlinebank_core::money::{Balance, MoneyError, Won};
use onlinebank_core::time::Day;
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
    /// What left the account on its last day with withdrawals (None: never).
    pub outflow: Option<Outflow>,
}

/// The won that left an account on one day of the bank's calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outflow {
    pub day: Day,
    pub won: Won,
}

impl Account {
    /// The won that left the account on `day`.
    pub fn outflow_on(&self, day: Day) -> Won {
        match self.outflow {
            Some(outflow) if outflow.day == day => outflow.won,
            _ => Won::ZERO,
        }
    }

    /// The won that may still leave the account on `day` under `daily_limit`.
    pub fn allowed_on(&self, day: Day, daily_limit: Won) -> Won {
        let left = daily_limit.won() - self.outflow_on(day).won();
        Won::from_stored(left).unwrap_or(Won::ZERO)
    }
}

/// The limits the account role enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Per-transaction limit in won.
    pub max_amount: i64,
    /// Withdrawals per account per day of the bank's calendar.
    pub daily_limit: Won,
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

/// Decides the outcome of `request`, certified on `today`, on `current` (None: no such account).
pub fn decide(
    current: Option<&Account>,
    request: &AuthCertified,
    rules: &Rules,
    today: Day,
) -> Result<Change, Reason> {
    let max_amount = rules.max_amount;
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
                outflow: None,
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
    let mut outflow = account.outflow;
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
            if amount.won() > account.allowed_on(today, rules.daily_limit).won() {
                return Err(Reason::DailyLimitExceeded);
            }
            let out_today = account.outflow_on(today).won() + amount.won();
            outflow = Some(Outflow {
                day: today,
                won: Won::from_stored(out_today).map_err(money_reason)?,
            });
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
            outflow,
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
    const RULES: Rules = Rules {
        max_amount: MAX,
        daily_limit: Won::ZERO,
    };

    /// The rules with a daily limit far above anything the tests move, unless a test sets one.
    fn rules() -> Rules {
        Rules {
            daily_limit: Won::from_stored(i64::MAX).unwrap(),
            ..RULES
        }
    }

    fn day(n: u32) -> Day {
        Day::parse(&format!("2026-12-{n:02}")).unwrap()
    }

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
            outflow: None,
        }
    }

    #[test]
    fn open_creates_version_one_with_the_opening_amount() {
        let change = decide(None, &request(WriteKind::Open, 500), &rules(), day(7)).unwrap();
        assert_eq!(change.after.balance.won(), 500);
        assert_eq!(change.after.version, 1);
        assert_eq!(
            decide(None, &request(WriteKind::Open, 0), &rules(), day(7))
                .unwrap()
                .amount,
            Won::ZERO
        );
        assert_eq!(
            decide(
                Some(&account(0, Status::Open)),
                &request(WriteKind::Open, 0),
                &rules(),
                day(7)
            ),
            Err(Reason::AccountExists)
        );
        assert_eq!(
            decide(None, &request(WriteKind::Open, MAX + 1), &rules(), day(7)),
            Err(Reason::InvalidAmount)
        );
    }

    #[test]
    fn deposit_and_withdraw_move_the_balance_and_version() {
        let open = account(100, Status::Open);
        let deposited = decide(
            Some(&open),
            &request(WriteKind::Deposit, 50),
            &rules(),
            day(7),
        )
        .unwrap();
        assert_eq!(
            (deposited.after.balance.won(), deposited.after.version),
            (150, 5)
        );
        let withdrawn = decide(
            Some(&open),
            &request(WriteKind::Withdraw, 100),
            &rules(),
            day(7),
        )
        .unwrap();
        assert_eq!(withdrawn.after.balance.won(), 0);
    }

    #[test]
    fn refusals_carry_their_reason() {
        let open = account(100, Status::Open);
        let closed = account(0, Status::Closed);
        assert_eq!(
            decide(None, &request(WriteKind::Deposit, 1), &rules(), day(7)),
            Err(Reason::AccountNotFound)
        );
        assert_eq!(
            decide(
                Some(&open),
                &request(WriteKind::Withdraw, 101),
                &rules(),
                day(7)
            ),
            Err(Reason::InsufficientFunds)
        );
        assert_eq!(
            decide(
                Some(&closed),
                &request(WriteKind::Deposit, 1),
                &rules(),
                day(7)
            ),
            Err(Reason::AccountClosed)
        );
        assert_eq!(
            decide(Some(&open), &request(WriteKind::Close, 0), &rules(), day(7)),
            Err(Reason::BalanceNotZero)
        );
        assert_eq!(
            decide(
                Some(&open),
                &request(WriteKind::Deposit, 0),
                &rules(),
                day(7)
            ),
            Err(Reason::InvalidAmount)
        );
        assert_eq!(
            decide(
                Some(&open),
                &request(WriteKind::Deposit, MAX + 1),
                &rules(),
                day(7)
            ),
            Err(Reason::InvalidAmount)
        );
        let mut foreign = request(WriteKind::Deposit, 1);
        foreign.customer_id = CustomerId::parse("mallory").unwrap();
        assert_eq!(
            decide(Some(&open), &foreign, &rules(), day(7)),
            Err(Reason::NotOwner)
        );
    }

    #[test]
    fn close_needs_zero_and_keeps_the_account_readable() {
        let change = decide(
            Some(&account(0, Status::Open)),
            &request(WriteKind::Close, 0),
            &rules(),
            day(7),
        )
        .unwrap();
        assert_eq!(change.after.status, Status::Closed);
        assert_eq!(change.after.version, 5);
    }

    #[test]
    fn overflow_is_refused() {
        let rich = account(i64::MAX - 1, Status::Open);
        assert_eq!(
            decide(
                Some(&rich),
                &request(WriteKind::Deposit, 2),
                &rules(),
                day(7)
            ),
            Err(Reason::BalanceOverflow)
        );
    }

    /// Withdrawals count against the day's limit on the bank's calendar: up to it is allowed,
    /// one won more is refused with what is left, and the next day starts again from zero.
    #[test]
    fn withdrawals_stop_at_the_daily_limit_and_the_next_day_starts_afresh() {
        let rules = Rules {
            daily_limit: Won::from_stored(1_000).unwrap(),
            ..RULES
        };
        let withdraw = |current: &Account, won: i64, today: u32| {
            decide(
                Some(current),
                &request(WriteKind::Withdraw, won),
                &rules,
                day(today),
            )
        };
        let rich = account(10_000, Status::Open);
        let first = withdraw(&rich, 600, 7).unwrap().after;
        assert_eq!(first.outflow_on(day(7)).won(), 600);
        assert_eq!(first.allowed_on(day(7), rules.daily_limit).won(), 400);
        assert_eq!(withdraw(&first, 401, 7), Err(Reason::DailyLimitExceeded));
        let second = withdraw(&first, 400, 7).unwrap().after;
        assert_eq!(second.allowed_on(day(7), rules.daily_limit), Won::ZERO);
        assert_eq!(withdraw(&second, 1, 7), Err(Reason::DailyLimitExceeded));
        // Deposits are not limited and keep the day's count.
        let deposited = decide(
            Some(&second),
            &request(WriteKind::Deposit, 5_000),
            &rules,
            day(7),
        )
        .unwrap()
        .after;
        assert_eq!(deposited.outflow_on(day(7)).won(), 1_000);
        let next_day = withdraw(&deposited, 1_000, 8).unwrap().after;
        assert_eq!(next_day.outflow_on(day(8)).won(), 1_000);
        assert_eq!(next_day.outflow_on(day(7)), Won::ZERO);
        // Not enough money is said before the limit.
        let poor = account(10, Status::Open);
        assert_eq!(withdraw(&poor, 2_000, 7), Err(Reason::InsufficientFunds));
    }
}

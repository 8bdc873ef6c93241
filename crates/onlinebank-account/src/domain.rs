//! The account's rules, as pure functions: given the account as it is, a certified request and
//! the bank's calendar day it was certified on, the account as it will be, or the reason the
//! request is refused ([`decide`]); given a transfer's debited source and its target, the
//! transfer's second leg ([`settle`]).

use onlinebank_core::event::{AuthCertified, TransferDebited, WriteKind};
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
    /// The won of its transfers out debited but not yet credited or reversed.
    pub in_flight: Won,
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
    /// Withdrawals and transfers out per account per day of the bank's calendar.
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
                in_flight: Won::ZERO,
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
    let mut after = Account {
        version: account.version + 1,
        ..account.clone()
    };
    let amount = match request.kind {
        WriteKind::Deposit => {
            let amount = request
                .amount
                .amount(rules.max_amount)
                .map_err(money_reason)?;
            after.balance = account.balance.deposit(amount).map_err(money_reason)?;
            Won::from(amount)
        }
        WriteKind::Withdraw | WriteKind::Transfer => {
            let target = request.to_account_no.as_ref();
            if request.kind == WriteKind::Transfer
                && target.is_none_or(|target| *target == account.account_no)
            {
                // No other account to credit (the request role refuses this before).
                return Err(Reason::AccountNotFound);
            }
            let amount = take_out(account, &mut after, request.amount, rules, today)?;
            if request.kind == WriteKind::Transfer {
                after.in_flight = add(account.in_flight, amount)?;
            }
            amount
        }
        WriteKind::Close => {
            // Money still on its way out counts: a reversal must find its source open.
            if !account.balance.is_zero() || !account.in_flight.is_zero() {
                return Err(Reason::BalanceNotZero);
            }
            after.status = Status::Closed;
            Won::ZERO
        }
        WriteKind::Open => return Err(Reason::AccountExists),
    };
    Ok(Change { after, amount })
}

/// Takes `won` out of `account` into `after`: funds first, then the day's limit.
fn take_out(
    account: &Account,
    after: &mut Account,
    won: Won,
    rules: &Rules,
    today: Day,
) -> Result<Won, Reason> {
    let amount = won.amount(rules.max_amount).map_err(money_reason)?;
    after.balance = account.balance.withdraw(amount).map_err(money_reason)?;
    if amount.won() > account.allowed_on(today, rules.daily_limit).won() {
        return Err(Reason::DailyLimitExceeded);
    }
    after.outflow = Some(Outflow {
        day: today,
        won: add(account.outflow_on(today), Won::from(amount))?,
    });
    Ok(Won::from(amount))
}

fn add(a: Won, b: Won) -> Result<Won, Reason> {
    a.won()
        .checked_add(b.won())
        .ok_or(Reason::BalanceOverflow)
        .and_then(|sum| Won::from_stored(sum).map_err(money_reason))
}

/// A transfer's second leg, decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// The target was credited; the source's money in flight is released.
    Credited { source: Account, target: Account },
    /// The target could not be credited for `reason`: the money came back to the source.
    Reversed { source: Account, reason: Reason },
}

/// The source's state does not allow the second leg: the bank's own bookkeeping is broken (the
/// source of a debit is never deleted, and cannot close while money is in flight).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transfer {request}: its source {source_no} is {problem}")]
pub struct Unsettleable {
    pub request: String,
    pub source_no: String,
    pub problem: &'static str,
}

/// Decides the second leg of `debited` on its `source` and its `target` (None: no such account):
/// credit the target when it is open and can hold the money, else return the money to the
/// source. Either way the source's money in flight goes down by the amount.
pub fn settle(
    source: Option<&Account>,
    target: Option<&Account>,
    debited: &TransferDebited,
) -> Result<Settlement, Unsettleable> {
    let broken = |problem| Unsettleable {
        request: debited.request_id.to_string(),
        source_no: debited.account_no.to_string(),
        problem,
    };
    let source = source.ok_or_else(|| broken("missing"))?;
    if source.status == Status::Closed {
        return Err(broken("closed"));
    }
    let released = source.in_flight.won() - debited.amount.won();
    let mut source_after = Account {
        in_flight: Won::from_stored(released).map_err(|_| broken("short of money in flight"))?,
        ..source.clone()
    };
    match credit(target, debited) {
        Ok(target) => Ok(Settlement::Credited {
            source: source_after,
            target,
        }),
        Err(reason) => {
            let amount = debited
                .amount
                .amount(i64::MAX)
                .map_err(|_| broken("sent nothing"))?;
            source_after.balance = source
                .balance
                .deposit(amount)
                .map_err(|_| broken("too full to take its money back"))?;
            if onlinebank_core::ambient::armed(
                onlinebank_core::ambient::Injection::CompensationTwice,
            ) {
                // The simulator's known bug: the money given back twice.
                source_after.balance = source_after
                    .balance
                    .deposit(amount)
                    .map_err(|_| broken("too full"))?;
            }
            source_after.version = source.version + 1;
            Ok(Settlement::Reversed {
                source: source_after,
                reason,
            })
        }
    }
}

/// The target after the credit, or why it cannot take it.
fn credit(target: Option<&Account>, debited: &TransferDebited) -> Result<Account, Reason> {
    let target = target.ok_or(Reason::AccountNotFound)?;
    if target.account_no == debited.account_no {
        return Err(Reason::AccountNotFound);
    }
    if target.status == Status::Closed {
        return Err(Reason::AccountClosed);
    }
    let amount = debited.amount.amount(i64::MAX).map_err(money_reason)?;
    Ok(Account {
        balance: target.balance.deposit(amount).map_err(money_reason)?,
        version: target.version + 1,
        ..target.clone()
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
            to_account_no: (kind == WriteKind::Transfer).then(|| AccountNo::parse("2002").unwrap()),
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
            in_flight: Won::ZERO,
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

    fn debited(amount: i64, target: &str) -> TransferDebited {
        TransferDebited {
            request_id: RequestId::generate(),
            customer_id: CustomerId::parse("alice").unwrap(),
            account_no: AccountNo::parse("1001").unwrap(),
            to_account_no: AccountNo::parse(target).unwrap(),
            amount: Won::from_stored(amount).unwrap(),
            balance: Balance::ZERO,
            version: 5,
        }
    }

    fn target(balance: i64, status: Status) -> Account {
        Account {
            account_no: AccountNo::parse("2002").unwrap(),
            customer_id: CustomerId::parse("bob").unwrap(),
            ..account(balance, status)
        }
    }

    /// A transfer's debit is a withdrawal that also holds the money in flight (and counts
    /// against the daily limit); the account cannot close until the second leg released it.
    #[test]
    fn a_transfer_debits_holds_the_money_in_flight_and_blocks_the_close() {
        let limited = Rules {
            daily_limit: Won::from_stored(100).unwrap(),
            ..RULES
        };
        let source = account(100, Status::Open);
        let debited = decide(
            Some(&source),
            &request(WriteKind::Transfer, 100),
            &limited,
            day(7),
        )
        .unwrap()
        .after;
        assert_eq!(
            (
                debited.balance.won(),
                debited.in_flight.won(),
                debited.version
            ),
            (0, 100, 5)
        );
        assert_eq!(debited.allowed_on(day(7), limited.daily_limit), Won::ZERO);
        assert_eq!(
            decide(
                Some(&debited),
                &request(WriteKind::Close, 0),
                &rules(),
                day(7)
            ),
            Err(Reason::BalanceNotZero)
        );
        assert_eq!(
            decide(
                Some(&source),
                &request(WriteKind::Transfer, 101),
                &rules(),
                day(7)
            ),
            Err(Reason::InsufficientFunds)
        );
        let mut to_itself = request(WriteKind::Transfer, 1);
        to_itself.to_account_no = Some(source.account_no.clone());
        assert_eq!(
            decide(Some(&source), &to_itself, &rules(), day(7)),
            Err(Reason::AccountNotFound)
        );
    }

    /// The second leg credits an open target and releases the source's money in flight; a
    /// missing or closed target gets nothing and the money goes back to the source, whose
    /// version moves (the reversal is an item of its history).
    #[test]
    fn the_second_leg_credits_or_returns_the_money() {
        let source = Account {
            in_flight: Won::from_stored(70).unwrap(),
            ..account(30, Status::Open)
        };
        let credited = settle(
            Some(&source),
            Some(&target(5, Status::Open)),
            &debited(70, "2002"),
        )
        .unwrap();
        let Settlement::Credited {
            source: s,
            target: t,
        } = credited
        else {
            panic!("{credited:?}")
        };
        assert_eq!(
            (s.balance.won(), s.in_flight, s.version),
            (30, Won::ZERO, 4)
        );
        assert_eq!((t.balance.won(), t.version), (75, 5));
        for (target, reason) in [
            (None, Reason::AccountNotFound),
            (Some(target(5, Status::Closed)), Reason::AccountClosed),
            (
                Some(target(i64::MAX - 1, Status::Open)),
                Reason::BalanceOverflow,
            ),
        ] {
            let reversed = settle(Some(&source), target.as_ref(), &debited(70, "2002")).unwrap();
            let Settlement::Reversed {
                source: s,
                reason: why,
            } = reversed
            else {
                panic!("{reversed:?}")
            };
            assert_eq!(
                (s.balance.won(), s.in_flight, s.version),
                (100, Won::ZERO, 5)
            );
            assert_eq!(why, reason);
        }
        assert!(settle(None, None, &debited(70, "2002")).is_err());
        assert!(settle(Some(&account(0, Status::Open)), None, &debited(70, "2002")).is_err());
    }
}

//! The consistency check of one account, as a client can judge it: the balance is never
//! negative and every store shows the same one (account, history's ledger sum, mypage); the
//! transactions (`GET /api/v1/accounts/{no}/transactions`) hold every request's item of each
//! kind once, chain oldest to newest without going negative and add up to the balance; and they
//! hold exactly the writes the client saw complete (a transfer on both its accounts), as they
//! were sent, and none it saw refused (a refused transfer may have left and come back: its
//! transfer_out and transfer_reversed add up to nothing).

use crate::outcome::Outcome;
use crate::wire::{EntryKind, Transaction};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// One transaction of an account, with the fields the check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub request_id: String,
    pub kind: EntryKind,
    pub amount: i64,
    pub version: Option<i64>,
    pub balance_after: Option<i64>,
}

impl Entry {
    /// Reads one item of a transactions page.
    pub fn parse(item: &Value) -> Result<Entry, String> {
        Entry::from_transaction(crate::wire::decode(item), item)
    }

    /// The entry of `transaction` (`item` as answered, for the message when a field is missing).
    pub fn from_transaction(
        transaction: Transaction,
        item: &impl std::fmt::Display,
    ) -> Result<Entry, String> {
        let kind = transaction
            .kind
            .ok_or_else(|| format!("no type in {item}"))?;
        Ok(Entry {
            request_id: transaction
                .request_id
                .ok_or_else(|| format!("no requestId in {item}"))?,
            kind: EntryKind::parse(&kind)
                .ok_or_else(|| format!("unknown transaction type {kind:?}"))?,
            amount: transaction
                .amount
                .ok_or_else(|| format!("no amount in {item}"))?,
            version: transaction.version,
            balance_after: transaction.balance_after,
        })
    }

    /// How it moves the balance.
    pub fn signed(&self) -> i64 {
        self.kind.signed(self.amount)
    }
}

/// How a transaction of `kind` moves the balance (see [`EntryKind::signed`]).
pub fn signed(kind: &str, amount: i64) -> Result<i64, String> {
    EntryKind::parse(kind)
        .map(|kind| kind.signed(amount))
        .ok_or_else(|| format!("unknown transaction type {kind:?}"))
}

/// The account as each store shows it: the account role's balance (the truth), history's ledger
/// sum and mypage's balance (`None`: that store does not know the account).
#[derive(Debug, Clone, Copy)]
pub struct Views {
    pub balance: i64,
    pub history: Option<i64>,
    pub mypage: Option<i64>,
}

/// A write the client sent that moves the account, with the first outcome it learnt and the
/// final one (after resolution); `kind` is the item it makes on this account (a transfer's
/// `transfer_out` on its source, `transfer_in` on its target).
#[derive(Debug, Clone, Copy)]
pub struct Sent<'a> {
    pub kind: EntryKind,
    pub amount: i64,
    pub first: &'a Outcome,
    pub last: &'a Outcome,
}

/// Every way account `no` breaks the rules; empty when it is consistent.
pub fn check_account(no: &str, views: Views, ledger: &[Entry], sent: &[Sent]) -> Vec<String> {
    let mut violations = check_views(no, views);
    let by_id = check_ledger(no, views.balance, ledger, &mut violations);
    check_sent(no, views.balance, &by_id, sent, &mut violations);
    violations
}

/// The balance is not negative and every store shows it.
fn check_views(no: &str, views: Views) -> Vec<String> {
    let mut violations = Vec::new();
    let balance = views.balance;
    if balance < 0 {
        violations.push(format!("{no}: negative balance {balance}"));
    }
    if views.history != Some(balance) {
        violations.push(format!(
            "{no}: history's ledger sum {:?} != account {balance}",
            views.history
        ));
    }
    if views.mypage != Some(balance) {
        violations.push(format!(
            "{no}: mypage {:?} != account {balance}",
            views.mypage
        ));
    }
    violations
}

/// A request's items on one account, by kind.
type Items<'a> = BTreeMap<EntryKind, &'a Entry>;

/// What a request's items add to the balance together.
fn net(items: &Items<'_>) -> i64 {
    items.values().map(|entry| entry.signed()).sum()
}

/// The ledger itself: each request's item of each kind once, a chain from the oldest that never
/// goes negative and ends at `balance`. Returns the items by request id.
fn check_ledger<'a>(
    no: &str,
    balance: i64,
    ledger: &'a [Entry],
    violations: &mut Vec<String>,
) -> BTreeMap<&'a str, Items<'a>> {
    let mut by_id: BTreeMap<&str, Items<'a>> = BTreeMap::new();
    for entry in ledger {
        let items = by_id.entry(&entry.request_id).or_default();
        if items.insert(entry.kind, entry).is_some() {
            violations.push(format!(
                "{no}: request {}'s {} is in the ledger twice",
                entry.request_id,
                entry.kind.name()
            ));
        }
    }
    let mut chain: Vec<&Entry> = ledger.iter().collect();
    chain.sort_by_key(|entry| entry.version.unwrap_or(0));
    let mut running = 0_i64;
    for entry in chain {
        running += entry.signed();
        if running < 0 {
            violations.push(format!("{no}: the ledger goes negative at {entry:?}"));
        }
        if entry.balance_after != Some(running) {
            violations.push(format!(
                "{no}: broken chain at {entry:?} (running {running})"
            ));
        }
    }
    if running != balance {
        violations.push(format!(
            "{no}: the ledger adds up to {running}, the balance is {balance}"
        ));
    }
    by_id
}

/// Exactly the completed writes are in the ledger, each as it was sent, and they add up to
/// `balance`.
fn check_sent(
    no: &str,
    balance: i64,
    by_id: &BTreeMap<&str, Items<'_>>,
    sent: &[Sent],
    violations: &mut Vec<String>,
) {
    let mut expected = 0_i64;
    let mut completed = BTreeSet::new();
    for write in sent {
        match write.last {
            Outcome::Completed {
                id: Some(id),
                balance: after,
            } => {
                check_completed(no, write, id, *after, by_id, violations);
                expected += write.kind.signed(write.amount);
                completed.insert(id.as_str());
            }
            Outcome::Completed { id: None, .. } => {
                violations.push(format!("{no}: completed without a request id: {write:?}"));
            }
            Outcome::Refused { id: Some(id), .. }
                if by_id.get(id.as_str()).is_some_and(|items| net(items) != 0) =>
            {
                violations.push(format!("{no}: refused but applied: {write:?}"));
            }
            _ => {}
        }
    }
    for (id, items) in by_id {
        if !completed.contains(id) && !is_returned(items) {
            violations.push(format!(
                "{no}: ledger items {items:?} no write completed as"
            ));
        }
    }
    if expected != balance {
        violations.push(format!(
            "{no}: balance {balance} but the completed writes add up to {expected}"
        ));
    }
}

/// One completed write `id`: a balance not negative, in the ledger as sent, the id it was
/// first acknowledged with.
fn check_completed(
    no: &str,
    write: &Sent,
    id: &str,
    after: Option<i64>,
    by_id: &BTreeMap<&str, Items<'_>>,
    violations: &mut Vec<String>,
) {
    if after.is_some_and(|after| after < 0) {
        violations.push(format!(
            "{no}: completed with a negative balance: {write:?}"
        ));
    }
    match by_id.get(id) {
        Some(items)
            if items.len() == 1
                && items
                    .get(&write.kind)
                    .is_some_and(|entry| entry.amount == write.amount) => {}
        Some(items) => violations.push(format!("{no}: {write:?} recorded as {items:?}")),
        None => violations.push(format!(
            "{no}: completed but missing from the ledger: {write:?}"
        )),
    }
    if let Outcome::Completed {
        id: Some(first), ..
    } = write.first
    {
        if first != id {
            violations.push(format!(
                "{no}: an acknowledged write changed its id: {write:?}"
            ));
        }
    }
}

/// A transfer out whose money came back: its two items add up to nothing.
fn is_returned(items: &Items<'_>) -> bool {
    items.len() == 2
        && items.contains_key(&EntryKind::TransferOut)
        && items.contains_key(&EntryKind::TransferReversed)
        && net(items) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(id: &str, kind: EntryKind, amount: i64, version: i64, after: i64) -> Entry {
        Entry {
            request_id: id.into(),
            kind,
            amount,
            version: Some(version),
            balance_after: Some(after),
        }
    }

    fn done(id: &str) -> Outcome {
        Outcome::Completed {
            id: Some(id.into()),
            balance: None,
        }
    }

    #[test]
    fn a_consistent_account_passes_and_each_break_is_named() {
        let views = Views {
            balance: 70,
            history: Some(70),
            mypage: Some(70),
        };
        let ledger = [
            entry("o", EntryKind::Open, 100, 1, 100),
            entry("w", EntryKind::Withdraw, 30, 2, 70),
        ];
        let (open, withdraw, refused) = (
            done("o"),
            done("w"),
            Outcome::Refused {
                code: "insufficient_funds".into(),
                id: Some("x".into()),
            },
        );
        let sent = [
            Sent {
                kind: EntryKind::Open,
                amount: 100,
                first: &open,
                last: &open,
            },
            Sent {
                kind: EntryKind::Withdraw,
                amount: 30,
                first: &Outcome::Busy,
                last: &withdraw,
            },
            Sent {
                kind: EntryKind::Withdraw,
                amount: 500,
                first: &refused,
                last: &refused,
            },
        ];
        assert_eq!(
            check_account("1", views, &ledger, &sent),
            Vec::<String>::new()
        );

        let stale = Views {
            mypage: Some(100),
            ..views
        };
        assert_eq!(check_account("1", stale, &ledger, &sent).len(), 1);
        // A completed write that is not in the ledger, and a ledger entry no write explains.
        assert_eq!(check_account("1", views, &ledger[..1], &sent).len(), 2);
        let twice = [ledger[0].clone(), ledger[1].clone(), ledger[1].clone()];
        assert!(!check_account("1", views, &twice, &sent).is_empty());
        assert!(Entry::parse(&json!({"requestId":"r","type":"deposit"})).is_err());
        assert_eq!(signed("close", 5), Ok(0));
        assert!(Entry::parse(&json!({"requestId":"r","type":"transfer","amount":1})).is_err());
        assert!(signed("transfer", 5).is_err());
        assert_eq!(signed("transfer_in", 5), Ok(5));
    }

    /// A transfer's items: a completed one is one item on each account; a refused one left no
    /// item, or left and came back (transfer_out and transfer_reversed adding up to nothing).
    #[test]
    fn transfers_are_checked_on_both_accounts_and_a_returned_one_adds_up_to_nothing() {
        let views = |balance| Views {
            balance,
            history: Some(balance),
            mypage: Some(balance),
        };
        let (open, sent_ok) = (done("o"), done("t"));
        let refused = Outcome::Refused {
            code: "account_closed".into(),
            id: Some("r".into()),
        };
        let source = [
            entry("o", EntryKind::Open, 100, 1, 100),
            entry("t", EntryKind::TransferOut, 30, 2, 70),
            entry("r", EntryKind::TransferOut, 50, 3, 20),
            entry("r", EntryKind::TransferReversed, 50, 4, 70),
        ];
        let sent = |kind, amount, outcome| Sent {
            kind,
            amount,
            first: outcome,
            last: outcome,
        };
        let on_source = [
            sent(EntryKind::Open, 100, &open),
            sent(EntryKind::TransferOut, 30, &sent_ok),
            sent(EntryKind::TransferOut, 50, &refused),
        ];
        assert_eq!(
            check_account("1", views(70), &source, &on_source),
            Vec::<String>::new()
        );
        // The reversal missing: the refused transfer took the money.
        assert!(!check_account("1", views(20), &source[..3], &on_source).is_empty());
        let target = [entry("t", EntryKind::TransferIn, 30, 1, 30)];
        let on_target = [sent(EntryKind::TransferIn, 30, &sent_ok)];
        assert_eq!(
            check_account("2", views(30), &target, &on_target),
            Vec::<String>::new()
        );
    }
}

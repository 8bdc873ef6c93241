//! The lockout rule, as pure decisions: `threshold` wrong passwords in a row (none more than a
//! quiet `window` after the one before) lock the id for `window`; while it is locked no password
//! is evaluated nor counted, and a right one is refused too; a right password otherwise starts the
//! count again.
//!
//! Nothing here reads a clock or the database: the store reads the id's [`Lockout`] in the write
//! that records the attempt (atomically with every other attempt of the id), [`decide`] says the
//! answer and the record to store, and the store writes it. Password checks (argon2id, the
//! session's verifier) run before, at the edge.

/// An id's stored lockout record; [`Lockout::default`] for an id with none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lockout {
    /// Wrong passwords counted towards the threshold.
    pub failed_attempts: i64,
    /// Locked until then (epoch ms); not locked at or after it (0: never locked).
    pub locked_until: i64,
    /// When a wrong password was last counted (epoch ms).
    pub updated_at: i64,
}

/// The limits a wrong password is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutRule {
    /// Wrong passwords in a row that lock the id.
    pub threshold: i64,
    /// How long a lock lasts, and how long a quiet id's count is kept (ms).
    pub window: i64,
}

/// How a login or step-up attempt went, for the lockout count and the audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The right password.
    Succeeded,
    /// A wrong password.
    Failed,
    /// Tried while the id was locked until then: the password was not evaluated.
    WhileLocked(i64),
}

/// What an attempt's answer must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The right password, and the id is not locked.
    Accepted,
    /// A wrong password, counted (`locked_now`: it reached the threshold).
    Refused { locked_now: bool },
    /// Locked until then: answered `locked_out` whatever the password was.
    Locked(i64),
}

/// Whether a password tried at `now` is evaluated at all: not while the id is locked
/// (`Err(locked_until)`), so a wrong password past the threshold is never checked nor counted.
pub fn admit(locked_until: i64, now: i64) -> Result<(), i64> {
    if locked_until > now {
        Err(locked_until)
    } else {
        Ok(())
    }
}

/// The answer to `attempt` at `now`, given the id's stored record, and the record to store
/// (`None`: unchanged).
pub fn decide(
    stored: Lockout,
    attempt: Attempt,
    now: i64,
    rule: LockoutRule,
) -> (Decision, Option<Lockout>) {
    if let Attempt::WhileLocked(until) = attempt {
        return (Decision::Locked(until), None);
    }
    if let Err(until) = admit(stored.locked_until, now) {
        return (Decision::Locked(until), None);
    }
    if attempt == Attempt::Succeeded {
        let reset = (stored.failed_attempts != 0).then_some(Lockout {
            failed_attempts: 0,
            ..stored
        });
        return (Decision::Accepted, reset);
    }
    // Failures of an id quiet since before the window are forgotten: the count starts again.
    let before = if stored.updated_at < now - rule.window {
        0
    } else {
        stored.failed_attempts
    };
    let counted = before + 1;
    if counted >= rule.threshold {
        let locked = Lockout {
            failed_attempts: 0,
            locked_until: now + rule.window,
            updated_at: now,
        };
        debug_assert!(locked.locked_until > now, "a lock that has already ended");
        return (Decision::Refused { locked_now: true }, Some(locked));
    }
    let counted = Lockout {
        failed_attempts: counted,
        locked_until: stored.locked_until,
        updated_at: now,
    };
    (Decision::Refused { locked_now: false }, Some(counted))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: LockoutRule = LockoutRule {
        threshold: 5,
        window: 60_000,
    };
    const NOW: i64 = 1_000_000_000;

    /// `attempt` at `now` against `stored`, with the record as the store keeps it after.
    fn attempt(stored: Lockout, attempt: Attempt, now: i64) -> (Decision, Lockout) {
        let (decision, changed) = decide(stored, attempt, now, RULE);
        (decision, changed.unwrap_or(stored))
    }

    /// The record after `count` wrong passwords at `now`, from none.
    fn failed(count: usize, now: i64) -> Lockout {
        (0..count).fold(Lockout::default(), |stored, _| {
            attempt(stored, Attempt::Failed, now).1
        })
    }

    #[test]
    fn the_fifth_wrong_password_in_a_row_locks_for_the_window() {
        let mut stored = Lockout::default();
        for _ in 0..4 {
            let decision;
            (decision, stored) = attempt(stored, Attempt::Failed, NOW);
            assert_eq!(decision, Decision::Refused { locked_now: false });
        }
        assert_eq!(stored.failed_attempts, 4);
        let (decision, stored) = attempt(stored, Attempt::Failed, NOW);
        assert_eq!(decision, Decision::Refused { locked_now: true });
        assert_eq!(stored.locked_until, NOW + RULE.window);
        assert_eq!(stored.failed_attempts, 0, "a lock starts the count again");
    }

    #[test]
    fn a_sixth_wrong_password_is_never_evaluated_nor_counted() {
        let locked = failed(5, NOW);
        assert_eq!(admit(locked.locked_until, NOW), Err(NOW + RULE.window));
        assert_eq!(
            decide(locked, Attempt::Failed, NOW + 1, RULE),
            (Decision::Locked(NOW + RULE.window), None)
        );
        assert_eq!(
            decide(locked, Attempt::WhileLocked(locked.locked_until), NOW, RULE),
            (Decision::Locked(NOW + RULE.window), None)
        );
    }

    #[test]
    fn a_lock_holds_until_its_last_millisecond_and_ends_at_its_end() {
        let locked = failed(5, NOW);
        let until = locked.locked_until;
        assert_eq!(admit(until, until - 1), Err(until));
        assert_eq!(
            decide(locked, Attempt::Succeeded, until - 1, RULE),
            (Decision::Locked(until), None),
            "a right password was accepted while locked"
        );
        assert_eq!(admit(until, until), Ok(()));
        assert_eq!(
            attempt(locked, Attempt::Succeeded, until).0,
            Decision::Accepted
        );
        let (decision, after) = attempt(locked, Attempt::Failed, until);
        assert_eq!(decision, Decision::Refused { locked_now: false });
        assert_eq!(after.failed_attempts, 1, "an ended lock counts from zero");
    }

    #[test]
    fn a_right_password_starts_the_count_again() {
        let four = failed(4, NOW);
        let (decision, reset) = attempt(four, Attempt::Succeeded, NOW);
        assert_eq!(decision, Decision::Accepted);
        assert_eq!(reset.failed_attempts, 0);
        assert_eq!(
            attempt(reset, Attempt::Failed, NOW).0,
            Decision::Refused { locked_now: false }
        );
    }

    #[test]
    fn a_right_password_with_nothing_counted_writes_nothing() {
        assert_eq!(
            decide(Lockout::default(), Attempt::Succeeded, NOW, RULE),
            (Decision::Accepted, None)
        );
    }

    #[test]
    fn failures_are_forgotten_after_a_quiet_window_and_kept_up_to_its_last_millisecond() {
        let four = failed(4, NOW);
        // Exactly one window after the last: still counted, this one locks.
        assert_eq!(
            attempt(four, Attempt::Failed, NOW + RULE.window).0,
            Decision::Refused { locked_now: true }
        );
        // One millisecond later: forgotten, this one is the first again.
        let (decision, after) = attempt(four, Attempt::Failed, NOW + RULE.window + 1);
        assert_eq!(decision, Decision::Refused { locked_now: false });
        assert_eq!(after.failed_attempts, 1);
        assert_eq!(after.updated_at, NOW + RULE.window + 1);
    }

    #[test]
    fn an_attempt_while_locked_is_answered_locked_whatever_the_record() {
        for stored in [Lockout::default(), failed(3, NOW), failed(5, NOW)] {
            assert_eq!(
                decide(stored, Attempt::WhileLocked(NOW + 5), NOW, RULE),
                (Decision::Locked(NOW + 5), None)
            );
        }
    }
}

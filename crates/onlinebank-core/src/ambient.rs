//! Where the bank's code gets the time, new ids and its injected bugs: from the wall clock and
//! the OS random source, unless the deterministic simulator (`onlinebank-sim`) entered a source
//! of its own on this thread.
//!
//! Every read of the wall clock and every random id the roles' decision and store code make go
//! through [`wall_ms`], [`random_bytes`] and [`uuid_v7`] (by way of [`crate::time`],
//! [`crate::ids`], [`crate::trace`] and [`crate::event`]). Outside a simulation they do exactly
//! what they did before. Inside one, the same seed gives the same times and ids on every run, so
//! a failure replays from its seed.
//!
//! [`armed`] is how a known bug is switched on at the one line it lives at, for the simulator to
//! prove it finds it: it is false unless a simulation entered this thread with the bug in its
//! set. No setting, environment variable or feature turns one on.

use std::cell::RefCell;
use std::collections::BTreeSet;

/// A known bug the simulator can switch on, at the line where it would live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Injection {
    /// A consumer applies every event of its batch, the inbox's "seen before" answer ignored
    /// (`onlinebank_bus::handler`).
    InboxSkipped,
    /// A transfer's reversal gives its money back to the source twice (account's settlement).
    CompensationTwice,
    /// A consumer group commits its position before the transaction that applies the events
    /// (the simulator's consumer driver: the position rule of `onlinebank_bus::consumer`).
    PositionBeforeEffect,
    /// request records a request without claiming its Idempotency-Key (`api::record`): a
    /// client's second sending is a second request.
    KeyUnclaimed,
    /// The sweeper's compensation takes back any unfinished request, a certified one too
    /// (`store::cancel`): the bug the simulator found first.
    SweepTakesCertified,
    /// auth's write counts a wrong step-up password without deciding on the lock it reads in
    /// that write (`store::decide_attempt`): the lock was checked only at the session's read.
    LockoutOutsideWrite,
}

impl Injection {
    /// Every injection, in the order `--list-injections` prints them.
    pub const ALL: [Injection; 6] = [
        Injection::InboxSkipped,
        Injection::PositionBeforeEffect,
        Injection::CompensationTwice,
        Injection::KeyUnclaimed,
        Injection::SweepTakesCertified,
        Injection::LockoutOutsideWrite,
    ];

    /// Its name on the simulator's command line.
    pub fn name(self) -> &'static str {
        match self {
            Injection::InboxSkipped => "inbox-skipped",
            Injection::CompensationTwice => "compensation-twice",
            Injection::PositionBeforeEffect => "position-before-effect",
            Injection::KeyUnclaimed => "key-unclaimed",
            Injection::SweepTakesCertified => "sweep-takes-certified",
            Injection::LockoutOutsideWrite => "lockout-outside-write",
        }
    }

    /// The injection named `name`.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|injection| injection.name() == name)
    }
}

/// A simulation's source of time, randomness and injected bugs for one thread.
pub struct Ambient {
    /// The simulated wall clock, epoch milliseconds.
    pub wall_ms: i64,
    /// The one seeded random source every id on this thread is drawn from.
    pub rng: Box<dyn rand::RngCore>,
    pub injections: BTreeSet<Injection>,
}

thread_local! {
    static CURRENT: RefCell<Option<Ambient>> = const { RefCell::new(None) };
}

/// While alive, this thread's time, ids and injections come from the entered [`Ambient`].
#[must_use = "the source is left when this is dropped"]
pub struct Entered(());

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.with(|current| current.borrow_mut().take());
    }
}

/// Makes `ambient` this thread's source until the returned guard is dropped.
pub fn enter(ambient: Ambient) -> Entered {
    CURRENT.with(|current| *current.borrow_mut() = Some(ambient));
    Entered(())
}

/// Sets the simulated wall clock (no effect outside a simulation).
pub fn set_wall_ms(ms: i64) {
    CURRENT.with(|current| {
        if let Some(ambient) = current.borrow_mut().as_mut() {
            ambient.wall_ms = ms;
        }
    });
}

/// The wall clock in epoch milliseconds: the simulated one inside a simulation.
pub fn wall_ms() -> i64 {
    CURRENT
        .with(|current| current.borrow().as_ref().map(|ambient| ambient.wall_ms))
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis())
}

/// `N` random bytes: from the simulation's seeded source inside one, else from the OS's.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    let drawn = CURRENT.with(|current| match current.borrow_mut().as_mut() {
        Some(ambient) => {
            ambient.rng.fill_bytes(&mut bytes);
            true
        }
        None => false,
    });
    if !drawn {
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    }
    bytes
}

/// A new UUIDv7 (time-ordered): [`uuid::Uuid::now_v7`] outside a simulation, else one made from
/// the simulated clock and the seeded source.
pub fn uuid_v7() -> uuid::Uuid {
    if !simulated() {
        return uuid::Uuid::now_v7();
    }
    let millis = u64::try_from(wall_ms()).unwrap_or_default();
    uuid::Builder::from_unix_timestamp_millis(millis, &random_bytes::<10>()).into_uuid()
}

/// A new random UUID (v4), from the seeded source inside a simulation.
pub fn uuid_v4() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(random_bytes::<16>()).into_uuid()
}

/// Whether `injection` is switched on: only ever inside a simulation that asked for it.
pub fn armed(injection: Injection) -> bool {
    CURRENT.with(|current| {
        current
            .borrow()
            .as_ref()
            .is_some_and(|ambient| ambient.injections.contains(&injection))
    })
}

/// Whether a simulation's source is entered on this thread.
pub fn simulated() -> bool {
    CURRENT.with(|current| current.borrow().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn seeded(seed: u64, injections: &[Injection]) -> Ambient {
        Ambient {
            wall_ms: 1_000_000,
            rng: Box::new(rand::rngs::StdRng::seed_from_u64(seed)),
            injections: injections.iter().copied().collect(),
        }
    }

    #[test]
    fn outside_a_simulation_the_clock_and_the_os_answer_and_nothing_is_armed() {
        assert!(!simulated());
        let before = chrono::Utc::now().timestamp_millis();
        assert!(wall_ms() >= before);
        assert_ne!(random_bytes::<16>(), random_bytes::<16>());
        assert!(Injection::ALL.iter().all(|injection| !armed(*injection)));
    }

    #[test]
    fn a_seeded_source_gives_the_same_times_and_ids_and_is_left_on_drop() {
        let draw = |seed| {
            let _entered = enter(seeded(seed, &[Injection::InboxSkipped]));
            assert!(armed(Injection::InboxSkipped));
            assert!(!armed(Injection::CompensationTwice));
            set_wall_ms(42);
            (
                wall_ms(),
                uuid_v7(),
                uuid_v4(),
                crate::ids::AccountNo::generate(),
            )
        };
        let first = draw(7);
        assert_eq!(first, draw(7));
        assert_ne!(first.1, draw(8).1);
        assert_eq!(first.0, 42);
        assert_eq!(first.1.get_timestamp().map(|t| t.to_unix().0), Some(0));
        assert!(!simulated());
        assert!(!armed(Injection::InboxSkipped));
    }

    #[test]
    fn every_injection_is_found_by_its_name() {
        for injection in Injection::ALL {
            assert_eq!(Injection::named(injection.name()), Some(injection));
        }
        assert_eq!(Injection::named("nothing"), None);
    }
}

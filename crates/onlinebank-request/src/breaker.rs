//! A small circuit breaker for the step-up call to auth.
//!
//! - **Closed**: calls pass; their outcomes go into a sliding time window. When the window holds
//!   at least `min_calls` outcomes and the share of failures reaches `failure_rate`, it opens.
//! - **Open**: calls are refused at once (the caller answers 503 in microseconds instead of waiting
//!   for a timeout) until `open_for` has passed; then it is half-open.
//! - **HalfOpen**: up to `half_open_calls` trial calls pass; when that many succeed it closes; any
//!   failure opens it again.
//!
//! Outcomes of calls admitted under an earlier state are ignored (each admission carries the
//! state's generation), so a slow call from before an opening cannot close it.

use onlinebank_core::settings::BreakerSettings;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }

    /// The gauge value exported in metrics.
    pub fn gauge(self) -> f64 {
        match self {
            State::Closed => 0.0,
            State::Open => 1.0,
            State::HalfOpen => 2.0,
        }
    }
}

/// Permission to make one call; hand it back with the outcome.
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    generation: u64,
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// Bumped on every transition.
    generation: u64,
    /// Closed: recent outcomes (time, success).
    outcomes: VecDeque<(Instant, bool)>,
    /// Open: when trials may start.
    open_until: Instant,
    /// HalfOpen: trials admitted and not yet reported.
    trials_in_flight: u32,
    /// HalfOpen: trials that succeeded.
    trials_succeeded: u32,
}

#[derive(Debug)]
pub struct Breaker {
    config: BreakerSettings,
    inner: Mutex<Inner>,
    /// Called with the new state on every transition (for metrics and logs).
    on_transition: fn(State),
}

impl Breaker {
    pub fn new(config: BreakerSettings, on_transition: fn(State)) -> Self {
        let now = Instant::now();
        Self {
            config,
            inner: Mutex::new(Inner {
                state: State::Closed,
                generation: 0,
                outcomes: VecDeque::new(),
                open_until: now,
                trials_in_flight: 0,
                trials_succeeded: 0,
            }),
            on_transition,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[cfg(test)]
    pub fn state(&self) -> State {
        self.lock().state
    }

    /// Whether a call at `now` would be refused, without taking a trial slot.
    pub fn would_refuse(&self, now: Instant) -> bool {
        let inner = self.lock();
        match inner.state {
            State::Closed => false,
            State::Open => now < inner.open_until,
            State::HalfOpen => {
                inner.trials_in_flight + inner.trials_succeeded >= self.config.half_open_calls
            }
        }
    }

    fn transition(&self, inner: &mut Inner, to: State, now: Instant) {
        inner.state = to;
        inner.generation += 1;
        inner.outcomes.clear();
        inner.trials_in_flight = 0;
        inner.trials_succeeded = 0;
        if to == State::Open {
            inner.open_until = now + self.config.open_for;
        }
        (self.on_transition)(to);
    }

    /// Asks to make a call at `now`; None means refuse it at once.
    pub fn admit(&self, now: Instant) -> Option<Admission> {
        let mut inner = self.lock();
        if inner.state == State::Open {
            if now < inner.open_until {
                return None;
            }
            self.transition(&mut inner, State::HalfOpen, now);
        }
        if inner.state == State::HalfOpen {
            if inner.trials_in_flight + inner.trials_succeeded >= self.config.half_open_calls {
                return None;
            }
            inner.trials_in_flight += 1;
        }
        Some(Admission {
            generation: inner.generation,
        })
    }

    /// Reports the outcome of an admitted call.
    pub fn record(&self, admission: Admission, success: bool, now: Instant) {
        let mut inner = self.lock();
        if admission.generation != inner.generation {
            return;
        }
        match inner.state {
            State::Closed => {
                inner.outcomes.push_back((now, success));
                let horizon = now.checked_sub(self.config.window);
                while let (Some(horizon), Some((at, _))) = (horizon, inner.outcomes.front()) {
                    if *at >= horizon {
                        break;
                    }
                    inner.outcomes.pop_front();
                }
                let calls = inner.outcomes.len();
                let failures = inner.outcomes.iter().filter(|(_, ok)| !ok).count();
                if calls >= self.config.min_calls
                    && failures as f64 >= self.config.failure_rate * calls as f64
                {
                    self.transition(&mut inner, State::Open, now);
                }
            }
            State::HalfOpen => {
                inner.trials_in_flight = inner.trials_in_flight.saturating_sub(1);
                if !success {
                    self.transition(&mut inner, State::Open, now);
                } else {
                    inner.trials_succeeded += 1;
                    if inner.trials_succeeded >= self.config.half_open_calls {
                        self.transition(&mut inner, State::Closed, now);
                    }
                }
            }
            State::Open => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn breaker() -> Breaker {
        Breaker::new(
            BreakerSettings {
                window: Duration::from_secs(10),
                min_calls: 4,
                failure_rate: 0.5,
                open_for: Duration::from_secs(3),
                half_open_calls: 2,
            },
            |_| {},
        )
    }

    fn call(breaker: &Breaker, success: bool, now: Instant) {
        let admission = breaker.admit(now).expect("admitted");
        breaker.record(admission, success, now);
    }

    #[test]
    fn closed_stays_closed_below_min_calls_or_rate() {
        let b = breaker();
        let t = Instant::now();
        call(&b, false, t);
        call(&b, false, t);
        call(&b, false, t);
        assert_eq!(b.state(), State::Closed, "3 calls are below min_calls");
        let b = breaker();
        call(&b, true, t);
        call(&b, true, t);
        call(&b, true, t);
        call(&b, false, t);
        assert_eq!(b.state(), State::Closed, "25% failures is below the rate");
    }

    #[test]
    fn closed_opens_at_the_failure_rate() {
        let b = breaker();
        let t = Instant::now();
        call(&b, true, t);
        call(&b, false, t);
        call(&b, true, t);
        call(&b, false, t);
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn old_outcomes_leave_the_window() {
        let b = breaker();
        let t = Instant::now();
        call(&b, false, t);
        call(&b, false, t);
        call(&b, false, t);
        let later = t + Duration::from_secs(11);
        call(&b, true, later);
        call(&b, true, later);
        call(&b, true, later);
        call(&b, false, later);
        assert_eq!(b.state(), State::Closed, "the early failures expired");
    }

    #[test]
    fn open_refuses_until_open_for_passes_then_half_opens() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..4 {
            call(&b, false, t);
        }
        assert!(b.admit(t + Duration::from_secs(1)).is_none());
        assert!(b.admit(t + Duration::from_secs(3)).is_some());
        assert_eq!(b.state(), State::HalfOpen);
    }

    #[test]
    fn half_open_limits_trials_and_closes_after_enough_successes() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..4 {
            call(&b, false, t);
        }
        let t = t + Duration::from_secs(3);
        let first = b.admit(t).unwrap();
        let second = b.admit(t).unwrap();
        assert!(b.admit(t).is_none(), "only two trials at a time");
        b.record(first, true, t);
        assert_eq!(b.state(), State::HalfOpen);
        b.record(second, true, t);
        assert_eq!(b.state(), State::Closed);
        assert!(b.admit(t).is_some());
    }

    #[test]
    fn half_open_failure_opens_again() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..4 {
            call(&b, false, t);
        }
        let t = t + Duration::from_secs(3);
        let trial = b.admit(t).unwrap();
        b.record(trial, false, t);
        assert_eq!(b.state(), State::Open);
        assert!(b.admit(t + Duration::from_secs(1)).is_none());
    }

    #[test]
    fn late_outcomes_from_an_earlier_state_are_ignored() {
        let b = breaker();
        let t = Instant::now();
        let slow = b.admit(t).unwrap();
        for _ in 0..4 {
            call(&b, false, t);
        }
        assert_eq!(b.state(), State::Open);
        let t = t + Duration::from_secs(3);
        let trial = b.admit(t).unwrap();
        // The slow call admitted while closed finishes now: it must not count as a trial.
        b.record(slow, true, t);
        assert_eq!(b.state(), State::HalfOpen);
        b.record(trial, true, t);
        assert_eq!(b.state(), State::HalfOpen, "one success of two needed");
    }

    #[test]
    fn transitions_are_reported() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static OPENED: AtomicUsize = AtomicUsize::new(0);
        let b = Breaker::new(
            BreakerSettings {
                min_calls: 1,
                ..BreakerSettings::default()
            },
            |state| {
                if state == State::Open {
                    OPENED.fetch_add(1, Ordering::SeqCst);
                }
            },
        );
        call(&b, false, Instant::now());
        assert_eq!(OPENED.load(Ordering::SeqCst), 1);
    }
}

//! Logging a failure that repeats in a loop without flooding the log.
//!
//! A background loop (a consumer committing its position, the outbox relay, retention) retries a
//! failed write every few milliseconds; while the disk is full each retry fails again, and one
//! line per failure buried the log under ~80 identical warnings a second. A [`LogLimit`] writes
//! the first failure at once, then at most one line per period saying how many failures it
//! stood for ("committing the position failed (1234 times in the last 10 s)"), and one line when
//! the work succeeds again. The decisions take the time as an argument, so they are tested with a
//! controlled clock.

use std::time::{Duration, Instant};

/// How often a repeating failure is logged at most.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(10);

/// One loop's repeating failure, logged at most once per period (see the module docs).
#[derive(Debug)]
pub struct LogLimit {
    /// What a failure line says, e.g. "committing the position failed".
    failure: &'static str,
    /// What the line after the first success following failures says, e.g. "committing the
    /// position works again".
    recovery: &'static str,
    /// Which loop it is (a consumer group, a database), logged as the `source` field.
    source: String,
    /// At most one failure line per this long.
    period: Duration,
    /// The failures since the last success, if the last attempt failed.
    run: Option<FailureRun>,
}

/// Failures since the last success.
#[derive(Debug, Clone, Copy)]
struct FailureRun {
    /// When the first of them happened.
    began: Instant,
    /// When a line was last written for them.
    last_line: Instant,
    /// How many happened since that line (not logged yet).
    unlogged: u64,
    /// How many happened in all.
    total: u64,
}

/// What to log for an attempt (see [`LogLimit::failure_at`] and [`LogLimit::success_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// The first failure after a success (or ever).
    First,
    /// `times` failures (this one included) since the last line, `over` ago.
    Repeated { times: u64, over: Duration },
    /// A success after `times` failures that began `over` ago.
    Recovered { times: u64, over: Duration },
}

impl LogLimit {
    /// A limit for the failure `failure` (the warning's text) and its end `recovery`, at most one
    /// line per [`DEFAULT_PERIOD`]; `source` names the loop.
    pub fn new(failure: &'static str, recovery: &'static str, source: impl Into<String>) -> Self {
        Self {
            failure,
            recovery,
            source: source.into(),
            period: DEFAULT_PERIOD,
            run: None,
        }
    }

    /// The same limit with another period.
    pub fn with_period(mut self, period: Duration) -> Self {
        self.period = period;
        self
    }

    /// Whether the last attempt failed.
    pub fn is_failing(&self) -> bool {
        self.run.is_some()
    }

    /// Counts a failure at `now`; returns the line to write, if one is due.
    pub fn failure_at(&mut self, now: Instant) -> Option<Line> {
        let Some(run) = &mut self.run else {
            self.run = Some(FailureRun {
                began: now,
                last_line: now,
                unlogged: 0,
                total: 1,
            });
            return Some(Line::First);
        };
        run.total += 1;
        run.unlogged += 1;
        let over = now.saturating_duration_since(run.last_line);
        if over < self.period {
            return None;
        }
        let times = run.unlogged;
        run.unlogged = 0;
        run.last_line = now;
        Some(Line::Repeated { times, over })
    }

    /// Notes a success at `now`; returns the recovery line if failures came before it.
    pub fn success_at(&mut self, now: Instant) -> Option<Line> {
        let run = self.run.take()?;
        Some(Line::Recovered {
            times: run.total,
            over: now.saturating_duration_since(run.began),
        })
    }

    /// Counts a failure now and logs it as a warning if a line is due.
    pub fn failed(&mut self, error: &dyn std::fmt::Display) {
        let line = self.failure_at(Instant::now());
        let source = self.source.as_str();
        // The alternate form: an `anyhow::Error` with its causes, other errors as they are.
        let error = format_args!("{error:#}");
        match line {
            Some(Line::First) => tracing::warn!(source, %error, "{}", self.failure),
            Some(Line::Repeated { times, over }) => tracing::warn!(
                source,
                %error,
                times,
                "{} ({times} times in the last {} s)",
                self.failure,
                over.as_secs()
            ),
            Some(Line::Recovered { .. }) | None => {}
        }
    }

    /// Notes a success now, and logs the recovery if failures came before it.
    pub fn succeeded(&mut self) {
        if let Some(Line::Recovered { times, over }) = self.success_at(Instant::now()) {
            let source = self.source.as_str();
            tracing::info!(
                source,
                times,
                "{} (after {times} failures over {} s)",
                self.recovery,
                over.as_secs()
            );
        }
    }

    /// [`Self::failed`] or [`Self::succeeded`] after `result`, which is passed on.
    pub fn note<T, E: std::fmt::Display>(&mut self, result: Result<T, E>) -> Result<T, E> {
        match &result {
            Ok(_) => self.succeeded(),
            Err(error) => self.failed(error),
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit() -> LogLimit {
        LogLimit::new("writing failed", "writing works again", "test")
    }

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    #[test]
    fn the_first_failure_is_logged_at_once_and_repeats_once_per_period_with_their_count() {
        let mut limit = limit();
        let start = Instant::now();
        assert_eq!(limit.failure_at(start), Some(Line::First));
        // 20 failures a second for 25 seconds: lines at 10 s and 20 s only.
        let mut lines = Vec::new();
        for tick in 1..=500u64 {
            let now = start + Duration::from_millis(tick * 50);
            if let Some(line) = limit.failure_at(now) {
                lines.push(line);
            }
        }
        assert_eq!(
            lines,
            vec![
                Line::Repeated {
                    times: 200,
                    over: secs(10)
                },
                Line::Repeated {
                    times: 200,
                    over: secs(10)
                },
            ]
        );
    }

    #[test]
    fn a_success_after_failures_says_how_many_and_for_how_long_then_stays_quiet() {
        let mut limit = limit();
        let start = Instant::now();
        assert_eq!(limit.success_at(start), None, "nothing failed: no line");
        limit.failure_at(start);
        for second in 1..=3 {
            assert_eq!(limit.failure_at(start + secs(second)), None);
        }
        assert!(limit.is_failing());
        assert_eq!(
            limit.success_at(start + secs(4)),
            Some(Line::Recovered {
                times: 4,
                over: secs(4)
            })
        );
        assert!(!limit.is_failing());
        assert_eq!(limit.success_at(start + secs(5)), None);
        // A new outage is logged at once again.
        assert_eq!(limit.failure_at(start + secs(6)), Some(Line::First));
    }

    #[test]
    fn a_shorter_period_logs_more_often() {
        let mut limit = limit().with_period(secs(1));
        let start = Instant::now();
        limit.failure_at(start);
        assert_eq!(
            limit.failure_at(start + secs(1)),
            Some(Line::Repeated {
                times: 1,
                over: secs(1)
            })
        );
    }

    #[test]
    fn note_passes_the_result_on() {
        let mut limit = limit();
        assert_eq!(limit.note::<(), &str>(Err("full")), Err("full"));
        assert!(limit.is_failing());
        assert_eq!(limit.note::<_, &str>(Ok(3)), Ok(3));
        assert!(!limit.is_failing());
    }
}

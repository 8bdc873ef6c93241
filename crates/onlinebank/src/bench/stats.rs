//! Counting what the clients saw: per operation, a latency histogram (HdrHistogram, µs) of the
//! successful calls, errors by code, and the same per second of the phase for the charts.
//!
//! It exists so that every phase (ceilings, the mixed workload) is measured the same way and
//! summarised into plain numbers that the text, JSON and HTML reports share.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Highest latency tracked exactly (µs); longer calls are recorded as this.
const MAX_MICROS: u64 = 120_000_000;

fn histogram(significant_figures: u8) -> Option<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_MICROS, significant_figures).ok()
}

struct Second {
    ok: u64,
    errors: u64,
    latency: Option<Histogram<u64>>,
}

struct Series {
    ok: u64,
    latency: Option<Histogram<u64>>,
    errors: BTreeMap<String, u64>,
    seconds: Vec<Second>,
}

impl Series {
    fn second(&mut self, index: usize) -> &mut Second {
        while self.seconds.len() <= index {
            self.seconds.push(Second {
                ok: 0,
                errors: 0,
                latency: histogram(2),
            });
        }
        &mut self.seconds[index]
    }
}

/// Shared by every client of a phase; one lock per operation, held for a few hundred ns.
pub struct Recorder {
    start: Instant,
    names: Vec<String>,
    series: Vec<Mutex<Series>>,
}

impl Recorder {
    pub fn new(names: &[&str]) -> Self {
        Self {
            start: Instant::now(),
            names: names.iter().map(|name| (*name).to_owned()).collect(),
            series: names
                .iter()
                .map(|_| {
                    Mutex::new(Series {
                        ok: 0,
                        latency: histogram(3),
                        errors: BTreeMap::new(),
                        seconds: Vec::new(),
                    })
                })
                .collect(),
        }
    }

    /// Starts the clock of the phase (the per-second buckets count from here).
    pub fn restart(&mut self) {
        self.start = Instant::now();
    }

    fn with<R>(&self, op: usize, f: impl FnOnce(&mut Series, usize) -> R) -> Option<R> {
        let series = self.series.get(op)?;
        let second = usize::try_from(self.start.elapsed().as_secs()).unwrap_or(usize::MAX / 2);
        let mut series = series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Some(f(&mut series, second))
    }

    /// A successful call that took `latency`.
    pub fn ok(&self, op: usize, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(MAX_MICROS)
            .clamp(1, MAX_MICROS);
        self.with(op, |series, second| {
            series.ok += 1;
            if let Some(histogram) = &mut series.latency {
                histogram.saturating_record(micros);
            }
            let bucket = series.second(second);
            bucket.ok += 1;
            if let Some(histogram) = &mut bucket.latency {
                histogram.saturating_record(micros);
            }
        });
    }

    /// An unsuccessful call, counted by `label` (error code or transport kind).
    pub fn error(&self, op: usize, label: &str) {
        self.with(op, |series, second| {
            match series.errors.get_mut(label) {
                Some(count) => *count += 1,
                None => {
                    series.errors.insert(label.to_owned(), 1);
                }
            }
            series.second(second).errors += 1;
        });
    }

    /// The phase's numbers; `elapsed` is the phase's wall time (rates are per second of it).
    pub fn summary(&self, elapsed: Duration) -> Vec<OpSummary> {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        self.names
            .iter()
            .zip(&self.series)
            .map(|(name, series)| {
                let series = series
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let latency = series
                    .latency
                    .as_ref()
                    .filter(|_| series.ok > 0)
                    .map(Latency::of);
                let timeline = series
                    .seconds
                    .iter()
                    .enumerate()
                    // A last, partial second shorter than half a second is mostly the calls
                    // in flight at the deadline: left out of the timeline (not the totals).
                    .filter(|(index, _)| seconds - *index as f64 >= 0.5)
                    .map(|(index, bucket)| {
                        let width = (seconds - index as f64).clamp(0.5, 1.0);
                        let (p50_ms, p99_ms) = match &bucket.latency {
                            Some(histogram) if bucket.ok > 0 => (
                                Some(ms(histogram.value_at_quantile(0.50))),
                                Some(ms(histogram.value_at_quantile(0.99))),
                            ),
                            _ => (None, None),
                        };
                        SecondPoint {
                            second: index,
                            ok: bucket.ok,
                            errors: bucket.errors,
                            rate: bucket.ok as f64 / width,
                            p50_ms,
                            p99_ms,
                        }
                    })
                    .collect();
                OpSummary {
                    name: name.clone(),
                    ok: series.ok,
                    errors: series.errors.clone(),
                    per_second: series.ok as f64 / seconds,
                    latency,
                    timeline,
                }
            })
            .collect()
    }
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// Latency percentiles of the successful calls, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        }
    }
}

/// One second of a phase for one operation.
#[derive(Debug, Clone)]
pub struct SecondPoint {
    pub second: usize,
    pub ok: u64,
    pub errors: u64,
    /// Successful calls per second (a last, partial second is scaled up).
    pub rate: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// One operation over a phase.
#[derive(Debug, Clone)]
pub struct OpSummary {
    pub name: String,
    /// Successful calls (2xx).
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    /// Successful calls per second of the phase.
    pub per_second: f64,
    /// `None` when nothing succeeded.
    pub latency: Option<Latency>,
    pub timeline: Vec<SecondPoint>,
}

impl OpSummary {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_latencies_and_errors_per_operation() {
        let recorder = Recorder::new(&["a", "b"]);
        for millis in 1..=100 {
            recorder.ok(0, Duration::from_millis(millis));
        }
        recorder.error(1, "service_busy");
        recorder.error(1, "service_busy");
        recorder.error(1, "transport_timeout");
        recorder.error(7, "ignored");
        let summary = recorder.summary(Duration::from_secs(2));
        assert_eq!(summary[0].ok, 100);
        assert!((summary[0].per_second - 50.0).abs() < 1e-9);
        let latency = summary[0].latency.unwrap_or(Latency {
            p50: 0.0,
            p90: 0.0,
            p99: 0.0,
            max: 0.0,
        });
        assert!((latency.p50 - 50.0).abs() < 0.5, "{latency:?}");
        assert!((latency.p99 - 99.0).abs() < 0.5, "{latency:?}");
        assert!((latency.max - 100.0).abs() < 0.5, "{latency:?}");
        assert_eq!(summary[1].errors.get("service_busy"), Some(&2));
        assert_eq!(summary[1].error_count(), 3);
        assert!(summary[1].latency.is_none());
        assert_eq!(summary[0].timeline.len(), 1);
    }
}

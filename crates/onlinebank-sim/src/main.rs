//! `onlinebank-sim`: runs seeds of the deterministic simulation (see the library's docs).

use clap::Parser;
use onlinebank_core::ambient::Injection;
use onlinebank_sim::{Config, Report};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Deterministic simulation of onlinebank: seeded runs with crashes, redelivery, reordering and delays; a failure replays from its seed"
)]
struct Args {
    /// Runs this many seeds, from --first-seed on, on every core.
    #[arg(long, conflicts_with = "seed")]
    seeds: Option<u64>,
    /// Runs seeds for this long (seconds) instead of a count.
    #[arg(long = "for", value_name = "SECONDS", conflicts_with_all = ["seed", "seeds"])]
    duration: Option<u64>,
    /// The first seed of --seeds or --for (default 0).
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Runs this one seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Prints the run's events (with --seed).
    #[arg(long, requires = "seed")]
    trace: bool,
    /// Prints one JSON summary line: {"seeds","failures","opsPerSecond","firstFailingSeed"}.
    #[arg(long)]
    json: bool,
    /// Lists the known bugs --inject can switch on.
    #[arg(long)]
    list_injections: bool,
    /// Switches on a known bug; the run must find it (stops at the first failing seed).
    #[arg(long, value_name = "NAME")]
    inject: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list_injections {
        for injection in Injection::ALL {
            println!("{}", injection.name());
        }
        return ExitCode::SUCCESS;
    }
    let mut config = Config {
        trace: args.trace,
        ..Config::default()
    };
    if let Some(name) = &args.inject {
        match onlinebank_sim::injection(name) {
            Ok(injection) => {
                config.injections.insert(injection);
            }
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::from(2);
            }
        }
    }
    let plan = match (args.seed, args.seeds, args.duration) {
        (Some(seed), _, _) => Plan::Count(seed, 1),
        (None, Some(count), _) => Plan::Count(args.first_seed, count),
        (None, None, Some(seconds)) => Plan::For(args.first_seed, Duration::from_secs(seconds)),
        (None, None, None) => Plan::Count(args.first_seed, 100),
    };
    let started = Instant::now();
    let stop_at_failure = args.inject.is_some();
    let reports = run(&plan, &config, stop_at_failure);
    let elapsed = started.elapsed().as_secs_f64();
    summarize(&args, &reports, elapsed)
}

enum Plan {
    Count(u64, u64),
    For(u64, Duration),
}

/// Runs the plan's seeds on every core; the reports in seed order.
fn run(plan: &Plan, config: &Config, stop_at_failure: bool) -> Vec<Report> {
    let (first, limit, deadline) = match plan {
        Plan::Count(first, count) => (*first, first.saturating_add(*count), None),
        Plan::For(first, duration) => (*first, u64::MAX, Some(Instant::now() + *duration)),
    };
    let next = AtomicU64::new(first);
    let failed = AtomicU64::new(u64::MAX);
    let reports = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::SeqCst);
                let over = seed >= limit
                    || deadline.is_some_and(|deadline| Instant::now() >= deadline)
                    || (stop_at_failure && seed > failed.load(Ordering::SeqCst));
                if over {
                    return;
                }
                let report = onlinebank_sim::run(seed, config);
                if report.violation.is_some() {
                    failed.fetch_min(seed, Ordering::SeqCst);
                }
                if let Ok(mut reports) = reports.lock() {
                    reports.push(report);
                }
            });
        }
    });
    let mut reports = reports.into_inner().unwrap_or_default();
    reports.sort_by_key(|report| report.seed);
    if stop_at_failure {
        if let Some(first) = reports.iter().position(|report| report.violation.is_some()) {
            reports.truncate(first + 1);
        }
    }
    reports
}

fn summarize(args: &Args, reports: &[Report], elapsed: f64) -> ExitCode {
    for report in reports {
        for line in &report.trace {
            println!("{line}");
        }
    }
    let failures: Vec<&Report> = reports
        .iter()
        .filter(|report| report.violation.is_some())
        .collect();
    for report in &failures {
        if let Some(violation) = &report.violation {
            // With --inject a broken rule is the bug found, not a failure.
            let verdict = if args.inject.is_some() {
                "found the injected bug"
            } else {
                "FAILED"
            };
            eprintln!(
                "seed {} {verdict}: {}: {}\n  replay: cargo run --release -p onlinebank-sim -- --seed {} --trace{}",
                report.seed,
                violation.invariant,
                violation.detail,
                report.seed,
                args.inject.as_ref().map(|name| format!(" --inject {name}")).unwrap_or_default()
            );
        }
    }
    let ops: usize = reports.iter().map(|report| report.ops).sum();
    let ops_per_second = if elapsed > 0.0 {
        ops as f64 / elapsed
    } else {
        0.0
    };
    let first_failing = failures.first().map(|report| report.seed);
    if args.json {
        let mut summary = serde_json::json!({
            "seeds": reports.len(),
            "failures": failures.len(),
            "opsPerSecond": ops_per_second.round(),
            "firstFailingSeed": first_failing,
        });
        if let Some(name) = &args.inject {
            summary["injection"] = name.clone().into();
            summary["seedsToFind"] = first_failing
                .map(|seed| seed - args.seed.unwrap_or(args.first_seed) + 1)
                .into();
        }
        println!("{summary}");
    } else if !args.trace {
        let events: usize = reports.iter().map(|report| report.events).sum();
        println!(
            "{} seeds, {} failures, {ops} operations, {events} events, {:.1} s: {:.0} seeds/s, {ops_per_second:.0} ops/s",
            reports.len(),
            failures.len(),
            elapsed,
            reports.len() as f64 / elapsed.max(f64::EPSILON),
        );
    }
    match (args.inject.is_some(), failures.is_empty()) {
        // An injected bug must be found: not finding it is the failure.
        (true, true) => {
            eprintln!("the injected bug was not found in {} seeds", reports.len());
            ExitCode::FAILURE
        }
        (true, false) => ExitCode::SUCCESS,
        (false, true) => ExitCode::SUCCESS,
        (false, false) => ExitCode::FAILURE,
    }
}

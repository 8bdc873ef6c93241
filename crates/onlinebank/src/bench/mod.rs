//! `onlinebank bench`: a load generator that checks its own results.
//!
//! It exists so that "how fast is the bank" is answered by one command, on the real product,
//! with numbers that are only counted when they are correct: it starts (or targets) a bank,
//! creates customers and accounts, measures two ceilings of the machine (`/health/live` with no
//! hop, `/api/v1/ping` with one proxied hop), drives a mixed workload through the gateway, and
//! last checks every touched account against its own ledger. A run whose invariants fail exits
//! non-zero.
//!
//! - HTTP calls, their typed bodies and what an answer means (done, refused, unknown):
//!   `onlinebank_client`, shared with the CLI and the end-to-end tests;
//! - `target`: the bank under test (self-started: time to ready, RSS);
//! - `workload`: setup, ceilings, the mix, the ledger;
//! - `stats`: latency histograms and counts, per second too;
//! - `invariants`: resolving unknown outcomes, waiting for the read side, the check;
//! - `report`: text, JSON and HTML.

mod invariants;
mod report;
mod stats;
mod target;
mod workload;

use crate::cli::BenchArgs;
use anyhow::{bail, Context};
use onlinebank_client::Client;
use report::{Config, Cpu, Results, StartedBank};
use stats::OpSummary;
use stats::Recorder;
use std::sync::Arc;
use std::time::{Duration, Instant};
use target::Target;
use workload::{Mix, Op, SetupPlan};

/// The shortest per-call timeout of setup and the invariant check.
const PATIENT_CALL: Duration = Duration::from_secs(30);

fn progress(message: &str) {
    eprintln!("bench: {message}");
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 || args.accounts == 0 {
        bail!("--concurrency and --accounts must be at least 1");
    }
    if args.duration.is_zero() {
        bail!("--duration must be above 0");
    }
    if args.opening_amount < 0 {
        bail!("--opening-amount must not be negative");
    }
    let mix = Mix::parse(&args.mix)?;
    if let Some(url) = &args.url {
        if !url.starts_with("http://") {
            bail!("--url must be an http:// URL (the bench speaks plain HTTP), got {url}");
        }
    }
    let mut target = match &args.url {
        Some(url) => Target::external(url),
        None => {
            progress("starting a bank (up --port 0 in a temporary directory)");
            Target::start().await?
        }
    };
    // Ctrl-C: stop the bank this bench started (and remove its data) before exiting.
    let measured = tokio::select! {
        measured = measure(&args, &mix, &mut target) => measured,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Some(started) = target.started.take() {
        started.stop().await;
    }
    let results = measured?;

    if let Some(path) = &args.report {
        std::fs::write(path, report::to_html(&results))
            .with_context(|| format!("writing {}", path.display()))?;
        progress(&format!("report written to {}", path.display()));
    }
    if args.json {
        println!("{:#}", report::to_json(&results));
    } else {
        print!("{}", report::to_text(&results));
    }
    if !results.findings.ok() {
        bail!(
            "invariants failed: {} violations",
            results.findings.violations.len()
        );
    }
    Ok(())
}

/// The two ceilings (`/health/live`, `/api/v1/ping`) under the workload's concurrency; none with
/// a zero `--ceiling-duration`.
async fn ceilings(args: &BenchArgs, api: &Client) -> Vec<OpSummary> {
    let clients = args.concurrency;
    let mut ceilings = Vec::new();
    if !args.ceiling_duration.is_zero() {
        for (index, (name, path)) in [("health_live", "/health/live"), ("ping", "/api/v1/ping")]
            .into_iter()
            .enumerate()
        {
            progress(&format!(
                "ceiling {index}: GET {path}, {clients} clients, {:?}",
                args.ceiling_duration
            ));
            let recorder = Arc::new(Recorder::new(&[name]));
            let elapsed =
                workload::ceiling(api, path, clients, args.ceiling_duration, &recorder, 0).await;
            ceilings.extend(recorder.summary(elapsed));
        }
    }
    ceilings
}

/// The mixed workload, measured.
struct Run {
    operations: Vec<OpSummary>,
    elapsed: Duration,
    cpu: Cpu,
    /// When the workload began.
    started: Instant,
    /// The self-started bank's files then.
    files_before: Vec<(String, u64)>,
}

/// Drives the mixed workload against `target`, measuring the CPU the bank and the bench use.
async fn workload(
    args: &BenchArgs,
    mix: &Mix,
    api: &Client,
    bench: &Arc<workload::Bench>,
    target: &Target,
) -> Run {
    let clients = args.concurrency;
    progress(&format!(
        "workload: {clients} clients for {:?}, mix {}",
        args.duration,
        mix.describe()
    ));
    let names: Vec<&str> = Op::ALL.iter().map(|op| op.name()).collect();
    let mut recorder = Recorder::new(&names);
    recorder.restart();
    let recorder = Arc::new(recorder);
    let bank_pid = target.started.as_ref().map(target::Started::pid);
    let cpu_before = (
        bank_pid.and_then(|pid| target::cpu_seconds(Some(pid))),
        target::cpu_seconds(None),
    );
    let files_before = target
        .started
        .as_ref()
        .map(target::Started::file_sizes)
        .unwrap_or_default();
    let started = Instant::now();
    let elapsed = workload::drive(bench, api, mix, clients, args.duration, &recorder).await;
    let operations = recorder.summary(elapsed);
    let cores = |before: Option<f64>, after: Option<f64>| {
        Some((after? - before?) / elapsed.as_secs_f64().max(1e-9))
    };
    let cpu = Cpu {
        bank_cores: cores(
            cpu_before.0,
            bank_pid.and_then(|pid| target::cpu_seconds(Some(pid))),
        ),
        bench_cores: cores(cpu_before.1, target::cpu_seconds(None)),
    };
    Run {
        operations,
        elapsed,
        cpu,
        started,
        files_before,
    }
}

/// Every phase against `target`: setup, ceilings, the workload, the check.
async fn measure(args: &BenchArgs, mix: &Mix, target: &mut Target) -> anyhow::Result<Results> {
    let clients = args.concurrency;
    let api = Client::pooled(&target.url, clients + 16, args.request_timeout)?;
    let customers = args
        .customers
        .unwrap_or_else(|| args.accounts.div_ceil(10))
        .clamp(1, args.accounts);

    progress(&format!(
        "setup: {customers} customers, {} accounts",
        args.accounts
    ));
    let began = Instant::now();
    let plan = SetupPlan {
        customers,
        accounts: args.accounts,
        opening: args.opening_amount,
        parallel: clients.min(16),
    };
    let patient = api.at_least(PATIENT_CALL);
    let bench = Arc::new(
        workload::setup(&patient, &plan)
            .await
            .context("setting up customers and accounts")?,
    );
    let setup = began.elapsed();

    let ceilings = ceilings(args, &api).await;

    let run = workload(args, mix, &api, &bench, target).await;
    if let Some(bank) = target.started.as_mut() {
        bank.check_alive()?;
    }

    progress("checking invariants");
    // The workload's calls use --request-timeout; setup and the check stay patient.
    let findings = invariants::check(&bench, &patient).await;
    let bank = match target.started.as_mut() {
        Some(bank) => {
            bank.check_alive()?;
            Some(StartedBank {
                ready_in: bank.ready_in,
                idle_rss_kb: bank.idle_rss_kb,
                memory: bank.memory(run.started),
                files_before: run.files_before,
                files_after: bank.file_sizes(),
            })
        }
        None => None,
    };
    Ok(Results {
        url: target.url.clone(),
        bank,
        config: Config {
            duration: args.duration,
            concurrency: clients,
            accounts: args.accounts,
            customers,
            mix: mix.describe(),
            ceiling_duration: args.ceiling_duration,
            opening: args.opening_amount,
        },
        setup,
        ceilings,
        operations: run.operations,
        elapsed: run.elapsed,
        cpu: run.cpu,
        findings,
    })
}

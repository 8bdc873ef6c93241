//! `onlinebank`: one executable for every role of the bank.
//!
//! - `onlinebank up`: the whole bank in one process (each role on its own loopback port, the
//!   embedded event log and SQLite files under the data directory);
//! - `onlinebank serve <role>`: one role per process, configured by flags or `ONLINEBANK_*` env;
//! - `onlinebank bench`: a load generator that checks its own results;
//! - `onlinebank backup` / `restore`: one consistent cut of an embedded data dir, and back;
//! - `onlinebank client`: the customer's bank from a terminal;
//! - `onlinebank check`: an offline, read-only check of a stopped bank's data directory.

mod backup;
mod bench;
mod check;
mod cli;
mod client;
mod logs;
mod run;
mod schemas;
mod settings_doc;

use clap::Parser;

/// jemalloc with its background threads: memory freed anywhere (an argon2 hash's 19 MiB, the
/// buffers of a thousand closed connections) goes back to the system within seconds, also while
/// the process is idle. With the system allocator every argon2 hash left its arena's memory
/// resident; mimalloc purged a thread's free pages only when that thread allocated again, so an
/// idle process kept a flood's memory.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // The client's usage errors have their own code, apart from the bank's refusals (2).
            let client = std::env::args().nth(1).as_deref() == Some("client");
            let code = match error.exit_code() {
                0 => 0,
                _ if client => client::USAGE,
                other => u8::try_from(other).unwrap_or(2),
            };
            return ExitCode::from(code);
        }
    };
    let (log_format, role) = match &cli.command {
        cli::Command::Up(args) => (args.common.log_format, "up"),
        cli::Command::Serve(args) => (args.common.log_format, args.role.as_str()),
        _ => (logs::LogFormat::Text, "onlinebank"),
    };
    logs::init(log_format, role);
    if let cli::Command::Client(args) = cli.command {
        return client::run(args).await;
    }
    if let cli::Command::Check(args) = &cli.command {
        return check::run(args);
    }
    onlinebank_core::server::raise_open_files_limit();
    onlinebank_core::secret::private_umask();
    let outcome = match cli.command {
        cli::Command::Up(args) => run::up(args).await,
        cli::Command::Serve(args) => run::serve(args).await,
        cli::Command::Bench(args) => bench::run(args).await,
        cli::Command::Backup(args) => backup::run_backup(&args).await,
        cli::Command::Restore(args) => backup::run_restore(&args),
        cli::Command::Probe(args) => probe(&args).await,
        cli::Command::Client(_) | cli::Command::Check(_) => Ok(()),
        cli::Command::Settings(args) => {
            let settings = settings_doc::all();
            print!(
                "{}",
                match args.format {
                    cli::SettingsFormat::Env => settings_doc::render_env(&settings),
                    cli::SettingsFormat::Markdown => settings_doc::render_markdown(&settings),
                }
            );
            Ok(())
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            logs::fatal(&format!("{error:#}"));
            ExitCode::FAILURE
        }
    }
}

/// `onlinebank probe URL`: succeeds when the URL answers 2xx in time.
async fn probe(args: &cli::ProbeArgs) -> anyhow::Result<()> {
    let url = match &args.url {
        Some(url) => url.clone(),
        None => {
            let admin = std::env::var("ONLINEBANK_ADMIN_LISTEN")
                .map_err(|_| anyhow::anyhow!("give a URL or set ONLINEBANK_ADMIN_LISTEN"))?;
            let admin = admin
                .replace("0.0.0.0", "127.0.0.1")
                .replace("[::]", "[::1]");
            format!("http://{admin}/health/ready")
        }
    };
    let client = reqwest::Client::builder().timeout(args.timeout).build()?;
    let response = client.get(&url).send().await?;
    anyhow::ensure!(
        response.status().is_success(),
        "{url} answered {}",
        response.status()
    );
    Ok(())
}

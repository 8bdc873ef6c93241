//! Command-line flags; every flag can also be set as `ONLINEBANK_<FLAG>` in the environment.
//!
//! The flags' doc comments are clap's `--help` text, written for a terminal (`<data-dir>`, bare
//! URLs), not for rustdoc.
#![allow(rustdoc::invalid_html_tags, rustdoc::bare_urls)]

use crate::logs::LogFormat;
use clap::{Args, Parser, Subcommand};
use onlinebank_core::money::Won;
use onlinebank_core::secret::MasterSecret;
use onlinebank_core::server::ServerLimits;
use onlinebank_core::settings::{
    defaults, AccountSettings, AuthSettings, BreakerSettings, GatewaySettings, LockoutSettings,
    PublicDoors, RequestSettings,
};
use onlinebank_core::{Role, Settings};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "onlinebank",
    version = onlinebank_core::this_build!().version_line(),
    about = "An online bank backend, event-driven, in one executable"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole bank in one process (embedded default: SQLite files + embedded event log)
    Up(UpArgs),
    /// Run one role in this process
    Serve(ServeArgs),
    /// Drive a mixed workload through the gateway, measure it, and check every touched account
    Bench(BenchArgs),
    /// Back up a data dir (embedded mode) while it serves or not: one consistent cut of every
    /// database, the event log and the token secret, with a manifest
    Backup(BackupArgs),
    /// Restore a backup as a new data dir, after checking every file against its manifest
    Restore(RestoreArgs),
    /// List every ONLINEBANK_* setting with its default, the roles that read it, and whether it
    /// is a secret
    Settings(SettingsArgs),
    /// Exit 0 when URL answers 2xx within the timeout, 1 otherwise (a container HEALTHCHECK
    /// without curl in the image)
    Probe(ProbeArgs),
    /// The customer's bank from a terminal: sign up, log in, accounts, deposit, withdraw, ...
    Client(ClientArgs),
    /// Check a stopped bank's data directory, read-only: every database's integrity, then
    /// balances, pending requests and consumer positions across the stores
    Check(CheckArgs),
}

/// `onlinebank check`: see `src/check/`.
#[derive(Debug, Args)]
#[command(
    after_help = "Run it on a stopped bank (killed or not), a copy of its data directory or a \
restored backup: it reads the files as they are, WAL included, and writes nothing. Exit codes: 0 \
every check holds (also for a directory without any database of the bank: nothing to check); 1 a \
check fails; 2 usage error (the directory does not exist, or a process serves it right now)."
)]
pub struct CheckArgs {
    /// The data directory to check
    #[arg(long, env = "ONLINEBANK_DATA_DIR", default_value = "onlinebank-data")]
    pub data_dir: PathBuf,
    /// The bank's step-up timeout: a request PENDING longer than it, plus the 7 s its sweeper
    /// takes to compensate it, fails the check
    #[arg(long, env = "ONLINEBANK_STEP_UP_TIMEOUT_MS", default_value_t = defaults::STEP_UP_TIMEOUT_MS)]
    pub step_up_timeout_ms: u64,
    /// Print one JSON document instead of text
    #[arg(long, env = "ONLINEBANK_JSON")]
    pub json: bool,
}

/// `onlinebank client`: the public API from a terminal.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 done; 2 refused by the bank (wrong password, insufficient \
funds, not logged in, a redirect that is never followed, ...); 3 the bank is unavailable or \
busy, or the outcome is not known yet: try again shortly; 64 usage error, or a session directory \
open to other users; 1 anything else.\n\nThe session is kept in \
$XDG_CONFIG_HOME/onlinebank/session.json (mode 0600, in a directory made 0700; \
ONLINEBANK_CLIENT_DIR names another directory, which must be private to you: it is never \
chmodded). Passwords are asked without echo, or read from stdin's first line with \
--password-stdin, and never stored."
)]
pub struct ClientArgs {
    /// The bank's address (used by signup and login; later commands use the logged-in one)
    #[arg(
        long,
        env = "ONLINEBANK_CLIENT_URL",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// Print the bank's JSON answers instead of tables and sentences
    #[arg(long, global = true)]
    pub json: bool,
    /// Read the password from the first line of stdin instead of asking on the terminal
    #[arg(long, global = true)]
    pub password_stdin: bool,
    /// The Idempotency-Key of a write (open, deposit, withdraw, close): give the key a failed
    /// run printed to retry it, and it is applied at most once; default: a new key per run
    #[arg(long, global = true)]
    pub idempotency_key: Option<String>,
    #[command(subcommand)]
    pub command: ClientCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Become a customer (asks a new password)
    Signup {
        /// Your user id (an e-mail address)
        #[arg(long)]
        user: String,
        /// Your name
        #[arg(long)]
        name: String,
    },
    /// Log in and keep the session for the next commands
    Login {
        #[arg(long)]
        user: String,
    },
    /// End the session
    Logout,
    /// Your accounts and their balances
    Accounts,
    /// Open an account (asks your password)
    Open {
        /// The account number you want (default: the bank assigns one)
        #[arg(long)]
        account_no: Option<String>,
        /// An opening deposit in won
        #[arg(long)]
        amount: Option<i64>,
    },
    /// Deposit won into an account (asks your password)
    Deposit { account: String, amount: i64 },
    /// Withdraw won from an account (asks your password)
    Withdraw { account: String, amount: i64 },
    /// Transfer won from one of your accounts to any account (asks your password)
    Transfer {
        from: String,
        to: String,
        amount: i64,
    },
    /// An account's balance
    Balance { account: String },
    /// An account's transactions, newest first, a page at a time
    History {
        account: String,
        /// Transactions per page (1-100)
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// The page after this cursor (printed at the end of the previous page)
        #[arg(long)]
        before: Option<String>,
    },
    /// Close an account with a zero balance (asks your password)
    Close { account: String },
    /// An account's statement between two days of the bank's calendar, both included: the
    /// balance before, every item with its running balance, the balance after
    Statement {
        account: String,
        /// The first day, YYYY-MM-DD
        #[arg(long)]
        from: String,
        /// The last day, YYYY-MM-DD
        #[arg(long)]
        to: String,
        /// Print the statement as CSV (UTF-8 with a byte order mark, for spreadsheets)
        #[arg(long)]
        csv: bool,
    },
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// What to ask (default: /health/ready on this process's admin listener, from
    /// ONLINEBANK_ADMIN_LISTEN, with 0.0.0.0 read as 127.0.0.1)
    pub url: Option<String>,
    /// How long to wait for the answer
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct SettingsArgs {
    /// `env`: NAME=default lines with a comment each; `markdown`: a table
    #[arg(long, value_enum, default_value = "env")]
    pub format: SettingsFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SettingsFormat {
    Env,
    Markdown,
}

/// `onlinebank backup`: see `src/backup/`.
#[derive(Debug, Args)]
#[command(
    after_help = "While a bank serves the data dir, the serving process takes the cut (asked \
through the admin listener it records in DIR/serving/): its writes pause for the cut only (at \
most 100 ms), reads never. With several `serve` processes on the data dir, each is paused \
through its admin listener for the same cut. With none, the command reads the files itself. \
Exit codes: 0 written; 1 refused or failed (DEST not empty, no bank data in DIR, a process that \
does not answer), nothing left in DEST."
)]
pub struct BackupArgs {
    /// The data directory to back up
    #[arg(long, env = "ONLINEBANK_DATA_DIR", default_value = "onlinebank-data")]
    pub data_dir: PathBuf,
    /// Where the backup goes: a directory that does not exist yet, or an empty one
    #[arg(long, env = "ONLINEBANK_TO")]
    pub to: PathBuf,
    /// Also print {"path","bytes","pauseMs","tookMs"} as the last line
    #[arg(long, env = "ONLINEBANK_JSON")]
    pub json: bool,
    /// The serving processes' --token-secret, if they were given one: the backup routes of their
    /// admin listeners want the internal token derived from it (default: <data-dir>/secret.key)
    #[arg(long, env = "ONLINEBANK_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
}

/// `onlinebank restore`: see `src/backup/`.
#[derive(Debug, Args)]
#[command(
    after_help = "Every file is checked against the backup's manifest (size and SHA-256) before \
anything is written; the data dir is written beside its place and renamed into it once \
complete. Then: onlinebank up --data-dir NEW. Exit codes: 0 restored; 1 refused (NEW not empty, \
no manifest, a damaged or missing file), nothing written."
)]
pub struct RestoreArgs {
    /// The backup to restore (a directory written by `onlinebank backup`)
    #[arg(long, env = "ONLINEBANK_FROM")]
    pub from: PathBuf,
    /// The new data directory: must not exist yet, or be empty
    #[arg(long, env = "ONLINEBANK_DATA_DIR")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Port of the gateway (the bank's public address); 0 picks a free one
    #[arg(long, env = "ONLINEBANK_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Address the gateway binds to (the other roles always bind to 127.0.0.1)
    #[arg(long, env = "ONLINEBANK_BIND", default_value = "127.0.0.1")]
    pub bind: String,
    /// Also create a demo customer: userId 1@sk.com, name sam, password 1234
    #[arg(long, env = "ONLINEBANK_DEMO")]
    pub demo: bool,
    /// A PostgreSQL URL for every role's data, each role in its own schema (default: one SQLite
    /// file per role under --data-dir)
    #[arg(long, env = "ONLINEBANK_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The role to run: gateway, request, auth, account, history or mypage
    pub role: Role,
    /// Address to listen on
    #[arg(long, env = "ONLINEBANK_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// The role's database URL (default: sqlite://<data-dir>/<role>.db)
    #[arg(long, env = "ONLINEBANK_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    #[command(flatten)]
    pub peers: PeerArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `onlinebank bench`: a load generator that checks its own results (see `src/bench/`).
///
/// Without `--url` it starts the bank itself (`up --port 0` in a temporary directory); the
/// started bank reads its settings from `ONLINEBANK_*` variables as usual.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The gateway of a running bank (e.g. http://127.0.0.1:8080); default: start one
    #[arg(long)]
    pub url: Option<String>,
    /// How long the mixed workload runs (e.g. 30s, 2m)
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Clients sending at once (each waits for its answer before the next call)
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Accounts to open and spread the load over; 1 is the hot-account case
    #[arg(long, default_value_t = 100)]
    pub accounts: usize,
    /// Customers owning the accounts (default: one per 10 accounts)
    #[arg(long)]
    pub customers: Option<usize>,
    /// Weights of the operations: deposit, withdraw, balance, history, legacy_deposit (the
    /// original system's POST /requests with the credentials in the body)
    #[arg(long, default_value = "deposit=40,withdraw=20,balance=30,history=10")]
    pub mix: String,
    /// How long each ceiling (/health/live, /api/v1/ping) is measured; 0s skips them
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub ceiling_duration: Duration,
    /// Opening deposit of every account, in won
    #[arg(long, default_value_t = 1_000_000)]
    pub opening_amount: i64,
    /// Per-call timeout of the load generator's HTTP client
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Print one JSON document instead of text
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML page with charts over time
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// Where a role finds its peers; a comma-separated list means several instances.
#[derive(Debug, Args, Default)]
pub struct PeerArgs {
    /// Base URL(s) of the gateway role, comma-separated for several instances
    #[arg(long, env = "ONLINEBANK_GATEWAY_URL", hide_env_values = true)]
    pub gateway_url: Option<String>,
    /// Base URL(s) of the request role, comma-separated for several instances
    #[arg(long, env = "ONLINEBANK_REQUEST_URL", hide_env_values = true)]
    pub request_url: Option<String>,
    /// Base URL(s) of the auth role, comma-separated for several instances
    #[arg(long, env = "ONLINEBANK_AUTH_URL", hide_env_values = true)]
    pub auth_url: Option<String>,
    /// Base URL(s) of the account role, comma-separated for several instances
    #[arg(long, env = "ONLINEBANK_ACCOUNT_URL", hide_env_values = true)]
    pub account_url: Option<String>,
    /// Base URL(s) of the history role, comma-separated for several instances
    #[arg(long, env = "ONLINEBANK_HISTORY_URL", hide_env_values = true)]
    pub history_url: Option<String>,
    /// Base URL(s) of the mypage role, comma-separated for several instances
    #[arg(long, env = "ONLINEBANK_MYPAGE_URL", hide_env_values = true)]
    pub mypage_url: Option<String>,
}

impl PeerArgs {
    fn list(raw: &Option<String>) -> Vec<String> {
        raw.as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub fn apply(&self, settings: &mut Settings) {
        for (role, raw) in [
            (Role::Gateway, &self.gateway_url),
            (Role::Request, &self.request_url),
            (Role::Auth, &self.auth_url),
            (Role::Account, &self.account_url),
            (Role::History, &self.history_url),
            (Role::Mypage, &self.mypage_url),
        ] {
            settings.peers.set(role, Self::list(raw));
        }
    }
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// How the log is written on stderr: text for people, json for pipelines (one object per
    /// line; the start-up lines on stdout are JSON too)
    #[arg(long, env = "ONLINEBANK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// OpenTelemetry collector to export spans to, e.g. http://collector:4318 (OTLP over HTTP
    /// with protobuf, to <URL>/v1/traces); OTEL_EXPORTER_OTLP_ENDPOINT when unset. Off by default
    #[arg(long, env = "ONLINEBANK_OTLP_ENDPOINT", hide_env_values = true)]
    pub otlp_endpoint: Option<String>,
    /// Directory of the SQLite files, the embedded event log and the secret
    #[arg(long, env = "ONLINEBANK_DATA_DIR", default_value = "onlinebank-data")]
    pub data_dir: PathBuf,
    /// Event bus URL (default: the embedded log <data-dir>/bus.db); kafka://HOST:PORT[,...]
    /// takes librdkafka's security.protocol, ssl.* and sasl.* settings in its query
    #[arg(long, env = "ONLINEBANK_BUS", hide_env_values = true)]
    pub bus: Option<String>,
    /// SASL password for a Kafka bus whose URL names none (kept apart from the URL, e.g. in
    /// its own Secret)
    #[arg(long, env = "ONLINEBANK_BUS_SASL_PASSWORD", hide_env_values = true)]
    pub bus_sasl_password: Option<String>,
    /// CA certificate (PEM) the PostgreSQL server's certificate must chain to: sets
    /// sslrootcert, and sslmode=verify-full unless the database URL names a mode
    #[arg(long, env = "ONLINEBANK_DATABASE_CA_FILE")]
    pub database_ca_file: Option<PathBuf>,
    /// Secret that signs tokens and derives internal keys (default: <data-dir>/secret.key)
    #[arg(long, env = "ONLINEBANK_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
    /// Per-transaction limit in won
    #[arg(long, env = "ONLINEBANK_MAX_AMOUNT", default_value_t = defaults::MAX_AMOUNT)]
    pub max_amount: i64,
    /// Won that may be withdrawn from one account per day of the bank's calendar (see
    /// --time-zone); a withdrawal past it is refused with daily_limit_exceeded
    #[arg(long, env = "ONLINEBANK_DAILY_LIMIT", default_value_t = defaults::DAILY_LIMIT)]
    pub daily_limit: i64,
    /// The bank's time zone (an IANA name): where its days, and so its daily limits, begin
    /// and end
    #[arg(long, env = "ONLINEBANK_TIME_ZONE", default_value = defaults::TIME_ZONE)]
    pub time_zone: String,
    /// How long POST /api/v1/requests waits for the outcome before answering 202
    #[arg(long, env = "ONLINEBANK_REQUEST_WAIT_MS", default_value_t = defaults::REQUEST_WAIT_MS)]
    pub request_wait_ms: u64,
    /// Timeout of the step-up call to auth
    #[arg(long, env = "ONLINEBANK_STEP_UP_TIMEOUT_MS", default_value_t = defaults::STEP_UP_TIMEOUT_MS)]
    pub step_up_timeout_ms: u64,
    /// Lifetime of a login token
    #[arg(long, env = "ONLINEBANK_TOKEN_TTL_SECS", default_value_t = defaults::TOKEN_TTL_SECS)]
    pub token_ttl_secs: u64,
    /// Consecutive failed logins or step-ups before a lockout
    #[arg(long, env = "ONLINEBANK_LOCKOUT_THRESHOLD", default_value_t = defaults::LOCKOUT_THRESHOLD)]
    pub lockout_threshold: u32,
    /// How long a lockout lasts
    #[arg(long, env = "ONLINEBANK_LOCKOUT_SECS", default_value_t = defaults::LOCKOUT_SECS)]
    pub lockout_secs: u64,
    /// Write calls served at once per role; beyond, an immediate 503 service_busy
    #[arg(long, env = "ONLINEBANK_MAX_IN_FLIGHT_WRITES", default_value_t = defaults::MAX_IN_FLIGHT_WRITES)]
    pub max_in_flight_writes: usize,
    /// Read calls served at once per role; beyond, an immediate 503 service_busy
    #[arg(long, env = "ONLINEBANK_MAX_IN_FLIGHT_READS", default_value_t = defaults::MAX_IN_FLIGHT_READS)]
    pub max_in_flight_reads: usize,
    /// Step-up breaker: how far back call outcomes count
    #[arg(long, env = "ONLINEBANK_BREAKER_WINDOW_MS", default_value_t = defaults::BREAKER_WINDOW_MS)]
    pub breaker_window_ms: u64,
    /// Step-up breaker: calls in the window before the failure rate is judged
    #[arg(long, env = "ONLINEBANK_BREAKER_MIN_CALLS", default_value_t = defaults::BREAKER_MIN_CALLS)]
    pub breaker_min_calls: usize,
    /// Step-up breaker: share of failed calls (0..1) that opens it
    #[arg(long, env = "ONLINEBANK_BREAKER_FAILURE_RATE", default_value_t = defaults::BREAKER_FAILURE_RATE)]
    pub breaker_failure_rate: f64,
    /// Step-up breaker: how long it stays open before trial calls
    #[arg(long, env = "ONLINEBANK_BREAKER_OPEN_MS", default_value_t = defaults::BREAKER_OPEN_MS)]
    pub breaker_open_ms: u64,
    /// Step-up breaker: successful trial calls that close it again
    #[arg(long, env = "ONLINEBANK_BREAKER_HALF_OPEN_CALLS", default_value_t = defaults::BREAKER_HALF_OPEN_CALLS)]
    pub breaker_half_open_calls: u32,
    /// On SIGTERM, how long to answer not-ready before the listener stops accepting
    #[arg(long, env = "ONLINEBANK_DRAIN_DELAY_MS")]
    pub drain_delay_ms: Option<u64>,
    /// Address of the admin listener (`/metrics`, `/health/*`, `/info`, `/backup`; the gateway's
    /// `/quiesce` and `/resume`); port 0 picks a free one
    #[arg(long, env = "ONLINEBANK_ADMIN_LISTEN", default_value = "127.0.0.1:0")]
    pub admin_listen: String,
    /// Sign-up and login calls the gateway serves at once, apart from money requests
    #[arg(long, env = "ONLINEBANK_MAX_IN_FLIGHT_PUBLIC", default_value_t = defaults::MAX_IN_FLIGHT_PUBLIC)]
    pub max_in_flight_public: usize,
    /// Sign-up and login calls one client address may have in progress at once
    #[arg(
        long,
        env = "ONLINEBANK_MAX_IN_FLIGHT_PER_CLIENT",
        default_value_t = defaults::MAX_IN_FLIGHT_PER_CLIENT
    )]
    pub max_in_flight_per_client: usize,
    /// How long a sign-up or login waits for a free place before 503 service_busy
    #[arg(long, env = "ONLINEBANK_PUBLIC_WAIT_MS", default_value_t = defaults::PUBLIC_WAIT_MS)]
    pub public_wait_ms: u64,
    /// A request's headers must arrive within this time, else the connection is closed
    #[arg(long, env = "ONLINEBANK_HEADER_TIMEOUT_MS", default_value_t = defaults::HEADER_TIMEOUT_MS)]
    pub header_timeout_ms: u64,
    /// A request's body must arrive whole within this time, else 408 request_timeout
    #[arg(long, env = "ONLINEBANK_BODY_TIMEOUT_MS", default_value_t = defaults::BODY_TIMEOUT_MS)]
    pub body_timeout_ms: u64,
    /// A connection with no call in progress is closed after this time
    #[arg(long, env = "ONLINEBANK_IDLE_TIMEOUT_MS", default_value_t = defaults::IDLE_TIMEOUT_MS)]
    pub idle_timeout_ms: u64,
    /// Connections open at once per process (default: the open-files limit less a quarter);
    /// past it the longest-idle connection is closed
    #[arg(long, env = "ONLINEBANK_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Connections one client (an IPv4 address, an IPv6 /64) may hold open at once, stalled
    /// ones included (default: a quarter of --max-connections, between 16 and 256); trusted proxies
    /// have no share of their own
    #[arg(long, env = "ONLINEBANK_MAX_CONNECTIONS_PER_CLIENT")]
    pub max_connections_per_client: Option<usize>,
    /// Proxies (CIDR blocks or addresses, comma-separated) whose X-Forwarded-For names the
    /// client: per-client shares then key on that client, not on the proxy
    #[arg(long, env = "ONLINEBANK_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// The bank's public base URL for links in answers (e.g. https://bank.example); default:
    /// relative links
    #[arg(long, env = "ONLINEBANK_PUBLIC_URL", hide_env_values = true)]
    pub public_url: Option<String>,
    /// How long consumers' inbox rows and the embedded log's consumed events are kept; on
    /// Kafka, keep the topics' retention.ms at most this long
    #[arg(long, env = "ONLINEBANK_RETENTION_SECS", default_value_t = defaults::RETENTION_SECS)]
    pub retention_secs: u64,
}

impl CommonArgs {
    /// Starts the span exporter when a collector is named (by the flag, else by OpenTelemetry's
    /// own variable).
    pub fn span_exporter(&self) -> anyhow::Result<Option<onlinebank_core::otel::Exporter>> {
        let endpoint = self.otlp_endpoint.clone().or_else(|| {
            std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                .ok()
                .filter(|endpoint| !endpoint.is_empty())
        });
        endpoint
            .map(|endpoint| onlinebank_core::otel::Exporter::start(&endpoint))
            .transpose()
    }

    pub fn settings(&self) -> anyhow::Result<Settings> {
        anyhow::ensure!(self.max_amount > 0, "--max-amount must be positive");
        onlinebank_core::secret::ensure_private_dir(&self.data_dir)?;
        let secret = match &self.token_secret {
            Some(secret) => MasterSecret::from_bytes(secret.as_bytes().to_vec())?,
            None => MasterSecret::load_or_create(&self.data_dir)?,
        };
        let mut settings = Settings::new(self.data_dir.clone(), secret);
        settings.secret_on_disk = self.token_secret.is_none();
        settings.bus = match (&self.bus, &self.bus_sasl_password) {
            (Some(url), Some(password)) => {
                Some(onlinebank_bus::kafka::with_sasl_password(url, password))
            }
            (url, _) => url.clone(),
        };
        settings.database_ca_file = self.database_ca_file.clone();
        settings.max_amount = self.max_amount;
        settings.request = self.request_settings()?;
        settings.auth = self.auth_settings()?;
        settings.account = self.account_settings()?;
        settings.gateway = self.gateway_settings()?;
        anyhow::ensure!(
            self.max_in_flight_writes > 0 && self.max_in_flight_reads > 0,
            "--max-in-flight-writes and --max-in-flight-reads must be positive"
        );
        settings.max_in_flight_writes = self.max_in_flight_writes;
        settings.max_in_flight_reads = self.max_in_flight_reads;
        self.server_limits(&mut settings.server)?;
        settings.trusted_proxies = self
            .trusted_proxies
            .parse()
            .map_err(|error| anyhow::anyhow!("--trusted-proxies: {error}"))?;
        anyhow::ensure!(self.retention_secs > 0, "--retention-secs must be positive");
        settings.retention = Duration::from_secs(self.retention_secs);
        Ok(settings)
    }

    fn request_settings(&self) -> anyhow::Result<RequestSettings> {
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.breaker_failure_rate),
            "--breaker-failure-rate must be between 0 and 1"
        );
        Ok(RequestSettings {
            wait: Duration::from_millis(self.request_wait_ms),
            step_up_timeout: Duration::from_millis(self.step_up_timeout_ms),
            breaker: BreakerSettings {
                window: Duration::from_millis(self.breaker_window_ms),
                min_calls: self.breaker_min_calls.max(1),
                failure_rate: self.breaker_failure_rate,
                open_for: Duration::from_millis(self.breaker_open_ms),
                half_open_calls: self.breaker_half_open_calls.max(1),
            },
        })
    }

    fn account_settings(&self) -> anyhow::Result<AccountSettings> {
        anyhow::ensure!(self.daily_limit >= 0, "--daily-limit must not be negative");
        Ok(AccountSettings {
            daily_limit: Won::from_stored(self.daily_limit)?,
            time_zone: self
                .time_zone
                .parse()
                .map_err(|error| anyhow::anyhow!("--time-zone: {error}"))?,
        })
    }

    fn auth_settings(&self) -> anyhow::Result<AuthSettings> {
        anyhow::ensure!(
            self.lockout_threshold > 0,
            "--lockout-threshold must be positive"
        );
        Ok(AuthSettings {
            token_ttl: Duration::from_secs(self.token_ttl_secs),
            lockout: LockoutSettings {
                threshold: self.lockout_threshold,
                duration: Duration::from_secs(self.lockout_secs),
            },
        })
    }

    fn gateway_settings(&self) -> anyhow::Result<GatewaySettings> {
        anyhow::ensure!(
            self.max_in_flight_public > 0 && self.max_in_flight_per_client > 0,
            "--max-in-flight-public and --max-in-flight-per-client must be positive"
        );
        if let Some(url) = &self.public_url {
            anyhow::ensure!(
                url.starts_with("https://") || url.starts_with("http://"),
                "--public-url must start with https:// or http://"
            );
        }
        Ok(GatewaySettings {
            public_doors: PublicDoors {
                in_flight: self.max_in_flight_public,
                per_client: self.max_in_flight_per_client,
                wait: Duration::from_millis(self.public_wait_ms),
            },
            public_url: self.public_url.clone(),
        })
    }

    fn server_limits(&self, limits: &mut ServerLimits) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.header_timeout_ms > 0 && self.body_timeout_ms > 0 && self.idle_timeout_ms > 0,
            "--header-timeout-ms, --body-timeout-ms and --idle-timeout-ms must be positive"
        );
        limits.header_timeout = Duration::from_millis(self.header_timeout_ms);
        limits.body_timeout = Duration::from_millis(self.body_timeout_ms);
        limits.idle_timeout = Duration::from_millis(self.idle_timeout_ms);
        if let Some(max_connections) = self.max_connections {
            anyhow::ensure!(max_connections > 0, "--max-connections must be positive");
            limits.max_connections = max_connections;
        }
        if let Some(share) = self.max_connections_per_client {
            anyhow::ensure!(share > 0, "--max-connections-per-client must be positive");
            limits.max_connections_per_client = Some(share);
        }
        Ok(())
    }
}

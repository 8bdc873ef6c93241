//! Typed settings shared by every role, built by the binary from flags and `ONLINEBANK_*` env.

use crate::role::{Role, RoleMap};
use crate::secret::MasterSecret;
use crate::token::TokenKey;
use std::path::PathBuf;
use std::time::Duration;

/// Every setting's default, in one place: the binary's flags and [`Settings::new`] both read these.
pub mod defaults {
    pub const MAX_AMOUNT: i64 = crate::money::DEFAULT_MAX_AMOUNT;
    pub const REQUEST_WAIT_MS: u64 = 5_000;
    pub const STEP_UP_TIMEOUT_MS: u64 = 610;
    pub const TOKEN_TTL_SECS: u64 = 3_600;
    pub const LOCKOUT_THRESHOLD: u32 = 5;
    pub const LOCKOUT_SECS: u64 = 300;
    pub const MAX_IN_FLIGHT_WRITES: usize = 256;
    pub const MAX_IN_FLIGHT_READS: usize = 1_024;
    pub const BREAKER_WINDOW_MS: u64 = 10_000;
    pub const BREAKER_MIN_CALLS: usize = 5;
    pub const BREAKER_FAILURE_RATE: f64 = 0.5;
    pub const BREAKER_OPEN_MS: u64 = 3_000;
    pub const BREAKER_HALF_OPEN_CALLS: u32 = 3;
    pub const MAX_IN_FLIGHT_PUBLIC: usize = 128;
    pub const MAX_IN_FLIGHT_PER_CLIENT: usize = 32;
    pub const PUBLIC_WAIT_MS: u64 = 1_000;
    pub const HEADER_TIMEOUT_MS: u64 = 10_000;
    pub const BODY_TIMEOUT_MS: u64 = 10_000;
    pub const IDLE_TIMEOUT_MS: u64 = 10_000;
    pub const RETENTION_SECS: u64 = 7 * 24 * 3_600;
    pub const DAILY_LIMIT: i64 = 5_000_000;
    pub const TIME_ZONE: &str = "Asia/Seoul";
}

/// Where a role finds its peers: one or more base URLs each (several = instances to balance).
#[derive(Debug, Clone, Default)]
pub struct Peers(RoleMap<Vec<String>>);

impl Peers {
    pub fn of(&self, role: Role) -> &[String] {
        self.0.get(role)
    }

    pub fn set(&mut self, role: Role, urls: Vec<String>) {
        *self.0.get_mut(role) = urls;
    }

    /// These peers with `role` at `urls`.
    pub fn with(mut self, role: Role, urls: &[&str]) -> Self {
        self.set(role, urls.iter().map(|url| (*url).to_owned()).collect());
        self
    }

    /// The first URL of a role, or an error naming the missing flag.
    pub fn first(&self, role: Role) -> anyhow::Result<String> {
        self.of(role)
            .first()
            .map(|url| url.trim_end_matches('/').to_owned())
            .ok_or_else(|| anyhow::anyhow!("--{role}-url is required"))
    }
}

/// When failed passwords lock a customer out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutSettings {
    /// Consecutive failed logins or step-ups before a lockout.
    pub threshold: u32,
    /// How long a lockout lasts.
    pub duration: Duration,
}

impl Default for LockoutSettings {
    fn default() -> Self {
        Self {
            threshold: defaults::LOCKOUT_THRESHOLD,
            duration: Duration::from_secs(defaults::LOCKOUT_SECS),
        }
    }
}

/// The gateway's places for sign-up and login: their own budget, apart from the customers'
/// money requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicDoors {
    /// Calls served at once; beyond, callers wait up to `wait`, then 503 `service_busy`.
    pub in_flight: usize,
    /// Calls one client address may have in progress at once.
    pub per_client: usize,
    /// How long a call waits for a free place.
    pub wait: Duration,
}

impl Default for PublicDoors {
    fn default() -> Self {
        Self {
            in_flight: defaults::MAX_IN_FLIGHT_PUBLIC,
            per_client: defaults::MAX_IN_FLIGHT_PER_CLIENT,
            wait: Duration::from_millis(defaults::PUBLIC_WAIT_MS),
        }
    }
}

/// The step-up circuit breaker's thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSettings {
    /// How far back outcomes count.
    pub window: Duration,
    /// Outcomes needed in the window before the failure rate is judged.
    pub min_calls: usize,
    /// Share of failures (0..=1) that opens the breaker.
    pub failure_rate: f64,
    /// How long it stays open before trying again.
    pub open_for: Duration,
    /// Successful trial calls needed to close again.
    pub half_open_calls: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            window: Duration::from_millis(defaults::BREAKER_WINDOW_MS),
            min_calls: defaults::BREAKER_MIN_CALLS,
            failure_rate: defaults::BREAKER_FAILURE_RATE,
            open_for: Duration::from_millis(defaults::BREAKER_OPEN_MS),
            half_open_calls: defaults::BREAKER_HALF_OPEN_CALLS,
        }
    }
}

/// request's knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSettings {
    /// How long `POST /api/v1/requests` waits for the outcome before answering 202.
    pub wait: Duration,
    /// Timeout of the request -> auth step-up call.
    pub step_up_timeout: Duration,
    /// The step-up circuit breaker.
    pub breaker: BreakerSettings,
}

impl Default for RequestSettings {
    fn default() -> Self {
        Self {
            wait: Duration::from_millis(defaults::REQUEST_WAIT_MS),
            step_up_timeout: Duration::from_millis(defaults::STEP_UP_TIMEOUT_MS),
            breaker: BreakerSettings::default(),
        }
    }
}

/// account's knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountSettings {
    /// Won that may leave an account per day of the bank's calendar (withdrawals).
    pub daily_limit: crate::money::Won,
    /// The bank's time zone: where its days begin and end.
    pub time_zone: crate::time::BankTimeZone,
}

impl Default for AccountSettings {
    fn default() -> Self {
        Self {
            daily_limit: crate::money::Won::from_stored(defaults::DAILY_LIMIT)
                .unwrap_or(crate::money::Won::ZERO),
            time_zone: crate::time::BankTimeZone::default(),
        }
    }
}

/// auth's knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthSettings {
    /// Lifetime of a login token.
    pub token_ttl: Duration,
    /// When failed passwords lock a customer out.
    pub lockout: LockoutSettings,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(defaults::TOKEN_TTL_SECS),
            lockout: LockoutSettings::default(),
        }
    }
}

/// The gateway's knobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewaySettings {
    /// The places for sign-up and login.
    pub public_doors: PublicDoors,
    /// The bank's public base URL (e.g. `https://bank.example`), for links handed to clients;
    /// `None`: relative links.
    pub public_url: Option<String>,
}

/// Everything a role needs to know to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Holds the SQLite files, the embedded event log and the secret.
    pub data_dir: PathBuf,
    /// The role's database URL; default: `sqlite://<data_dir>/<role>.db`.
    pub database: Option<String>,
    /// The CA certificate(s) a PostgreSQL server's certificate must chain to (PEM); sets
    /// `sslrootcert` (and `sslmode=verify-full` unless the URL names a mode) on a
    /// `postgres://` URL that has none.
    pub database_ca_file: Option<PathBuf>,
    /// The event bus URL; default: the embedded log `<data_dir>/bus.db`.
    pub bus: Option<String>,
    pub peers: Peers,
    /// The master secret keys are derived from.
    pub secret: MasterSecret,
    /// Whether the secret came from the data directory (`secret.key`): then keys that would let
    /// a copy of that directory test password guesses are made per process instead of derived.
    pub secret_on_disk: bool,
    /// Per-transaction limit in won.
    pub max_amount: i64,
    /// request's knobs: its wait, the step-up's timeout and breaker.
    pub request: RequestSettings,
    /// auth's knobs: tokens and lockouts.
    pub auth: AuthSettings,
    /// account's knobs: the daily limit and the bank's time zone.
    pub account: AccountSettings,
    /// The gateway's knobs: its public doors and the public URL.
    pub gateway: GatewaySettings,
    /// Write calls a role serves at once; beyond, an immediate 503 `service_busy`.
    pub max_in_flight_writes: usize,
    /// Read calls a role serves at once; beyond, an immediate 503 `service_busy`.
    pub max_in_flight_reads: usize,
    /// Connection-level limits: header, body and idle timeouts and the connection cap.
    pub server: crate::server::ServerLimits,
    /// How long inbox rows and embedded-log events are kept (see `onlinebank_bus::retention`).
    pub retention: Duration,
    /// Proxies whose `X-Forwarded-For` names the client (see [`crate::client_addr`]).
    pub trusted_proxies: crate::client_addr::TrustedProxies,
}

impl Settings {
    pub fn new(data_dir: PathBuf, secret: MasterSecret) -> Self {
        Self {
            data_dir,
            database: None,
            database_ca_file: None,
            bus: None,
            peers: Peers::default(),
            secret,
            secret_on_disk: true,
            max_amount: defaults::MAX_AMOUNT,
            request: RequestSettings::default(),
            auth: AuthSettings::default(),
            account: AccountSettings::default(),
            gateway: GatewaySettings::default(),
            max_in_flight_writes: defaults::MAX_IN_FLIGHT_WRITES,
            max_in_flight_reads: defaults::MAX_IN_FLIGHT_READS,
            trusted_proxies: crate::client_addr::TrustedProxies::default(),
            server: crate::server::ServerLimits {
                header_timeout: Duration::from_millis(defaults::HEADER_TIMEOUT_MS),
                body_timeout: Duration::from_millis(defaults::BODY_TIMEOUT_MS),
                idle_timeout: Duration::from_millis(defaults::IDLE_TIMEOUT_MS),
                max_connections: crate::server::ServerLimits::default_max_connections(),
                max_connections_per_client: None,
            },
            retention: Duration::from_secs(defaults::RETENTION_SECS),
        }
    }

    pub fn token_key(&self) -> TokenKey {
        TokenKey::new(self.secret.derive("onlinebank token v1"))
    }

    /// The shared value roles present to each other's `/internal` endpoints.
    pub fn internal_token(&self) -> String {
        hex::encode(self.secret.derive("onlinebank internal v1").0)
    }

    /// The role's database URL.
    pub fn database_url(&self, role: Role) -> String {
        match &self.database {
            Some(url) => match &self.database_ca_file {
                Some(ca) => crate::db::with_ca_file(url, ca),
                None => url.clone(),
            },
            None => format!(
                "sqlite://{}",
                self.data_dir.join(format!("{role}.db")).display()
            ),
        }
    }
}

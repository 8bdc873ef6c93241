//! `onlinebank settings`: every `ONLINEBANK_*` environment variable the binary reads, with its
//! default, the commands and roles that read it, and whether it holds a secret.
//!
//! The list is read from the command-line definitions themselves (every flag has its variable),
//! so it cannot drift from what the binary accepts; only which roles read a setting is written
//! down here, and a unit test fails when a new flag has no entry.

use crate::cli::Cli;
use clap::CommandFactory;
use std::collections::BTreeMap;

/// One setting as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingDoc {
    /// The environment variable, `ONLINEBANK_...`.
    pub env: String,
    /// The flag that sets the same, `--...`.
    pub flag: String,
    /// The default, empty when there is none.
    pub default: String,
    /// `up`, `serve` or both.
    pub commands: Vec<&'static str>,
    /// The roles that read it (`all` for every role).
    pub roles: &'static str,
    /// Whether the value is a secret (or may hold credentials): mount it from a Secret.
    pub secret: bool,
    /// What it does.
    pub help: String,
}

/// Which roles read each setting. A setting missing here fails the unit test below.
const READERS: [(&str, &str); 46] = [
    ("ONLINEBANK_LOG_FORMAT", "all"),
    ("ONLINEBANK_OTLP_ENDPOINT", "all"),
    ("ONLINEBANK_PORT", "gateway (up)"),
    ("ONLINEBANK_BIND", "gateway (up)"),
    ("ONLINEBANK_DEMO", "auth (up)"),
    (
        "ONLINEBANK_DATABASE",
        "request, auth, account, history, mypage",
    ),
    ("ONLINEBANK_LISTEN", "all"),
    ("ONLINEBANK_GATEWAY_URL", "none (reserved)"),
    ("ONLINEBANK_REQUEST_URL", "gateway"),
    ("ONLINEBANK_AUTH_URL", "gateway, request"),
    ("ONLINEBANK_ACCOUNT_URL", "gateway"),
    ("ONLINEBANK_HISTORY_URL", "gateway"),
    ("ONLINEBANK_MYPAGE_URL", "gateway"),
    ("ONLINEBANK_DATA_DIR", "all"),
    ("ONLINEBANK_BUS", "request, account, history, mypage"),
    ("ONLINEBANK_TOKEN_SECRET", "all"),
    ("ONLINEBANK_MAX_AMOUNT", "request, account"),
    ("ONLINEBANK_DAILY_LIMIT", "account"),
    ("ONLINEBANK_TIME_ZONE", "account, mypage"),
    ("ONLINEBANK_REQUEST_WAIT_MS", "gateway, request"),
    ("ONLINEBANK_STEP_UP_TIMEOUT_MS", "gateway, request"),
    ("ONLINEBANK_TOKEN_TTL_SECS", "auth"),
    ("ONLINEBANK_LOCKOUT_THRESHOLD", "auth"),
    ("ONLINEBANK_LOCKOUT_SECS", "auth"),
    ("ONLINEBANK_MAX_IN_FLIGHT_WRITES", "gateway, request"),
    ("ONLINEBANK_MAX_IN_FLIGHT_READS", "gateway, request, mypage"),
    ("ONLINEBANK_BREAKER_WINDOW_MS", "request"),
    ("ONLINEBANK_BREAKER_MIN_CALLS", "request"),
    ("ONLINEBANK_BREAKER_FAILURE_RATE", "request"),
    ("ONLINEBANK_BREAKER_OPEN_MS", "request"),
    ("ONLINEBANK_BREAKER_HALF_OPEN_CALLS", "request"),
    ("ONLINEBANK_DRAIN_DELAY_MS", "all"),
    ("ONLINEBANK_ADMIN_LISTEN", "all"),
    ("ONLINEBANK_MAX_IN_FLIGHT_PUBLIC", "gateway"),
    ("ONLINEBANK_MAX_IN_FLIGHT_PER_CLIENT", "gateway"),
    ("ONLINEBANK_PUBLIC_WAIT_MS", "gateway"),
    ("ONLINEBANK_HEADER_TIMEOUT_MS", "all"),
    ("ONLINEBANK_BODY_TIMEOUT_MS", "all"),
    ("ONLINEBANK_IDLE_TIMEOUT_MS", "all"),
    ("ONLINEBANK_MAX_CONNECTIONS", "all"),
    ("ONLINEBANK_MAX_CONNECTIONS_PER_CLIENT", "all"),
    ("ONLINEBANK_TRUSTED_PROXIES", "all"),
    ("ONLINEBANK_PUBLIC_URL", "gateway"),
    (
        "ONLINEBANK_BUS_SASL_PASSWORD",
        "request, account, history, mypage",
    ),
    (
        "ONLINEBANK_RETENTION_SECS",
        "request, account, history, mypage",
    ),
    (
        "ONLINEBANK_DATABASE_CA_FILE",
        "request, auth, account, history, mypage",
    ),
];

/// Settings whose values must come from a Secret: the token secret, and database and bus URLs,
/// which may carry a password.
const SECRETS: [&str; 3] = [
    "ONLINEBANK_TOKEN_SECRET",
    "ONLINEBANK_DATABASE",
    "ONLINEBANK_BUS",
];

fn readers(env: &str) -> Option<&'static str> {
    READERS
        .iter()
        .find(|(name, _)| *name == env)
        .map(|(_, roles)| *roles)
}

/// Every setting of `up` and `serve`, by variable name.
pub fn all() -> Vec<SettingDoc> {
    let cli = Cli::command();
    let mut settings: BTreeMap<String, SettingDoc> = BTreeMap::new();
    for command in ["up", "serve"] {
        let Some(subcommand) = cli.find_subcommand(command) else {
            continue;
        };
        for arg in subcommand.get_arguments() {
            let Some(env) = arg.get_env().and_then(|env| env.to_str()) else {
                continue;
            };
            let entry = settings
                .entry(env.to_owned())
                .or_insert_with(|| SettingDoc {
                    env: env.to_owned(),
                    flag: arg
                        .get_long()
                        .map(|long| format!("--{long}"))
                        .unwrap_or_default(),
                    default: arg
                        .get_default_values()
                        .iter()
                        .filter_map(|value| value.to_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    commands: Vec::new(),
                    roles: readers(env).unwrap_or("unknown"),
                    secret: arg.is_hide_env_values_set() || SECRETS.contains(&env),
                    help: arg
                        .get_help()
                        .map(|help| help.to_string())
                        .unwrap_or_default(),
                });
            if !entry.commands.contains(&command) {
                entry.commands.push(command);
            }
        }
    }
    settings.into_values().collect()
}

/// `--format env`: one `NAME=default` line per setting, described in a trailing comment.
pub fn render_env(settings: &[SettingDoc]) -> String {
    let mut out = String::from(
        "# onlinebank settings: NAME=default  # commands; roles that read it; secret?; what it does\n",
    );
    for setting in settings {
        out.push_str(&format!(
            "{}={}  # {}; roles: {}; {}{}\n",
            setting.env,
            if setting.secret { "" } else { &setting.default },
            setting.commands.join("+"),
            setting.roles,
            if setting.secret { "secret; " } else { "" },
            setting.help.replace('\n', " "),
        ));
    }
    out
}

/// `--format markdown`: the table of docs/deploy.md.
pub fn render_markdown(settings: &[SettingDoc]) -> String {
    let mut out = String::from(
        "| variable | flag | default | commands | read by | secret | what |\n|---|---|---|---|---|---|---|\n",
    );
    for setting in settings {
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {} | {} | {} |\n",
            setting.env,
            setting.flag,
            if setting.default.is_empty() {
                String::new()
            } else {
                format!("`{}`", setting.default)
            },
            setting.commands.join(", "),
            setting.roles,
            if setting.secret { "yes" } else { "" },
            setting.help.replace('\n', " ").replace('|', "\\|"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_says_which_roles_read_it() {
        let unknown: Vec<String> = all()
            .into_iter()
            .filter(|setting| setting.roles == "unknown")
            .map(|setting| setting.env)
            .collect();
        assert!(unknown.is_empty(), "add these to READERS: {unknown:?}");
    }

    #[test]
    fn the_token_secret_is_a_secret_and_its_value_is_never_printed() {
        let settings = all();
        let secret = settings
            .iter()
            .find(|setting| setting.env == "ONLINEBANK_TOKEN_SECRET");
        assert!(secret.is_some_and(|setting| setting.secret));
        let env = render_env(&settings);
        assert!(env
            .lines()
            .any(|line| line.starts_with("ONLINEBANK_TOKEN_SECRET=  #")));
        assert!(env.contains("ONLINEBANK_MAX_AMOUNT=10000000000  # up+serve"));
        assert!(render_markdown(&settings).contains("| `ONLINEBANK_LISTEN` | `--listen` |"));
    }
}

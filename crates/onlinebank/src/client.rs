//! `onlinebank client`: the customer's bank from a terminal, over the public API.
//!
//! The session token is kept in `<config dir>/onlinebank/session.json` (mode 0600, the directory
//! 0700; `ONLINEBANK_CLIENT_DIR` names another directory). Passwords are read from the terminal
//! without echo, or from the first line of stdin with `--password-stdin`; they are never stored.
//! Writes carry a fresh Idempotency-Key; an answer still pending is followed for a few seconds.
//!
//! Exit codes: 0 done; 2 refused by the bank (wrong password, insufficient funds, not logged in,
//! ...); 3 the bank is unavailable or busy, or the outcome is not known yet: try again; 64 usage
//! errors (bad flags, no terminal for the password); 1 anything else.

use crate::cli::{ClientArgs, ClientCommand};
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Why a command did not succeed, with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

/// Exit codes (documented in `onlinebank client --help`).
pub const REFUSED: u8 = 2;
pub const UNAVAILABLE: u8 = 3;
pub const USAGE: u8 = 64;
const OTHER: u8 = 1;

fn fail(code: u8, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

/// Runs one client command; prints its result or its failure and returns the exit code.
pub async fn run(args: ClientArgs) -> ExitCode {
    match execute(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("onlinebank client: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// What `login` keeps between commands.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Session {
    url: String,
    #[serde(rename = "userId")]
    user_id: String,
    token: String,
    #[serde(rename = "expiresAt")]
    expires_at: String,
}

fn config_dir() -> Result<PathBuf, Failure> {
    if let Some(dir) = std::env::var_os("ONLINEBANK_CLIENT_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .ok_or_else(|| fail(USAGE, "no HOME: set ONLINEBANK_CLIENT_DIR"))?;
    Ok(base.join("onlinebank"))
}

fn session_path() -> Result<PathBuf, Failure> {
    Ok(config_dir()?.join("session.json"))
}

fn load_session() -> Result<Session, Failure> {
    let path = session_path()?;
    let text = std::fs::read_to_string(&path).map_err(|_| {
        fail(
            REFUSED,
            "not logged in: run `onlinebank client login --user ID`",
        )
    })?;
    serde_json::from_str(&text).map_err(|_| {
        fail(
            REFUSED,
            format!("{} is damaged: log in again", path.display()),
        )
    })
}

fn save_session(session: &Session) -> Result<(), Failure> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = config_dir()?;
    let io = |error: std::io::Error| fail(OTHER, format!("saving the session: {error}"));
    std::fs::create_dir_all(&dir).map_err(io)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    let path = dir.join("session.json");
    let temporary = dir.join("session.json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io)?;
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    let text =
        serde_json::to_string_pretty(session).map_err(|error| fail(OTHER, error.to_string()))?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temporary, &path).map_err(io)
}

fn forget_session() {
    if let Ok(path) = session_path() {
        let _ = std::fs::remove_file(path);
    }
}

/// The password: the first line of stdin with `--password-stdin`, else asked on the terminal.
fn password(args: &ClientArgs, prompt: &str) -> Result<String, Failure> {
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|error| fail(USAGE, format!("reading the password from stdin: {error}")))?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        if !std::io::stdin().is_terminal() {
            return Err(fail(
                USAGE,
                "no terminal to ask the password on: use --password-stdin",
            ));
        }
        rpassword::prompt_password(prompt)
            .map_err(|error| fail(USAGE, format!("reading the password: {error}")))?
    };
    if password.is_empty() {
        return Err(fail(USAGE, "the password is empty"));
    }
    Ok(password)
}

/// One HTTP answer: status, headers we use, JSON body.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

struct Http {
    client: reqwest::Client,
    url: String,
}

impl Http {
    fn new(url: &str) -> Result<Self, Failure> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|error| fail(OTHER, error.to_string()))?;
        Ok(Self {
            client,
            url: url.trim_end_matches('/').to_owned(),
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Answer, Failure> {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
                .json(&body);
        }
        let response = request.send().await.map_err(|error| {
            let what = if error.is_timeout() {
                "did not answer in time"
            } else if error.is_connect() {
                "cannot be reached"
            } else {
                "failed to answer"
            };
            fail(
                UNAVAILABLE,
                format!("the bank at {} {what}: try again shortly", self.url),
            )
        })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }
}

/// The failure an unsuccessful answer means.
fn refusal(answer: &Answer) -> Failure {
    let code = answer
        .body
        .pointer("/error/code")
        .and_then(Value::as_str)
        .unwrap_or("error");
    let message = answer
        .body
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("the bank refused");
    match answer.status {
        401 if code == "unauthorized" || code == "session_expired" => {
            forget_session();
            fail(REFUSED, "the session has ended: log in again")
        }
        502..=504 => {
            let wait = answer
                .retry_after
                .as_deref()
                .map(|seconds| format!(" (in {seconds} s)"))
                .unwrap_or_default();
            let unknown = if code == "outcome_unknown" {
                " It may have happened: check the balance before trying again."
            } else {
                ""
            };
            fail(
                UNAVAILABLE,
                format!("{message}: try again shortly{wait} [{code}].{unknown}"),
            )
        }
        500..=599 => fail(OTHER, format!("{message} [{code}]")),
        _ => fail(REFUSED, format!("{message} [{code}]")),
    }
}

fn won(amount: i64) -> String {
    let digits = amount.unsigned_abs().to_string();
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{}{grouped} won", if amount < 0 { "-" } else { "" })
}

fn int(value: &Value, key: &str) -> i64 {
    value.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

async fn execute(args: &ClientArgs) -> Result<(), Failure> {
    match &args.command {
        ClientCommand::Signup { user, name } => {
            let http = Http::new(&args.url)?;
            let password = password(args, "New password: ")?;
            let answer = http
                .send(
                    reqwest::Method::POST,
                    "/api/v1/customers",
                    None,
                    Some(json!({"userId": user, "name": name, "password": password})),
                )
                .await?;
            if answer.status != 201 {
                return Err(refusal(&answer));
            }
            if args.json {
                print_json(&answer.body);
            } else {
                println!("Signed up as {user}. Next: onlinebank client login --user {user}");
            }
            Ok(())
        }
        ClientCommand::Login { user } => {
            let http = Http::new(&args.url)?;
            let password = password(args, "Password: ")?;
            let answer = http
                .send(
                    reqwest::Method::POST,
                    "/api/v1/sessions",
                    None,
                    Some(json!({"userId": user, "password": password})),
                )
                .await?;
            if answer.status != 200 {
                return Err(refusal(&answer));
            }
            let session = Session {
                url: http.url.clone(),
                user_id: user.clone(),
                token: text(&answer.body, "token").to_owned(),
                expires_at: text(&answer.body, "expiresAt").to_owned(),
            };
            save_session(&session)?;
            if args.json {
                print_json(&json!({"userId": user, "expiresAt": session.expires_at}));
            } else {
                println!("Logged in as {user} until {}.", session.expires_at);
            }
            Ok(())
        }
        ClientCommand::Logout => {
            let Ok(session) = load_session() else {
                println!("Not logged in.");
                return Ok(());
            };
            let http = Http::new(&session.url)?;
            let answer = http
                .send(
                    reqwest::Method::DELETE,
                    "/api/v1/sessions/current",
                    Some(&session.token),
                    None,
                )
                .await;
            forget_session();
            match answer {
                Ok(answer) if answer.status == 204 || answer.status == 401 => {
                    println!("Logged out.");
                    Ok(())
                }
                Ok(answer) => Err(refusal(&answer)),
                Err(failure) => Err(fail(
                    failure.code,
                    format!(
                        "{} (the session was forgotten here; it ends at its expiry)",
                        failure.message
                    ),
                )),
            }
        }
        ClientCommand::Accounts => {
            let Some(body) = read(args, "/api/v1/accounts").await? else {
                return Ok(());
            };
            let items = items(&body);
            if items.is_empty() {
                println!("No accounts yet. Open one: onlinebank client open --amount 10000");
                return Ok(());
            }
            println!("{:<18} {:>22}  STATUS", "ACCOUNT", "BALANCE");
            for item in items {
                println!(
                    "{:<18} {:>22}  {}",
                    text(&item, "accountNo"),
                    won(int(&item, "balance")),
                    text(&item, "status")
                );
            }
            Ok(())
        }
        ClientCommand::Balance { account } => {
            if let Some(body) = read(args, &format!("/api/v1/accounts/{account}")).await? {
                println!(
                    "{}: {} ({})",
                    text(&body, "accountNo"),
                    won(int(&body, "balance")),
                    text(&body, "status")
                );
            }
            Ok(())
        }
        ClientCommand::History {
            account,
            limit,
            before,
        } => {
            let mut path = format!("/api/v1/accounts/{account}/transactions?limit={limit}");
            if let Some(before) = before {
                path.push_str("&before=");
                path.extend(url_escape(before));
            }
            let Some(body) = read(args, &path).await? else {
                return Ok(());
            };
            println!(
                "{:<25} {:<9} {:>20} {:>22}",
                "WHEN", "TYPE", "AMOUNT", "BALANCE AFTER"
            );
            for item in &items(&body) {
                println!(
                    "{:<25} {:<9} {:>20} {:>22}",
                    text(item, "occurredAt"),
                    text(item, "type"),
                    won(int(item, "amount")),
                    won(int(item, "balanceAfter"))
                );
            }
            if let Some(next) = body.get("next").and_then(Value::as_str) {
                println!("More: onlinebank client history {account} --before {next}");
            }
            Ok(())
        }
        ClientCommand::Open { account_no, amount } => {
            let mut body = json!({"type": "open"});
            if let Some(no) = account_no {
                body["accountNo"] = json!(no);
            }
            if let Some(amount) = amount {
                body["amount"] = json!(amount);
            }
            write(args, body).await
        }
        ClientCommand::Deposit { account, amount } => {
            write(
                args,
                json!({"type": "deposit", "accountNo": account, "amount": amount}),
            )
            .await
        }
        ClientCommand::Withdraw { account, amount } => {
            write(
                args,
                json!({"type": "withdraw", "accountNo": account, "amount": amount}),
            )
            .await
        }
        ClientCommand::Close { account } => {
            write(args, json!({"type": "close", "accountNo": account})).await
        }
    }
}

fn url_escape(value: &str) -> impl Iterator<Item = char> + '_ {
    value.chars().flat_map(|c| {
        let plain = c.is_ascii_alphanumeric() || "-._~".contains(c);
        let escaped: Vec<char> = if plain {
            vec![c]
        } else {
            let mut bytes = [0u8; 4];
            c.encode_utf8(&mut bytes)
                .bytes()
                .flat_map(|byte| format!("%{byte:02X}").chars().collect::<Vec<_>>())
                .collect()
        };
        escaped
    })
}

fn logged_in() -> Result<(Http, Session), Failure> {
    let session = load_session()?;
    Ok((Http::new(&session.url)?, session))
}

/// A read as the logged-in customer: the answer's JSON, or `None` when `--json` printed it
/// already.
async fn read(args: &ClientArgs, path: &str) -> Result<Option<Value>, Failure> {
    let (http, session) = logged_in()?;
    let answer = http
        .send(reqwest::Method::GET, path, Some(&session.token), None)
        .await?;
    if answer.status != 200 {
        return Err(refusal(&answer));
    }
    if args.json {
        print_json(&answer.body);
        return Ok(None);
    }
    Ok(Some(answer.body))
}

/// The `items` of a list answer.
fn items(body: &Value) -> Vec<Value> {
    body.get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// A step-up write: asks the password, sends it once, follows a pending answer briefly.
async fn write(args: &ClientArgs, mut body: Value) -> Result<(), Failure> {
    let (http, session) = logged_in()?;
    body["password"] = json!(password(args, "Password (to confirm): ")?);
    let answer = http
        .send(
            reqwest::Method::POST,
            "/api/v1/requests",
            Some(&session.token),
            Some(body),
        )
        .await?;
    let mut result = match answer.status {
        200 => answer.body,
        202 => {
            let id = text(&answer.body, "requestId").to_owned();
            follow(&http, &session, &id).await?
        }
        _ => return Err(refusal(&answer)),
    };
    if args.json {
        print_json(&result);
        return Ok(());
    }
    let kind = text(&result, "type").to_owned();
    let no = text(&result, "accountNo").to_owned();
    let balance = won(int(&result, "balance"));
    match kind.as_str() {
        "open" => println!("Opened account {no}. Balance: {balance}."),
        "close" => println!("Closed account {no}."),
        "deposit" => println!(
            "Deposited {} into {no}. Balance: {balance}.",
            won(int(&result, "amount"))
        ),
        "withdraw" => println!(
            "Withdrew {} from {no}. Balance: {balance}.",
            won(int(&result, "amount"))
        ),
        _ => {
            result["password"] = Value::Null;
            print_json(&result);
        }
    }
    Ok(())
}

/// Follows a pending request for up to ten seconds.
async fn follow(http: &Http, session: &Session, id: &str) -> Result<Value, Failure> {
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let answer = http
            .send(
                reqwest::Method::GET,
                &format!("/api/v1/requests/{id}"),
                Some(&session.token),
                None,
            )
            .await?;
        match answer.status {
            200 if text(&answer.body, "status") == "completed" => return Ok(answer.body),
            200 => {}
            _ => return Err(refusal(&answer)),
        }
    }
    Err(fail(
        UNAVAILABLE,
        format!(
            "request {id} is not finished yet: check with `onlinebank client accounts` before \
             trying again"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_as_won_with_thousands_separators() {
        assert_eq!(won(0), "0 won");
        assert_eq!(won(999), "999 won");
        assert_eq!(won(1_000), "1,000 won");
        assert_eq!(won(12_345_678), "12,345,678 won");
        assert_eq!(won(-1_000_000), "-1,000,000 won");
    }

    #[test]
    fn cursors_are_escaped_for_the_query() {
        assert_eq!(url_escape("a b/c=").collect::<String>(), "a%20b%2Fc%3D");
        assert_eq!(url_escape("v1.2_x-~").collect::<String>(), "v1.2_x-~");
    }
}

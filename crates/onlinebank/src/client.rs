//! `onlinebank client`: the customer's bank from a terminal, over the public API.
//!
//! The session token is kept in `<config dir>/onlinebank/session.json` (mode 0600;
//! `ONLINEBANK_CLIENT_DIR` names another directory). Passwords are read from the terminal
//! without echo, or from the first line of stdin with `--password-stdin`; they are never stored.
//! Writes carry a fresh Idempotency-Key; an answer still pending is followed for a few seconds.
//!
//! The directory must be private, and the client never makes it so by itself: one it creates is
//! created 0700 in one step, and an existing one that other users can reach (any group or other
//! permission bit) or that belongs to someone else is refused with exit 64, before any password is
//! asked. Changing its mode would be wrong both ways: a shared directory (`/tmp`, 1777) would be
//! taken away from everyone else, and a session file someone else could have planted there
//! (naming their own URL) would receive the next step-up password.
//!
//! No redirect is ever followed: every request carries a password (sign-up, login, step-up) or
//! the session token, and the bank's API answers in place, so a 3xx can only come from something
//! that is not the bank (a proxy, a mistyped `--url`, or someone after the password). The answer
//! is refused with exit 2 and a message naming the origin it pointed to. Exit 2 rather than 3:
//! trying again cannot help and would send the password to the same place again; the user has to
//! change the URL.
//!
//! Exit codes: 0 done; 2 refused by the bank (wrong password, insufficient funds, not logged in,
//! a redirect, ...); 3 the bank is unavailable or busy, or the outcome is not known yet: try
//! again; 64 usage errors (bad flags, no terminal for the password, a client directory open to
//! others); 1 anything else.

use crate::cli::{ClientArgs, ClientCommand};
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
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

/// Whether the client directory `dir` exists, refusing one that is not private to this user.
///
/// It is never chmodded: see the module docs for why.
fn check_private_dir(dir: &Path) -> Result<bool, Failure> {
    use std::os::unix::fs::MetadataExt;
    let metadata = match std::fs::metadata(dir) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(fail(OTHER, format!("reading {}: {error}", dir.display()))),
    };
    let shown = dir.display();
    let elsewhere = "or set ONLINEBANK_CLIENT_DIR to a private directory";
    if !metadata.is_dir() {
        return Err(fail(
            USAGE,
            format!("{shown} is not a directory: remove it {elsewhere}"),
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    if metadata.uid() != me {
        return Err(fail(
            USAGE,
            format!(
                "{shown} belongs to another user (uid {}): not keeping a session there; use a \
                 directory of your own {elsewhere}",
                metadata.uid()
            ),
        ));
    }
    let mode = metadata.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(fail(
            USAGE,
            format!(
                "{shown} is open to other users (mode {mode:o}): not keeping a session there; \
                 run `chmod 700 {shown}` {elsewhere}"
            ),
        ));
    }
    Ok(true)
}

/// The client directory, created 0700 in one step when it does not exist yet (its parents get
/// the usual mode), refused when it exists and is not private.
fn private_dir_created() -> Result<PathBuf, Failure> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = config_dir()?;
    if check_private_dir(&dir)? {
        return Ok(dir);
    }
    let io = |error: std::io::Error| fail(OTHER, format!("creating {}: {error}", dir.display()));
    if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(io(error)),
    }
    // Checked again: someone may have made it between the check and the creation.
    check_private_dir(&dir)?;
    Ok(dir)
}

/// The saved session; the directory is checked first, so a file planted in a directory others
/// can write is never used.
fn load_session() -> Result<Session, Failure> {
    let dir = config_dir()?;
    let not_logged_in = || {
        fail(
            REFUSED,
            "not logged in: run `onlinebank client login --user ID`",
        )
    };
    if !check_private_dir(&dir)? {
        return Err(not_logged_in());
    }
    let path = dir.join("session.json");
    let text = std::fs::read_to_string(&path).map_err(|_| not_logged_in())?;
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
    let dir = private_dir_created()?;
    let io = |error: std::io::Error| fail(OTHER, format!("saving the session: {error}"));
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
            .redirect(reqwest::redirect::Policy::none())
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
        if response.status().is_redirection() {
            return Err(self.redirect_refused(&response));
        }
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

    /// Why a redirect is not followed, naming the origin it points to (the scheme, host and
    /// port; its path and query are not the point and may be long).
    fn redirect_refused(&self, response: &reqwest::Response) -> Failure {
        let target = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|location| response.url().join(location).ok())
            .map(|target| target.origin().ascii_serialization());
        let Some(target) = target else {
            return fail(
                REFUSED,
                format!(
                    "the bank at {} answered a redirect ({}) with no usable location: not \
                     following it with your password or token",
                    self.url,
                    response.status().as_u16()
                ),
            );
        };
        fail(
            REFUSED,
            format!(
                "the bank at {} answered a redirect to {target} ({}): not following it with your \
                 password or token; if the bank has moved, give its new address with --url",
                self.url,
                response.status().as_u16()
            ),
        )
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
            // A directory that cannot keep the session is refused before the password is asked.
            config_dir().and_then(|dir| check_private_dir(&dir))?;
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
            let session = match load_session() {
                Ok(session) => session,
                Err(failure) if failure.code == REFUSED => {
                    println!("Not logged in.");
                    return Ok(());
                }
                Err(failure) => return Err(failure),
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
    fn only_a_directory_private_to_its_owner_keeps_the_session() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("conf");
        assert!(
            !check_private_dir(&dir).unwrap(),
            "a missing one is not there yet"
        );
        std::fs::create_dir(&dir).unwrap();
        for mode in [0o700, 0o500] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(check_private_dir(&dir).unwrap(), "mode {mode:o}");
        }
        for mode in [0o1777, 0o755, 0o710, 0o701] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            let failure = check_private_dir(&dir).unwrap_err();
            assert_eq!(failure.code, USAGE, "mode {mode:o}");
            assert!(failure.message.contains("chmod 700"), "{}", failure.message);
            let kept = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
            assert_eq!(kept, mode, "the mode is left as it was");
        }
        let file = root.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert_eq!(check_private_dir(&file).unwrap_err().code, USAGE);
    }

    #[test]
    fn cursors_are_escaped_for_the_query() {
        assert_eq!(url_escape("a b/c=").collect::<String>(), "a%20b%2Fc%3D");
        assert_eq!(url_escape("v1.2_x-~").collect::<String>(), "v1.2_x-~");
    }
}

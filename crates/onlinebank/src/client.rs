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
use onlinebank_client::wire::{
    self, Account, ErrorCode, Login, NewSession, Page, SignUp, Statement, Transaction, Write,
    WriteKind,
};
use onlinebank_client::{Client, Reply};
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Why a command did not succeed, with its exit code.
#[derive(Debug)]
pub struct CommandError {
    pub code: u8,
    pub message: String,
}

/// Exit codes (documented in `onlinebank client --help`).
pub const REFUSED: u8 = 2;
pub const UNAVAILABLE: u8 = 3;
pub const USAGE: u8 = 64;
const OTHER: u8 = 1;

fn fail(code: u8, message: impl Into<String>) -> CommandError {
    CommandError {
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

fn config_dir() -> Result<PathBuf, CommandError> {
    if let Some(dir) = std::env::var_os("ONLINEBANK_CLIENT_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .ok_or_else(|| fail(USAGE, "no HOME: set ONLINEBANK_CLIENT_DIR"))?;
    Ok(base.join("onlinebank"))
}

fn session_path() -> Result<PathBuf, CommandError> {
    Ok(config_dir()?.join("session.json"))
}

/// Whether the client directory `dir` exists, refusing one that is not private to this user.
///
/// It is never chmodded: see the module docs for why.
fn check_private_dir(dir: &Path) -> Result<bool, CommandError> {
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
fn private_dir_created() -> Result<PathBuf, CommandError> {
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
fn load_session() -> Result<Session, CommandError> {
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

fn save_session(session: &Session) -> Result<(), CommandError> {
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
fn password(args: &ClientArgs, prompt: &str) -> Result<String, CommandError> {
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

/// The bank at `url`: no redirect followed, 30 s per call.
fn bank(url: &str) -> Result<Client, CommandError> {
    Client::unredirected(url, Duration::from_secs(30))
        .map_err(|error| fail(OTHER, error.to_string()))
}

/// The answer `reply` as the bank gave it, or why there is none to act on: the bank was not
/// reached (try again), or it answered a redirect, which is never followed.
fn arrived(bank: &Client, reply: Reply) -> Result<Reply, CommandError> {
    let url = bank.base();
    match &reply {
        Reply::Transport(kind) => {
            let what = match *kind {
                "timeout" => "did not answer in time",
                "connect" => "cannot be reached",
                _ => "failed to answer",
            };
            Err(fail(
                UNAVAILABLE,
                format!("the bank at {url} {what}: try again shortly"),
            ))
        }
        Reply::Http {
            status: status @ 300..=399,
            location,
            ..
        } => Err(redirect_refused(url, *status, location.as_deref())),
        Reply::Http { .. } => Ok(reply),
    }
}

/// Why a redirect is not followed, naming the origin it points to (the scheme, host and port;
/// its path and query are not the point and may be long).
fn redirect_refused(url: &str, status: u16, location: Option<&str>) -> CommandError {
    let target = location
        .and_then(|location| reqwest::Url::parse(location).ok())
        .map(|target| target.origin().ascii_serialization());
    let Some(target) = target else {
        return fail(
            REFUSED,
            format!(
                "the bank at {url} answered a redirect ({status}) with no usable location: not \
                 following it with your password or token"
            ),
        );
    };
    fail(
        REFUSED,
        format!(
            "the bank at {url} answered a redirect to {target} ({status}): not following it with \
             your password or token; if the bank has moved, give its new address with --url"
        ),
    )
}

/// The failure an unsuccessful answer means.
fn refusal(reply: &Reply) -> CommandError {
    let error = reply.error();
    let code = error
        .as_ref()
        .map(|error| error.code.clone())
        .unwrap_or_else(|| ErrorCode::Other("error".to_owned()));
    let message = error
        .and_then(|error| error.message)
        .unwrap_or_else(|| "the bank refused".to_owned());
    let retry_after = match reply {
        Reply::Http { retry_after, .. } => retry_after.as_deref(),
        Reply::Transport(_) => None,
    };
    match (reply.status().unwrap_or(0), &code) {
        (401, ErrorCode::Unauthorized | ErrorCode::SessionExpired) => {
            forget_session();
            fail(REFUSED, "the session has ended: log in again")
        }
        (502..=504, _) => {
            let wait = retry_after
                .map(|seconds| format!(" (in {seconds} s)"))
                .unwrap_or_default();
            let unknown = if code == ErrorCode::OutcomeUnknown {
                " It may have happened: check the balance before trying again."
            } else {
                ""
            };
            fail(
                UNAVAILABLE,
                format!("{message}: try again shortly{wait} [{code}].{unknown}"),
            )
        }
        (500..=599, _) => fail(OTHER, format!("{message} [{code}]")),
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

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// A fresh Idempotency-Key: every call with a body carries one.
fn fresh_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn execute(args: &ClientArgs) -> Result<(), CommandError> {
    match &args.command {
        ClientCommand::Signup { user, name } => signup(args, user, name).await,
        ClientCommand::Login { user } => login(args, user).await,
        ClientCommand::Logout => logout().await,
        ClientCommand::Accounts => accounts(args).await,
        ClientCommand::Balance { account } => balance(args, account).await,
        ClientCommand::History {
            account,
            limit,
            before,
        } => history(args, account, *limit, before.as_deref()).await,
        ClientCommand::Statement {
            account,
            from,
            to,
            csv,
        } => statement(args, account, (from, to), *csv).await,
        ClientCommand::Open { account_no, amount } => {
            write(args, Write::open(account_no.as_deref(), *amount, "")).await
        }
        ClientCommand::Deposit { account, amount } => {
            write(args, Write::money(WriteKind::Deposit, account, *amount, "")).await
        }
        ClientCommand::Withdraw { account, amount } => {
            write(
                args,
                Write::money(WriteKind::Withdraw, account, *amount, ""),
            )
            .await
        }
        ClientCommand::Transfer { from, to, amount } => {
            write(args, Write::transfer(from, to, *amount, "")).await
        }
        ClientCommand::Close { account } => write(args, Write::close(account, "")).await,
    }
}

async fn signup(args: &ClientArgs, user: &str, name: &str) -> Result<(), CommandError> {
    let bank = bank(&args.url)?;
    let password = password(args, "New password: ")?;
    let body = SignUp {
        user_id: user,
        name,
        password: &password,
    };
    let reply = arrived(&bank, bank.sign_up(&body, Some(&fresh_key())).await)?;
    if reply.status() != Some(201) {
        return Err(refusal(&reply));
    }
    if args.json {
        print_json(&reply.json().unwrap_or_default());
    } else {
        println!("Signed up as {user}. Next: onlinebank client login --user {user}");
    }
    Ok(())
}

async fn login(args: &ClientArgs, user: &str) -> Result<(), CommandError> {
    // A directory that cannot keep the session is refused before the password is asked.
    config_dir().and_then(|dir| check_private_dir(&dir))?;
    let bank = bank(&args.url)?;
    let password = password(args, "Password: ")?;
    let body = Login {
        user_id: user,
        password: &password,
    };
    let reply = arrived(&bank, bank.login(&body, Some(&fresh_key())).await)?;
    if reply.status() != Some(200) {
        return Err(refusal(&reply));
    }
    let granted: NewSession = reply.decode();
    let session = Session {
        url: bank.base().to_owned(),
        user_id: user.to_owned(),
        token: granted.token,
        expires_at: granted.expires_at,
    };
    save_session(&session)?;
    if args.json {
        print_json(&json!({"userId": user, "expiresAt": session.expires_at}));
    } else {
        println!("Logged in as {user} until {}.", session.expires_at);
    }
    Ok(())
}

async fn logout() -> Result<(), CommandError> {
    let session = match load_session() {
        Ok(session) => session,
        Err(failure) if failure.code == REFUSED => {
            println!("Not logged in.");
            return Ok(());
        }
        Err(failure) => return Err(failure),
    };
    let bank = bank(&session.url)?;
    let reply = arrived(&bank, bank.logout(&session.token).await);
    forget_session();
    match reply {
        Ok(reply) if matches!(reply.status(), Some(204 | 401)) => {
            println!("Logged out.");
            Ok(())
        }
        Ok(reply) => Err(refusal(&reply)),
        Err(failure) => Err(fail(
            failure.code,
            format!(
                "{} (the session was forgotten here; it ends at its expiry)",
                failure.message
            ),
        )),
    }
}

async fn accounts(args: &ClientArgs) -> Result<(), CommandError> {
    let Some(page) = read::<Page<Account>>(args, Asked::Accounts).await? else {
        return Ok(());
    };
    if page.items.is_empty() {
        println!("No accounts yet. Open one: onlinebank client open --amount 10000");
        return Ok(());
    }
    println!("{:<18} {:>22}  STATUS", "ACCOUNT", "BALANCE");
    for item in page.items {
        println!(
            "{:<18} {:>22}  {}",
            item.account_no,
            won(item.balance.unwrap_or(0)),
            item.status
        );
    }
    Ok(())
}

async fn balance(args: &ClientArgs, no: &str) -> Result<(), CommandError> {
    if let Some(account) = read::<Account>(args, Asked::Account(no)).await? {
        println!(
            "{}: {} ({})",
            account.account_no,
            won(account.balance.unwrap_or(0)),
            account.status
        );
    }
    Ok(())
}

async fn history(
    args: &ClientArgs,
    no: &str,
    limit: u32,
    before: Option<&str>,
) -> Result<(), CommandError> {
    let asked = Asked::Transactions { no, limit, before };
    let Some(page) = read::<Page<Transaction>>(args, asked).await? else {
        return Ok(());
    };
    println!(
        "{:<25} {:<9} {:>20} {:>22}",
        "WHEN", "TYPE", "AMOUNT", "BALANCE AFTER"
    );
    for item in &page.items {
        println!(
            "{:<25} {:<9} {:>20} {:>22}",
            item.occurred_at.as_deref().unwrap_or(""),
            item.kind.as_deref().unwrap_or(""),
            won(item.amount.unwrap_or(0)),
            won(item.balance_after.unwrap_or(0))
        );
    }
    if let Some(next) = &page.next {
        println!("More: onlinebank client history {no} --before {next}");
    }
    Ok(())
}

async fn statement(
    args: &ClientArgs,
    no: &str,
    (from, to): (&str, &str),
    csv: bool,
) -> Result<(), CommandError> {
    if csv {
        let (bank, session) = logged_in()?;
        let reply = arrived(
            &bank,
            bank.statement(&session.token, no, from, to, true).await,
        )?;
        if reply.status() != Some(200) {
            return Err(refusal(&reply));
        }
        print!("{}", reply.text());
        return Ok(());
    }
    let Some(statement) = read::<Statement>(args, Asked::Statement { no, from, to }).await? else {
        return Ok(());
    };
    println!(
        "Statement of {} from {} to {} ({})",
        statement.account_no, statement.from, statement.to, statement.time_zone
    );
    println!(
        "{:<25} {:<15} {:>20} {:>22}",
        "WHEN", "WHAT", "AMOUNT", "BALANCE"
    );
    println!(
        "{:<25} {:<15} {:>20} {:>22}",
        "",
        "opening balance",
        "",
        won(statement.opening_balance)
    );
    for item in &statement.items {
        println!(
            "{:<25} {:<15} {:>20} {:>22}",
            item.occurred_at,
            item.kind,
            won(item.signed_amount),
            won(item.running_balance)
        );
    }
    println!(
        "{:<25} {:<15} {:>20} {:>22}",
        "",
        "closing balance",
        "",
        won(statement.closing_balance)
    );
    Ok(())
}

fn logged_in() -> Result<(Client, Session), CommandError> {
    let session = load_session()?;
    Ok((bank(&session.url)?, session))
}

/// The reads a logged-in customer makes.
enum Asked<'a> {
    Accounts,
    Account(&'a str),
    Transactions {
        no: &'a str,
        limit: u32,
        before: Option<&'a str>,
    },
    Statement {
        no: &'a str,
        from: &'a str,
        to: &'a str,
    },
}

/// A read as the logged-in customer: the answer as `T`, or `None` when `--json` printed it
/// already.
async fn read<T>(args: &ClientArgs, asked: Asked<'_>) -> Result<Option<T>, CommandError>
where
    T: Default + for<'de> serde::Deserialize<'de>,
{
    let (bank, session) = logged_in()?;
    let token = &session.token;
    let reply = match asked {
        Asked::Accounts => bank.accounts(token).await,
        Asked::Account(no) => bank.account(token, no).await,
        Asked::Transactions { no, limit, before } => {
            bank.transactions(token, no, limit, before).await
        }
        Asked::Statement { no, from, to } => bank.statement(token, no, from, to, false).await,
    };
    let reply = arrived(&bank, reply)?;
    if reply.status() != Some(200) {
        return Err(refusal(&reply));
    }
    if args.json {
        print_json(&reply.json().unwrap_or_default());
        return Ok(None);
    }
    Ok(Some(reply.decode()))
}

/// A step-up write (its password still to be asked): asks the password, sends it once, follows
/// a pending answer briefly.
async fn write(args: &ClientArgs, write: Write<'_>) -> Result<(), CommandError> {
    let (bank, session) = logged_in()?;
    let password = password(args, "Password (to confirm): ")?;
    let body = Write {
        password: &password,
        ..write
    };
    let key = args.idempotency_key.clone().unwrap_or_else(fresh_key);
    let reply = bank.write(&session.token, &key, &body).await;
    let mut result = sent(&bank, &session, reply)
        .await
        .map_err(|failure| with_retry_key(failure, &key))?;
    if args.json {
        print_json(&result);
        return Ok(());
    }
    let done: wire::Request = wire::decode(&result);
    let no = done.account_no.unwrap_or_default();
    let balance = won(done.balance.unwrap_or(0));
    let amount = won(done.amount.unwrap_or(0));
    match done.kind.as_deref().and_then(WriteKind::parse) {
        Some(WriteKind::Open) => println!("Opened account {no}. Balance: {balance}."),
        Some(WriteKind::Close) => println!("Closed account {no}."),
        Some(WriteKind::Deposit) => println!("Deposited {amount} into {no}. Balance: {balance}."),
        Some(WriteKind::Withdraw) => println!("Withdrew {amount} from {no}. Balance: {balance}."),
        Some(WriteKind::Transfer) => println!(
            "Transferred {amount} from {no} to {}. Balance: {balance}.",
            done.to_account_no.unwrap_or_default()
        ),
        None => {
            result["password"] = Value::Null;
            print_json(&result);
        }
    }
    Ok(())
}

/// A write's answer, a pending one followed to its end.
async fn sent(bank: &Client, session: &Session, reply: Reply) -> Result<Value, CommandError> {
    let reply = arrived(bank, reply)?;
    match reply.status() {
        Some(200) => Ok(reply.json().unwrap_or_default()),
        Some(202) => {
            let pending: wire::Request = reply.decode();
            let id = pending.request_id.unwrap_or_default();
            follow(bank, session, &id).await
        }
        _ => Err(refusal(&reply)),
    }
}

/// A failure after which the write may or may not have been applied says how to retry it
/// without applying it twice: with the same Idempotency-Key.
fn with_retry_key(failure: CommandError, key: &str) -> CommandError {
    if failure.code != UNAVAILABLE {
        return failure;
    }
    let message = format!(
        "{}; to retry without applying it twice: --idempotency-key {key}",
        failure.message
    );
    fail(failure.code, message)
}

/// Follows a pending request for up to ten seconds.
async fn follow(bank: &Client, session: &Session, id: &str) -> Result<Value, CommandError> {
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let reply = arrived(bank, bank.request(&session.token, id).await)?;
        let request: wire::Request = reply.decode();
        match reply.status() {
            Some(200) if request.is_completed() => return Ok(reply.json().unwrap_or_default()),
            Some(200) => {}
            _ => return Err(refusal(&reply)),
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

    /// Only a failure that leaves the outcome unknown names the key to retry with.
    #[test]
    fn an_unknown_outcome_names_the_key_to_retry_with() {
        let unknown = with_retry_key(fail(UNAVAILABLE, "the bank did not answer in time"), "k-1");
        assert!(
            unknown.message.ends_with("--idempotency-key k-1"),
            "{}",
            unknown.message
        );
        let refused = with_retry_key(fail(REFUSED, "insufficient funds"), "k-1");
        assert_eq!(refused.message, "insufficient funds");
    }

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
}

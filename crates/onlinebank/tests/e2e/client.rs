//! `onlinebank client` against a started bank: every command, its output, its exit code (0 done,
//! 2 refused, 3 unavailable, 64 usage), and the session file it keeps (0600, no password).
//! Against small fake servers: a redirect to another origin is never followed with the password
//! or the token, and a client directory open to others is refused, never chmodded.

use crate::support::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `onlinebank client ARGS` with `password` on stdin (and `--password-stdin` when given).
async fn client(dir: &Path, args: &[&str], password: Option<&str>) -> Ran {
    let mut command = tokio::process::Command::new(BIN);
    command
        .arg("client")
        .args(args)
        .env("ONLINEBANK_CLIENT_DIR", dir)
        .env_remove("ONLINEBANK_CLIENT_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if password.is_some() {
        command.arg("--password-stdin");
    }
    let mut child = command.spawn().expect("spawning the client");
    if let Some(mut stdin) = child.stdin.take() {
        if let Some(password) = password {
            let _ = stdin.write_all(format!("{password}\n").as_bytes()).await;
        }
    }
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the client finished in time")
        .expect("the client ran");
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[track_caller]
fn expect(ran: &Ran, code: i32, saying: &str) {
    assert_eq!(
        ran.code,
        Some(code),
        "exit code; stdout {:?} stderr {:?}",
        ran.stdout,
        ran.stderr
    );
    let both = format!("{}{}", ran.stdout, ran.stderr);
    assert!(both.contains(saying), "expected {saying:?} in {both:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_does_a_customers_whole_day_with_clear_exit_codes() {
    let bank = TestBank::start().await;
    let config = tempfile::tempdir().unwrap();
    let dir = config.path().join("conf");
    let url = bank.api.base.clone();
    let pw = "correct horse 7";

    let ran = client(
        &dir,
        &[
            "--url",
            &url,
            "signup",
            "--user",
            "kim@client",
            "--name",
            "Kim",
        ],
        Some(pw),
    )
    .await;
    expect(&ran, 0, "Signed up as kim@client");
    let ran = client(
        &dir,
        &[
            "--url",
            &url,
            "signup",
            "--user",
            "kim@client",
            "--name",
            "Kim",
        ],
        Some(pw),
    )
    .await;
    expect(&ran, 2, "customer_exists");
    let ran = client(
        &dir,
        &["--url", &url, "login", "--user", "kim@client"],
        Some("wrong-one"),
    )
    .await;
    expect(&ran, 2, "invalid_credentials");
    let ran = client(&dir, &["accounts"], None).await;
    expect(&ran, 2, "not logged in");
    let ran = client(
        &dir,
        &["--url", &url, "login", "--user", "kim@client"],
        Some(pw),
    )
    .await;
    expect(&ran, 0, "Logged in as kim@client");

    // The session file: private, and never the password.
    let session = dir.join("session.json");
    let mode = std::fs::metadata(&session).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "session file mode {mode:o}");
    let dir_mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "config dir mode {dir_mode:o}");
    assert!(!std::fs::read_to_string(&session).unwrap().contains(pw));

    let ran = client(&dir, &["accounts"], None).await;
    expect(&ran, 0, "No accounts yet");
    let ran = client(
        &dir,
        &["open", "--account-no", "4001", "--amount", "1000"],
        Some(pw),
    )
    .await;
    expect(&ran, 0, "Opened account 4001. Balance: 1,000 won.");
    let ran = client(&dir, &["deposit", "4001", "2500"], Some(pw)).await;
    expect(
        &ran,
        0,
        "Deposited 2,500 won into 4001. Balance: 3,500 won.",
    );
    let ran = client(&dir, &["deposit", "4001", "10"], Some("not-my-password")).await;
    expect(&ran, 2, "step_up_failed");
    let ran = client(&dir, &["withdraw", "4001", "999999"], Some(pw)).await;
    expect(&ran, 2, "insufficient_funds");
    let ran = client(&dir, &["withdraw", "4001", "500"], Some(pw)).await;
    expect(&ran, 0, "Withdrew 500 won from 4001. Balance: 3,000 won.");
    let ran = client(&dir, &["close", "4001"], Some(pw)).await;
    expect(&ran, 2, "balance_not_zero");

    // Reads come from the read model: it catches up within moments.
    let balance = eventually("the read model shows 3,000 won", SETTLE, || {
        let dir = dir.clone();
        async move {
            let ran = client(&dir, &["balance", "4001", "--json"], None).await;
            let json: Value = serde_json::from_str(&ran.stdout).map_err(|e| e.to_string())?;
            if json["balance"] == 3_000 {
                Ok(json)
            } else {
                Err(json.to_string())
            }
        }
    })
    .await;
    assert_eq!(balance["status"], "open");
    let ran = client(&dir, &["accounts"], None).await;
    expect(&ran, 0, "3,000 won");

    // History a page at a time: the cursor printed at the end fetches the next page.
    let ran = client(&dir, &["history", "4001", "--limit", "2"], None).await;
    expect(&ran, 0, "More: onlinebank client history 4001 --before ");
    assert!(ran.stdout.contains("withdraw"), "{}", ran.stdout);
    let cursor = ran
        .stdout
        .lines()
        .find_map(|line| line.split("--before ").nth(1))
        .unwrap()
        .trim()
        .to_owned();
    let ran = client(
        &dir,
        &[
            "history", "4001", "--limit", "2", "--before", &cursor, "--json",
        ],
        None,
    )
    .await;
    expect(&ran, 0, "");
    let page: Value = serde_json::from_str(&ran.stdout).unwrap();
    let types: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item["type"].as_str())
        .collect();
    assert_eq!(types, ["open"], "the oldest page: {page}");

    // The statement around today (the bank's days are Seoul's, UTC+9): its table, and the CSV.
    let seoul = chrono::Utc::now() + chrono::Duration::hours(9);
    let day = |offset: i64| {
        (seoul + chrono::Duration::days(offset))
            .format("%Y-%m-%d")
            .to_string()
    };
    let (from, to) = (day(-1), day(1));
    let ran = client(
        &dir,
        &["statement", "4001", "--from", &from, "--to", &to],
        None,
    )
    .await;
    expect(&ran, 0, "closing balance");
    assert!(ran.stdout.contains("3,000 won"), "{}", ran.stdout);
    assert!(ran.stdout.contains("-500 won"), "{}", ran.stdout);
    let ran = client(
        &dir,
        &["statement", "4001", "--from", &from, "--to", &to, "--csv"],
        None,
    )
    .await;
    expect(&ran, 0, "closing balance,,3000,");
    assert!(ran.stdout.starts_with('\u{feff}'), "{}", ran.stdout);
    let ran = client(
        &dir,
        &["statement", "4001", "--from", &to, "--to", &from],
        None,
    )
    .await;
    expect(&ran, 2, "invalid_request");

    // A write run again with the Idempotency-Key of the first run is applied once: the second
    // run answers the first one's result.
    let keyed = [
        "--idempotency-key",
        "kim-withdraw-1",
        "withdraw",
        "4001",
        "3000",
    ];
    let ran = client(&dir, &keyed, Some(pw)).await;
    expect(&ran, 0, "Withdrew 3,000 won from 4001. Balance: 0 won.");
    let ran = client(&dir, &keyed, Some(pw)).await;
    expect(&ran, 0, "Withdrew 3,000 won from 4001. Balance: 0 won.");
    let ran = client(&dir, &["close", "4001"], Some(pw)).await;
    expect(&ran, 0, "Closed account 4001.");

    // Usage errors are told apart from the bank's refusals.
    let ran = client(&dir, &["deposit", "4001", "lots"], Some(pw)).await;
    expect(&ran, 64, "invalid value");
    let ran = client(&dir, &["deposit", "4001", "5"], None).await;
    expect(&ran, 64, "--password-stdin");

    let ran = client(&dir, &["logout"], None).await;
    expect(&ran, 0, "Logged out.");
    assert!(!session.exists(), "the session file is removed at logout");
    let ran = client(&dir, &["accounts"], None).await;
    expect(&ran, 2, "not logged in");

    // A bank that cannot be reached: 3, try again.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let ran = client(
        &dir,
        &["--url", &nowhere, "login", "--user", "kim@client"],
        Some(pw),
    )
    .await;
    expect(&ran, 3, "cannot be reached");
}

/// A fake server on 127.0.0.1 answering every request with one canned answer, and keeping
/// every request it received (head and body, as text).
struct Canned {
    /// `http://127.0.0.1:PORT`
    url: String,
    /// The requests received, in order.
    received: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Canned {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Canned {
    async fn start(status_line: &str, headers: &[String], body: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut answer = format!("HTTP/1.1 {status_line}\r\n");
        for header in headers {
            answer.push_str(&format!("{header}\r\n"));
        }
        answer.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ));
        let received = Arc::new(Mutex::new(Vec::new()));
        let kept = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let request = read_request(&mut stream).await;
                kept.lock().unwrap().push(request);
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
        Self {
            url,
            received,
            task,
        }
    }

    fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}

/// One HTTP/1.1 request: the head, then as many body bytes as its content-length says (what
/// arrives within five seconds).
async fn read_request(stream: &mut tokio::net::TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                return text;
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(read)) if read > 0 => bytes.extend_from_slice(&chunk[..read]),
            _ => return String::from_utf8_lossy(&bytes).into_owned(),
        }
    }
}

/// A new directory under `root`, private as the client wants it (0700).
fn private_dir(root: &Path, name: &str) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// A session file as `login` leaves it, pointing at `url`.
fn plant_session(dir: &Path, url: &str, token: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let session = serde_json::json!({
        "url": url, "userId": "kim@client", "token": token, "expiresAt": "2099-01-01T00:00:00Z"
    });
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join("session.json"))
        .unwrap();
    std::io::Write::write_all(&mut file, session.to_string().as_bytes()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_never_follows_a_redirect_to_another_origin_with_the_password_or_the_token() {
    let elsewhere = Canned::start("404 Not Found", &[], "{}").await;
    let redirect = |to: &str| vec![format!("location: {to}")];
    let bank = Canned::start(
        "307 Temporary Redirect",
        &redirect(&format!("{}/api/v1/sessions", elsewhere.url)),
        "",
    )
    .await;
    let pw = "never-elsewhere-7";
    let root = tempfile::tempdir().unwrap();
    let config = private_dir(root.path(), "conf");

    // Login: the password goes to the bank it was given, and no further.
    let ran = client(
        &config,
        &["--url", &bank.url, "login", "--user", "kim@client"],
        Some(pw),
    )
    .await;
    expect(
        &ran,
        2,
        &format!("answered a redirect to {}", elsewhere.url),
    );
    expect(&ran, 2, "not following it with your password or token");
    assert_eq!(
        bank.received().len(),
        1,
        "asked once: {:?}",
        bank.received()
    );
    assert!(
        elsewhere.received().is_empty(),
        "the other origin received {:?}",
        elsewhere.received()
    );
    assert!(!config.join("session.json").exists());

    // A step-up (deposit): neither the token nor the password leaves the bank's origin.
    let token = "token-never-elsewhere";
    plant_session(&config, &bank.url, token);
    let ran = client(&config, &["deposit", "4001", "10"], Some(pw)).await;
    expect(
        &ran,
        2,
        &format!("answered a redirect to {}", elsewhere.url),
    );
    let asked = bank.received();
    assert_eq!(asked.len(), 2, "one more request: {asked:?}");
    assert!(
        asked[1].contains(token) && asked[1].contains(pw),
        "{}",
        asked[1]
    );
    assert!(
        elsewhere.received().is_empty(),
        "the other origin received {:?}",
        elsewhere.received()
    );

    // A 308 to another scheme is refused the same way, and a read's token stays home too.
    let https = "https://127.0.0.1:9/api/v1/accounts";
    let moved = Canned::start("308 Permanent Redirect", &redirect(https), "").await;
    let other = private_dir(root.path(), "other");
    plant_session(&other, &moved.url, token);
    let ran = client(&other, &["accounts"], None).await;
    expect(&ran, 2, "answered a redirect to https://127.0.0.1:9 (308)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_refuses_a_directory_open_to_others_and_leaves_its_mode_alone() {
    let login_ok = r#"{"token":"t0k3n","expiresAt":"2099-01-01T00:00:00Z"}"#;
    let bank = Canned::start("200 OK", &[], login_ok).await;
    let pw = "correct horse 7";
    let root = tempfile::tempdir().unwrap();
    let mode_of = |dir: &Path| std::fs::metadata(dir).unwrap().permissions().mode() & 0o7777;

    // A shared directory (like /tmp): login refuses it before asking for the password.
    let shared = root.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let ran = client(
        &shared,
        &["--url", &bank.url, "login", "--user", "kim@client"],
        Some(pw),
    )
    .await;
    expect(&ran, 64, "is open to other users (mode 1777)");
    expect(&ran, 64, &format!("chmod 700 {}", shared.display()));
    assert_eq!(
        mode_of(&shared),
        0o1777,
        "the directory's mode is unchanged"
    );
    assert!(!shared.join("session.json").exists());
    assert!(bank.received().is_empty(), "{:?}", bank.received());

    // Readable by others, with a session someone could have left there: not used either (its
    // URL would receive the step-up password).
    let readable = root.path().join("readable");
    std::fs::create_dir(&readable).unwrap();
    plant_session(&readable, &bank.url, "planted");
    std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ran = client(&readable, &["deposit", "4001", "10"], Some(pw)).await;
    expect(&ran, 64, "is open to other users (mode 755)");
    assert_eq!(
        mode_of(&readable),
        0o755,
        "the directory's mode is unchanged"
    );
    assert!(bank.received().is_empty(), "{:?}", bank.received());
    let ran = client(&readable, &["logout"], None).await;
    expect(&ran, 64, "is open to other users");
    assert!(
        readable.join("session.json").exists(),
        "logout left it alone"
    );

    // Made private by its owner, the same directory is used as it is.
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o700)).unwrap();
    let ran = client(
        &shared,
        &["--url", &bank.url, "login", "--user", "kim@client"],
        Some(pw),
    )
    .await;
    expect(&ran, 0, "Logged in as kim@client");
    assert_eq!(mode_of(&shared), 0o700);
    let session = shared.join("session.json");
    assert_eq!(mode_of(&session), 0o600, "the session file is private");
}

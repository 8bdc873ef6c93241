//! `onlinebank client` against a started bank: every command, its output, its exit code (0 done,
//! 2 refused, 3 unavailable, 64 usage), and the session file it keeps (0600, no password).

use crate::support::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

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

    let ran = client(&dir, &["withdraw", "4001", "3000"], Some(pw)).await;
    expect(&ran, 0, "Balance: 0 won.");
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

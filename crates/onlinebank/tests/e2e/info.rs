//! What runs, visible: `onlinebank --version` names the commit the binary was built from, the
//! admin listener's `GET /info` says which build runs which roles since when, and `/metrics`
//! carries the same facts as the `onlinebank_build_info` gauge.

use crate::support::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// `git args...` in this crate's checkout; `None` without git or a checkout, or when it fails.
fn git_output(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// What `git args...` prints, if it prints anything.
fn git(args: &[&str]) -> Option<String> {
    git_output(args).filter(|text| !text.is_empty())
}

/// The commit `onlinebank --version` names: `onlinebank 0.1.0 (commit C, sqlite S, profile)`.
fn version_commit() -> String {
    let output = Command::new(BIN)
        .arg("--version")
        .output()
        .expect("--version");
    assert!(output.status.success(), "--version failed: {output:?}");
    let line = String::from_utf8(output.stdout).expect("utf-8");
    println!("{}", line.trim());
    let rest = line
        .trim()
        .strip_prefix(&format!(
            "onlinebank {} (commit ",
            env!("CARGO_PKG_VERSION")
        ))
        .unwrap_or_else(|| panic!("--version does not name version and commit: {line}"));
    let (commit, rest) = rest.split_once(", sqlite ").expect("the sqlite version");
    assert!(rest.starts_with("3."), "sqlite {rest}");
    commit.to_owned()
}

/// True when HEAD moved after the build script read it (another commit landed while the tests
/// were built or ran): the HEAD reflog was written after the script's output. Cargo keeps that
/// output beside the script's `OUT_DIR`, and rewrites it only when it reruns the script: a
/// script that failed to rerun after a commit leaves it older than the reflog.
fn head_moved_since_the_build() -> bool {
    let modified = |path: PathBuf| {
        std::fs::metadata(path)
            .and_then(|meta| meta.modified())
            .ok()
    };
    let reflog = git(&["rev-parse", "--git-path", "logs/HEAD"])
        .map(|path| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path));
    let script_output = PathBuf::from(env!("OUT_DIR")).with_file_name("output");
    match (reflog.and_then(modified), modified(script_output)) {
        (Some(moved), Some(read)) => moved > read,
        _ => false,
    }
}

#[test]
fn version_names_the_commit_the_binary_was_built_from() {
    let commit = version_commit();
    let Some(head) = git(&["rev-parse", "HEAD"]) else {
        assert_eq!(commit, "unknown", "built outside a checkout");
        return;
    };
    if commit == head {
        return;
    }
    // Only a commit made after the build may leave the binary behind HEAD, and then it names
    // an ancestor of HEAD.
    assert!(
        head_moved_since_the_build(),
        "--version names {commit}, HEAD is {head}, and HEAD did not move since the build"
    );
    assert!(
        git_output(&["merge-base", "--is-ancestor", &commit, &head]).is_some(),
        "--version names {commit}, which is not in HEAD's history"
    );
}

/// `GET /info` on an admin listener: checks every field's type and value.
async fn assert_info(admin: &str, roles: &[&str], started_after_ms: i64) -> Value {
    let (status, info) = Api::new(admin).get("/info", None).await;
    assert_eq!(status, 200, "GET /info: {info}");
    let mut keys: Vec<&str> = info
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "commit",
            "profile",
            "roles",
            "sqlite",
            "startedAt",
            "version"
        ]
    );
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["commit"].as_str(), Some(version_commit().as_str()));
    assert!(
        info["sqlite"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{info}"
    );
    assert!(
        ["debug", "release"].contains(&info["profile"].as_str().unwrap_or_default()),
        "{info}"
    );
    let listed: Vec<&str> = info["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .map(|role| role.as_str().expect("a role name"))
        .collect();
    assert_eq!(listed, roles);
    // The process started between the test's clock reading and now.
    let started = info["startedAt"].as_str().expect("startedAt");
    let ago = onlinebank_core::time::seconds_since(started).expect("RFC 3339");
    let window = (onlinebank_core::time::now_ms() - started_after_ms) as f64 / 1000.0;
    assert!(
        (0.0..=window + 0.001).contains(&ago),
        "started {ago}s ago, the test began {window}s ago"
    );
    info
}

/// `/metrics` on an admin listener has `onlinebank_build_info 1` labelled as `/info` says.
async fn assert_build_info_gauge(admin: &str, info: &Value) {
    let reply = Api::new(admin).get_req("/metrics").send().await;
    assert_eq!(reply.status, 200);
    let roles: Vec<&str> = info["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let roles = roles.join(",");
    let text = |key: &str| info[key].as_str().expect("a string").to_owned();
    let (version, commit, sqlite, profile) = (
        text("version"),
        text("commit"),
        text("sqlite"),
        text("profile"),
    );
    let labels = [
        ("version", version.as_str()),
        ("commit", commit.as_str()),
        ("sqlite", sqlite.as_str()),
        ("profile", profile.as_str()),
        ("roles", roles.as_str()),
    ];
    let series: Vec<&str> = reply
        .text
        .lines()
        .filter(|line| line.starts_with("onlinebank_build_info"))
        .collect();
    assert_eq!(
        metric_value(&reply.text, "onlinebank_build_info", &labels),
        Some(1.0),
        "onlinebank_build_info with {labels:?} in {series:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_of_up_names_the_build_and_all_six_roles_and_so_does_build_info() {
    let before = onlinebank_core::time::now_ms();
    let bank = TestBank::start().await;
    let admin = bank.ops.admin["gateway"].clone();
    let info = assert_info(&admin, &ROLES, before).await;
    println!("GET /info: {info}");
    let again = assert_info(&admin, &ROLES, before).await;
    assert_eq!(again["startedAt"], info["startedAt"], "startedAt moved");
    assert_build_info_gauge(&admin, &info).await;
    let (status, body) = bank.get("/info", None).await;
    assert_eq!(status, 404, "/info on the public port: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_of_serve_account_lists_only_account() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().display().to_string();
    let args = strings(&[
        "serve",
        "account",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir,
    ]);
    let before = onlinebank_core::time::now_ms();
    let (mut url, mut admin) = (None, None);
    let _account = Proc::start("account", args, &[], |line| {
        started_urls(line, "account", &mut url, &mut admin)
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    let admin = admin.expect("the admin listener");
    let info = assert_info(&admin, &["account"], before).await;
    assert_build_info_gauge(&admin, &info).await;
}

//! Upgrades that can be rolled back (issue 24, section 5): a data dir of the release before this
//! one (tests/fixtures/data-dir-0.1.0, made by the sqlx-migrated binary of commit 6af278e: the
//! customer old@release.kr with account 110-894068058, 12,000 deposited and 2,000 withdrawn)
//! serves under this binary; a newer release's migration marked compatible is run on, one that
//! is not is refused with both releases named and nothing changed; a migration this binary
//! applies to an existing database is preceded by a copy in pre-upgrade-<release>/.

use crate::support::*;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/data-dir-0.1.0");
const USER: &str = "old@release.kr";
const PASSWORD: &str = "old-release-pw1";
const ACCOUNT: &str = "110-894068058";
/// This binary's release, as the refusal names it.
const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// A fresh copy of the fixture's data dir (private, as the bank wants it).
fn fixture_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(FIXTURE).unwrap() {
        let entry = entry.unwrap();
        let copy = dir.path().join(entry.file_name());
        std::fs::copy(entry.path(), &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    dir
}

/// Records in `db` a migration `version` of a newer release `9.0.0` that added a nullable
/// column, marked as one the previous release runs on or not.
fn add_newer_migration(db: &Path, version: i64, previous_release_runs: bool) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let marks: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM pragma_table_info('_sqlx_migrations')
             WHERE name = 'compatible_with_previous'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    if marks == 0 {
        conn.execute_batch(
            "ALTER TABLE _sqlx_migrations ADD COLUMN applied_by TEXT;
             ALTER TABLE _sqlx_migrations ADD COLUMN compatible_with_previous BOOLEAN",
        )
        .unwrap();
    }
    conn.execute_batch("ALTER TABLE accounts ADD COLUMN nickname TEXT")
        .unwrap();
    conn.execute(
        "INSERT INTO _sqlx_migrations
            (version, description, success, checksum, execution_time, applied_by,
             compatible_with_previous)
         VALUES (?1, 'nicknames', TRUE, x'00', 0, '9.0.0', ?2)",
        rusqlite::params![version, previous_release_runs],
    )
    .unwrap();
}

/// Every file of `dir` with its bytes' digest.
fn digests(dir: &Path) -> BTreeMap<String, String> {
    use sha2::Digest;
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let bytes = std::fs::read(entry.path()).unwrap_or_default();
            let digest: String = sha2::Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            (entry.file_name().to_string_lossy().into_owned(), digest)
        })
        .collect()
}

/// The old customer logs in and finds the account as the old release left it; a deposit works.
async fn old_customer_is_served(bank: &TestBank) {
    let token = bank.token(USER, PASSWORD).await;
    let (status, body) = bank.balance(&token, ACCOUNT).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["balance"], 10_000, "{body}");
    let items = bank.all_transactions(&token, ACCOUNT).await;
    assert!(
        items.len() >= 2,
        "the old deposit and withdrawal: {items:?}"
    );
    let (status, body) = bank.deposit(&token, PASSWORD, ACCOUNT, 500).await;
    assert_eq!(status, 200, "{body}");
    bank.wait_balance(&token, ACCOUNT, 10_500).await;
}

/// Points `dir`'s recorded outbox files (absolute paths, as the release before kept them) at
/// the same files in `elsewhere`: the data dir was moved or restored while the old one remains.
fn record_outboxes_in(dir: &Path, elsewhere: &Path) {
    let conn = rusqlite::Connection::open(dir.join("bus.db")).unwrap();
    let elsewhere = elsewhere.display().to_string();
    let changed = conn
        .execute(
            "UPDATE outbox_sources SET path = ?1 || '/' || replace(path, rtrim(path, replace(path, '/', '')), '')",
            [&elsewhere],
        )
        .unwrap();
    assert_eq!(changed, 2, "the fixture records both publishers' outboxes");
}

#[tokio::test]
async fn the_data_dir_of_the_release_before_serves_under_this_one() {
    let old_place = fixture_copy();
    let dir = fixture_copy();
    record_outboxes_in(dir.path(), old_place.path());
    let bank = TestBank::start_in(dir, &[], &[]).await;
    old_customer_is_served(&bank).await;
    // Since the fixture's release, account's and request's databases gained columns (the daily
    // limit, transfers), history's ledger and mypage's read model the transfers' items: those
    // four, and only those, were copied first (auth's and the bus's are as they were).
    let copies = std::fs::read_dir(bank.data_dir().join(format!("pre-upgrade-{RELEASE}")))
        .expect("a copy of what this release migrated")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".db"))
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(
        copies.iter().map(String::as_str).collect::<Vec<_>>(),
        ["account.db", "history.db", "mypage.db", "request.db"]
    );
}

#[tokio::test]
async fn a_newer_release_s_compatible_migration_is_run_on() {
    let dir = fixture_copy();
    add_newer_migration(&dir.path().join("account.db"), 9001, true);
    let bank = TestBank::start_in(dir, &[], &[]).await;
    old_customer_is_served(&bank).await;
    assert!(
        bank.log().contains("marked compatible"),
        "the log says it runs on a newer schema"
    );
}

#[tokio::test]
async fn a_newer_release_s_incompatible_migration_is_refused_naming_both_releases_changing_nothing()
{
    let dir = fixture_copy();
    add_newer_migration(&dir.path().join("account.db"), 9001, false);
    let before = digests(dir.path());
    let data_dir = dir.path().display().to_string();
    let run = tokio::process::Command::new(BIN)
        .args(["up", "--data-dir", &data_dir, "--port", "0"])
        .args(["--admin-listen", "127.0.0.1:0"])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("up refuses at once")
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "refused: {said}");
    for needle in [
        "account.db",
        "migration 9001",
        "onlinebank 9.0.0",
        &format!("onlinebank {RELEASE}"),
    ] {
        assert!(said.contains(needle), "names {needle}: {said}");
    }
    assert_eq!(digests(dir.path()), before, "not one file changed");
}

#[tokio::test]
async fn a_migration_applied_to_an_existing_database_is_preceded_by_a_copy() {
    let dir = fixture_copy();
    let auth = dir.path().join("auth.db");
    {
        // auth.db as a release before migration 2 left it.
        let conn = rusqlite::Connection::open(&auth).unwrap();
        conn.execute_batch(
            "DROP TABLE lockouts; DROP TABLE revoked_sessions;
             DELETE FROM _sqlx_migrations WHERE version = 2",
        )
        .unwrap();
    }
    let bank = TestBank::start_in(dir, &[], &[]).await;
    old_customer_is_served(&bank).await;
    let copy = bank
        .data_dir()
        .join(format!("pre-upgrade-{RELEASE}"))
        .join("auth.db");
    let conn = rusqlite::Connection::open(&copy).unwrap();
    let versions: Vec<i64> = conn
        .prepare("SELECT version FROM _sqlx_migrations ORDER BY version")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(versions, [1], "the copy is auth.db before the upgrade");
    assert!(bank.log().contains("before migrating"), "the log says so");
    assert!(
        !bank
            .data_dir()
            .join(format!("pre-upgrade-{RELEASE}"))
            .join("bus.db")
            .exists(),
        "only the databases it changes"
    );
}

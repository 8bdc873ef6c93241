//! TLS to a managed PostgreSQL and a managed Kafka, for real: a PostgreSQL started by this test
//! with `ssl=on` and TCP allowed only over TLS, its certificate signed by a CA the test makes with
//! openssl; the test broker's SASL_SSL listener (dev/kafka.sh makes its keystore with keytool;
//! `ONLINEBANK_TEST_KAFKA_TLS` is its bus URL, which .ci/run sets). A bank on both moves money;
//! a wrong CA, no TLS or a wrong SASL password keeps a role live but not ready, the reason logged.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const DEV_POSTGRES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dev/postgres.sh");

/// Runs openssl, failing the test with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| panic!("running openssl (is it installed?): {error}"));
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA (`NAME.pem`, `NAME.key`) made with openssl in `dir`.
#[rustfmt::skip]
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    let (pem, key) = (format!("{name}.pem"), format!("{name}.key"));
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", &key, "-out", &pem, "-days", "2", "-subj", &format!("/CN={name}"),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    dir.join(pem)
}

/// A server certificate for 127.0.0.1 signed by the CA `ca` (`server.crt`, `server.key`).
#[rustfmt::skip]
fn make_server_cert(dir: &Path, ca: &str) -> (PathBuf, PathBuf) {
    openssl(
        dir,
        &[
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509", "-req", "-in", "server.csr", "-CA", &format!("{ca}.pem"), "-CAkey",
            &format!("{ca}.key"), "-CAcreateserial", "-out", "server.crt", "-days", "2",
            "-extfile", "server.ext",
        ],
    );
    (dir.join("server.crt"), dir.join("server.key"))
}

/// A PostgreSQL cluster of this test's own (dev/postgres.sh in a temporary state dir), with
/// `ssl=on` and `hostssl` only; stopped and wiped on drop.
struct TlsPostgres {
    state: PathBuf,
    port: u16,
}

impl TlsPostgres {
    fn start(dir: &Path, cert: &Path, key: &Path) -> TlsPostgres {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .unwrap();
        let postgres = TlsPostgres {
            state: dir.join("state"),
            port,
        };
        let output = postgres
            .script()
            .args(["start", &port.to_string()])
            .env("PG_TLS_CERT", cert)
            .env("PG_TLS_KEY", key)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "dev/postgres.sh start: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        postgres
    }

    fn script(&self) -> Command {
        let mut command = Command::new("bash");
        command
            .arg(DEV_POSTGRES)
            .env("ONLINEBANK_DEV_DIR", &self.state);
        command
    }

    fn url(&self, query: &str) -> String {
        format!(
            "postgres://onlinebank@127.0.0.1:{}/postgres{query}",
            self.port
        )
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = self.script().arg("reset").output();
    }
}

/// A temporary directory the PostgreSQL server's user can enter (when the tests run as root,
/// dev/postgres.sh runs the server as `postgres`).
fn shared_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The test broker's SASL_SSL bus URL, in a namespace of its own.
fn kafka_tls_url(namespace: &str) -> String {
    let url = std::env::var("ONLINEBANK_TEST_KAFKA_TLS").unwrap_or_else(|_| {
        panic!(
            "the TLS tests need the test broker's SASL_SSL listener: run ./.ci/run, or \
             dev/kafka.sh start and export ONLINEBANK_TEST_KAFKA_TLS=\"$(dev/kafka.sh tls-url)\""
        )
    });
    let unique = format!(
        "{namespace}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    format!("{url}&namespace={unique}")
}

/// `url` with one query setting replaced.
fn with_setting(url: &str, name: &str, value: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key == name => format!("{name}={value}"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

/// Starts `serve ROLE` with `args`; returns once it listens (before its role is built).
async fn serve_one(role: &str, dir: &Path, args: &[&str]) -> (Proc, String) {
    let mut all: Vec<String> = ["serve", role, "--listen", "127.0.0.1:0", "--data-dir"]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();
    all.push(dir.display().to_string());
    all.extend(args.iter().map(|arg| (*arg).to_owned()));
    let prefix = format!("onlinebank {role} starting on ");
    let mut url = None;
    let proc = Proc::start(role, all, &[], |line| {
        url = line.strip_prefix(&prefix).map(str::to_owned);
        url.is_some()
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    (proc, url.unwrap_or_default())
}

/// The role stays live and not ready until its log says `reason`; then it is still not ready.
async fn refused_with(proc: &Proc, url: &str, reason: &str) {
    let api = Api::new(url);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let (live, _) = api.get("/health/live", None).await;
        assert_eq!(live, 200, "{} must stay live", proc.name);
        let (ready, body) = api.get("/health/ready", None).await;
        assert_eq!(
            ready,
            503,
            "{} must not be ready: {body}\n{}",
            proc.name,
            proc.log_tail(4000)
        );
        if proc.log().contains(reason) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never logged {reason:?}:\n{}",
            proc.name,
            proc.log_tail(8000)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL's binaries, openssl and the test broker's SASL_SSL listener (ONLINEBANK_TEST_KAFKA_TLS): ./.ci/run runs it"]
async fn a_bank_on_tls_postgres_and_sasl_ssl_kafka_moves_money_and_wrong_trust_is_refused() {
    let dir = shared_tempdir();
    make_ca(dir.path(), "ca");
    let other_ca = make_ca(dir.path(), "other-ca");
    let (cert, key) = make_server_cert(dir.path(), "ca");
    let postgres = TlsPostgres::start(dir.path(), &cert, &key);
    let ca = dir.path().join("ca.pem").display().to_string();
    let bus = kafka_tls_url("tls");

    // The whole bank: every database on TLS PostgreSQL (verify-full against the test's CA),
    // every event through the SASL_SSL listener.
    let database = postgres.url("");
    let cluster = Cluster::start_with(&[
        "--database",
        &database,
        "--database-ca-file",
        &ca,
        "--bus",
        &bus,
    ])
    .await;
    let alice = cluster.customer("alice@tls").await;
    let opened = cluster
        .open(&alice.token, &alice.pw, Some("7001"), Some(1_000))
        .await;
    assert_eq!(expect_ok(&opened, 200)["balance"], 1_000);
    let reply = cluster.deposit(&alice.token, &alice.pw, "7001", 250).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 1_250);
    let account = cluster.wait_balance(&alice.token, "7001", 1_250).await;
    assert_eq!(
        account["transactions"].as_array().map(Vec::len),
        Some(2),
        "history and mypage got the events over SASL_SSL: {account}"
    );
    let password = bus
        .split('&')
        .find_map(|pair| pair.strip_prefix("sasl.password="))
        .unwrap_or("unset")
        .to_owned();
    for name in cluster.names() {
        assert!(
            !cluster[&name].log().contains(&password),
            "{name} logged the SASL password"
        );
    }

    // What a misconfigured deployment sees: live, never ready, the reason in the log.
    let wrong_ca = other_ca.display().to_string();
    let ca_dir = tempfile::tempdir().unwrap();
    let (pg_wrong_ca, pg_wrong_ca_url) = serve_one(
        "account",
        ca_dir.path(),
        &["--database", &database, "--database-ca-file", &wrong_ca],
    )
    .await;
    let plain_dir = tempfile::tempdir().unwrap();
    let no_tls = postgres.url("?sslmode=disable");
    let (pg_plain, pg_plain_url) =
        serve_one("account", plain_dir.path(), &["--database", &no_tls]).await;
    let kafka_ca_dir = tempfile::tempdir().unwrap();
    let kafka_wrong_ca = with_setting(&bus, "ssl.ca.location", &wrong_ca);
    let (kafka_ca, kafka_ca_url) =
        serve_one("history", kafka_ca_dir.path(), &["--bus", &kafka_wrong_ca]).await;
    let kafka_pw_dir = tempfile::tempdir().unwrap();
    let kafka_wrong_pw = with_setting(&bus, "sasl.password", "not-the-password");
    let (kafka_pw, kafka_pw_url) =
        serve_one("history", kafka_pw_dir.path(), &["--bus", &kafka_wrong_pw]).await;

    refused_with(&pg_wrong_ca, &pg_wrong_ca_url, "UnknownIssuer").await;
    assert!(
        pg_wrong_ca.log().contains("--database-ca-file"),
        "the hint names the setting"
    );
    refused_with(&pg_plain, &pg_plain_url, "pg_hba.conf rejects connection").await;
    refused_with(&kafka_ca, &kafka_ca_url, "certificate verify failed").await;
    refused_with(&kafka_pw, &kafka_pw_url, "Invalid username or password").await;
    for proc in [&kafka_ca, &kafka_pw] {
        assert!(
            !proc.log().contains(&password),
            "{} logged the SASL password",
            proc.name
        );
    }

    // The bank on the right settings was never disturbed.
    let reply = cluster.withdraw(&alice.token, &alice.pw, "7001", 50).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 1_200);
}

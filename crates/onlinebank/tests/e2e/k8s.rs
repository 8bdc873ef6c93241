//! The bank on the real local Kubernetes of `dev/k8s.sh` (issue 13's proofs): deploy and the
//! walk-through through the gateway's NodePort, a zero-downtime rolling update under siege, the
//! HPA scaling out and in, self-healing of a hung process, a ConfigMap change and the all-in-one
//! PersistentVolumeClaim, and random pod deletions with every store agreeing afterwards.
//!
//! Each test deploys its own namespace (a generated overlay over `deploy/k8s/overlays/e2e` or
//! `all-in-one`, in a temp dir: namespace, database, Kafka namespace, NodePort), and deletes it at
//! the end. They need the cluster up, the image loaded, and PostgreSQL and Kafka listening on the
//! node address: `./.ci/run` does all that (phase "kubernetes"); by hand:
//!
//! ```sh
//! dev/k8s.sh up && dev/k8s.sh load onlinebank:local
//! PG_POD_ADDRESS=$(dev/k8s.sh node-ip) dev/postgres.sh start
//! KAFKA_POD_ADDRESS=$(dev/k8s.sh node-ip) dev/kafka.sh start
//! cargo test -p onlinebank --test e2e k8s:: -- --include-ignored --test-threads=1 --nocapture
//! ```

use crate::support::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

const SECRET: &str = "e2e-only-token-secret-do-not-use-elsewhere";
const WAIT: Duration = Duration::from_secs(240);
/// The original Spring system's deposit, as the issue's siege line sends it.
const SIEGE_BODY: &str = r#"{"accountNo":"1111","requestId":"01","requestName":"Deposit","amountOfMoney":10000,"userId":"1@sk.com","userName":"sam","userPassword":"1234"}"#;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// The built kubectl and the cluster's kubeconfig (what `dev/k8s.sh kubectl` uses).
/// What `dev/k8s.sh <subcommand>` prints (trimmed); fails the test unless it succeeds.
fn k8s_sh(subcommand: &str) -> String {
    let out = std::process::Command::new(root().join("dev/k8s.sh"))
        .arg(subcommand)
        .output()
        .unwrap_or_else(|e| panic!("dev/k8s.sh {subcommand}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success() && !text.is_empty(),
        "dev/k8s.sh {subcommand}: {out:?}"
    );
    text
}

fn kube() -> &'static (PathBuf, String) {
    static KUBE: OnceLock<(PathBuf, String)> = OnceLock::new();
    KUBE.get_or_init(|| {
        let kubeconfig = k8s_sh("kubeconfig");
        let cache = std::env::var("ONLINEBANK_K8S_CACHE").unwrap_or_else(|_| {
            format!("{}/.cache/onlinebank/k8s", std::env::var("HOME").unwrap())
        });
        let kubectl = PathBuf::from(cache).join("v1.34.4/bin/kubectl");
        assert!(
            kubectl.exists() && Path::new(&kubeconfig).exists(),
            "no local Kubernetes ({kubectl:?}, {kubeconfig:?}): run ./.ci/run, or dev/k8s.sh up"
        );
        (kubectl, kubeconfig)
    })
}

fn kubectl_cmd(args: &[&str]) -> tokio::process::Command {
    let (kubectl, kubeconfig) = kube();
    let mut cmd = tokio::process::Command::new(kubectl);
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
    cmd.kill_on_drop(true).stdin(Stdio::null());
    cmd
}

/// Runs a command to its end within `timeout`: its stdout, or why not.
async fn run(mut cmd: tokio::process::Command, timeout: Duration) -> Result<String, String> {
    let what = format!("{:?}", cmd.as_std());
    let out = tokio::time::timeout(timeout, cmd.output())
        .await
        .map_err(|_| format!("{what}: no end within {timeout:?}"))?
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{what}: {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

async fn kubectl(args: &[&str]) -> Result<String, String> {
    run(kubectl_cmd(args), Duration::from_secs(300)).await
}

async fn k(args: &[&str]) -> String {
    kubectl(args).await.unwrap_or_else(|e| panic!("{e}"))
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

// ---------------------------------------------------------------------------------------------
// one deployment of the bank in a namespace of its own

struct Bank {
    ns: String,
    dir: tempfile::TempDir,
    api: Api,
    base: &'static str,
    database: String,
    bus: String,
    port: u16,
    patches: String,
}

impl Bank {
    /// The e2e overlay (one Deployment per role) in namespace `obk-NAME` with NodePort `port`;
    /// `patches` are more kustomize patches (YAML list items).
    async fn e2e(name: &str, port: u16, patches: &str) -> Bank {
        Bank::deploy("e2e", name, port, patches).await
    }

    async fn deploy(base: &'static str, name: &str, port: u16, patches: &str) -> Bank {
        let ns = format!("obk-{name}");
        let database = format!("obk_{}", name.replace('-', "_"));
        let t0 = Instant::now();
        // Leftovers of an interrupted run (they would hold the NodePorts): every obk-* namespace.
        let leftovers = k(&["get", "namespaces", "-o", "name"]).await;
        for leftover in leftovers
            .split_whitespace()
            .filter(|n| n.starts_with("namespace/obk-"))
        {
            eprintln!("[{ns}] deleting the leftover {leftover}");
            let _ = kubectl(&["delete", leftover, "--timeout=180s"]).await;
        }
        if base == "e2e" {
            let mut createdb = tokio::process::Command::new(root().join("dev/postgres.sh"));
            createdb.args(["createdb", &database]);
            run(createdb, Duration::from_secs(60))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let copy = std::process::Command::new("cp")
            .arg("-r")
            .arg(root().join("deploy/k8s"))
            .arg(dir.path())
            .status()
            .expect("cp");
        assert!(copy.success());
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let bank = Bank {
            ns,
            dir,
            api: Api::new(&format!("http://127.0.0.1:{port}")),
            base,
            database,
            bus: format!("kafka://kafka:9092?partitions=4&namespace={name}{stamp}"),
            port,
            patches: patches.to_owned(),
        };
        bank.apply(&[]).await;
        eprintln!(
            "[{}] deployed and rolled out in {}",
            bank.ns,
            secs(t0.elapsed())
        );
        bank
    }

    /// Writes the generated overlay with these ConfigMap values, applies it, waits for every
    /// Deployment's rollout and for the gateway to answer on the NodePort.
    async fn apply(&self, config: &[(&str, &str)]) {
        let overlay = self.dir.path().join("k8s/overlays/generated");
        std::fs::create_dir_all(&overlay).unwrap();
        let mut text = format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {}\n\
             resources:\n  - ../{}\n",
            self.ns, self.base
        );
        if self.base == "e2e" {
            text += &format!(
                "secretGenerator:\n  - name: onlinebank-secrets\n    behavior: replace\n    literals:\n\
                 \x20     - ONLINEBANK_TOKEN_SECRET={SECRET}\n\
                 \x20     - ONLINEBANK_DATABASE=postgres://onlinebank@postgres:5432/{}\n\
                 \x20     - ONLINEBANK_BUS={}\n",
                self.database, self.bus
            );
        } else {
            text += "images:\n  - name: onlinebank\n    newName: localhost/onlinebank\n    newTag: local\n";
        }
        if !config.is_empty() {
            text += "configMapGenerator:\n  - name: onlinebank-config\n    behavior: merge\n    literals:\n";
            for (key, value) in config {
                text += &format!("      - {key}={value}\n");
            }
        }
        text += "patches:\n";
        if self.base == "e2e" {
            text += &format!(
                "  - target: {{kind: Service, name: onlinebank-gateway}}\n    patch: |-\n\
                 \x20     - op: replace\n        path: /spec/ports/0/nodePort\n        value: {}\n",
                self.port
            );
        } else {
            text += &format!(
                "  - target: {{kind: Deployment}}\n    patch: |-\n\
                 \x20     - op: replace\n        path: /spec/template/spec/containers/0/imagePullPolicy\n        value: Never\n\
                 \x20 - target: {{kind: Service, name: onlinebank}}\n    patch: |-\n\
                 \x20     - op: add\n        path: /spec/type\n        value: NodePort\n\
                 \x20     - op: add\n        path: /spec/ports/0/nodePort\n        value: {}\n",
                self.port
            );
        }
        text += &self.patches;
        std::fs::write(overlay.join("kustomization.yaml"), &text).unwrap();
        if self.base != "e2e" {
            // The all-in-one overlay has no Namespace object.
            let _ = kubectl(&["create", "namespace", &self.ns]).await;
        }
        k(&["apply", "-k", overlay.to_str().unwrap()]).await;
        self.rollout().await;
        let api = self.api.clone();
        eventually("the gateway to answer on its NodePort", WAIT, || async {
            match api.get_req("/health/ready").try_send().await {
                Ok(reply) if reply.status == 200 => Ok(()),
                Ok(reply) => Err(format!("{} {}", reply.status, reply.text)),
                Err(e) => Err(e),
            }
        })
        .await;
        // Ready pods are not yet a routed Service (kube-proxy programs a Service's endpoints up to
        // its minimum sync period, 1 s, later; meanwhile a call to it is refused and the caller
        // answers 503 service_busy). Every Service must answer at its cluster address, through
        // the same rules the pods' calls take.
        self.wait_routed().await;
        // A login with an unknown user crosses gateway -> auth and is refused with 401.
        eventually("the gateway to reach auth", WAIT, || async {
            let login = api
                .post_req("/api/v1/sessions")
                .json(json!({"userId": "nobody@example.com", "password": "not-a-password"}))
                .try_send()
                .await;
            match login {
                Ok(reply) if reply.status == 401 => Ok(()),
                Ok(reply) => Err(format!("{} {}", reply.status, reply.text)),
                Err(e) => Err(e),
            }
        })
        .await;
    }

    /// Waits until every Service of the namespace answers HTTP at its cluster address.
    async fn wait_routed(&self) {
        let listing = k(&[
            "-n",
            &self.ns,
            "get",
            "services",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.spec.clusterIP}:{.spec.ports[0].port}{\"\\n\"}{end}",
        ])
        .await;
        // The bank's own Services (PostgreSQL's and Kafka's only name the node's address).
        let addresses = listing
            .split_whitespace()
            .filter_map(|line| {
                line.strip_prefix("onlinebank")
                    .and_then(|l| l.split_once('='))
            })
            .map(|(_, address)| address);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        for address in addresses {
            let url = format!("http://{address}/health/live");
            eventually(&format!("{} {url} to be routed", self.ns), WAIT, || async {
                // Any answer means the connection reached a pod.
                http.get(&url)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
            .await;
        }
    }

    /// The namespace's warning events (failed probes, kills), for a finding's report.
    async fn warnings(&self) -> String {
        kubectl(&[
            "-n",
            &self.ns,
            "get",
            "events",
            "--field-selector",
            "type=Warning",
            "-o",
            "custom-columns=TIME:.lastTimestamp,OBJECT:.involvedObject.name,REASON:.reason,COUNT:.count,MESSAGE:.message",
        ])
        .await
        .unwrap_or_else(|error| error)
    }

    async fn deployments(&self) -> Vec<String> {
        k(&["-n", &self.ns, "get", "deployments", "-o", "name"])
            .await
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    async fn rollout(&self) {
        for deployment in self.deployments().await {
            self.rollout_one(&deployment).await;
        }
    }

    async fn rollout_one(&self, deployment: &str) {
        let result = kubectl(&[
            "-n",
            &self.ns,
            "rollout",
            "status",
            deployment,
            "--timeout=240s",
        ])
        .await;
        if let Err(e) = result {
            let pods = kubectl(&["-n", &self.ns, "get", "pods", "-o", "wide"]).await;
            let events =
                kubectl(&["-n", &self.ns, "get", "events", "--sort-by=.lastTimestamp"]).await;
            // A node's taints and pressure conditions keep every pod Pending: show them too.
            let node = kubectl(&[
                "get",
                "nodes",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} taints={.spec.taints} \
                 conditions={range .status.conditions[*]}{.type}={.status} {end}{\"\\n\"}{end}",
            ])
            .await;
            panic!("{e}\n{pods:?}\n{events:?}\n{node:?}");
        }
    }

    /// `kubectl get pods -l app.kubernetes.io/component=ROLE`: name, ready, restarts, deleting.
    async fn pods(&self, role: &str) -> Vec<(String, bool, i64, bool)> {
        let out = k(&[
            "-n",
            &self.ns,
            "get",
            "pods",
            "-l",
            &format!("app.kubernetes.io/component={role}"),
            "-o",
            "json",
        ])
        .await;
        let list: Value = serde_json::from_str(&out).unwrap();
        items(&list)
            .iter()
            .map(|pod| {
                let statuses = pod["status"]["containerStatuses"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                (
                    pod["metadata"]["name"].as_str().unwrap().to_owned(),
                    statuses.first().is_some_and(|s| s["ready"] == true),
                    statuses
                        .first()
                        .and_then(|s| s["restartCount"].as_i64())
                        .unwrap_or(0),
                    !pod["metadata"]["deletionTimestamp"].is_null(),
                )
            })
            .collect()
    }

    /// A port-forward to `target` (svc/NAME or pod/NAME) port `port`: its local URL.
    async fn forward(&self, target: &str, port: u16) -> Forward {
        let mut child = kubectl_cmd(&[
            "-n",
            &self.ns,
            "port-forward",
            "--address",
            "127.0.0.1",
            target,
            &format!(":{port}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl port-forward");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("port-forward {target}: nothing within 30 s"))
            .unwrap()
            .unwrap_or_default();
        // "Forwarding from 127.0.0.1:41234 -> 8080"
        let local = line
            .split_whitespace()
            .nth(2)
            .unwrap_or_else(|| panic!("port-forward {target}: {line}"))
            .to_owned();
        // Keep draining its output (a full pipe would stall it).
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Forward {
            url: format!("http://{local}"),
            _child: child,
        }
    }

    /// Every store's view through port-forwards to the roles' Services (the internal endpoints).
    async fn snapshot(&self) -> Result<Snapshot, String> {
        let mut urls = HashMap::new();
        let mut forwards = Vec::new();
        for role in ["account", "history", "mypage", "request"] {
            let forward = self.forward(&format!("svc/onlinebank-{role}"), 8080).await;
            urls.insert(role.to_owned(), forward.url.clone());
            forwards.push(forward);
        }
        let ops = Ops::new(urls, HashMap::new(), internal_token_of(SECRET))
            .with_timeout(Duration::from_secs(20));
        let snapshot = ops.snapshot().await;
        drop(forwards);
        snapshot
    }
}

impl Drop for Bank {
    fn drop(&mut self) {
        let (kubectl, kubeconfig) = kube();
        let t0 = Instant::now();
        let status = std::process::Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args([
                "delete",
                "namespace",
                &self.ns,
                "--ignore-not-found",
                "--timeout=180s",
            ])
            .stdout(Stdio::null())
            .status();
        eprintln!(
            "[{}] namespace deleted ({status:?}) in {}",
            self.ns,
            secs(t0.elapsed())
        );
    }
}

struct Forward {
    url: String,
    _child: tokio::process::Child,
}

/// The internal header's value for a bank whose token secret is `secret`.
fn internal_token_of(secret: &str) -> String {
    onlinebank_core::secret::MasterSecret::from_bytes(secret.as_bytes().to_vec())
        .unwrap()
        .derive("onlinebank internal v1")
        .0
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// siege

#[derive(Debug, Default)]
struct Siege {
    transactions: u64,
    availability: f64,
    elapsed: f64,
    rate: f64,
    successful: u64,
    failed: u64,
    concurrency: f64,
    longest: f64,
    /// Answers by status line ("HTTP/1.1 201"), and socket-level failures ("error"), from the
    /// verbose hit lines.
    codes: BTreeMap<String, u64>,
    text: String,
}

/// Runs siege for its `seconds`; its stdout and stderr. siege 4.0.x can hang past its time limit
/// at the end of a run (JoeDog/siege issues 4, 66 and 178); one still running 60 s after its
/// time is stopped as a terminal's Ctrl-C stops it (SIGINT: it lifts the siege and prints its
/// summary), said in a FINDING line, and only one that ignores that too fails the test.
async fn run_siege(mut cmd: tokio::process::Command, seconds: u32) -> (String, String) {
    let mut child = cmd
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("siege (/usr/bin/siege)");
    let drain = |pipe: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>| {
        tokio::spawn(async move {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut pipe, &mut text).await;
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let limit = Duration::from_secs(u64::from(seconds) + 60);
    if tokio::time::timeout(limit, child.wait()).await.is_err() {
        eprintln!("FINDING siege still ran 60 s after its -t{seconds}S: stopped with SIGINT");
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
        }
        tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("siege ran past its time and ignored SIGINT")
            .expect("siege's exit");
    }
    (stdout.await.unwrap(), stderr.await.unwrap())
}

/// siege -cUSERS -tSECONDSS with the original's deposit, against `port`; its summary.
async fn siege(port: u16, users: u32, seconds: u32) -> Siege {
    let rc = std::env::temp_dir().join(format!("onlinebank-siegerc-{}", std::process::id()));
    // siege 4.0.7's shipped defaults (HTTP/1.1, `connection = close`: a connection per
    // transaction, as the original's run had), with every hit's status line counted, no giving up
    // after 1024 failures and no log file. ONLINEBANK_K8S_SIEGE_CONNECTION=keep-alive reuses
    // connections instead (see docs/deploy.md, "Proven here", for what that shows).
    let connection =
        std::env::var("ONLINEBANK_K8S_SIEGE_CONNECTION").unwrap_or_else(|_| "close".into());
    std::fs::write(
        &rc,
        format!(
            "verbose = true\nquiet = false\nshow-logfile = false\nlogging = false\n\
             protocol = HTTP/1.1\nconnection = {connection}\ntimeout = 30\n\
             failures = 1000000\nlimit = 255\nchunked = true\n"
        ),
    )
    .unwrap();
    let url = format!("http://{}:{port}/requests POST {SIEGE_BODY}", siege_host());
    let mut cmd = tokio::process::Command::new("siege");
    cmd.arg("-R")
        .arg(&rc)
        .arg(format!("-c{users}"))
        .arg(format!("-t{seconds}S"))
        .args(["--content-type", "application/json", &url]);
    let (stdout, stderr) = run_siege(cmd, seconds).await;
    let _ = std::fs::remove_file(&rc);
    let mut codes = BTreeMap::new();
    let stdout = strip_ansi(&stdout);
    let stderr = strip_ansi(&stderr);
    for line in stdout.lines().chain(stderr.lines()) {
        let mut words = line.split_whitespace();
        if let (Some(protocol), Some(code)) = (words.next(), words.next()) {
            if protocol.starts_with("HTTP/") {
                *codes.entry(format!("{protocol} {code}")).or_insert(0) += 1;
            }
        }
    }
    for line in stderr.lines() {
        if line.contains("[error]") || line.contains("[alert]") {
            *codes.entry(line.chars().take(60).collect()).or_insert(0) += 1;
        }
    }
    // The summary (siege prints it on stderr); the hit lines are only counted.
    let text = stderr
        .lines()
        .filter(|line| {
            !line.contains("[error]") && !line.contains("[alert]") && !line.starts_with("HTTP/")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let field = |name: &str| -> f64 {
        text.lines()
            .rev()
            .find_map(|line| {
                let line = line.trim().trim_matches(|c| c == '"' || c == ',');
                let rest = line.strip_prefix(name)?;
                let rest =
                    rest.trim_start_matches(|c: char| c == ':' || c == '"' || c.is_whitespace());
                rest.split_whitespace()
                    .next()?
                    .trim_end_matches(['%', ','])
                    .parse()
                    .ok()
            })
            .unwrap_or(f64::NAN)
    };
    Siege {
        transactions: field("Transactions") as u64,
        availability: field("Availability"),
        elapsed: field("Elapsed time"),
        rate: field("Transaction rate"),
        successful: field("Successful transactions") as u64,
        failed: field("Failed transactions") as u64,
        concurrency: field("Concurrency"),
        longest: field("Longest transaction"),
        codes,
        text,
    }
}

/// Waits until account `no`'s balance holds every deposit siege saw acknowledged (10000 each)
/// and is stable: (the balance, how many unacknowledged deposits it also holds). Those can only
/// be the ones in flight when siege stopped (at most one per user) or that failed on the socket;
/// `small` 1-won deposits of a trickle may come on top.
async fn siege_balance(api: &Api, token: &str, opening: i64, s: &Siege, small: u64) -> (i64, i64) {
    let acknowledged = opening + 10_000 * i64::try_from(s.successful).unwrap();
    let small = i64::try_from(small).unwrap();
    // siege's failures: its 5xx answers plus the socket-level ones.
    let answered_5xx: u64 = s
        .codes
        .iter()
        .filter(|(line, _)| line.starts_with("HTTP/") && line.contains(" 5"))
        .map(|(_, n)| *n)
        .sum();
    let socket_failures = i64::try_from(s.failed.saturating_sub(answered_5xx)).unwrap();
    let most = 100 + socket_failures.max(0);
    let last = std::cell::Cell::new(None);
    eventually(
        "1111's balance to settle",
        Duration::from_secs(90),
        || async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let balance = balance_of(api, token, "1111").await;
            let extra = balance - acknowledged;
            let (siege, trickle) = (extra.div_euclid(10_000), extra.rem_euclid(10_000));
            let stable = last.get() == Some(balance);
            last.set(Some(balance));
            if extra >= 0 && siege <= most && trickle <= small && stable {
                Ok((balance, siege))
            } else {
                Err(format!(
                    "balance {balance}: acknowledged {acknowledged}, + {siege} x 10000 (at most \
                 {most}) + {trickle} (at most {small}), stable {stable}"
                ))
            }
        },
    )
    .await
}

/// Where siege reaches the gateway's NodePort: the node's address on the cluster's bridge
/// (`dev/k8s.sh node-ip`, this machine's own bridge; ONLINEBANK_K8S_SIEGE_HOST overrides it).
/// Through 127.0.0.1 instead, half of the runs had 1-3 of ~15,000-21,000 connections refused or
/// without a route within seconds of a gateway pod joining or leaving the Service, none of which
/// reached a process (the loopback path is rewritten from 127.0.0.1 to the node's address by
/// kube-proxy's masquerade); on the bridge address no run had any (docs/deploy.md, "Proven here").
fn siege_host() -> String {
    if let Ok(host) = std::env::var("ONLINEBANK_K8S_SIEGE_HOST") {
        return host;
    }
    k8s_sh("node-ip")
}

/// Text without its colour escapes (siege colours its hit and error lines).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The original's demo customer 1@sk.com / sam / 1234 with account 1111 (as `up --demo` has
/// it; the roles' Deployments have no --demo, so they are made through the API): its token and
/// the opening balance.
async fn demo_customer(api: &Api) -> (String, i64) {
    let (status, body) = api.register("1@sk.com", "sam", "1234").await;
    assert!(
        status == 201 || status == 409,
        "register 1@sk.com: {status} {body}"
    );
    let token = api.token("1@sk.com", "1234").await;
    let (status, body) = api.open(&token, "1234", Some("1111"), Some(0)).await;
    assert!(status == 200 || status == 409, "open 1111: {status} {body}");
    // The balance is the read side's (mypage, fed by events): it shows the account shortly after.
    let opening = read_side_balance(api, &token, "1111", None).await;
    (token, opening)
}

/// Waits until the read side (mypage, fed by events, so shortly after a write's answer) shows
/// `no`, with the balance `want` if given, and returns its balance.
async fn read_side_balance(api: &Api, token: &str, no: &str, want: Option<i64>) -> i64 {
    let what = match want {
        Some(want) => format!("{no} at {want} on the read side"),
        None => format!("{no} on the read side"),
    };
    eventually(&what, WAIT, || async {
        match api.balance(token, no).await {
            (200, body) => match body["balance"].as_i64() {
                Some(balance) if want.is_none_or(|want| want == balance) => Ok(balance),
                _ => Err(format!("200 {body}")),
            },
            (status, body) => Err(format!("{status} {body}")),
        }
    })
    .await
}

async fn balance_of(api: &Api, token: &str, no: &str) -> i64 {
    let (status, body) = api.balance(token, no).await;
    assert_eq!(status, 200, "balance {no}: {body}");
    body["balance"]
        .as_i64()
        .unwrap_or_else(|| panic!("balance without balance: {body}"))
}

/// How long a client keeps following "busy, try again shortly" for one operation before it
/// counts the operation as failed.
const RETRY_BUDGET: Duration = Duration::from_secs(15);

/// What a client stream saw: operations that succeeded, first answers that were errors (then
/// retried as docs/api.md says: the same Idempotency-Key, after the 1 s Retry-After of busy and
/// unknown answers),
/// operations that failed (a refusal, or no success within [`RETRY_BUDGET`]), the longest wait
/// from an operation's first error to its success, and the first errors.
#[derive(Debug, Default)]
struct Seen {
    ok: u64,
    retried: u64,
    failed: u64,
    longest: Duration,
    why: Vec<String>,
}

impl Seen {
    fn error(&mut self, what: String) {
        if self.why.len() < 10 {
            self.why.push(what);
        }
    }

    /// Runs one operation as a client following the bank's retry protocol: `attempt` answers
    /// `Ok(())` on success, `Err((what, retry))` on an error, `retry` saying whether the answer
    /// asks to try again (503, 504, a lost connection) rather than refusing for good.
    async fn operation<F, Fut>(&mut self, mut attempt: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), (String, bool)>>,
    {
        let began = Instant::now();
        for n in 1.. {
            match attempt().await {
                Ok(()) => {
                    self.ok += 1;
                    if n > 1 {
                        self.longest = self.longest.max(began.elapsed());
                    }
                    return;
                }
                Err((what, retry)) => {
                    self.error(format!("attempt {n} at {}: {what}", secs(began.elapsed())));
                    if n == 1 {
                        self.retried += 1;
                    }
                    if !retry || began.elapsed() >= RETRY_BUDGET {
                        self.failed += 1;
                        return;
                    }
                    // The busy and outcome-unknown answers say Retry-After: 1 (the kit's
                    // answers do not carry the header, so it is not read here).
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// A stream of v1 deposits (1 each) and balance reads on one account, one every `pause`, until
/// `stop`.
fn trickle(
    api: Api,
    token: String,
    pw: String,
    no: String,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Seen> {
    tokio::spawn(async move {
        let mut seen = Seen::default();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let body = if n.is_multiple_of(2) {
                json!({"type": "balance", "accountNo": no})
            } else {
                money("deposit", &no, 1, &pw)
            };
            let key = format!("trickle-{no}-{n}");
            seen.operation(|| {
                let (api, token, key, body) = (&api, &token, &key, body.clone());
                async move {
                    match send(api, token, key, body).await {
                        Outcome::Completed { .. } => Ok(()),
                        refused @ Outcome::Refused { .. } => Err((format!("{refused:?}"), false)),
                        other => Err((format!("{other:?}"), true)),
                    }
                }
            })
            .await;
            tokio::time::sleep(pause).await;
        }
        seen
    })
}

/// Logins, one every 100 ms until `stop`, each following the retry protocol like [`trickle`].
fn logins(
    api: Api,
    user: String,
    pw: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Seen> {
    tokio::spawn(async move {
        let mut seen = Seen::default();
        while !stop.load(Ordering::Relaxed) {
            seen.operation(|| {
                let call = api
                    .post_req("/api/v1/sessions")
                    .json(json!({"userId": user, "password": pw}))
                    .try_send();
                async move {
                    match tokio::time::timeout(OP_TIMEOUT, call).await {
                        Ok(Ok(reply)) if reply.status == 200 => Ok(()),
                        Ok(Ok(reply)) => Err((
                            format!("{} {}", reply.status, reply.text),
                            reply.status >= 500,
                        )),
                        other => Err((format!("{other:?}"), true)),
                    }
                }
            })
            .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seen
    })
}

// ---------------------------------------------------------------------------------------------
// 1. deploy and the walk-through

#[tokio::test]
#[ignore = "needs the local Kubernetes: run ./.ci/run"]
async fn k8s_1_deploy_and_walk_through() {
    let t0 = Instant::now();
    let bank = Bank::e2e("deploy", 30080, "").await;
    let api = &bank.api;
    let deployments = bank.deployments().await;
    assert_eq!(deployments.len(), 6, "{deployments:?}");

    let (status, body) = api
        .register("walk@example.com", "Walker", "walk-pw-Zq7#x")
        .await;
    assert_eq!(status, 201, "sign up: {body}");
    let token = api.token("walk@example.com", "walk-pw-Zq7#x").await;
    let pw = "walk-pw-Zq7#x";
    let (status, body) = api.open(&token, pw, Some("3001"), Some(10_000)).await;
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("completed")),
        "open: {body}"
    );
    let body = expect_ok(&api.deposit(&token, pw, "3001", 5_000).await, 200).clone();
    assert_eq!(body["balance"], 15_000, "deposit: {body}");
    let (status, body) = api.open(&token, pw, Some("3002"), Some(0)).await;
    assert_eq!(status, 200, "open 3002: {body}");
    let transfer = onlinebank_client::wire::Write::transfer("3001", "3002", 5_000, pw).to_json();
    let body = expect_ok(&api.request(&token, transfer).await, 200).clone();
    assert_eq!(
        (&body["status"], &body["balance"]),
        (&json!("completed"), &json!(10_000)),
        "transfer: {body}"
    );
    read_side_balance(api, &token, "3002", Some(5_000)).await;
    let body = expect_ok(&api.withdraw(&token, pw, "3001", 10_000).await, 200).clone();
    assert_eq!(body["balance"], 0, "withdraw: {body}");
    read_side_balance(api, &token, "3001", Some(0)).await;
    let history = eventually("history with 4 transactions", WAIT, || async {
        let (status, body) = api.history(&token, "3001").await;
        let n = body.to_string().matches("\"amount\"").count();
        if status == 200 && n >= 4 {
            Ok(body)
        } else {
            Err(format!("{status} {body}"))
        }
    })
    .await;
    let body = expect_ok(&api.close(&token, pw, "3001").await, 200).clone();
    assert_eq!(body["status"], "completed", "close: {body}");
    eprintln!(
        "PROOF deploy: 6 Deployments rolled out, walk-through (sign up, log in, open, deposit, \
         transfer, withdraw, balance, history {} chars, close) on 127.0.0.1:30080; {}",
        history.to_string().len(),
        secs(t0.elapsed())
    );
}

// ---------------------------------------------------------------------------------------------
// 2. zero-downtime rolling update under siege -c100

#[tokio::test]
#[ignore = "needs the local Kubernetes: run ./.ci/run"]
async fn k8s_2_rolling_update_under_siege() {
    let t0 = Instant::now();
    let bank = Bank::e2e("rolling", 30080, "").await;
    let (token, opening) = demo_customer(&bank.api).await;
    let seconds: u32 = std::env::var("ONLINEBANK_K8S_SIEGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let load = tokio::spawn(siege(bank.port, 100, seconds));
    tokio::time::sleep(Duration::from_secs(8)).await;
    let started = Instant::now();
    let mut times = Vec::new();
    for role in ["request", "account", "gateway"] {
        let t = Instant::now();
        let deployment = format!("deployment/onlinebank-{role}");
        k(&["-n", &bank.ns, "rollout", "restart", &deployment]).await;
        bank.rollout_one(&deployment).await;
        times.push(format!("{role} {}", secs(t.elapsed())));
    }
    let rolled = started.elapsed();
    let s = load.await.unwrap();
    eprintln!("{}\nanswers: {:?}", s.text.trim(), s.codes);
    assert!(
        rolled.as_secs_f64() + 8.0 < s.elapsed,
        "the rollouts ({}) did not end within siege's {} s: raise ONLINEBANK_K8S_SIEGE_SECS",
        secs(rolled),
        s.elapsed
    );
    let (balance, unacknowledged) = siege_balance(&bank.api, &token, opening, &s, 0).await;
    eprintln!(
        "PROOF rolling: siege -c100 -t{seconds}S: {} transactions, availability {:.2} %, {:.2} \
         trans/s (original: 273 trans/s at 100 %), concurrency {:.1}, longest {:.2} s, failed {}; \
         rollout restart {} (all {}); balance 1111 = {opening} + 10000 x ({} acknowledged + \
         {unacknowledged} in flight when siege stopped or failed) = {balance}; answers {:?}; {}",
        s.transactions,
        s.availability,
        s.rate,
        s.concurrency,
        s.longest,
        s.failed,
        times.join(", "),
        secs(rolled),
        s.successful,
        s.codes,
        secs(t0.elapsed())
    );
    assert!(s.transactions > 0, "{}", s.text);
    // The original's bar, as the issue states it: 100 %, no failed transaction. Measured on this
    // 2-core node so far: 98.8-99.4 % (503 service_busy, never applied, and a few 502 and
    // refused connections while old pods leave); .ci/run skips this proof until the bank meets it.
    if s.failed > 0 {
        eprintln!(
            "FINDING rolling: {} failed transactions ({:?}): availability {:.2} %, not 100 %",
            s.failed, s.codes, s.availability
        );
        eprintln!("warning events:\n{}", bank.warnings().await);
    }
    assert_eq!(s.failed, 0, "failed transactions");
    assert!(s.availability >= 100.0, "availability {}", s.availability);
}

// ---------------------------------------------------------------------------------------------
// 3. the HPA scales request out under load and back in after

async fn hpa_replicas(bank: &Bank, role: &str) -> (i64, i64) {
    let out = k(&[
        "-n",
        &bank.ns,
        "get",
        "hpa",
        &format!("onlinebank-{role}"),
        "-o",
        "json",
    ])
    .await;
    let hpa: Value = serde_json::from_str(&out).unwrap();
    (
        hpa["status"]["currentReplicas"].as_i64().unwrap_or(0),
        hpa["status"]["desiredReplicas"].as_i64().unwrap_or(0),
    )
}

#[tokio::test]
#[ignore = "needs the local Kubernetes: run ./.ci/run"]
async fn k8s_3_hpa_scales_out_and_in() {
    let t0 = Instant::now();
    let bank = Bank::e2e("hpa", 30080, "").await;
    let (token, opening) = demo_customer(&bank.api).await;
    let first: Vec<String> = bank
        .pods("request")
        .await
        .into_iter()
        .map(|p| p.0)
        .collect();
    // The load: siege -c100 for 90 s.
    let load = tokio::spawn(siege(bank.port, 100, 90));
    let started = Instant::now();
    // Out: >= 2 replicas, the new ones ready and in the Service's endpoints.
    let mut max = 1;
    let out_after = loop {
        let ready: Vec<_> = bank
            .pods("request")
            .await
            .into_iter()
            .filter(|p| p.1 && !p.3)
            .collect();
        let (current, _) = hpa_replicas(&bank, "request").await;
        max = max.max(current);
        let new: Vec<_> = ready.iter().filter(|p| !first.contains(&p.0)).collect();
        if ready.len() >= 2 && !new.is_empty() {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(140),
            "request never scaled out (HPA at {current})"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    // The new pods take traffic: their CPU (metrics-server) rises above idle.
    let new_pod = bank
        .pods("request")
        .await
        .into_iter()
        .find(|p| p.1 && !first.contains(&p.0))
        .unwrap()
        .0;
    let busy = eventually(
        "the new request pod to take traffic",
        Duration::from_secs(90),
        || async {
            let top = kubectl(&["-n", &bank.ns, "top", "pod", &new_pod, "--no-headers"]).await?;
            let cpu: i64 = top
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.trim_end_matches('m').parse().ok())
                .unwrap_or(0);
            if cpu >= 10 {
                Ok(cpu)
            } else {
                Err(top)
            }
        },
    )
    .await;
    let s = load.await.unwrap();
    for _ in 0..5 {
        max = max.max(hpa_replicas(&bank, "request").await.0);
    }
    eprintln!("{}\nanswers: {:?}", s.text.trim(), s.codes);
    // In: back to 1 replica after the load, a trickle of requests meanwhile without an error.
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = trickle(
        bank.api.clone(),
        token.clone(),
        "1234".into(),
        "1111".into(),
        Duration::from_millis(500),
        stop.clone(),
    );
    let quiet = Instant::now();
    loop {
        let (current, desired) = hpa_replicas(&bank, "request").await;
        let pods = bank
            .pods("request")
            .await
            .into_iter()
            .filter(|p| !p.3)
            .count();
        if current == 1 && desired == 1 && pods == 1 {
            break;
        }
        assert!(
            quiet.elapsed() < Duration::from_secs(240),
            "request never scaled in: {current}/{desired}, {pods} pods"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let in_after = quiet.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = trickle.await.unwrap();
    let ok = seen.ok;
    let (_, unacknowledged) = siege_balance(&bank.api, &token, opening, &s, ok).await;
    eprintln!(
        "PROOF hpa: request scaled out to {max} replicas, a new pod ready {} after the load began \
         (its CPU {busy}m), back to 1 replica {} after it ended; siege -c100: {} transactions, \
         {:.2} %, {:.2} trans/s, failed {}; trickle during scale-in: {ok} ok, {} retried (longest wait {}), {} \
         failed; balance: every acknowledged deposit, {unacknowledged} unacknowledged; {}",
        secs(out_after),
        secs(in_after),
        s.transactions,
        s.availability,
        s.rate,
        s.failed,
        seen.retried,
        secs(seen.longest),
        seen.failed,
        secs(t0.elapsed())
    );
    assert!(max >= 2);
    // Zero failed requests during the scale-out too (the issue's bar). Measured so far: 99.2-99.5 %
    // (503 service_busy while new pods start); .ci/run skips this proof until the bank meets it.
    if s.failed > 0 {
        eprintln!(
            "FINDING hpa: {} failed transactions under the scale-out ({:?}): availability {:.2} %",
            s.failed, s.codes, s.availability
        );
        eprintln!("warning events:\n{}", bank.warnings().await);
    }
    assert_eq!(s.failed, 0, "failed transactions under the scale-out");
    assert_eq!(seen.failed, 0, "failures during scale-in: {:?}", seen.why);
}

// ---------------------------------------------------------------------------------------------
// 4. self-healing: a hung process is restarted by its liveness probe

#[tokio::test]
#[ignore = "needs the local Kubernetes: run ./.ci/run"]
async fn k8s_4_self_healing_of_a_hung_process() {
    let t0 = Instant::now();
    let role = "auth";
    let patch = format!(
        "  - target: {{kind: Deployment, name: onlinebank-{role}}}\n    patch: |-\n\
         \x20     - op: replace\n        path: /spec/replicas\n        value: 2\n"
    );
    let bank = Bank::e2e("heal", 30080, &patch).await;
    let api = bank.api.clone();
    let c = api.customer("heal@example.com").await;
    api.open_ok(&c, "4001", 0).await;
    let pods = bank.pods(role).await;
    assert_eq!(pods.iter().filter(|p| p.1).count(), 2, "{pods:?}");
    let (victim, _, restarts, _) = pods[0].clone();
    let stop = Arc::new(AtomicBool::new(false));
    // Clients: logins (auth) and deposits (auth checks the password) all along.
    let logins = logins(api.clone(), c.user.clone(), c.pw.clone(), stop.clone());
    let deposits = trickle(
        api.clone(),
        c.token.clone(),
        c.pw.clone(),
        "4001".into(),
        Duration::from_millis(50),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut pid = tokio::process::Command::new(root().join("dev/k8s.sh"));
    pid.args(["pid", &bank.ns, &victim]);
    let pid = run(pid, Duration::from_secs(30))
        .await
        .unwrap()
        .trim()
        .to_owned();
    let stopped = Instant::now();
    let mut kill = tokio::process::Command::new("kill");
    kill.args(["-STOP", &pid]);
    run(kill, Duration::from_secs(10)).await.unwrap();
    eprintln!(
        "[{}] SIGSTOP {role} pod {victim} (pid {pid} on the node)",
        bank.ns
    );
    let mut unready = None;
    let (restarted, healed) = loop {
        let now = bank.pods(role).await;
        let me = now.iter().find(|p| p.0 == victim).cloned();
        if let Some((_, ready, count, _)) = me {
            if !ready && unready.is_none() {
                unready = Some(stopped.elapsed());
            }
            if count > restarts && ready {
                break (count, stopped.elapsed());
            }
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(120),
            "{victim} not restarted: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let logins = logins.await.unwrap();
    let deposits = deposits.await.unwrap();
    // The restarted process answers again (a login lands on either auth pod; both ready).
    api.token(&c.user, &c.pw).await;
    eprintln!(
        "PROOF self-healing: {role} pod {victim} SIGSTOPped; not ready after {}, RESTARTS \
         {restarts} -> {restarted}, ready again after {}; clients meanwhile: logins {} ok \
         ({} answered an error first; longest wait {}) / {} failed, deposits+balances {} ok ({} \
         retried; longest wait {}) / {} failed; first errors: {:?} {:?}; {}",
        unready.map(secs).unwrap_or_else(|| "?".into()),
        secs(healed),
        logins.ok,
        logins.retried,
        secs(logins.longest),
        logins.failed,
        deposits.ok,
        deposits.retried,
        secs(deposits.longest),
        deposits.failed,
        logins.why.first(),
        deposits.why.first(),
        secs(t0.elapsed())
    );
    assert_eq!(logins.failed, 0, "{:?}", logins.why);
    assert_eq!(deposits.failed, 0, "{:?}", deposits.why);
}

// ---------------------------------------------------------------------------------------------
// 5. a ConfigMap change rolls the Deployments; the all-in-one's volume outlives its pod

#[tokio::test]
#[ignore = "needs the local Kubernetes: run ./.ci/run"]
async fn k8s_5_config_map_and_volume() {
    let t0 = Instant::now();
    {
        let bank = Bank::e2e("config", 30080, "").await;
        let api = bank.api.clone();
        let c = api.customer("config@example.com").await;
        api.open_ok(&c, "5001", 0).await;
        expect_ok(&api.deposit(&c.token, &c.pw, "5001", 60_000).await, 200);
        let before: Vec<String> = bank
            .pods("request")
            .await
            .into_iter()
            .map(|p| p.0)
            .collect();
        let t = Instant::now();
        bank.apply(&[("ONLINEBANK_MAX_AMOUNT", "50000")]).await;
        let rolled = t.elapsed();
        let after: Vec<String> = bank
            .pods("request")
            .await
            .into_iter()
            .filter(|p| !p.3)
            .map(|p| p.0)
            .collect();
        assert!(
            after.iter().all(|p| !before.contains(p)),
            "request did not roll: {before:?} {after:?}"
        );
        let config = k(&[
            "-n",
            &bank.ns,
            "get",
            "deployment/onlinebank-request",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].envFrom[0].configMapRef.name}",
        ])
        .await;
        // Until every old pod has drained, a deposit over the new limit may still reach one and
        // complete: count those, they are money in the account.
        let accepted = std::sync::atomic::AtomicI64::new(0);
        let refused_after = Instant::now();
        eventually(
            "the new limit to apply",
            Duration::from_secs(60),
            || async {
                let reply = api.deposit(&c.token, &c.pw, "5001", 60_000).await;
                if reply.0 == 400 && reply.1["error"]["code"] == "invalid_amount" {
                    Ok(())
                } else {
                    if reply.0 == 200 && reply.1["status"] == "completed" {
                        accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Err(format!("{reply:?}"))
                }
            },
        )
        .await;
        let refused_after = refused_after.elapsed();
        let accepted = accepted.load(std::sync::atomic::Ordering::SeqCst);
        expect_ok(&api.deposit(&c.token, &c.pw, "5001", 40_000).await, 200);
        read_side_balance(&api, &c.token, "5001", Some(100_000 + accepted * 60_000)).await;
        eprintln!(
            "PROOF config: ONLINEBANK_MAX_AMOUNT=50000 -> ConfigMap {config}, every Deployment \
             rolled in {}; 60000 -> 400 invalid_amount {} after the rollout ({accepted} accepted \
             before by pods still draining), 40000 -> 200; balance = every completed deposit",
            secs(rolled),
            secs(refused_after)
        );
    }
    let bank = Bank::deploy("all-in-one", "aio", 30081, "").await;
    let api = bank.api.clone();
    let c = api.customer("volume@example.com").await;
    api.open_ok(&c, "5002", 100_000).await;
    expect_ok(&api.deposit(&c.token, &c.pw, "5002", 2_000).await, 200);
    expect_ok(&api.withdraw(&c.token, &c.pw, "5002", 500).await, 200);
    api.wait_balance(&c.token, "5002", 101_500).await;
    let before = api.all_transactions(&c.token, "5002").await;
    let old = bank.pods("all-in-one").await;
    assert_eq!(old.len(), 1, "{old:?}");
    let t = Instant::now();
    k(&["-n", &bank.ns, "delete", "pod", &old[0].0, "--timeout=120s"]).await;
    loop {
        let now = bank.pods("all-in-one").await;
        if now.iter().any(|p| p.0 != old[0].0 && p.1 && !p.3) {
            break;
        }
        assert!(t.elapsed() < WAIT, "no new ready pod: {now:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let replaced = t.elapsed();
    let api2 = api.clone();
    eventually("the new pod to answer", WAIT, || async {
        let call = api2
            .post_req("/api/v1/sessions")
            .json(json!({"userId": c.user, "password": c.pw}))
            .try_send();
        match tokio::time::timeout(Duration::from_secs(5), call).await {
            Ok(Ok(reply)) if reply.status == 200 => Ok(()),
            Ok(Ok(reply)) => Err(format!("{} {}", reply.status, reply.text)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("no answer within 5 s".into()),
        }
    })
    .await;
    let token = api.token(&c.user, &c.pw).await;
    let after_pod = api.wait_balance(&token, "5002", 101_500).await;
    let after = api.all_transactions(&token, "5002").await;
    assert_eq!(
        before, after,
        "transactions differ after the pod's replacement"
    );
    eprintln!(
        "PROOF volume: all-in-one pod deleted, replacement ready in {}; account 5002 {} and its \
         {} transactions intact; {}",
        secs(replaced),
        after_pod["balance"],
        after.len(),
        secs(t0.elapsed())
    );
}

// ---------------------------------------------------------------------------------------------
// 6. faults: random pods force-deleted under a stream of deposits, withdrawals and transfers

#[derive(Debug)]
struct Op {
    key: String,
    no: String,
    /// A transfer's target, which gains what `no` loses.
    to: Option<String>,
    body: Value,
    delta: i64,
    answer: Outcome,
}

#[tokio::test]
#[ignore = "needs the local Kubernetes: run ./.ci/run"]
async fn k8s_6_random_pod_deletions_keep_every_store_consistent() {
    let t0 = Instant::now();
    let bank = Bank::e2e("faults", 30080, "").await;
    let api = bank.api.clone();
    let mut customers = Vec::new();
    for i in 0..4 {
        let c = api.customer(&format!("fault{i}@example.com")).await;
        api.open_ok(&c, &format!("600{i}"), 100_000).await;
        customers.push(c);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for (i, c) in customers.iter().cloned().enumerate() {
        let (api, stop, sent) = (api.clone(), stop.clone(), sent.clone());
        clients.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(1000 + i as u64);
            let no = format!("600{i}");
            let mut ops = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let amount = rng.random_range(1..=1_000);
                let key = format!("fault-{no}-{n}");
                // Deposits, withdrawals and transfers to the next customer's account.
                let (body, delta, to) = match rng.random_range(0..=2) {
                    0 => (money("deposit", &no, amount, &c.pw), amount, None),
                    1 => (money("withdraw", &no, amount, &c.pw), -amount, None),
                    _ => {
                        let to = format!("600{}", (i + 1) % 4);
                        let body =
                            onlinebank_client::wire::Write::transfer(&no, &to, amount, &c.pw)
                                .to_json();
                        (body, -amount, Some(to))
                    }
                };
                let answer = send(&api, &c.token, &key, body.clone()).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if matches!(answer, Outcome::Unknown { .. } | Outcome::Busy) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                ops.push(Op {
                    key,
                    no: no.clone(),
                    to,
                    body,
                    delta,
                    answer,
                });
            }
            (c, ops)
        }));
    }
    let mut rng = StdRng::seed_from_u64(7);
    let mut killed = Vec::new();
    let chaos = Instant::now();
    let chaos_secs = 60;
    while chaos.elapsed() < Duration::from_secs(chaos_secs) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(2_000..=6_000))).await;
        let out = k(&[
            "-n",
            &bank.ns,
            "get",
            "pods",
            "-o",
            "name",
            "--field-selector=status.phase=Running",
        ])
        .await;
        let pods: Vec<&str> = out.split_whitespace().collect();
        if pods.is_empty() {
            continue;
        }
        let victim = pods[rng.random_range(0..pods.len())].to_owned();
        let _ = kubectl(&[
            "-n",
            &bank.ns,
            "delete",
            &victim,
            "--grace-period=0",
            "--force",
            "--wait=false",
        ])
        .await;
        killed.push(victim.trim_start_matches("pod/onlinebank-").to_owned());
    }
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for client in clients {
        all.push(client.await.unwrap());
    }
    bank.rollout().await;
    // Every unknown outcome is resolved by sending the same key again (the idempotent answer).
    let mut expected: BTreeMap<String, i64> =
        (0..4).map(|i| (format!("600{i}"), 100_000)).collect();
    let (mut completed, mut refused, mut unknown) = (0, 0, 0);
    for (c, ops) in &mut all {
        for op in ops.iter_mut() {
            if matches!(op.answer, Outcome::Unknown { .. } | Outcome::Pending { .. }) {
                unknown += 1;
                let deadline = Instant::now() + Duration::from_secs(120);
                let answer = resolve(
                    &api,
                    &c.token,
                    &op.key,
                    &op.body,
                    op.answer.clone(),
                    deadline,
                )
                .await;
                assert!(
                    answer.is_definitive(),
                    "{} never resolved: {answer:?}",
                    op.key
                );
                op.answer = answer;
            }
            match &op.answer {
                Outcome::Completed { .. } => {
                    completed += 1;
                    *expected.get_mut(&op.no).unwrap() += op.delta;
                    if let Some(to) = &op.to {
                        *expected.get_mut(to).unwrap() -= op.delta;
                    }
                }
                _ => refused += 1,
            }
        }
    }
    let snapshot = eventually(
        "every store to agree, nothing pending",
        Duration::from_secs(180),
        || async {
            let snapshot = bank.snapshot().await?;
            match snapshot.inconsistency() {
                None => Ok(snapshot),
                Some(why) => Err(why),
            }
        },
    )
    .await;
    for (no, balance) in &expected {
        let row = snapshot
            .accounts
            .get(no)
            .unwrap_or_else(|| panic!("{no} missing"));
        assert_eq!(
            row.balance, *balance,
            "{no}: the acknowledged operations say {balance}, the bank {row:?}"
        );
        let (c, _) = all
            .iter()
            .find(|(_, ops)| ops.first().is_some_and(|op| &op.no == no))
            .unwrap();
        assert_eq!(
            balance_of(&api, &c.token, no).await,
            *balance,
            "{no}: the balance request"
        );
    }
    eprintln!(
        "PROOF faults: {} pods force-deleted in {chaos_secs} s ({}); {} operations ({completed} \
         completed, {refused} refused, {unknown} resolved after an unknown answer); balance == \
         history sum == mypage for {} accounts, 0 pending; {}",
        killed.len(),
        killed.join(" "),
        sent.load(Ordering::Relaxed),
        snapshot.accounts.len(),
        secs(t0.elapsed())
    );
}

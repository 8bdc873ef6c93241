//! Seeing inside: one customer call followed across the roles by its `x-request-id` and W3C
//! trace context, JSON logs (every line the process writes), one access line per call, and
//! `--help` that never prints a secret from the environment.

use crate::support::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Mutex};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALL_ID: &str = "deposit-call-7f3a";

/// Every line the bank wrote (stdout's start-up lines and stderr's log), each parsed as JSON;
/// a line that is not JSON fails the test.
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .map(|line| line.strip_prefix("[stdout] ").unwrap_or(line))
        .filter(|line| !line.is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"))
        })
        .collect()
}

#[tokio::test]
async fn a_deposit_is_one_trace_across_the_roles_it_calls_in_json_logs() {
    // The events' lines are debug: asked for here.
    let bank = TestBank::start_with_env(
        &["--log-format", "json"],
        &[("RUST_LOG", "info,onlinebank::events=debug")],
    )
    .await;
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 1_000).await;
    let reply = bank
        .post_req("/api/v1/requests")
        .bearer(&alice.token)
        .header("x-request-id", CALL_ID)
        .header("traceparent", &format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .json(money("deposit", "1001", 500, &alice.pw))
        .send()
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("x-request-id").as_deref(), Some(CALL_ID));
    // A call without an id gets one made for it.
    let read = bank
        .get_req("/api/v1/accounts")
        .bearer(&alice.token)
        .send()
        .await;
    let made = read.header("x-request-id").expect("an x-request-id");
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");
    bank.wait_balance(&alice.token, "1001", 1_500).await;

    let lines = json_lines(&bank.log());
    for line in &lines {
        for field in ["timestamp", "level", "role", "target", "message"] {
            assert!(line[field].is_string(), "no {field} in {line}");
        }
    }
    assert!(
        lines.iter().any(|line| line["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("onlinebank ready at "))),
        "the start-up line is JSON too"
    );
    let call: Vec<&Value> = lines
        .iter()
        .filter(|line| line["request_id"] == CALL_ID)
        .collect();
    let roles: BTreeSet<&str> = call.iter().filter_map(|l| l["role"].as_str()).collect();
    for role in ["gateway", "request", "auth"] {
        assert!(
            roles.contains(role),
            "{role} not in the call's lines: {roles:?}"
        );
    }
    assert!(
        call.iter().all(|line| line["trace_id"] == TRACE),
        "a line of the call left its trace: {call:?}"
    );
    let access = call
        .iter()
        .find(|line| line["target"] == "onlinebank::access" && line["role"] == "gateway")
        .expect("the gateway's access line");
    assert_eq!(access["method"], "POST");
    assert_eq!(access["route"], "/api/v1/requests");
    assert_eq!(access["status"], 200);
    assert!(access["duration_ms"].as_f64().is_some());
    // The events the call caused carry it: every role that applied one continued the trace,
    // account's MoneyDeposited (published while applying AuthCertified) included.
    let applied: BTreeSet<(&str, &str)> = call
        .iter()
        .filter(|line| line["target"] == "onlinebank::events")
        .filter_map(|line| Some((line["role"].as_str()?, line["event"].as_str()?)))
        .collect();
    for seen in [
        ("account", "AuthCertified"),
        ("request", "MoneyDeposited"),
        ("history", "MoneyDeposited"),
        ("mypage", "MoneyDeposited"),
    ] {
        assert!(applied.contains(&seen), "{seen:?} not in {applied:?}");
    }
    // One hop, one span: each role's line of the call has its own span id.
    let spans: BTreeSet<&str> = call.iter().filter_map(|l| l["span_id"].as_str()).collect();
    assert!(spans.len() >= 7, "{spans:?}");
    assert!(!bank.log().contains(&alice.pw), "the password was logged");
}

/// A stand-in OpenTelemetry collector: an OTLP/HTTP receiver on a free port that decodes each
/// `POST /v1/traces` (protobuf) with opentelemetry-proto's types and keeps its spans.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    async fn start() -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        let receive = move |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
            let protobuf = headers
                .get("content-type")
                .is_some_and(|value| value == "application/x-protobuf");
            let Ok(request) = ExportTraceServiceRequest::decode(body.as_ref()) else {
                return axum::http::StatusCode::BAD_REQUEST;
            };
            if !protobuf {
                return axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
            }
            let mut spans = kept.lock().unwrap();
            for resource in request.resource_spans {
                for scope in resource.scope_spans {
                    spans.extend(scope.spans);
                }
            }
            axum::http::StatusCode::OK
        };
        let app = axum::Router::new().route("/v1/traces", axum::routing::post(receive));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Collector { url, spans, task }
    }

    /// The spans received so far.
    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn text_attribute<'s>(span: &'s Span, key: &str) -> Option<&'s str> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(text) => Some(text.as_str()),
            _ => None,
        })
}

/// One exported span, as either receiver gives it: ids in lower-case hex.
#[derive(Debug)]
struct SpanSeen {
    trace_id: String,
    span_id: String,
    /// Empty for a root span.
    parent_id: String,
    name: String,
    role: Option<String>,
    event: Option<String>,
}

impl From<&Span> for SpanSeen {
    fn from(span: &Span) -> Self {
        SpanSeen {
            trace_id: hex::encode(&span.trace_id),
            span_id: hex::encode(&span.span_id),
            parent_id: hex::encode(&span.parent_span_id),
            name: span.name.clone(),
            role: text_attribute(span, "onlinebank.role").map(str::to_owned),
            event: text_attribute(span, "onlinebank.event").map(str::to_owned),
        }
    }
}

/// The spans of the collector's file exporter (OTLP JSON: one ExportTraceServiceRequest per
/// line, ids as hex strings, attributes as `{key, value: {stringValue}}`).
fn spans_in_otlp_json(text: &str) -> Vec<SpanSeen> {
    let attribute = |span: &Value, key: &str| {
        span["attributes"]
            .as_array()?
            .iter()
            .find(|kv| kv["key"] == key)?["value"]["stringValue"]
            .as_str()
            .map(str::to_owned)
    };
    let mut seen = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let request: Value = serde_json::from_str(line).expect("an OTLP JSON line");
        let spans = request["resourceSpans"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|resource| resource["scopeSpans"].as_array().into_iter().flatten())
            .flat_map(|scope| scope["spans"].as_array().into_iter().flatten());
        for span in spans {
            seen.push(SpanSeen {
                trace_id: span["traceId"].as_str().unwrap_or_default().to_owned(),
                span_id: span["spanId"].as_str().unwrap_or_default().to_owned(),
                parent_id: span["parentSpanId"].as_str().unwrap_or_default().to_owned(),
                name: span["name"].as_str().unwrap_or_default().to_owned(),
                role: attribute(span, "onlinebank.role"),
                event: attribute(span, "onlinebank.event"),
            });
        }
    }
    seen
}

const EVERY_ROLE: [&str; 6] = ["account", "auth", "gateway", "history", "mypage", "request"];

/// Deposits into a new account of a new customer with the test's `traceparent`.
async fn traced_deposit(bank: &TestBank) {
    let alice = bank.customer("alice@test").await;
    bank.open_ok(&alice, "1001", 1_000).await;
    let reply = bank
        .post_req("/api/v1/requests")
        .bearer(&alice.token)
        .header("traceparent", &format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .json(money("deposit", "1001", 500, &alice.pw))
        .send()
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

/// Waits (up to 20 s) until the trace has spans of every role, then checks it is one tree: the
/// gateway's span the caller's child, every other span a child of a span of the same trace
/// (events included: account's outcome names the span that applied AuthCertified, and so on).
async fn assert_one_tree_of_every_role(received: impl Fn() -> Vec<SpanSeen>) {
    let mut spans = Vec::new();
    let mut roles = BTreeSet::new();
    for _ in 0..100 {
        spans = received()
            .into_iter()
            .filter(|span| span.trace_id == TRACE)
            .collect();
        roles = spans.iter().filter_map(|span| span.role.clone()).collect();
        if roles.len() == EVERY_ROLE.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        roles.iter().map(String::as_str).collect::<Vec<_>>(),
        EVERY_ROLE
    );
    let ids: BTreeSet<&str> = spans.iter().map(|span| span.span_id.as_str()).collect();
    for span in &spans {
        assert!(!span.name.is_empty(), "a span without a name: {span:?}");
        if span.role.as_deref() == Some("gateway") {
            assert_eq!(span.parent_id, "00f067aa0ba902b7", "{span:?}");
        } else {
            assert!(
                ids.contains(span.parent_id.as_str()),
                "parent not in the trace: {span:?}"
            );
        }
    }
    let applied: BTreeSet<(&str, &str)> = spans
        .iter()
        .filter_map(|span| Some((span.role.as_deref()?, span.event.as_deref()?)))
        .collect();
    for seen in [("account", "AuthCertified"), ("history", "MoneyDeposited")] {
        assert!(applied.contains(&seen), "{seen:?} not in {applied:?}");
    }
}

#[tokio::test]
async fn a_deposit_is_one_exported_trace_with_spans_of_every_role() {
    let collector = Collector::start().await;
    let bank = TestBank::start_with(&["--otlp-endpoint", &collector.url]).await;
    traced_deposit(&bank).await;
    assert_one_tree_of_every_role(|| collector.spans().iter().map(SpanSeen::from).collect()).await;
}

/// A real OpenTelemetry Collector (dev/otelcol.sh: the otlp receiver and the file exporter),
/// killed when dropped.
struct RealCollector {
    process: std::process::Child,
    url: String,
    file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl RealCollector {
    async fn start() -> RealCollector {
        let binary = std::env::var("ONLINEBANK_TEST_OTELCOL")
            .expect("ONLINEBANK_TEST_OTELCOL: the collector (dev/otelcol.sh build; path)");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("spans.json");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dev/otelcol.sh");
        let config = Command::new("bash")
            .args([
                script,
                "config",
                &file.display().to_string(),
                &port.to_string(),
            ])
            .output()
            .expect("dev/otelcol.sh config");
        assert!(config.status.success(), "{config:?}");
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, &config.stdout).unwrap();
        let process = Command::new(binary)
            .arg("--config")
            .arg(&config_path)
            .spawn()
            .expect("starting the collector");
        let address = format!("127.0.0.1:{port}");
        let collector = RealCollector {
            process,
            url: format!("http://{address}"),
            file,
            _dir: dir,
        };
        for _ in 0..150 {
            if tokio::net::TcpStream::connect(&address).await.is_ok() {
                return collector;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the collector did not listen on {address} within 15 s");
    }

    fn spans(&self) -> Vec<SpanSeen> {
        spans_in_otlp_json(&std::fs::read_to_string(&self.file).unwrap_or_default())
    }
}

impl Drop for RealCollector {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[tokio::test]
#[ignore = "needs an OpenTelemetry Collector (ONLINEBANK_TEST_OTELCOL): ./.ci/run builds one"]
async fn a_deposit_reaches_a_real_opentelemetry_collector_as_one_trace_of_every_role() {
    let collector = RealCollector::start().await;
    let bank = TestBank::start_with(&["--otlp-endpoint", &collector.url]).await;
    traced_deposit(&bank).await;
    assert_one_tree_of_every_role(|| collector.spans()).await;
}

/// The head of the first answer to `request` sent raw to `base` (`http://host:port`).
async fn raw_head(base: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(read > 0, "closed before the answer's head");
        answer.extend_from_slice(&buffer[..read]);
    }
    String::from_utf8_lossy(&answer).to_lowercase()
}

#[tokio::test]
async fn answers_made_before_any_route_and_the_admin_listeners_carry_a_request_id() {
    let bank = TestBank::start().await;
    let base = &bank.api.base;
    let brew = raw_head(
        base,
        "BREW /api/v1/ping HTTP/1.1\r\nHost: bank\r\nx-request-id: tea-1\r\n\r\n",
    )
    .await;
    assert!(brew.starts_with("http/1.1 501"), "{brew}");
    assert!(brew.contains("x-request-id: tea-1\r\n"), "{brew}");
    let path = raw_head(base, "GET /api/v1/../ping HTTP/1.1\r\nHost: bank\r\n\r\n").await;
    assert!(path.contains("\r\nx-request-id: "), "{path}");
    let framing = raw_head(base, "GET /api/v1/ping HTTP/1.1\r\n\r\n").await;
    assert!(framing.starts_with("http/1.1 400"), "{framing}");
    assert!(framing.contains("\r\nx-request-id: "), "{framing}");
    let admin = &bank.ops.admin["gateway"];
    let metrics = raw_head(
        admin,
        "GET /metrics HTTP/1.1\r\nHost: admin\r\nx-request-id: scrape-9\r\n\r\n",
    )
    .await;
    assert!(metrics.starts_with("http/1.1 200"), "{metrics}");
    assert!(metrics.contains("x-request-id: scrape-9\r\n"), "{metrics}");
}

#[test]
fn help_never_prints_a_secret_from_the_environment() {
    let secret = "Hunter2-Secret-Value";
    for command in [["serve", "request"].as_slice(), ["up"].as_slice()] {
        let output = Command::new(BIN)
            .args(command)
            .arg("--help")
            .env(
                "ONLINEBANK_DATABASE",
                format!("postgres://bank:{secret}@db/bank"),
            )
            .env(
                "ONLINEBANK_BUS",
                format!("kafka://k:9092?sasl.password={secret}"),
            )
            .env("ONLINEBANK_TOKEN_SECRET", secret)
            .env("ONLINEBANK_BUS_SASL_PASSWORD", secret)
            .env(
                "ONLINEBANK_AUTH_URL",
                format!("http://u:{secret}@auth:8080"),
            )
            .output()
            .expect("running --help");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{command:?} --help failed");
        assert!(text.contains("ONLINEBANK_DATABASE"), "{text}");
        assert!(
            !text.contains(secret),
            "{command:?} --help printed a secret:\n{text}"
        );
    }
}

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

    /// The spans of `trace` received so far.
    fn trace(&self, trace: &str) -> Vec<Span> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .filter(|span| hex::encode(&span.trace_id) == trace)
            .cloned()
            .collect()
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

#[tokio::test]
async fn a_deposit_is_one_exported_trace_with_spans_of_every_role() {
    let collector = Collector::start().await;
    let bank = TestBank::start_with(&["--otlp-endpoint", &collector.url]).await;
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
    let every_role = ["account", "auth", "gateway", "history", "mypage", "request"];
    let mut roles = BTreeSet::new();
    for _ in 0..100 {
        let spans = collector.trace(TRACE);
        roles = spans
            .iter()
            .filter_map(|span| text_attribute(span, "onlinebank.role"))
            .map(str::to_owned)
            .collect();
        if roles.len() == every_role.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        roles.iter().map(String::as_str).collect::<Vec<_>>(),
        every_role
    );
    // One tree: the gateway's span is the caller's child, every other span a child of a span
    // of the same trace (events included: account's outcome names the span that applied
    // AuthCertified, and so on).
    let spans = collector.trace(TRACE);
    let ids: BTreeSet<Vec<u8>> = spans.iter().map(|span| span.span_id.clone()).collect();
    for span in &spans {
        let role = text_attribute(span, "onlinebank.role");
        let parent = hex::encode(&span.parent_span_id);
        if role == Some("gateway") {
            assert_eq!(parent, "00f067aa0ba902b7", "{}", span.name);
        } else {
            assert!(
                ids.contains(&span.parent_span_id),
                "{:?} {} has parent {parent}, not a span of the trace",
                role,
                span.name
            );
        }
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    }
    let applied: BTreeSet<(&str, &str)> = spans
        .iter()
        .filter_map(|span| {
            Some((
                text_attribute(span, "onlinebank.role")?,
                text_attribute(span, "onlinebank.event")?,
            ))
        })
        .collect();
    assert!(
        applied.contains(&("history", "MoneyDeposited")),
        "{applied:?}"
    );
    assert!(
        applied.contains(&("account", "AuthCertified")),
        "{applied:?}"
    );
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

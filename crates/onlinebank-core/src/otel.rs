//! OpenTelemetry export of the bank's spans, when configured (`--otlp-endpoint`): OTLP over HTTP
//! with protobuf, `POST <endpoint>/v1/traces`.
//!
//! The spans are the ones [`crate::trace`] already names: each HTTP call a server span, each
//! event a consumer group applies a consumer span, with exactly the ids that travel in
//! `traceparent` headers and in the events' envelopes. So the trace a collector receives is the
//! trace the logs show, and a consumption span's id is the one account named as the parent of
//! what it published (see [`crate::trace::SpanId::of_consumption`]). The messages are
//! opentelemetry-proto's types; this module only queues, batches and sends them. The SDK's
//! tracer is not used: it makes span ids of its own and cannot take these.
//!
//! Export never slows a call down: a span is queued without waiting (up to [`QUEUE`] spans; past
//! that it is dropped and counted in `onlinebank_otlp_spans_dropped_total`), and a batch that
//! cannot be sent is dropped with a rate-limited warning. Spans of a trace whose `traceparent`
//! said "not sampled" are not exported.

use crate::log_limit::LogLimit;
use crate::trace::CallContext;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
use prost::Message;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Spans waiting to be sent at most; past that a span is dropped.
pub const QUEUE: usize = 8192;
/// Spans per request to the collector at most.
const BATCH: usize = 512;
/// How often what is queued is sent.
const EVERY: Duration = Duration::from_secs(1);
/// How long one request to the collector may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

static QUEUED: OnceLock<mpsc::Sender<FinishedSpan>> = OnceLock::new();

/// What the span stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// An HTTP call this role served.
    Server,
    /// An event a consumer group applied.
    Consumer,
}

/// A value of a span's attribute.
#[derive(Clone, Debug, PartialEq)]
pub enum Attribute {
    Text(String),
    Int(i64),
}

/// A span that ended, as the exporter takes it.
#[derive(Clone, Debug)]
pub struct FinishedSpan {
    pub name: String,
    pub kind: SpanKind,
    /// The role that did the work (`onlinebank.role` on the span).
    pub role: &'static str,
    /// Its trace, its own span id and its parent's.
    pub context: CallContext,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<(&'static str, Attribute)>,
}

/// Whether spans are exported: only then are they worth building.
pub fn enabled() -> bool {
    QUEUED.get().is_some()
}

/// Queues `span` for export, without waiting; nothing when export is off or the trace is not
/// sampled.
pub fn record(span: FinishedSpan) {
    let Some(queue) = QUEUED.get() else {
        return;
    };
    if span.context.flags & 1 == 0 {
        return;
    }
    if queue.try_send(span).is_err() {
        metrics::counter!("onlinebank_otlp_spans_dropped_total").increment(1);
    }
}

/// The running exporter: [`Exporter::finish`] sends what is queued and stops it.
pub struct Exporter {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Exporter {
    /// Starts exporting to `endpoint` (the collector's base URL, e.g. `http://collector:4318`).
    /// Once per process; a second start is refused.
    pub fn start(endpoint: &str) -> anyhow::Result<Self> {
        let url = traces_url(endpoint)?;
        let (queue, queued) = mpsc::channel(QUEUE);
        QUEUED
            .set(queue)
            .map_err(|_| anyhow::anyhow!("the span exporter was already started"))?;
        let stop = CancellationToken::new();
        let sender = Sender {
            http: reqwest::Client::builder().timeout(SEND_TIMEOUT).build()?,
            url,
            failures: LogLimit::new(
                "exporting spans failed",
                "exporting spans works again",
                "otlp",
            ),
        };
        let task = tokio::spawn(export(sender, queued, stop.clone()));
        Ok(Self { stop, task })
    }

    /// Sends every span queued so far, then stops.
    pub async fn finish(self) {
        self.stop.cancel();
        if tokio::time::timeout(SEND_TIMEOUT * 2, self.task)
            .await
            .is_err()
        {
            tracing::warn!("the last spans were not exported in time");
        }
    }
}

/// `<endpoint>/v1/traces`, for an http or https endpoint.
fn traces_url(endpoint: &str) -> anyhow::Result<reqwest::Url> {
    let base = reqwest::Url::parse(endpoint)
        .map_err(|error| anyhow::anyhow!("--otlp-endpoint {endpoint:?}: {error}"))?;
    anyhow::ensure!(
        matches!(base.scheme(), "http" | "https"),
        "--otlp-endpoint takes an http:// or https:// URL (OTLP over HTTP), not {endpoint:?}"
    );
    let path = format!("{}/v1/traces", base.path().trim_end_matches('/'));
    let mut url = base;
    url.set_path(&path);
    Ok(url)
}

struct Sender {
    http: reqwest::Client,
    url: reqwest::Url,
    failures: LogLimit,
}

/// Sends a batch every [`EVERY`], or as soon as one is full, until `stop`; then what is left.
async fn export(
    mut sender: Sender,
    mut queued: mpsc::Receiver<FinishedSpan>,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut tick = tokio::time::interval(EVERY);
    loop {
        let room = BATCH - batch.len();
        tokio::select! {
            _ = tick.tick() => {}
            received = queued.recv_many(&mut batch, room) => {
                if received == 0 {
                    break;
                }
                if batch.len() < BATCH {
                    continue;
                }
            }
            _ = stop.cancelled() => break,
        }
        if !batch.is_empty() {
            sender.send(std::mem::take(&mut batch)).await;
        }
    }
    while let Ok(span) = queued.try_recv() {
        batch.push(span);
        if batch.len() == BATCH {
            sender.send(std::mem::take(&mut batch)).await;
        }
    }
    if !batch.is_empty() {
        sender.send(batch).await;
    }
}

impl Sender {
    async fn send(&mut self, spans: Vec<FinishedSpan>) {
        let body = request(spans).encode_to_vec();
        let sent = self
            .http
            .post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        let _ = self.failures.note(sent);
    }
}

/// One OTLP request: the process as the resource, the bank as the scope, `spans` in it.
pub fn request(spans: Vec<FinishedSpan>) -> ExportTraceServiceRequest {
    let resource = Resource {
        attributes: vec![
            key_value("service.name", Attribute::Text("onlinebank".into())),
            key_value(
                "service.version",
                Attribute::Text(env!("CARGO_PKG_VERSION").into()),
            ),
        ],
        ..Default::default()
    };
    let scope = InstrumentationScope {
        name: "onlinebank".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope),
                spans: spans.into_iter().map(proto_span).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn proto_span(finished: FinishedSpan) -> Span {
    let kind = match finished.kind {
        SpanKind::Server => span::SpanKind::Server,
        SpanKind::Consumer => span::SpanKind::Consumer,
    };
    let context = &finished.context;
    let mut attributes = vec![key_value(
        "onlinebank.role",
        Attribute::Text(finished.role.into()),
    )];
    attributes.extend(
        finished
            .attributes
            .into_iter()
            .map(|(key, value)| key_value(key, value)),
    );
    Span {
        trace_id: context.trace_id.as_bytes().to_vec(),
        span_id: context.span_id.as_bytes().to_vec(),
        parent_span_id: context
            .parent_id
            .map(|parent| parent.as_bytes().to_vec())
            .unwrap_or_default(),
        flags: u32::from(context.flags),
        name: finished.name,
        kind: kind as i32,
        start_time_unix_nano: unix_nanos(finished.start),
        end_time_unix_nano: unix_nanos(finished.end),
        attributes,
        ..Default::default()
    }
}

fn key_value(key: &str, value: Attribute) -> KeyValue {
    let value = match value {
        Attribute::Text(text) => any_value::Value::StringValue(text),
        Attribute::Int(number) => any_value::Value::IntValue(number),
    };
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    #[test]
    fn the_traces_path_is_added_to_the_endpoint() {
        for (endpoint, url) in [
            ("http://collector:4318", "http://collector:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            (
                "https://o.example/otlp/",
                "https://o.example/otlp/v1/traces",
            ),
        ] {
            assert_eq!(traces_url(endpoint).unwrap().as_str(), url);
        }
        for bad in ["collector:4318", "grpc://c:4317", ""] {
            assert!(traces_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_span_keeps_its_ids_times_and_role_in_the_message() {
        let mut headers = HeaderMap::new();
        headers.insert(
            crate::trace::TRACEPARENT,
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let context = CallContext::from_headers(&headers);
        let start = UNIX_EPOCH + Duration::from_millis(1_500);
        let finished = FinishedSpan {
            name: "POST /api/v1/requests".into(),
            kind: SpanKind::Server,
            role: "gateway",
            context: context.clone(),
            start,
            end: start + Duration::from_millis(2),
            attributes: vec![("http.response.status_code", Attribute::Int(200))],
        };
        let encoded = request(vec![finished]).encode_to_vec();
        let decoded = ExportTraceServiceRequest::decode(encoded.as_slice()).unwrap();
        let span = &decoded.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(
            hex::encode(&span.trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(hex::encode(&span.parent_span_id), "00f067aa0ba902b7");
        assert_eq!(span.span_id, context.span_id.as_bytes());
        assert_eq!(span.kind, span::SpanKind::Server as i32);
        assert_eq!(span.start_time_unix_nano, 1_500_000_000);
        assert_eq!(span.end_time_unix_nano, 1_502_000_000);
        let text = |key: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key == key)
                .and_then(|kv| kv.value.clone()?.value)
        };
        assert_eq!(
            text("onlinebank.role"),
            Some(any_value::Value::StringValue("gateway".into()))
        );
        assert_eq!(
            text("http.response.status_code"),
            Some(any_value::Value::IntValue(200))
        );
    }
}

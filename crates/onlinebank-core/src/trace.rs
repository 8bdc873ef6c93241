//! One customer call followed across the roles: its `x-request-id` and its W3C trace context
//! (<https://www.w3.org/TR/trace-context/>).
//!
//! Every role's HTTP layer ([`observe`]) continues what the caller sent (or starts both), runs
//! the call inside a `http` span carrying `role`, `request_id` and `trace_id`, answers the
//! `x-request-id`, and writes one access-log line. While the call runs, [`CallContext::current`]
//! is what [`crate::peer::PeerClient`] sends on to the next role, as a child of this hop.
//!
//! `request_id` in logs is this header's value, one per customer call; the bank's own request
//! (a write's saga) is logged as `request`.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::fmt;
use std::future::Future;
use std::time::{Instant, SystemTime};
use tracing::Instrument;

/// The header naming one customer call.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The W3C trace context header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// Longest `x-request-id` taken from a caller; a longer or non-printable one is replaced.
const MAX_REQUEST_ID: usize = 128;

/// A trace's id: 16 bytes, never all zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceId([u8; 16]);

/// One hop's span id: 8 bytes, never all zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanId([u8; 8]);

/// The `x-request-id` of a customer call: visible ASCII, 1 to 128 characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallId(String);

/// What a call carries across roles: its id and its place in the trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallContext {
    pub request_id: CallId,
    pub trace_id: TraceId,
    /// This hop's span: the parent of every call made from here.
    pub span_id: SpanId,
    /// The caller's span, when the trace was continued.
    pub parent_id: Option<SpanId>,
    /// The W3C trace flags (bit 0: sampled), passed on as received.
    pub flags: u8,
}

tokio::task_local! {
    static CURRENT: CallContext;
}

impl TraceId {
    fn random() -> Self {
        Self(nonzero(crate::ambient::random_bytes::<16>()))
    }
}

impl TraceId {
    /// Its 16 bytes, as OTLP carries them.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl SpanId {
    /// Its 8 bytes, as OTLP carries them.
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }

    fn random() -> Self {
        Self(nonzero(crate::ambient::random_bytes::<8>()))
    }

    /// The span of one consumer group applying one event: the same for every delivery of it, so
    /// a redelivered or retried event is the same span, and what the consumer publishes because
    /// of it names that span as its parent without being handed it.
    pub fn of_consumption(event_id: uuid::Uuid, group: &str) -> Self {
        use sha2::Digest;
        let digest = sha2::Sha256::new()
            .chain_update(group.as_bytes())
            .chain_update([0])
            .chain_update(event_id.as_bytes())
            .finalize();
        let mut id = [0; 8];
        id.copy_from_slice(&digest[..8]);
        Self(nonzero(id))
    }
}

/// `bytes`, or the same with its last byte 1 when all were zero (an invalid id).
fn nonzero<const N: usize>(mut bytes: [u8; N]) -> [u8; N] {
    if bytes.iter().all(|byte| *byte == 0) {
        bytes[N - 1] = 1;
    }
    bytes
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl CallId {
    /// `id` when it is one we may log and echo: 1 to 128 visible ASCII characters.
    pub fn parse(id: &str) -> Option<Self> {
        ((1..=MAX_REQUEST_ID).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()))
            .then(|| Self(id.to_owned()))
    }

    /// A new id (a UUID), for a call that came without one.
    fn new() -> Self {
        Self(crate::ambient::uuid_v4().to_string())
    }

    /// The caller's id when it is one we may log and echo, else a new one.
    fn from_header(value: Option<&HeaderValue>) -> Self {
        value
            .and_then(|value| value.to_str().ok())
            .and_then(Self::parse)
            .unwrap_or_else(Self::new)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A valid W3C `traceparent`: the trace, the span that made the call (or published the event), and
/// the trace flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub flags: u8,
}

impl TraceParent {
    /// The value's parts when it is a valid `traceparent` (version 00, or a later one read as 00).
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split('-');
        let version = parts.next()?;
        let (trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?);
        // Version 00 has exactly four parts; a later version may append more, never ff.
        let extra = parts.next().is_some();
        let lower_hex = |text: &str, len: usize| {
            text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        if !lower_hex(version, 2) || version == "ff" || (version == "00" && extra) {
            return None;
        }
        if !lower_hex(trace, 32) || !lower_hex(parent, 16) || !lower_hex(flags, 2) {
            return None;
        }
        let trace: [u8; 16] = hex::decode(trace).ok()?.try_into().ok()?;
        let parent: [u8; 8] = hex::decode(parent).ok()?.try_into().ok()?;
        let flags = hex::decode(flags).ok()?.first().copied()?;
        let zero = |bytes: &[u8]| bytes.iter().all(|byte| *byte == 0);
        (!zero(&trace) && !zero(&parent)).then_some(Self {
            trace_id: TraceId(trace),
            parent_id: SpanId(parent),
            flags,
        })
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id, self.parent_id, self.flags
        )
    }
}

/// What an event carries of the customer call that caused it: the call's `x-request-id` and the
/// span that published it, so that every consumer continues the same trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventCall {
    pub request_id: CallId,
    pub parent: TraceParent,
}

impl CallContext {
    /// Continues the caller's `x-request-id` and `traceparent` (a missing or invalid one is
    /// started anew), with a new span for this hop.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let parent = headers
            .get(TRACEPARENT)
            .and_then(|value| value.to_str().ok())
            .and_then(TraceParent::parse);
        Self::continued(CallId::from_header(headers.get(REQUEST_ID)), parent)
    }

    /// Continues the call that published an event (or starts a new one for an event that carries
    /// none: one published before events carried it) with `span_id` for applying it (see
    /// [`SpanId::of_consumption`]).
    pub fn consuming(call: Option<&EventCall>, span_id: SpanId) -> Self {
        let context = match call {
            Some(call) => Self::continued(call.request_id.clone(), Some(call.parent)),
            None => Self::continued(CallId::new(), None),
        };
        Self { span_id, ..context }
    }

    /// A new span for this hop, in the caller's trace or in a new one.
    fn continued(request_id: CallId, parent: Option<TraceParent>) -> Self {
        let (trace_id, parent_id, flags) = match parent {
            Some(parent) => (parent.trace_id, Some(parent.parent_id), parent.flags),
            None => (TraceId::random(), None, 1),
        };
        Self {
            request_id,
            trace_id,
            span_id: SpanId::random(),
            parent_id,
            flags,
        }
    }

    /// What an event published from this hop carries: this call's id, with this hop as parent.
    pub fn publishing(&self) -> EventCall {
        EventCall {
            request_id: self.request_id.clone(),
            parent: self.as_parent(),
        }
    }

    fn as_parent(&self) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id,
            parent_id: self.span_id,
            flags: self.flags,
        }
    }

    /// The context of the call this task is serving, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// The `traceparent` a call made from this hop carries.
    pub fn traceparent(&self) -> String {
        self.as_parent().to_string()
    }

    /// Sets this call's `x-request-id` and `traceparent` on a call to another role (replacing
    /// whatever was forwarded from outside).
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        if let Ok(id) = HeaderValue::from_str(self.request_id.as_str()) {
            headers.insert(REQUEST_ID, id);
        }
        if let Ok(parent) = HeaderValue::from_str(&self.traceparent()) {
            headers.insert(TRACEPARENT, parent);
        }
    }
}

/// `headers` with the current call's context on them (unchanged outside a call).
pub fn outgoing(headers: &HeaderMap) -> HeaderMap {
    let mut headers = headers.clone();
    if let Some(context) = CallContext::current() {
        context.write_headers(&mut headers);
    }
    headers
}

/// Gives every answer an `x-request-id`, also those made before any route (a refused method,
/// path or body; the admin listener's): the caller's when valid, else a new one. An answer
/// that already has one (every routed call's, from [`observe`]) keeps it.
pub async fn identify(request: Request, next: Next) -> Response {
    let sent = request.headers().get(REQUEST_ID).cloned();
    let mut response = next.run(request).await;
    if !response.headers().contains_key(REQUEST_ID) {
        let id = CallId::from_header(sent.as_ref());
        if let Ok(id) = HeaderValue::from_str(id.as_str()) {
            response.headers_mut().insert(REQUEST_ID, id);
        }
    }
    response
}

/// A new `x-request-id`, for an answer given before the request could be read.
pub fn new_request_id() -> HeaderValue {
    HeaderValue::from_str(CallId::new().as_str()).unwrap_or(HeaderValue::from_static("unknown"))
}

/// Queues the server span of one call for export (see [`crate::otel`]).
fn export_call(
    role: &'static str,
    context: CallContext,
    start: SystemTime,
    method: &str,
    route: &str,
    status: u16,
) {
    use crate::otel::Attribute::{Int, Text};
    let request_id = context.request_id.as_str().to_owned();
    crate::otel::record(crate::otel::FinishedSpan {
        name: format!("{method} {route}"),
        kind: crate::otel::SpanKind::Server,
        role,
        context,
        start,
        end: SystemTime::now(),
        attributes: vec![
            ("http.request.method", Text(method.to_owned())),
            ("http.route", Text(route.to_owned())),
            ("http.response.status_code", Int(i64::from(status))),
            ("onlinebank.request_id", Text(request_id)),
        ],
    });
}

/// `future` with the current call's context and span, for work moved onto a task of its own
/// (a spawned task keeps neither).
pub fn carry<F: Future>(future: F) -> impl Future<Output = F::Output> {
    let span = tracing::Span::current();
    let context = CallContext::current();
    async move {
        match context {
            Some(context) => CURRENT.scope(context, future.instrument(span)).await,
            None => future.instrument(span).await,
        }
    }
}

/// Every call of `role`: continued or started as a trace, run in its `http` span and with its
/// context current, answered with its `x-request-id`, counted and timed in the metrics, and
/// logged in one access line (method, route template, status, duration; never a body or a
/// header's value other than the request id).
pub async fn observe(role: &'static str, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = crate::metrics::method_label(request.method()).unwrap_or("other");
    let context = CallContext::from_headers(request.headers());
    let span = tracing::info_span!(
        "http",
        role,
        request_id = %context.request_id,
        trace_id = %context.trace_id,
        span_id = %context.span_id,
    );
    let request_id = HeaderValue::from_str(context.request_id.as_str()).ok();
    let exported = crate::otel::enabled().then(|| (context.clone(), SystemTime::now()));
    let started = Instant::now();
    let mut response = CURRENT
        .scope(context, next.run(request).instrument(span.clone()))
        .await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    if let Some((context, start)) = exported {
        export_call(role, context, start, method, &route, status);
    }
    span.in_scope(|| {
        tracing::info!(
            target: "onlinebank::access",
            method,
            route = %route,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "{method} {route} {status}"
        );
    });
    crate::metrics::record_call(role, method, route, status, elapsed);
    if let Some(id) = request_id {
        response.headers_mut().insert(REQUEST_ID, id);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert((*name).clone(), HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn a_callers_trace_and_request_id_are_continued_with_a_new_span() {
        let context =
            CallContext::from_headers(&headers(&[(&TRACEPARENT, PARENT), (&REQUEST_ID, "abc-1")]));
        assert_eq!(context.request_id.as_str(), "abc-1");
        assert_eq!(
            context.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(context.parent_id.unwrap().to_string(), "00f067aa0ba902b7");
        assert_ne!(context.span_id.to_string(), "00f067aa0ba902b7");
        let sent = context.traceparent();
        assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(sent.ends_with("-01"));
        assert_eq!(
            TraceParent::parse(&sent).unwrap().parent_id,
            context.span_id
        );
    }

    #[test]
    fn invalid_trace_contexts_and_request_ids_are_started_anew() {
        let zero_trace = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        let zero_parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01";
        let upper = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
        let version_ff = "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let extra_on_00 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x";
        for bad in [
            zero_trace,
            zero_parent,
            upper,
            version_ff,
            extra_on_00,
            "",
            "00-1-2-3",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-future";
        assert!(TraceParent::parse(later).is_some());
        let long = "x".repeat(MAX_REQUEST_ID + 1);
        for bad in ["", "has space", long.as_str()] {
            let context = CallContext::from_headers(&headers(&[(&REQUEST_ID, bad)]));
            assert_ne!(context.request_id.as_str(), bad);
            assert!(uuid::Uuid::parse_str(context.request_id.as_str()).is_ok());
        }
        let fresh = CallContext::from_headers(&HeaderMap::new());
        assert_eq!(fresh.parent_id, None);
        assert_eq!(fresh.flags, 1);
    }

    #[tokio::test]
    async fn calls_made_while_serving_carry_this_hop_as_their_parent() {
        let context = CallContext::from_headers(&headers(&[(&TRACEPARENT, PARENT)]));
        assert_eq!(outgoing(&HeaderMap::new()), HeaderMap::new());
        let forwarded = headers(&[(&TRACEPARENT, PARENT), (&REQUEST_ID, "from-outside")]);
        let sent = CURRENT
            .scope(context.clone(), async { outgoing(&forwarded) })
            .await;
        assert_eq!(sent.get(TRACEPARENT).unwrap(), &context.traceparent());
        assert_eq!(sent.get(REQUEST_ID).unwrap(), context.request_id.as_str());
        assert_eq!(sent.get_all(TRACEPARENT).iter().count(), 1);
    }
}

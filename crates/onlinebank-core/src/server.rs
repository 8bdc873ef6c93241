//! The HTTP server every listener of the bank runs: the doors' connection-level limits.
//!
//! `axum::serve` keeps every connection for as long as the client likes, so a stranger holding
//! connections open (stalled headers, bodies that never end, thousands of idle keep-alives) could
//! use up the process's file descriptors and stop it from accepting anyone. This loop puts a bound
//! on each of those, per process (all listeners of `up` share them):
//!
//! - headers must arrive within `header_timeout` (hyper closes the connection otherwise);
//! - a body must arrive whole within `body_timeout` (408 `request_timeout`), and is read before any
//!   route runs, so a load-shedding slot is only ever taken by a call whose body is complete;
//! - a connection with no call in progress for `idle_timeout` is closed;
//! - at most `max_connections` are open at once; past the cap the connection idle the longest is
//!   closed to make room, and when none is idle the new one is refused;
//! - accept errors (out of file descriptors) close the longest-idle connection and back off,
//!   logged once per burst instead of in a loop.
//!
//! Every path is also checked before routing ([`canonical_path`]): it is percent-decoded once, and
//! dot segments, encoded slashes and backslashes, doubly encoded escapes and control characters are
//! refused with 400, so what a router matches is what is forwarded. Each call carries the client's
//! address ([`ClientAddr`]) for per-client limits.

use crate::client_addr::TrustedProxies;
use crate::error::{ApiError, ErrorCode};
use crate::framing::{CheckedIo, FramingVerdict, HeadLimits, Violation};
use crate::http::MAX_BODY_BYTES;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::{header, HeaderValue, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::util::ServiceExt;

/// File descriptors kept for everything but client connections (databases, the log, peers).
const FD_RESERVE_MIN: u64 = 128;

/// How long a connection asked to close while a call is in progress may take to finish it.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// The connection-level limits of a process.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// A request's headers must arrive within this time.
    pub header_timeout: Duration,
    /// A request's body must arrive whole within this time.
    pub body_timeout: Duration,
    /// A connection without a call in progress is closed after this time.
    pub idle_timeout: Duration,
    /// Connections open at once, over every listener of the process.
    pub max_connections: usize,
    /// Connections one client (an IPv4 address, an IPv6 /64) may hold open at once, stalled
    /// ones included; `None`: a quarter of `max_connections`, between 16 and 256 (a pod whose
    /// open-files limit is containerd's default 1,024 has a cap of 768, so a share of 192: room
    /// for the 100 clients of the original's siege from one address). Trusted proxies
    /// (`--trusted-proxies`) carry many clients and have no share of their own.
    pub max_connections_per_client: Option<usize>,
}

impl ServerLimits {
    /// The default cap on connections: the open-files limit less a reserve for the databases, the
    /// event log and calls to peers (a quarter, at least 128).
    pub fn default_max_connections() -> usize {
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(65_536);
        let reserve = (soft / 4).max(FD_RESERVE_MIN);
        usize::try_from(soft.saturating_sub(reserve).max(16)).unwrap_or(16)
    }

    /// Connections one client may hold at once.
    pub fn per_client_share(&self) -> usize {
        self.max_connections_per_client
            .unwrap_or((self.max_connections / 4).clamp(16, DEFAULT_MAX_PER_CLIENT))
            .clamp(1, self.max_connections.max(1))
    }

    /// The admin listener's own small budget (probes and scrapes), apart from the customers'. It
    /// is an internal door (see [`Door`]): no per-client share applies there.
    pub fn admin(&self) -> ServerLimits {
        ServerLimits {
            max_connections: ADMIN_MAX_CONNECTIONS,
            ..*self
        }
    }
}

/// The default share of one client: plenty for a customer's browser or a NAT of a few offices,
/// and, at about 100 KiB a connection at most (a head, a read buffer, a body), ~25 MiB.
const DEFAULT_MAX_PER_CLIENT: usize = 256;

/// Connections the admin listener holds at once (kubelet's probes and a scraper need a few).
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Raises the soft open-files limit to the hard one (as Go and nginx do), so the connection cap
/// derived from it is as high as the operator allows. Returns the soft limit in force.
pub fn raise_open_files_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(%error, "could not raise the open-files limit");
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

pub use crate::client_addr::{ClientAddr, ClientKey};

/// One open connection, as the cap and the idle timeout see it.
#[derive(Debug)]
struct Tracked {
    /// Calls in progress on it.
    in_flight: AtomicUsize,
    /// Calls it has served: a customer's kept-alive connection has, a stranger's idle one has not.
    served: AtomicU64,
    /// When it last became idle (or opened), in milliseconds since the registry's epoch.
    idle_since_ms: AtomicU64,
    /// Fired to close it (idle too long, or evicted to make room).
    close: CancellationToken,
    /// Whose share it counts in; `None` for a trusted proxy's.
    client: Option<ClientKey>,
}

impl Tracked {
    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
    }

    fn has_served(&self) -> bool {
        self.served.load(Ordering::SeqCst) > 0
    }
}

/// Whose connections a listener takes, as the per-client share sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// Customers and strangers (the gateway's port): each client has a share of the cap.
    Public,
    /// The bank's own roles and its operators (every other role's port, the admin listener):
    /// one gateway may carry every customer's calls, so only the cap applies.
    Internal,
}

/// The open connections, and which ones each client holds.
#[derive(Debug, Default)]
struct Open {
    by_id: HashMap<u64, Arc<Tracked>>,
    per_client: HashMap<ClientKey, HashSet<u64>>,
}

impl Open {
    fn held_by(&self, client: Option<ClientKey>) -> usize {
        client
            .and_then(|client| self.per_client.get(&client))
            .map_or(0, HashSet::len)
    }

    fn insert(&mut self, id: u64, tracked: Arc<Tracked>) {
        if let Some(client) = tracked.client {
            self.per_client.entry(client).or_default().insert(id);
        }
        self.by_id.insert(id, tracked);
    }

    fn remove(&mut self, id: u64) -> Option<Arc<Tracked>> {
        let tracked = self.by_id.remove(&id)?;
        if let Some(client) = tracked.client {
            if let Some(ids) = self.per_client.get_mut(&client) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.per_client.remove(&client);
                }
            }
        }
        Some(tracked)
    }

    /// Removes and returns the idle connection to close first, over every connection: one that
    /// never served a call before one that did (a customer's kept-alive connection goes last),
    /// then one of the client holding the most, then the one idle the longest.
    fn take_idle(&mut self) -> Option<Arc<Tracked>> {
        let id = self
            .by_id
            .iter()
            .filter(|(_, tracked)| tracked.is_idle())
            .min_by_key(|(_, tracked)| {
                (
                    tracked.has_served(),
                    std::cmp::Reverse(self.held_by(tracked.client)),
                    tracked.idle_since_ms.load(Ordering::SeqCst),
                )
            })
            .map(|(id, _)| *id)?;
        self.remove(id)
    }

    /// Removes and returns the client's own connection idle the longest among those that never
    /// served a call (a stalled head, an idle stranger): at its share, a client makes room only
    /// there, never by closing a kept-alive connection it may be reusing that very moment.
    /// Looks at the client's connections only.
    fn take_idle_unused_of(&mut self, client: ClientKey) -> Option<Arc<Tracked>> {
        let ids = self.per_client.get(&client)?;
        let id = ids
            .iter()
            .filter_map(|id| self.by_id.get(id).map(|tracked| (*id, tracked)))
            .filter(|(_, tracked)| tracked.is_idle() && !tracked.has_served())
            .min_by_key(|(_, tracked)| tracked.idle_since_ms.load(Ordering::SeqCst))
            .map(|(id, _)| id)?;
        self.remove(id)
    }
}

/// Every connection the process has open, over all its listeners.
#[derive(Debug)]
pub struct Connections {
    limits: ServerLimits,
    /// Proxies whose connections carry many clients (no per-client share) and whose
    /// `X-Forwarded-For` names the client of each call.
    trusted_proxies: TrustedProxies,
    open: Mutex<Open>,
    next_id: AtomicU64,
    epoch: Instant,
    reaper_started: AtomicBool,
    /// When the last accept error was logged (ms since the epoch), to log once per burst.
    last_accept_error_ms: AtomicU64,
    /// Set on shutdown, before the listeners close: every answer from then on carries
    /// `Connection: close`, so clients stop reusing connections while they still get answers
    /// (a keep-alive connection closed under a client's next call would lose that call).
    draining: AtomicBool,
}

impl Connections {
    pub fn new(limits: ServerLimits, trusted_proxies: TrustedProxies) -> Arc<Self> {
        Arc::new(Self {
            limits,
            trusted_proxies,
            open: Mutex::new(Open::default()),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
            reaper_started: AtomicBool::new(false),
            last_accept_error_ms: AtomicU64::new(u64::MAX),
            draining: AtomicBool::new(false),
        })
    }

    /// From now on every answer closes its connection (see `draining`).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn limits(&self) -> ServerLimits {
        self.limits
    }

    /// Connections open now.
    pub fn open_count(&self) -> usize {
        self.lock().by_id.len()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a place for a new connection from `peer` on a listener of `door`. A client at its
    /// share (public doors only) makes room among its own unused idle connections or is refused;
    /// past the cap, an idle connection is closed (see [`Open::take_idle`]). `None`: refused.
    fn admit(&self, peer: IpAddr, door: Door) -> Option<(u64, Arc<Tracked>)> {
        let client = (door == Door::Public && !self.trusted_proxies.contains(peer))
            .then(|| ClientAddr(peer).key());
        let mut open = self.lock();
        if let Some(key) = client {
            if open.held_by(client) >= self.limits.per_client_share() {
                let Some(evicted) = open.take_idle_unused_of(key) else {
                    metrics::counter!("onlinebank_connections_refused_total", "why" => "per_client")
                        .increment(1);
                    return None;
                };
                evicted.close.cancel();
                metrics::counter!("onlinebank_connections_closed_total", "why" => "per_client")
                    .increment(1);
            }
        }
        if open.by_id.len() >= self.limits.max_connections {
            let Some(evicted) = open.take_idle() else {
                metrics::counter!("onlinebank_connections_refused_total", "why" => "cap")
                    .increment(1);
                return None;
            };
            evicted.close.cancel();
            metrics::counter!("onlinebank_connections_closed_total", "why" => "cap").increment(1);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tracked = Arc::new(Tracked {
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            close: CancellationToken::new(),
            client,
        });
        open.insert(id, tracked.clone());
        metrics::gauge!("onlinebank_connections_open").set(open.by_id.len() as f64);
        Some((id, tracked))
    }

    fn release(&self, id: u64) {
        let mut open = self.lock();
        open.remove(id);
        metrics::gauge!("onlinebank_connections_open").set(open.by_id.len() as f64);
    }

    /// Out of file descriptors (or another accept error): make room and back off.
    async fn on_accept_error(&self, error: &std::io::Error) {
        let now = self.now_ms();
        let last = self.last_accept_error_ms.load(Ordering::Relaxed);
        if last == u64::MAX || now.saturating_sub(last) > 5_000 {
            tracing::warn!(%error, open = self.open_count(), "accept failed; closing an idle connection and backing off");
        }
        self.last_accept_error_ms.store(now, Ordering::Relaxed);
        let evicted = self.lock().take_idle();
        if let Some(evicted) = evicted {
            evicted.close.cancel();
            metrics::counter!("onlinebank_connections_closed_total", "why" => "accept_error")
                .increment(1);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Closes connections idle for longer than the idle timeout, every quarter of it.
    async fn reap_idle(self: Arc<Self>, shutdown: CancellationToken) {
        let idle_ms = u64::try_from(self.limits.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let every = (self.limits.idle_timeout / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.cancelled() => return,
            }
            let now = self.now_ms();
            let mut closed = 0u64;
            for tracked in self.lock().by_id.values() {
                let idle_since = tracked.idle_since_ms.load(Ordering::SeqCst);
                if tracked.is_idle() && now.saturating_sub(idle_since) >= idle_ms {
                    tracked.close.cancel();
                    closed += 1;
                }
            }
            if closed > 0 {
                metrics::counter!("onlinebank_connections_closed_total", "why" => "idle")
                    .increment(closed);
            }
        }
    }
}

/// Marks a call in progress on its connection for as long as it lives.
struct InFlight {
    tracked: Arc<Tracked>,
    connections: Arc<Connections>,
}

impl InFlight {
    fn begin(tracked: &Arc<Tracked>, connections: &Arc<Connections>) -> Self {
        tracked.in_flight.fetch_add(1, Ordering::SeqCst);
        tracked.served.fetch_add(1, Ordering::SeqCst);
        Self {
            tracked: tracked.clone(),
            connections: connections.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.tracked
            .idle_since_ms
            .store(self.connections.now_ms(), Ordering::SeqCst);
        self.tracked.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `router` on `listener` until `shutdown` fires, then finishes the calls in progress.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    connections: Arc<Connections>,
    door: Door,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let limits = connections.limits();
    if !connections.reaper_started.swap(true, Ordering::SeqCst) {
        tokio::spawn(connections.clone().reap_idle(shutdown.clone()));
    }
    let app = guarded(router, limits.body_timeout);
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    connections.on_accept_error(&error).await;
                    continue;
                }
            },
        };
        let Some((id, tracked)) = connections.admit(peer.ip(), door) else {
            drop(stream);
            continue;
        };
        tracker.spawn(serve_connection(
            stream,
            peer,
            app.clone(),
            id,
            tracked,
            connections.clone(),
            shutdown.clone(),
        ));
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// The router behind the doors every call passes first: the path check, then the whole body.
fn guarded(router: Router, body_timeout: Duration) -> Router {
    router
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            body_timeout,
            read_body_in_time,
        ))
        .layer(axum::middleware::from_fn(canonical_path))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn(known_method))
        .layer(axum::middleware::from_fn(crate::trace::identify))
}

/// Largest framework error text kept as the message of its JSON error.
const MAX_ERROR_TEXT: usize = 300;

/// Every error answer in the one documented shape: an error that a framework part answered in
/// plain text or with no body (405 from a router, 400 from a query or path extractor) becomes
/// `{"error":{"code","message"}}` with a code for its status; its headers (`Allow`) stay.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_ERROR_TEXT * 4)
        .await
        .ok()
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty() && text.len() <= MAX_ERROR_TEXT);
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::MethodNotAllowed,
            "this method is not allowed here",
        ),
        StatusCode::NOT_FOUND => (ErrorCode::NotFound, "no such route"),
        StatusCode::PAYLOAD_TOO_LARGE => {
            (ErrorCode::PayloadTooLarge, "the request body is too large")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            ErrorCode::UnsupportedMediaType,
            "expected content-type: application/json",
        ),
        StatusCode::REQUEST_TIMEOUT => (
            ErrorCode::RequestTimeout,
            "the request did not arrive in time",
        ),
        status if status.is_server_error() => (
            ErrorCode::Internal,
            "internal error, the request may be retried",
        ),
        _ => (ErrorCode::InvalidRequest, "the request is not valid"),
    };
    let message = match (status.is_client_error(), text) {
        (true, Some(text)) => text,
        _ => message.to_owned(),
    };
    let error = ApiError::new(status, code, message).into_response();
    let (error_parts, error_body) = error.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &error_parts.headers {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, error_body)
}

/// Largest read buffer hyper keeps per connection: a whole head (16 KiB at most, checked before
/// hyper sees it) and a piece of a body. hyper's default (~400 KB) let an unfinished head hold
/// that much of every connection.
const MAX_READ_BUFFER: usize = 32 * 1024;

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    id: u64,
    tracked: Arc<Tracked>,
    connections: Arc<Connections>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let limits = connections.limits();
    let verdict = Arc::new(FramingVerdict::default());
    let io = CheckedIo::new(stream, HeadLimits::default(), verdict.clone());
    let service = connection_service(peer, app, &tracked, &connections, verdict);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_READ_BUFFER)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut closing = false;
    let outcome = loop {
        tokio::select! {
            outcome = connection.as_mut() => break Some(outcome),
            _ = tracked.close.cancelled(), if !closing => {
                if tracked.is_idle() {
                    // Nothing in progress (idle, or headers not yet complete): just close.
                    break None;
                }
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = shutdown.cancelled(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(CLOSE_GRACE), if closing => break None,
        }
    };
    if let Some(Err(error)) = outcome {
        tracing::debug!(%error, client = %peer, "connection ended with an error");
    }
    connections.release(id);
}

/// The service of one connection: each call marked in progress, its client resolved (through
/// trusted proxies), and a call whose head the framing check refused answered with the refusal.
fn connection_service(
    peer: SocketAddr,
    app: Router,
    tracked: &Arc<Tracked>,
    connections: &Arc<Connections>,
    verdict: Arc<FramingVerdict>,
) -> impl hyper::service::Service<
    Request<hyper::body::Incoming>,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl std::future::Future<Output = Result<Response, std::convert::Infallible>> + Send,
> {
    let tracked = tracked.clone();
    let connections = connections.clone();
    let calls = Arc::new(AtomicU64::new(0));
    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
        let call = InFlight::begin(&tracked, &connections);
        let refused = verdict.of(calls.fetch_add(1, Ordering::SeqCst));
        let client = connections
            .trusted_proxies
            .client_of(peer.ip(), request.headers());
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(client);
        let app = app.clone();
        let connections = connections.clone();
        async move {
            let mut response = match refused {
                Some(violation) => framing_refusal(violation),
                None => match app.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                },
            };
            if connections.is_draining() || refused.is_some() {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response.map(|body| Body::new(AnswerInFlight { body, _call: call })))
        }
    })
}

/// An answer's body that keeps its call in progress until hyper has taken the last of it, so
/// a connection still sending an answer is never closed as idle (by the reaper, or to make room).
struct AnswerInFlight {
    body: Body,
    _call: InFlight,
}

impl http_body::Body for AnswerInFlight {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The answer to a request whose framing was refused (see [`crate::framing`]).
fn framing_refusal(violation: Violation) -> Response {
    let (status, code) = if violation.is_size() {
        (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::HeadersTooLarge,
        )
    } else if violation == Violation::RequestLineTooLong {
        (StatusCode::URI_TOO_LONG, ErrorCode::UriTooLong)
    } else {
        (StatusCode::BAD_REQUEST, ErrorCode::InvalidFraming)
    };
    tracing::debug!(why = violation.as_str(), "request framing refused");
    let mut response = ApiError::new(status, code, violation.message()).into_response();
    // The request was not read: its id, if it sent one, is not known.
    response
        .headers_mut()
        .insert(crate::trace::REQUEST_ID, crate::trace::new_request_id());
    response
}

/// Answers 501 `not_implemented` to a method the bank serves on no route, before any route (and
/// so before metrics) sees it: the methods a stranger can make up never become anything the
/// process keeps.
async fn known_method(request: Request, next: Next) -> Response {
    if crate::metrics::method_label(request.method()).is_none() {
        metrics::counter!("onlinebank_http_methods_refused_total").increment(1);
        return ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            ErrorCode::NotImplemented,
            "this method is not served by the bank",
        )
        .into_response();
    }
    next.run(request).await
}

/// Reads the whole body (bounded in size and time) before anything else sees the call.
async fn read_body_in_time(
    axum::extract::State(body_timeout): axum::extract::State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    // A body over the limit is read up to it (not refused on its declared length alone), so the
    // client, still sending, gets to read the 413 instead of a reset connection.
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(body_timeout, read_whole(body, MAX_BODY_BYTES)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(BodyRead::TooLarge)) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            "the request body is too large",
        )
        .into_response(),
        Ok(Err(BodyRead::Broken)) => {
            // The body broke its framing (a malformed chunk) or the connection ended mid-body.
            let mut response = ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidFraming,
                "the request body is malformed or ended early",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
        Err(_) => {
            metrics::counter!("onlinebank_body_timeouts_total").increment(1);
            let mut response = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::RequestTimeout,
                "the request body did not arrive in time",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

/// Why a body could not be read whole.
enum BodyRead {
    /// Over the limit.
    TooLarge,
    /// It broke its framing, or the connection ended before it did.
    Broken,
}

/// Reads a body whole, at most `limit` bytes. A body that comes in one piece is kept as it came;
/// one in several pieces is copied into one buffer piece by piece as it arrives, so a stalled
/// body holds its own bytes only, not the connection's read buffers its pieces point into.
async fn read_whole(mut body: Body, limit: usize) -> Result<bytes::Bytes, BodyRead> {
    use http_body_util::BodyExt;
    let mut single: Option<bytes::Bytes> = None;
    let mut copied: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| BodyRead::Broken)?.into_data() else {
            continue; // trailers
        };
        let total = single.as_ref().map_or(0, bytes::Bytes::len) + copied.len() + data.len();
        if total > limit {
            return Err(BodyRead::TooLarge);
        }
        match single.take() {
            None if copied.is_empty() => single = Some(data),
            Some(first) => {
                copied.extend_from_slice(&first);
                copied.extend_from_slice(&data);
            }
            None => copied.extend_from_slice(&data),
        }
    }
    Ok(single.unwrap_or_else(|| bytes::Bytes::from(copied)))
}

/// Routes only canonical paths: see [`canonicalize`].
async fn canonical_path(mut request: Request, next: Next) -> Response {
    match canonicalize(request.uri()) {
        Ok(None) => next.run(request).await,
        Ok(Some(uri)) => {
            *request.uri_mut() = uri;
            next.run(request).await
        }
        Err(message) => {
            metrics::counter!("onlinebank_paths_refused_total").increment(1);
            ApiError::bad_request(ErrorCode::InvalidPath, message).into_response()
        }
    }
}

/// The path as routed and forwarded: each segment percent-decoded once, then re-encoded only
/// where a URI path needs it. Refused: a segment that is `.` or `..` (plain or encoded), an
/// encoded `/` or `\`, an escape that decodes to another escape (`%252e`), an invalid escape or
/// invalid UTF-8, and control characters. `Ok(None)`: the path is already canonical.
pub fn canonicalize(uri: &Uri) -> Result<Option<Uri>, &'static str> {
    let path = uri.path();
    let mut canonical = String::with_capacity(path.len());
    for (index, raw) in path.split('/').enumerate() {
        if index > 0 {
            canonical.push('/');
        }
        let decoded = decode_segment(raw)?;
        if decoded == "." || decoded == ".." {
            return Err("dot segments are not allowed in paths");
        }
        for character in decoded.chars() {
            match character {
                '/' | '\\' => return Err("encoded slashes are not allowed in path segments"),
                '%' => return Err("doubly encoded characters are not allowed in paths"),
                c if c.is_control() => return Err("control characters are not allowed in paths"),
                c if c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@".contains(c) => {
                    canonical.push(c)
                }
                c => {
                    let mut buffer = [0u8; 4];
                    for byte in c.encode_utf8(&mut buffer).bytes() {
                        canonical.push_str(&format!("%{byte:02X}"));
                    }
                }
            }
        }
    }
    if canonical == path {
        return Ok(None);
    }
    let rebuilt = match uri.query() {
        Some(query) => format!("{canonical}?{query}"),
        None => canonical,
    };
    rebuilt
        .parse::<Uri>()
        .map(Some)
        .map_err(|_| "the path is not valid")
}

fn decode_segment(raw: &str) -> Result<String, &'static str> {
    if !raw.contains('%') {
        return Ok(raw.to_owned());
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = bytes
                .get(at + 1..at + 3)
                .and_then(|pair| std::str::from_utf8(pair).ok())
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or("invalid percent-escape in the path")?;
            decoded.push(hex);
            at += 3;
        } else {
            decoded.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| "the path is not valid UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(path: &str) -> Result<String, &'static str> {
        let uri: Uri = path.parse().map_err(|_| "unparseable")?;
        Ok(canonicalize(&uri)?.map_or_else(|| path.to_owned(), |uri| uri.to_string()))
    }

    fn limits(max_connections: usize, per_client: usize) -> ServerLimits {
        ServerLimits {
            header_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            max_connections,
            max_connections_per_client: Some(per_client),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    fn busy(tracked: &Tracked) {
        tracked.in_flight.fetch_add(1, Ordering::SeqCst);
        tracked.served.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn a_client_at_its_share_closes_an_unused_one_of_its_own_or_is_refused() {
        let connections = Connections::new(limits(10, 3), TrustedProxies::default());
        let public = |address: &str| connections.admit(ip(address), Door::Public);
        let held: Vec<_> = (0..3).filter_map(|_| public("127.0.0.1")).collect();
        assert_eq!(held.len(), 3);
        busy(&held[0].1);
        busy(&held[1].1);
        // At its share: its unused idle connection (a stalled head, say) makes room.
        let fourth = public("127.0.0.1");
        assert!(held[2].1.close.is_cancelled());
        fourth.iter().for_each(|(_, tracked)| busy(tracked));
        assert!(public("127.0.0.1").is_none());
        // A kept-alive connection that served a call is never closed to make room for its own
        // client's next one: the new one is refused instead.
        held[0].1.in_flight.fetch_sub(1, Ordering::SeqCst);
        assert!(public("127.0.0.1").is_none());
        assert!(!held[0].1.close.is_cancelled());
        assert!(public("127.0.0.2").is_some());
        // Addresses of one IPv6 /64 share one share.
        let v6: Vec<_> = ["2001:db8::1", "2001:db8::2", "2001:db8::3", "2001:db8::4"]
            .into_iter()
            .filter_map(|address| {
                let admitted = public(address);
                admitted.iter().for_each(|(_, tracked)| busy(tracked));
                admitted
            })
            .collect();
        assert_eq!(v6.len(), 3);
    }

    #[test]
    fn an_internal_door_has_no_per_client_share() {
        let connections = Connections::new(limits(10, 2), TrustedProxies::default());
        let held: Vec<_> = (0..8)
            .filter_map(|_| connections.admit(ip("10.1.1.1"), Door::Internal))
            .collect();
        held.iter().for_each(|(_, tracked)| busy(tracked));
        assert_eq!(held.len(), 8);
    }

    #[test]
    fn past_the_cap_a_connection_that_served_a_call_is_closed_last() {
        let connections = Connections::new(limits(4, 4), TrustedProxies::default());
        let customer = connections.admit(ip("127.0.0.2"), Door::Public);
        if let Some((_, tracked)) = &customer {
            busy(tracked);
            tracked.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        for _ in 0..3 {
            assert!(connections.admit(ip("127.0.0.9"), Door::Public).is_some());
        }
        for _ in 0..10 {
            assert!(connections.admit(ip("127.0.0.8"), Door::Public).is_some());
        }
        assert_eq!(connections.open_count(), 4);
        assert!(customer.is_some_and(|(_, tracked)| !tracked.close.is_cancelled()));
    }

    #[test]
    fn a_trusted_proxy_has_no_share_of_its_own() {
        let proxies: TrustedProxies = "10.0.0.0/8".parse().unwrap_or_default();
        let connections = Connections::new(limits(10, 2), proxies);
        let held: Vec<_> = (0..8)
            .filter_map(|_| connections.admit(ip("10.1.1.1"), Door::Public))
            .collect();
        held.iter().for_each(|(_, tracked)| busy(tracked));
        assert_eq!(held.len(), 8);
    }

    #[test]
    fn ordinary_paths_pass_unchanged() {
        for path in [
            "/",
            "/api/v1/accounts/1001",
            "/api/v1/accounts/110-123456789/transactions?limit=10&before=3",
            "/requests/0190f3c4-6c1b-7000-8000-000000000000",
            "/mypages/search/findByAccountNo?accountNo=%2e%2e",
        ] {
            assert_eq!(canon(path).as_deref(), Ok(path), "{path}");
        }
    }

    #[test]
    fn harmless_escapes_are_decoded_before_routing() {
        assert_eq!(
            canon("/api/v1/accounts/%31001").as_deref(),
            Ok("/api/v1/accounts/1001")
        );
        assert_eq!(canon("/api/%761/ping").as_deref(), Ok("/api/v1/ping"));
    }

    #[test]
    fn dot_segments_encoded_slashes_and_double_encoding_are_refused() {
        for path in [
            "/api/v1/accounts/%2e%2e/%2e%2e/%2e%2e/internal/v1/accounts",
            "/api/v1/accounts/%2E%2E/internal",
            "/api/v1/accounts/../internal/v1/accounts",
            "/api/v1/accounts/./1001",
            "/api/v1/accounts/.%2e/x",
            "/api/v1/accounts/%252e%252e/x",
            "/api/v1/accounts/..%2f..%2finternal",
            "/api/v1/accounts/1001%2f..",
            "/api/v1/accounts/1001%5c..",
            "/api/v1/requests/%FF",
            "/api/v1/requests/%zz",
            "/api/v1/requests/%00",
        ] {
            assert!(
                canon(path).is_err(),
                "{path} was let through: {:?}",
                canon(path)
            );
        }
    }
}

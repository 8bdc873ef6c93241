//! The gateway role: the bank's one public door.
//!
//! It serves the web page, checks bearer tokens locally (no call to auth, so reads survive an
//! auth outage), routes each call to the role that owns it — writes to request, reads to mypage,
//! sign-up and login to auth — balancing across a role's instances, and translates the original
//! system's legacy endpoints ([`legacy`]). It holds no state of its own.

mod admission;
mod legacy;
mod openapi;
mod page;
mod proxy;
mod quiesce;
mod revocations;
mod served;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use http::Method;
use onlinebank_core::command::RequestType;
use onlinebank_core::http::{bearer_token, shed};
use onlinebank_core::token::TokenKey;
use onlinebank_core::{ApiError, Role, RoleContext};
use proxy::Upstreams;
pub use quiesce::Quiesce;
use served::Served;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Clone)]
pub(crate) struct GatewayState {
    upstreams: Arc<Upstreams>,
    token_key: TokenKey,
    /// Write calls in flight; beyond the limit, calls are shed.
    write_slots: Arc<Semaphore>,
    /// Read calls in flight; beyond the limit, calls are shed.
    read_slots: Arc<Semaphore>,
    /// Places of the unauthenticated routes, legacy logins included.
    admission: Arc<admission::PublicAdmission>,
    /// The bank's public base URL for links (`--public-url`), without a trailing slash; empty for
    /// relative links.
    public_url: Arc<str>,
    /// Sessions ended by logout (see [`revocations`]).
    revocations: Arc<revocations::Revocations>,
    /// Presented to auth's internal endpoints (legacy logins).
    internal_token: Arc<str>,
    /// The web page in each language, and its script and style.
    pages: Arc<page::Pages>,
    /// The OpenAPI document and its reference page.
    docs: Arc<openapi::Docs>,
    /// The pause of new writes for a quiesced backup (see [`quiesce`]).
    quiesce: Quiesce,
}

/// Which of the gateway's shedding semaphores a call takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slots {
    Write,
    Read,
}

impl GatewayState {
    /// Takes a write or read slot at once, or answers 503 `service_busy` (never queues).
    pub(crate) fn slot(&self, slots: Slots) -> Result<OwnedSemaphorePermit, ApiError> {
        let semaphore = match slots {
            Slots::Write => &self.write_slots,
            Slots::Read => &self.read_slots,
        };
        let slot = semaphore.clone().try_acquire_owned().map_err(|_| {
            metrics::counter!("onlinebank_shed_total", "role" => "gateway").increment(1);
            ApiError::busy()
        })?;
        self.quiesce.admit(slots, slot)
    }
}

/// Sign-up and login: places of their own (see [`admission`]), never the customers' write slots.
fn public(
    router: Router<GatewayState>,
    admission: Arc<admission::PublicAdmission>,
) -> Router<GatewayState> {
    router.route_layer(axum::middleware::from_fn_with_state(
        admission,
        admission::admit_public,
    ))
}

/// Builds the gateway; `quiesce` is its write pause, which the process's admin listener also
/// serves (`POST /quiesce`, `POST /resume`).
pub async fn build(
    ctx: &RoleContext,
    quiesce: &Quiesce,
) -> anyhow::Result<onlinebank_core::RoleParts> {
    let state = GatewayState::start(ctx, quiesce)?;
    Ok(onlinebank_core::RoleParts {
        db: None,
        router: routes(state),
    })
}

impl GatewayState {
    /// The gateway's state, with its background work (instance readiness, logged-out sessions)
    /// spawned on `ctx`'s tasks.
    fn start(ctx: &RoleContext, quiesce: &Quiesce) -> anyhow::Result<Self> {
        let settings = &ctx.settings;
        for role in [Role::Request, Role::Auth, Role::Mypage] {
            settings.peers.first(role)?;
        }
        // Long enough for the request role's bounded wait, short enough to never hang.
        let timeout =
            settings.request.wait + settings.request.step_up_timeout + Duration::from_secs(5);
        let peers = ctx.peers(timeout)?;
        let write_slots = Arc::new(Semaphore::new(settings.max_in_flight_writes));
        quiesce.arm(
            peers.clone(),
            settings.internal_token(),
            write_slots.clone(),
            settings.max_in_flight_writes,
        );
        let upstreams = Arc::new(Upstreams::new(peers, timeout));
        let revocations = Arc::new(revocations::Revocations::default());
        ctx.tasks.spawn(revocations.clone().follow(
            upstreams.clone(),
            settings.internal_token(),
            ctx.shutdown.clone(),
        ));
        Ok(GatewayState {
            upstreams,
            token_key: settings.token_key(),
            write_slots,
            read_slots: Arc::new(Semaphore::new(settings.max_in_flight_reads)),
            admission: Arc::new(admission::PublicAdmission::new(
                settings.gateway.public_doors.in_flight,
                settings.gateway.public_doors.per_client,
                settings.gateway.public_doors.wait,
            )),
            public_url: settings
                .gateway
                .public_url
                .as_deref()
                .unwrap_or_default()
                .trim_end_matches('/')
                .into(),
            revocations,
            internal_token: settings.internal_token().into(),
            pages: Arc::new(page::Pages::new()?),
            docs: Arc::new(openapi::Docs::new()?),
            quiesce: quiesce.clone(),
        })
    }
}

/// What the route table's layers need: the read slots and the places of the unauthenticated
/// routes.
struct Layers {
    read_slots: Arc<Semaphore>,
    admission: Arc<admission::PublicAdmission>,
}

/// Every public route of the gateway and the role it goes to, each added through [`Served`] so
/// that `served_routes` (the route table test's list) lists exactly what the router serves.
fn table(layers: &Layers) -> Served<GatewayState> {
    let read_slots = layers.read_slots.clone();
    let reads = move |router: Router<GatewayState>| {
        router.route_layer(axum::middleware::from_fn_with_state(
            ("gateway", read_slots),
            shed,
        ))
    };
    let admission = layers.admission.clone();
    Served::new()
        .get("/", index)
        .get("/index.html", index_html)
        .get("/assets/app.js", script)
        .get("/assets/app.css", style)
        .get(openapi::DOCUMENT_PATH, openapi::document)
        .get(openapi::PAGE_PATH, openapi::page)
        .get(openapi::SCRIPT_PATH, openapi::script)
        .get(openapi::STYLE_PATH, openapi::style)
        .merge(
            Served::new()
                .post("/api/v1/customers", to_auth)
                .post("/api/v1/sessions", to_auth)
                .with_layer(|router| public(router, admission)),
        )
        // Legacy calls carry credentials: each takes its slot only after its login.
        .post("/requests", legacy::submit)
        .get("/requests", legacy::list)
        .get("/requests/{id}", legacy::show)
        .get("/mypages/{account_no}", legacy::mypage)
        .get("/profile/requests", legacy::profile)
        .get(
            "/mypages/search/findByAccountNo",
            legacy::find_by_account_no,
        )
        .delete("/api/v1/sessions/current", to_auth_with_token)
        // Shed by what the call is: balance and history count as reads.
        .post("/api/v1/requests", submit_request)
        .merge(
            Served::new()
                .get("/api/v1/requests", to_request)
                .get("/api/v1/requests/{id}", to_request)
                .get("/api/v1/accounts", to_mypage)
                .get("/api/v1/accounts/{*rest}", to_mypage)
                .get("/api/v1/ping", to_mypage_open)
                .with_layer(reads),
        )
}

/// Every public route a gateway's listener serves: its table's, and the health routes every
/// role's listener adds.
#[cfg(test)]
pub(crate) fn served_routes() -> Vec<served::Route> {
    let layers = Layers {
        read_slots: Arc::new(Semaphore::new(1)),
        admission: Arc::new(admission::PublicAdmission::new(
            1,
            1,
            Duration::from_secs(1),
        )),
    };
    let (_, mut routes) = table(&layers).into_parts();
    for path in [
        onlinebank_core::http::HEALTH_LIVE,
        onlinebank_core::http::HEALTH_READY,
    ] {
        routes.push(served::Route {
            method: Method::GET,
            path,
        });
    }
    routes
}

fn routes(state: GatewayState) -> Router {
    let layers = Layers {
        read_slots: state.read_slots.clone(),
        admission: state.admission.clone(),
    };
    let (router, _) = table(&layers).into_parts();
    router
        // Not a route: internal endpoints are never reachable through the public door.
        .route(
            "/internal/{*rest}",
            any(|| async { onlinebank_core::http::not_found().await }),
        )
        .with_state(state)
        .layer(axum::middleware::map_response(nosniff))
}

/// The web page, in the customer's language.
#[utoipa::path(get, path = "/", tag = "page", security(()),
    params(("Accept-Language" = Option<String>, Header, nullable = false, description = "`ko` or `en` (else English), unless the language cookie is set")),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 304, description = "Not modified (`If-None-Match` named this version)"),
    )
)]
async fn index(State(state): State<GatewayState>, headers: http::HeaderMap) -> Response {
    state.pages.index(&headers)
}

/// The web page (as `/`).
#[utoipa::path(get, path = "/index.html", tag = "page", security(()),
    params(("Accept-Language" = Option<String>, Header, nullable = false, description = "`ko` or `en` (else English), unless the language cookie is set")),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 304, description = "Not modified (`If-None-Match` named this version)"),
    )
)]
async fn index_html(State(state): State<GatewayState>, headers: http::HeaderMap) -> Response {
    state.pages.index(&headers)
}

/// The web page's script.
#[utoipa::path(get, path = "/assets/app.js", tag = "page", security(()),
    responses(
        (status = 200, description = "The script", content_type = "text/javascript", body = String),
        (status = 304, description = "Not modified"),
    )
)]
async fn script(State(state): State<GatewayState>, headers: http::HeaderMap) -> Response {
    state.pages.script(&headers)
}

/// The web page's style.
#[utoipa::path(get, path = "/assets/app.css", tag = "page", security(()),
    responses(
        (status = 200, description = "The style sheet", content_type = "text/css", body = String),
        (status = 304, description = "Not modified"),
    )
)]
async fn style(State(state): State<GatewayState>, headers: http::HeaderMap) -> Response {
    state.pages.style(&headers)
}

/// No answer of the gateway is ever sniffed into another type (a JSON error as HTML, say).
async fn nosniff(mut response: Response) -> Response {
    response.headers_mut().insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    response
}

/// Refuses a call without a valid bearer token, or with a logged-out session's, before it
/// reaches any role.
fn check_token(state: &GatewayState, request: &Request) -> Result<(), ApiError> {
    let token = bearer_token(request.headers()).ok_or_else(ApiError::unauthorized)?;
    checked_bearer(state, token).map(|_| ())
}

/// The one check of every bearer token a client presents, on every route that takes one (v1 and
/// legacy alike): signed by the bank, not expired, and its session not logged out. The roles
/// behind check the signature again but cannot know of a logout; only this check refuses it.
pub(crate) fn checked_bearer<'token>(
    state: &GatewayState,
    token: &'token str,
) -> Result<&'token str, ApiError> {
    let claims = state
        .token_key
        .verify(token, onlinebank_core::time::now_ms())
        .map_err(|_| ApiError::unauthorized())?;
    if state.revocations.is_revoked(&claims.sid) {
        return Err(ApiError::unauthorized());
    }
    Ok(token)
}

async fn to_auth_with_token(State(state): State<GatewayState>, request: Request) -> Response {
    if let Err(error) = check_token(&state, &request) {
        return error.into_response();
    }
    state.upstreams.forward(Role::Auth, request).await
}

async fn to_auth(State(state): State<GatewayState>, request: Request) -> Response {
    state.upstreams.forward(Role::Auth, request).await
}

async fn to_request(State(state): State<GatewayState>, request: Request) -> Response {
    if let Err(error) = check_token(&state, &request) {
        return error.into_response();
    }
    state.upstreams.forward(Role::Request, request).await
}

async fn to_mypage(State(state): State<GatewayState>, request: Request) -> Response {
    if let Err(error) = check_token(&state, &request) {
        return error.into_response();
    }
    state.upstreams.forward(Role::Mypage, request).await
}

async fn to_mypage_open(State(state): State<GatewayState>, request: Request) -> Response {
    state.upstreams.forward(Role::Mypage, request).await
}

/// The one field of a request body the gateway routes by (the role behind it checks the rest).
#[derive(serde::Deserialize)]
struct RequestKind<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

/// `POST /api/v1/requests`: balance and history go to the read side, everything else to request.
async fn submit_request(State(state): State<GatewayState>, request: Request) -> Response {
    if let Err(error) = check_token(&state, &request) {
        return error.into_response();
    }
    let (parts, body) = request.into_parts();
    let bytes = match proxy::read_body(body).await {
        Ok(bytes) => bytes,
        Err(error) => return error.into_response(),
    };
    let kind = serde_json::from_slice::<RequestKind>(&bytes)
        .ok()
        .and_then(|body| body.kind)
        .and_then(|kind| RequestType::parse(&kind));
    let role = match kind {
        Some(kind) if kind.is_read() => Role::Mypage,
        _ => Role::Request,
    };
    let slots = if role == Role::Mypage {
        Slots::Read
    } else {
        Slots::Write
    };
    let _slot = match state.slot(slots) {
        Ok(slot) => slot,
        Err(error) => return error.into_response(),
    };
    let request = Request::from_parts(parts, Body::from(bytes));
    debug_assert!(request.method() == Method::POST);
    state.upstreams.forward(role, request).await
}

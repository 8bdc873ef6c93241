//! Starting roles: each gets its router plus health endpoints on its own listener; `up` starts
//! all six in one process, `serve` one. Every process also has an admin listener
//! (`--admin-listen`) with `/metrics` and the process's `/health/*`: operators' endpoints never
//! share the public port. All listeners of a process share its connection limits
//! ([`onlinebank_core::server`]).
//!
//! Shutdown on SIGTERM/SIGINT, in order: readiness goes false (load balancers and the gateway stop
//! sending new calls) and every answer closes its connection (clients stop reusing them) for the
//! drain delay; the listeners stop accepting and in-flight calls finish
//! (bounded); then background work stops: consumers commit their position, relays flush the
//! outbox; the process exits 0.

use crate::cli::{ServeArgs, UpArgs};
use anyhow::Context;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use onlinebank_bus::Bus;
use onlinebank_core::build_info::ProcessInfo;
use onlinebank_core::http::{health_router, Readiness, ReadyCheck};
use onlinebank_core::server::{Connections, Door};
use onlinebank_core::{ApiError, ErrorCode};
use onlinebank_core::{Role, RoleContext, RoleParts, Settings};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::service_fn;
use tower::util::ServiceExt;

/// How long shutdown waits for in-flight work.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

async fn build_role(
    role: Role,
    ctx: &RoleContext,
    bus: &Bus,
    quiesce: &onlinebank_gateway::Quiesce,
) -> anyhow::Result<RoleParts> {
    let router = match role {
        Role::Gateway => onlinebank_gateway::build(ctx, quiesce).await,
        Role::Request => onlinebank_request::build(ctx, bus).await,
        Role::Auth => onlinebank_auth::build(ctx).await,
        Role::Account => onlinebank_account::build(ctx, bus).await,
        Role::History => onlinebank_history::build(ctx, bus).await,
        Role::Mypage => onlinebank_mypage::build(ctx, bus).await,
    };
    router.with_context(|| format!("starting the {role} role"))
}

/// The process's serving state: what shutdown has to stop, in order.
struct Process {
    ctx: RoleContext,
    readiness: Readiness,
    /// Fires first on shutdown: listeners stop accepting and finish in-flight calls.
    stop_serving: CancellationToken,
    servers: TaskTracker,
    drain_delay: Duration,
    /// `up`: the roles call each other through their routers (see [`onlinebank_core::LocalRoles`]).
    in_process_calls: bool,
    /// Every connection of the process's public listeners (the cap is per process).
    connections: Arc<Connections>,
    /// The admin listener's connections: a budget of their own, so that a flood of the public
    /// port cannot fail the probes and get the process restarted.
    admin_connections: Arc<Connections>,
    /// Each started role's own readiness check, for the admin listener's `/health/ready`.
    checks: Arc<std::sync::Mutex<Vec<ReadyCheck>>>,
    /// The gateway's write pause, if it runs here: the admin listener's `/quiesce`, `/resume`.
    quiesce: onlinebank_gateway::Quiesce,
}

impl Process {
    fn new(settings: Settings, drain_delay: Duration, in_process_calls: bool) -> Self {
        let connections = Connections::new(settings.server, settings.trusted_proxies.clone());
        let admin_connections = Connections::new(settings.server.admin(), Default::default());
        Self {
            ctx: RoleContext {
                settings: Arc::new(settings),
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                local: Default::default(),
            },
            readiness: Readiness::default(),
            stop_serving: CancellationToken::new(),
            servers: TaskTracker::new(),
            drain_delay,
            in_process_calls,
            connections,
            admin_connections,
            checks: Default::default(),
            quiesce: Default::default(),
        }
    }

    /// Serves `router` on `listener` until shutdown, with the process's connection limits: the
    /// gateway's port is the public door (per-client shares), the other roles' are internal.
    fn spawn_server(&self, role: Role, listener: TcpListener, router: Router) {
        let door = if role == Role::Gateway {
            Door::Public
        } else {
            Door::Internal
        };
        let connections = self.connections.clone();
        self.spawn_server_with(role.as_str(), listener, router, connections, door);
    }

    fn spawn_server_with(
        &self,
        name: &'static str,
        listener: TcpListener,
        router: Router,
        connections: Arc<Connections>,
        door: Door,
    ) {
        let shutdown = self.stop_serving.clone();
        self.servers.spawn(async move {
            if let Err(error) =
                onlinebank_core::server::serve(listener, router, connections, door, shutdown).await
            {
                tracing::error!(listener = name, error = %format!("{error:#}"), "server stopped");
            }
        });
    }

    /// Every started role's readiness check at once: the process's readiness.
    fn every_check(&self) -> ReadyCheck {
        let checks = self.checks.clone();
        Arc::new(move || {
            let checks = checks
                .lock()
                .map(|checks| checks.clone())
                .unwrap_or_default();
            Box::pin(async move {
                for check in checks {
                    if !check().await {
                        return false;
                    }
                }
                true
            })
        })
    }

    /// Binds the admin listener: `/metrics`, `/info` (what runs, also the `onlinebank_build_info` gauge),
    /// and `/health/*` of the process (ready when every role in it is).
    async fn start_admin(
        &self,
        address: &str,
        about: ProcessInfo,
    ) -> anyhow::Result<std::net::SocketAddr> {
        let listener = bind(address).await?;
        let address = listener.local_addr()?;
        onlinebank_core::metrics::build_info(&about);
        let router = health_router("admin", self.readiness.clone(), self.every_check())
            .merge(onlinebank_core::metrics::router())
            .merge(onlinebank_core::build_info::router(about))
            .fallback(onlinebank_core::http::not_found);
        // Embedded mode: `onlinebank backup` asks this process for the cut (see crate::backup).
        let router = match &self.ctx.settings.database {
            None => router.merge(crate::backup::admin::router(
                self.ctx.settings.data_dir.clone(),
                self.ctx.settings.internal_token().into(),
            )),
            Some(_) => router,
        };
        // A gateway here: pause writes for a quiesced backup (see onlinebank_gateway::Quiesce).
        let router = match self.quiesce.admin_router() {
            Some(quiesce) => router.merge(quiesce),
            None => router,
        };
        let connections = self.admin_connections.clone();
        self.spawn_server_with("admin", listener, router, connections, Door::Internal);
        crate::logs::announce(&format!("onlinebank admin listening on http://{address}"));
        tracing::info!(%address, "admin listener started");
        Ok(address)
    }
}

/// Builds `role` and serves it on `listener` in the background.
async fn start_role(
    role: Role,
    listener: TcpListener,
    process: &Process,
    bus: &Bus,
) -> anyhow::Result<()> {
    // Serve at once: while the role is being built, `/health/live` answers 200 and everything
    // else (readiness included) 503 `starting`.
    let built: Arc<OnceLock<Router>> = Arc::new(OnceLock::new());
    let address = listener.local_addr()?;
    let front = front_router(role.as_str(), built.clone());
    if process.in_process_calls {
        process.ctx.local.register(role, front.clone());
    }
    process.spawn_server(role, listener, front);
    crate::logs::announce(&format!("onlinebank {role} starting on http://{address}"));
    let parts = build_until_started(role, process, bus).await?;
    let check: ReadyCheck = {
        let db = parts.db.clone();
        let bus = bus.clone();
        let uses_bus = !matches!(role, Role::Gateway | Role::Auth);
        Arc::new(move || {
            let db = db.clone();
            let bus = bus.clone();
            Box::pin(async move {
                let db_ok = match &db {
                    Some(db) => db.ping().await,
                    None => true,
                };
                db_ok && (!uses_bus || bus.ping().await)
            })
        })
    };
    if let Ok(mut checks) = process.checks.lock() {
        checks.push(check.clone());
    }
    if !matches!(role, Role::Gateway | Role::Auth) {
        // The role's inbox; the embedded log too, by one role per process (in `up`, account).
        let log = (!process.in_process_calls || role == Role::Account).then(|| bus.clone());
        process.ctx.tasks.spawn(onlinebank_bus::retention::run(
            parts.db.clone(),
            log,
            process.ctx.settings.retention,
            process.ctx.shutdown.clone(),
        ));
    }
    // In `up` the gateway is the process's only door: its readiness is every role's (a role
    // whose storage cannot write takes the whole bank out of its balancer).
    let check = if process.in_process_calls && role == Role::Gateway {
        process.every_check()
    } else {
        check
    };
    let name = role.as_str();
    let router = parts
        .router
        .merge(health_router(name, process.readiness.clone(), check))
        .fallback(onlinebank_core::http::not_found)
        .layer(axum::middleware::from_fn(move |request, next| {
            onlinebank_core::trace::observe(name, request, next)
        }));
    if built.set(router).is_err() {
        anyhow::bail!("the {role} role was built twice");
    }
    crate::logs::announce(&format!("onlinebank {role} listening on http://{address}"));
    tracing::info!(%role, %address, "role started");
    Ok(())
}

/// Builds the role. `serve` (one role of a deployment) keeps trying while what it needs is not
/// there yet (PostgreSQL still starting, a wrong CA, bad credentials): it stays live and not
/// ready, and logs why at every attempt, backing off up to 30 s. `up` fails at once: one person
/// at a terminal wants the error, not a wait.
async fn build_until_started(
    role: Role,
    process: &Process,
    bus: &Bus,
) -> anyhow::Result<RoleParts> {
    let mut backoff = Duration::from_secs(1);
    loop {
        match build_role(role, &process.ctx, bus, &process.quiesce).await {
            Ok(parts) => return Ok(parts),
            Err(error) if !process.in_process_calls => {
                tracing::error!(
                    %role,
                    error = %format!("{error:#}"),
                    retry_in_s = backoff.as_secs(),
                    "cannot start: not ready; trying again"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(error) => return Err(error),
        }
    }
}

/// The router a listener serves from its first moment: the role's router once built.
fn front_router(role: &'static str, built: Arc<OnceLock<Router>>) -> Router {
    Router::new()
        .route(
            "/health/live",
            get(move || async move { Json(json!({"status": "live", "role": role})) }),
        )
        .fallback_service(service_fn(move |request: Request| {
            let built = built.clone();
            async move {
                Ok::<Response, Infallible>(match built.get() {
                    Some(router) => match router.clone().oneshot(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    },
                    None => ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        ErrorCode::Starting,
                        "the service is starting",
                    )
                    .with_retry_after(1)
                    .into_response(),
                })
            }
        }))
}

async fn bind(address: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("binding {address}"))
}

/// Waits for SIGTERM or SIGINT, then drains in order; the spans of the drain are exported last.
async fn run_until_signal(
    process: Process,
    exporter: Option<onlinebank_core::otel::Exporter>,
) -> anyhow::Result<()> {
    wait_for_signal().await;
    tracing::info!("shutting down: not ready");
    process.readiness.set(false);
    process.connections.drain();
    process.admin_connections.drain();
    tokio::time::sleep(process.drain_delay).await;
    tracing::info!("shutting down: finishing in-flight calls");
    process.stop_serving.cancel();
    process.servers.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, process.servers.wait())
        .await
        .is_err()
    {
        tracing::warn!("in-flight calls did not finish in time");
    }
    tracing::info!("shutting down: stopping consumers and flushing outboxes");
    process.ctx.shutdown.cancel();
    process.ctx.tasks.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, process.ctx.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("background work did not finish in time");
    }
    if let Some(exporter) = exporter {
        exporter.finish().await;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut terminate) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    onlinebank_core::metrics::install();
    let exporter = args.common.span_exporter()?;
    let about = ProcessInfo::starting_now(onlinebank_core::this_build!(), &[args.role]);
    let mut settings = args.common.settings()?;
    settings.database = args.database.clone();
    args.peers.apply(&mut settings);
    crate::schemas::check_before_start(&settings, &[args.role]).await?;
    // Before any database opens: `onlinebank backup` must know this process may write.
    let mut serving = crate::backup::serving::announce(&settings, &[args.role])?;
    let listener = bind(&args.listen).await?;
    let bus = Bus::open(settings.bus.as_deref(), &settings.data_dir).await?;
    let drain_delay = Duration::from_millis(args.common.drain_delay_ms.unwrap_or(1000));
    let process = Process::new(settings, drain_delay, false);
    start_role(args.role, listener, &process, &bus).await?;
    let admin = process
        .start_admin(&args.common.admin_listen, about)
        .await?;
    if let Some(serving) = &mut serving {
        serving.serving_at(admin)?;
    }
    process.readiness.set(true);
    run_until_signal(process, exporter).await
}

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    onlinebank_core::metrics::install();
    let exporter = args.common.span_exporter()?;
    let about = ProcessInfo::starting_now(onlinebank_core::this_build!(), &Role::ALL);
    let mut settings = args.common.settings()?;
    if let Some(url) = &args.database {
        anyhow::ensure!(
            onlinebank_core::db::Engine::of_url(url) == onlinebank_core::db::Engine::Postgres,
            "up --database takes a postgres:// URL (the roles share it, one schema each)"
        );
        settings.database = Some(url.clone());
    }
    crate::schemas::check_before_start(&settings, &Role::ALL).await?;
    // Before any database opens: `onlinebank backup` must know this process may write.
    let mut serving = crate::backup::serving::announce(&settings, &Role::ALL)?;
    // Bind every listener first, so each role knows its peers' real addresses.
    let mut listeners = Vec::new();
    for role in Role::ALL {
        let address = if role == Role::Gateway {
            format!("{}:{}", args.bind, args.port)
        } else {
            "127.0.0.1:0".to_owned()
        };
        let listener = bind(&address).await?;
        let url = format!("http://{}", listener.local_addr()?);
        settings.peers.set(role, vec![url]);
        listeners.push((role, listener));
    }
    if args.demo {
        let created =
            onlinebank_auth::ensure_customer(&settings, "1@sk.com", "sam", "1234").await?;
        if created {
            tracing::info!("demo customer 1@sk.com created");
        }
    }
    let gateway_url = settings.peers.first(Role::Gateway)?;
    let bus = Bus::open(settings.bus.as_deref(), &settings.data_dir)
        .await?
        .single_process();
    let drain_delay = Duration::from_millis(args.common.drain_delay_ms.unwrap_or(0));
    let process = Process::new(settings, drain_delay, true);
    for (role, listener) in listeners {
        start_role(role, listener, &process, &bus).await?;
    }
    let admin = process
        .start_admin(&args.common.admin_listen, about)
        .await?;
    if let Some(serving) = &mut serving {
        serving.serving_at(admin)?;
    }
    process.readiness.set(true);
    crate::logs::announce(&format!("onlinebank ready at {gateway_url}"));
    run_until_signal(process, exporter).await
}

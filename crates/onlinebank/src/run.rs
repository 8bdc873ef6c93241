//! Starting roles: each gets its router plus health endpoints on its own listener; `up` starts
//! all six in one process, `serve` one. Shutdown on SIGTERM/SIGINT: readiness goes false, the
//! listeners stop accepting and finish in-flight calls, background work (relays, consumers)
//! stops and flushes, then the process exits 0.

use crate::cli::{ServeArgs, UpArgs};
use anyhow::Context;
use axum::Router;
use onlinebank_bus::Bus;
use onlinebank_core::http::{health_router, Readiness};
use onlinebank_core::{Role, RoleContext, Settings};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long shutdown waits for in-flight work.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

async fn build_role(role: Role, ctx: &RoleContext, bus: &Bus) -> anyhow::Result<Router> {
    let router = match role {
        Role::Gateway => onlinebank_gateway::build(ctx).await,
        Role::Request => onlinebank_request::build(ctx, bus).await,
        Role::Auth => onlinebank_auth::build(ctx).await,
        Role::Account => onlinebank_account::build(ctx, bus).await,
        Role::History => onlinebank_history::build(ctx, bus).await,
        Role::Mypage => onlinebank_mypage::build(ctx, bus).await,
    };
    router.with_context(|| format!("starting the {role} role"))
}

/// Builds `role` and serves it on `listener` in the background.
async fn start_role(
    role: Role,
    listener: TcpListener,
    ctx: &RoleContext,
    bus: &Bus,
    readiness: &Readiness,
) -> anyhow::Result<()> {
    let router = build_role(role, ctx, bus)
        .await?
        .merge(health_router(role.as_str(), readiness.clone()));
    let address = listener.local_addr()?;
    let shutdown = ctx.shutdown.clone();
    ctx.tasks.spawn(async move {
        if let Err(error) = onlinebank_core::http::serve(listener, router, shutdown).await {
            tracing::error!(%role, error = %format!("{error:#}"), "server stopped");
        }
    });
    println!("onlinebank {role} listening on http://{address}");
    tracing::info!(%role, %address, "role started");
    Ok(())
}

async fn bind(address: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("binding {address}"))
}

fn context(settings: Settings) -> RoleContext {
    RoleContext {
        settings: Arc::new(settings),
        tasks: TaskTracker::new(),
        shutdown: CancellationToken::new(),
    }
}

/// Waits for SIGTERM or SIGINT, then drains.
async fn run_until_signal(ctx: RoleContext, readiness: Readiness) -> anyhow::Result<()> {
    wait_for_signal().await;
    tracing::info!("shutting down");
    readiness.set(false);
    ctx.shutdown.cancel();
    ctx.tasks.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, ctx.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("in-flight work did not finish in time");
    }
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
    let mut settings = args.common.settings()?;
    settings.database = args.database.clone();
    args.peers.apply(&mut settings);
    let listener = bind(&args.listen).await?;
    let bus = Bus::open(settings.bus.as_deref(), &settings.data_dir).await?;
    let ctx = context(settings);
    let readiness = Readiness::default();
    start_role(args.role, listener, &ctx, &bus, &readiness).await?;
    readiness.set(true);
    run_until_signal(ctx, readiness).await
}

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let mut settings = args.common.settings()?;
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
    let bus = Bus::open(settings.bus.as_deref(), &settings.data_dir).await?;
    let ctx = context(settings);
    let readiness = Readiness::default();
    for (role, listener) in listeners {
        start_role(role, listener, &ctx, &bus, &readiness).await?;
    }
    readiness.set(true);
    println!("onlinebank ready at {gateway_url}");
    run_until_signal(ctx, readiness).await
}

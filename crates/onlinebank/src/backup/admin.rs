//! The backup's admin routes, and the command's side of them.
//!
//! - `POST /backup` `{"to": DEST}`: the process takes a backup of its data dir into DEST (an
//!   absolute path, missing or empty) and answers the [`BackupReport`]. Used when one process
//!   serves the data dir.
//! - `POST /backup/pause` `{"holdMs": n}`: the process pauses its writers of the data dir's files
//!   (each for at most `n` ms, at most [`HOLD`]) and answers once they are all paused;
//!   `POST /backup/resume` lets them go on. Used by the command when several `serve` processes
//!   share the data dir: it pauses each, takes the snapshots itself, and resumes them.
//!
//! The admin listener is the operator's (never the public port): these routes write where they
//! are told, as the bank's user, with the bank's private file modes.

use super::{database_files, millis, take_here, BackupReport, HOLD};
use crate::backup::serving::Serving;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use onlinebank_core::db::cut::{pause_writers, Cut, PausedWriters, Snapshot};
use onlinebank_core::{ApiError, ErrorCode};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The body of `POST /backup`.
#[derive(Debug, Serialize, Deserialize)]
pub struct BackupOrder {
    /// Where the backup goes (absolute).
    pub to: PathBuf,
}

/// The body of `POST /backup/pause`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PauseLease {
    /// The longest the writers stay paused without a resume, in ms.
    pub hold_ms: u64,
}

/// The answer to `POST /backup/pause`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Paused {
    /// How many writers paused.
    pub writers: usize,
}

/// What the routes share: the data dir, and the writers paused under a lease.
#[derive(Clone)]
struct BackupState {
    /// The data dir this process serves.
    data_dir: PathBuf,
    /// The writers paused by `POST /backup/pause`, until `POST /backup/resume`.
    lease: Arc<Mutex<Option<PausedWriters>>>,
}

/// The backup's admin routes for the data dir `data_dir`, for callers that present the bank's
/// internal token (the admin listener may be reachable by more than the operator, e.g. a
/// metrics scraper on a pod network: these routes write files and pause writes).
pub fn router(data_dir: PathBuf, internal_token: Arc<str>) -> Router {
    Router::new()
        .route("/backup", post(back_up))
        .route("/backup/pause", post(pause))
        .route("/backup/resume", post(resume))
        .route_layer(axum::middleware::from_fn_with_state(
            internal_token,
            onlinebank_core::http::require_internal,
        ))
        .with_state(BackupState {
            data_dir,
            lease: Arc::default(),
        })
}

fn refused(status: StatusCode, code: ErrorCode, error: &anyhow::Error) -> Response {
    ApiError::new(status, code, format!("{error:#}")).into_response()
}

async fn back_up(State(state): State<BackupState>, Json(order): Json<BackupOrder>) -> Response {
    if !order.to.is_absolute() {
        let error = anyhow::anyhow!("the backup's target must be an absolute path");
        return refused(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, &error);
    }
    match take_here(&state.data_dir, &order.to, &[std::process::id()]).await {
        Ok(report) => {
            tracing::info!(to = %report.path.display(), bytes = report.bytes, pause_ms = report.pause_ms, "backup written");
            Json(report).into_response()
        }
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "backup failed");
            refused(StatusCode::CONFLICT, ErrorCode::InvalidRequest, &error)
        }
    }
}

fn lease(state: &BackupState) -> std::sync::MutexGuard<'_, Option<PausedWriters>> {
    state
        .lease
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn pause(State(state): State<BackupState>, Json(order): Json<PauseLease>) -> Response {
    let hold = Duration::from_millis(order.hold_ms).min(HOLD);
    // A lease not resumed yet ends now: one cut at a time.
    drop(lease(&state).take());
    let files = database_files(&state.data_dir);
    match pause_writers(Some(&files), hold).await {
        Ok(paused) => {
            let writers = paused.count();
            *lease(&state) = Some(paused);
            Json(Paused { writers }).into_response()
        }
        Err(error) => refused(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StorageUnavailable,
            &error,
        ),
    }
}

async fn resume(State(state): State<BackupState>) -> Response {
    let paused = lease(&state).take().map(PausedWriters::resume);
    let paused_ms = paused.map(millis).unwrap_or_default();
    Json(serde_json::json!({ "pausedMs": paused_ms })).into_response()
}

/// Where a serving process's admin listener is (it has one once it has started).
fn admin_url(serving: &Serving) -> anyhow::Result<&str> {
    serving
        .admin_url
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("process {} has no admin listener yet", serving.pid))
}

/// An HTTP client for the admin listeners, presenting the internal token `token`.
fn client(timeout: Duration, token: &str) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        onlinebank_core::http::INTERNAL_HEADER,
        reqwest::header::HeaderValue::from_str(token)?,
    );
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .default_headers(headers)
        .build()?)
}

/// The error the admin listener at `url` answered, or the answer's body.
async fn answer<T: serde::de::DeserializeOwned>(
    url: &str,
    response: reqwest::Result<reqwest::Response>,
) -> anyhow::Result<T> {
    let response = response.map_err(|error| anyhow::anyhow!("asking {url}: {error}"))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|error| anyhow::anyhow!("reading {url}'s answer: {error}"))?;
    if !status.is_success() {
        let message = body["error"]["message"].as_str().unwrap_or("no message");
        anyhow::bail!("{url} refused ({status}): {message}");
    }
    Ok(serde_json::from_value(body)?)
}

/// Asks the one process serving the data dir to take the backup into `to`.
pub async fn ask_to_back_up(
    serving: &Serving,
    to: &Path,
    token: &str,
) -> anyhow::Result<BackupReport> {
    let to = std::path::absolute(to)?;
    let url = format!("{}/backup", admin_url(serving)?);
    let response = client(Duration::from_secs(3600), token)?
        .post(&url)
        .json(&BackupOrder { to })
        .send()
        .await;
    answer(&url, response).await
}

/// Several processes serve the data dir: pauses all of them at once (a lease of [`HOLD`]),
/// takes the snapshots here, resumes them, then copies (see the module docs). A cut whose
/// pause lasted longer than [`MAX_PAUSE`] is dropped and taken again.
pub async fn back_up_with_leases(
    several: &[Serving],
    data_dir: &Path,
    to: &Path,
    token: &str,
) -> anyhow::Result<BackupReport> {
    let started = Instant::now();
    super::ensure_empty(to, "the backup's target")?;
    let files = database_files(data_dir);
    let client = client(HOLD, token)?;
    for attempt in 1..=LEASE_ATTEMPTS {
        let cut = cut_with_leases(&client, several, data_dir, &files).await?;
        if cut.pause <= MAX_PAUSE {
            return super::copy_cut(cut, data_dir, to, started).await;
        }
        tracing::info!(
            attempt,
            pause_ms = millis(cut.pause),
            "the processes paused too long for the cut; trying again"
        );
        tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
    }
    anyhow::bail!(
        "the {} processes serving {} could not be paused together within {} ms ({LEASE_ATTEMPTS} attempts)",
        several.len(),
        data_dir.display(),
        MAX_PAUSE.as_millis()
    )
}

/// The longest a cut through leases may pause the processes' writes.
pub const MAX_PAUSE: Duration = Duration::from_millis(100);
/// How many times a cut through leases is tried.
const LEASE_ATTEMPTS: u32 = 10;

/// One cut of `files` with every process paused through its lease.
async fn cut_with_leases(
    client: &reqwest::Client,
    several: &[Serving],
    data_dir: &Path,
    files: &[PathBuf],
) -> anyhow::Result<Cut> {
    // The snapshots' connections open before the pauses: under them, each only begins.
    let snapshots = files
        .iter()
        .map(|file| Snapshot::open(file))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let pause_started = Instant::now();
    let paused = pause_each(client, several).await;
    let begun = match &paused {
        Ok(()) => snapshots.iter().try_for_each(Snapshot::begin),
        Err(_) => Ok(()),
    };
    let at = std::time::SystemTime::now();
    resume_each(client, several).await;
    let pause = pause_started.elapsed();
    paused?;
    begun?;
    let pids: Vec<u32> = several.iter().map(|serving| serving.pid).collect();
    super::serving::ensure_only(data_dir, &pids)?;
    Ok(Cut {
        snapshots,
        pause,
        writers: several.len(),
        at,
    })
}

/// Pauses every process's writers, all at once.
async fn pause_each(client: &reqwest::Client, several: &[Serving]) -> anyhow::Result<()> {
    let pauses = several.iter().map(|serving| async move {
        let url = format!("{}/backup/pause", admin_url(serving)?);
        let response = client
            .post(&url)
            .json(&PauseLease {
                hold_ms: u64::try_from(HOLD.as_millis()).unwrap_or(1000),
            })
            .send()
            .await;
        answer::<Paused>(&url, response).await
    });
    for paused in futures::future::join_all(pauses).await {
        paused?;
    }
    Ok(())
}

/// Resumes every process's writers, all at once (a process that does not answer resumes at
/// its lease's end).
async fn resume_each(client: &reqwest::Client, several: &[Serving]) {
    let resumes = several.iter().map(|serving| async move {
        let Ok(base) = admin_url(serving) else {
            return;
        };
        let url = format!("{base}/backup/resume");
        if let Err(error) = client.post(&url).send().await {
            tracing::warn!(%url, %error, "resuming the writers failed; they resume at the lease's end");
        }
    });
    futures::future::join_all(resumes).await;
}

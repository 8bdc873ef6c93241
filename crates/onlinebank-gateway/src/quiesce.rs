//! A quiesced moment for a backup in distributed mode.
//!
//! PostgreSQL holds every role's state, but an event on Kafka that no consumer has applied yet
//! exists nowhere else: a `pg_dump` taken while events travel misses them. So the operator asks
//! each gateway's admin listener for `POST /quiesce`: the gateway refuses new writes at once
//! (503 `service_busy` with `Retry-After`; reads, logins and sign-ups go on), waits until none of
//! its own writes is in flight, then asks every role that publishes, consumes or holds requests
//! for `GET /internal/quiet` ([`onlinebank_core::quiet`]) until all answer zeros. Then nothing
//! is in flight anywhere and one `pg_dump` (one snapshot of every role's schema) is a complete
//! cut. `POST /resume` lets writes in again; a pause also ends by itself after [`LEASE`], so a
//! forgotten one never keeps the bank closed.
//!
//! The guard and the in-flight count are one: a write takes its write slot first and then looks
//! at the pause, under the pause's lock; the quiesce sets the pause under the same lock and then
//! counts the slots taken. Either the write sees the pause, or the quiesce sees its slot.

use crate::Slots;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use onlinebank_core::http::INTERNAL_HEADER;
use onlinebank_core::peer::PeerClient;
use onlinebank_core::quiet::Quiet;
use onlinebank_core::{ApiError, Role};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The longest a pause lasts without `POST /resume`.
pub const LEASE: Duration = Duration::from_secs(15 * 60);
/// How long `POST /quiesce` waits for quiet unless `?timeoutMs=` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the roles are asked while they are not quiet.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// The longest one role may take to answer `/internal/quiet`.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// What a refused write is told to wait before trying again, in seconds.
const RETRY_AFTER_S: u64 = 5;
/// The roles that publish, consume or hold requests (auth does none of these).
const QUIET_ROLES: [Role; 4] = [Role::Request, Role::Account, Role::History, Role::Mypage];

/// A pause of new writes in effect.
#[derive(Debug, Clone, Copy)]
struct Pause {
    /// When it began (a second quiesce keeps it).
    since: Instant,
    /// When it ends by itself.
    until: Instant,
}

/// What the gateway needs to wait for quiet, given once it is built.
#[derive(Debug)]
struct Armed {
    peers: Arc<PeerClient>,
    /// Presented to the roles' `/internal/quiet`.
    internal_token: String,
    /// The gateway's write slots: the ones taken are its writes in flight.
    write_slots: Arc<Semaphore>,
    /// How many write slots there are in all.
    max_writes: usize,
}

#[derive(Debug, Default)]
struct Inner {
    pause: Mutex<Option<Pause>>,
    armed: OnceLock<Armed>,
}

/// The gateway's write pause, shared by its write routes and the process's admin listener.
#[derive(Debug, Clone, Default)]
pub struct Quiesce {
    inner: Arc<Inner>,
}

/// `POST /quiesce`'s query.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QuiesceQuery {
    /// How long to wait for quiet, in milliseconds (at most the lease).
    timeout_ms: Option<u64>,
}

impl Quiesce {
    /// Gives the built gateway's peers and write slots (once; a rebuild keeps the first).
    pub(crate) fn arm(
        &self,
        peers: Arc<PeerClient>,
        internal_token: String,
        write_slots: Arc<Semaphore>,
        max_writes: usize,
    ) {
        let _ = self.inner.armed.set(Armed {
            peers,
            internal_token,
            write_slots,
            max_writes,
        });
    }

    /// `POST /quiesce` and `POST /resume` for the admin listener, once a gateway runs in this
    /// process (None otherwise).
    pub fn admin_router(&self) -> Option<Router> {
        self.inner.armed.get()?;
        Some(
            Router::new()
                .route("/quiesce", post(quiesce))
                .route("/resume", post(resume))
                .with_state(self.clone()),
        )
    }

    /// Takes a write slot, or refuses the write while writes are paused (see the module docs).
    pub(crate) fn admit(
        &self,
        slots: Slots,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        if slots == Slots::Read || self.paused_since().is_none() {
            return Ok(slot);
        }
        drop(slot);
        metrics::counter!("onlinebank_writes_paused_refused_total").increment(1);
        Err(ApiError::busy().with_retry_after(RETRY_AFTER_S))
    }

    /// When the pause in effect began, if one is.
    fn paused_since(&self) -> Option<Instant> {
        let pause = self.lock_pause();
        pause
            .filter(|pause| pause.until > Instant::now())
            .map(|pause| pause.since)
    }

    fn lock_pause(&self) -> std::sync::MutexGuard<'_, Option<Pause>> {
        self.inner
            .pause
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Pauses new writes (or renews the lease of the pause in effect); returns when it began.
    fn pause(&self) -> Instant {
        let now = Instant::now();
        let mut pause = self.lock_pause();
        let since = match *pause {
            Some(current) if current.until > now => current.since,
            _ => {
                tracing::warn!(
                    lease_s = LEASE.as_secs(),
                    "writes paused for a quiesced backup"
                );
                now
            }
        };
        *pause = Some(Pause {
            since,
            until: now + LEASE,
        });
        since
    }

    /// Ends the pause; returns how long writes were refused, if they were.
    fn resume(&self) -> Option<Duration> {
        let pause = self.lock_pause().take()?;
        let paused = pause.until.min(Instant::now()) - pause.since;
        tracing::warn!(paused_ms = paused.as_millis() as u64, "writes resumed");
        Some(paused)
    }

    /// What is not quiet yet, by who: empty when the cut can be taken.
    async fn waiting(&self, armed: &Armed) -> Map<String, Value> {
        let mut waiting = Map::new();
        let in_flight = armed
            .max_writes
            .saturating_sub(armed.write_slots.available_permits());
        if in_flight > 0 {
            // Writes still on their way may yet reach a role: ask the roles after them.
            waiting.insert("gateway".into(), json!({ "writesInFlight": in_flight }));
            return waiting;
        }
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&armed.internal_token) {
            headers.insert(INTERNAL_HEADER, value);
        }
        for role in QUIET_ROLES {
            match ask(armed, role, &headers).await {
                Ok(quiet) if quiet.is_quiet() => {}
                Ok(quiet) => {
                    waiting.insert(role.as_str().into(), json!(quiet));
                }
                Err(why) => {
                    waiting.insert(role.as_str().into(), json!({ "error": why }));
                }
            }
        }
        waiting
    }
}

/// One role's `/internal/quiet`, or why it gave none.
async fn ask(armed: &Armed, role: Role, headers: &HeaderMap) -> Result<Quiet, String> {
    let answer = armed
        .peers
        .call(
            role,
            Method::GET,
            onlinebank_core::quiet::PATH,
            headers,
            Default::default(),
            ASK_TIMEOUT,
        )
        .await
        .map_err(|_| "no answer".to_owned())?;
    if !answer.status.is_success() {
        return Err(format!("answered {}", answer.status.as_u16()));
    }
    serde_json::from_slice(&answer.body).map_err(|error| format!("unreadable answer: {error}"))
}

/// `POST /quiesce[?timeoutMs=N]`: pause writes, wait for quiet, say whether the cut can be taken.
async fn quiesce(
    State(quiesce): State<Quiesce>,
    query: Result<Query<QuiesceQuery>, QueryRejection>,
) -> Response {
    let timeout = match query {
        Ok(Query(query)) => query
            .timeout_ms
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis)
            .min(LEASE),
        Err(_) => {
            return ApiError::validation("timeoutMs must be a number of milliseconds")
                .into_response()
        }
    };
    let Some(armed) = quiesce.inner.armed.get() else {
        return onlinebank_core::http::not_found().await.into_response();
    };
    let since = quiesce.pause();
    let deadline = Instant::now() + timeout;
    loop {
        let waiting = quiesce.waiting(armed).await;
        let paused_ms = since.elapsed().as_millis() as u64;
        if waiting.is_empty() {
            tracing::info!(paused_ms, "quiet: the cut can be taken");
            return Json(json!({"ready": true, "pausedMs": paused_ms})).into_response();
        }
        if Instant::now() >= deadline {
            let body = json!({"ready": false, "pausedMs": paused_ms, "waiting": waiting});
            return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// `POST /resume`: writes are taken again.
async fn resume(State(quiesce): State<Quiesce>) -> Json<Value> {
    match quiesce.resume() {
        Some(paused) => Json(json!({"resumed": true, "pausedMs": paused.as_millis() as u64})),
        None => Json(json!({"resumed": false})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn armed_with(slots: usize) -> (Quiesce, Arc<Semaphore>) {
        let quiesce = Quiesce::default();
        let write_slots = Arc::new(Semaphore::new(slots));
        let peers = onlinebank_core::settings::Peers::default();
        quiesce.arm(
            Arc::new(PeerClient::new(
                reqwest::Client::new(),
                &peers,
                Default::default(),
            )),
            "token".into(),
            write_slots.clone(),
            slots,
        );
        (quiesce, write_slots)
    }

    #[tokio::test]
    async fn a_paused_gateway_refuses_writes_with_retry_after_and_admits_reads() {
        let (quiesce, slots) = armed_with(2);
        let take = || slots.clone().try_acquire_owned().unwrap();
        assert!(quiesce.admit(Slots::Write, take()).is_ok());
        quiesce.pause();
        let refused = quiesce.admit(Slots::Write, take()).unwrap_err();
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.code, "service_busy");
        assert_eq!(refused.retry_after, Some(RETRY_AFTER_S));
        assert_eq!(
            slots.available_permits(),
            2,
            "the refused write gave its slot back"
        );
        assert!(quiesce.admit(Slots::Read, take()).is_ok());
        assert!(quiesce.resume().is_some());
        assert!(quiesce.admit(Slots::Write, take()).is_ok());
        assert!(quiesce.resume().is_none(), "nothing left to resume");
    }

    #[tokio::test]
    async fn a_second_quiesce_keeps_when_the_pause_began_and_an_expired_lease_admits_writes() {
        let (quiesce, slots) = armed_with(1);
        let since = quiesce.pause();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(quiesce.pause(), since);
        if let Some(pause) = quiesce.lock_pause().as_mut() {
            pause.until = Instant::now();
        }
        let slot = slots.clone().try_acquire_owned().unwrap();
        assert!(quiesce.admit(Slots::Write, slot).is_ok());
    }

    #[tokio::test]
    async fn a_write_in_flight_keeps_the_gateway_waiting_before_any_role_is_asked() {
        let (quiesce, slots) = armed_with(3);
        let _in_flight = slots.clone().try_acquire_owned().unwrap();
        quiesce.pause();
        let armed = quiesce.inner.armed.get().unwrap();
        let waiting = quiesce.waiting(armed).await;
        assert_eq!(waiting["gateway"], json!({"writesInFlight": 1}));
        assert_eq!(waiting.len(), 1);
    }

    #[tokio::test]
    async fn a_role_that_cannot_be_reached_is_not_quiet() {
        let (quiesce, _slots) = armed_with(1);
        let armed = quiesce.inner.armed.get().unwrap();
        let waiting = quiesce.waiting(armed).await;
        assert_eq!(waiting.len(), 4, "{waiting:?}");
        assert_eq!(waiting["account"], json!({"error": "no answer"}));
    }

    #[test]
    fn no_admin_routes_before_a_gateway_is_built() {
        assert!(Quiesce::default().admin_router().is_none());
    }
}

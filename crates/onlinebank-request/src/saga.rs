//! The write path of one request, from its PENDING record to the answer.
//!
//! Runs in a task of its own, not in the connection's handler: a client that hangs up cannot
//! stop it half-way. Steps:
//! 1. step-up with auth, bounded by a timeout;
//! 2. verified in time -> in ONE transaction: PENDING -> AUTHORIZED and AuthCertified into the
//!    outbox; refused -> the request is deleted (AuthCancelled recorded); no answer in time ->
//!    the request is deleted and the client told "busy". A late OK can never move money: the
//!    AUTHORIZED transition only happens here, right after an in-time OK;
//! 3. wait (bounded) for the account's outcome, applied by the outcome consumer.
//!
//! It ends in an [`Outcome`]; `api.rs` alone turns that into HTTP. Its only errors are storage
//! failures (answered through `onlinebank_core::error`'s one mapping of them).

use crate::stepup::Verdict;
use crate::store::{self, RequestStatus, Standing};
use crate::RequestState;
use onlinebank_core::event::{AuthCancelled, AuthCertified, Event, WriteKind};
use onlinebank_core::ids::{AccountNo, CustomerId};
use onlinebank_core::money::Won;
use onlinebank_core::{ApiError, Reason};
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// One request on its way through the saga.
#[derive(Debug, Clone)]
pub struct Saga {
    pub request_id: Uuid,
    pub customer_id: CustomerId,
    pub session_id: String,
    pub kind: WriteKind,
    pub account_no: AccountNo,
    pub amount: Won,
    pub password: String,
}

/// How a request's saga ended.
#[derive(Debug)]
pub enum Outcome {
    /// Completed, or still in flight when the wait ended (the client follows it up by id).
    Live(store::RequestRow),
    /// Compensated, nothing happened, for `reason`; `retry_after` when auth said when to retry.
    Failed {
        reason: Reason,
        retry_after: Option<u64>,
    },
    /// The step-up found the customer's session ended: nothing happened.
    SessionExpired,
    /// The request's record disappeared while the saga waited for it (a fault).
    Vanished,
}

impl Outcome {
    fn failed(reason: Reason) -> Self {
        Outcome::Failed {
            reason,
            retry_after: None,
        }
    }
}

/// Removes the waiter registration on every path out of the saga.
struct WaiterGuard<'a> {
    state: &'a RequestState,
    request_id: Uuid,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.state.waiters.remove(self.request_id);
    }
}

/// Drives one request to its outcome.
pub async fn run(state: &RequestState, saga: &Saga) -> Result<Outcome, ApiError> {
    let id = saga.request_id;
    // Register before the outcome can possibly arrive.
    let wake = state.waiters.register(saga.request_id);
    let _guard = WaiterGuard {
        state,
        request_id: saga.request_id,
    };
    let started = Instant::now();
    let verdict = state
        .step_up
        .verify(
            &saga.customer_id,
            &saga.session_id,
            &saga.password,
            saga.request_id,
            saga.kind,
        )
        .await;
    stage("step_up", started);
    let started = Instant::now();
    match verdict {
        Verdict::Verified => {
            let certified = Event::AuthCertified(AuthCertified {
                request_id: saga.request_id,
                customer_id: saga.customer_id.clone(),
                kind: saga.kind,
                account_no: saga.account_no.clone(),
                amount: saga.amount,
            });
            let authorized = state
                .db
                .write(move |conn| Box::pin(async move { authorize(conn, id, certified).await }))
                .await?;
            if !authorized {
                // Swept while auth was answering: it was already compensated.
                return Ok(Outcome::failed(Reason::ServiceBusy));
            }
            state.relay.wake();
        }
        Verdict::Refused {
            reason,
            session_expired,
            retry_after,
        } => {
            let cancelled = Event::AuthCancelled(AuthCancelled {
                request_id: saga.request_id,
                customer_id: saga.customer_id.clone(),
                kind: saga.kind,
                account_no: saga.account_no.clone(),
                amount: saga.amount,
                reason,
            });
            state
                .db
                .write(move |conn| {
                    Box::pin(async move { refuse(conn, id, reason, cancelled).await })
                })
                .await?;
            state.relay.wake();
            if session_expired {
                return Ok(Outcome::SessionExpired);
            }
            return Ok(Outcome::Failed {
                reason,
                retry_after,
            });
        }
        Verdict::Unavailable => {
            state
                .db
                .write(move |conn| {
                    Box::pin(
                        async move { store::cancel(conn, id, Reason::ServiceBusy, true).await },
                    )
                })
                .await?;
            return Ok(Outcome::failed(Reason::ServiceBusy));
        }
    }

    stage("authorize", started);
    let started = Instant::now();
    // Wait for the outcome: woken by the consumer, polling as a fallback (another instance
    // may have consumed it). Wait first, then read: the outcome cannot be there before its
    // wake (a wake that came early is kept by the `Notify` until awaited), so a read before
    // the first wait would only find the request still AUTHORIZED.
    let deadline = Instant::now() + state.settings.request_wait;
    // On PostgreSQL the outcome listener wakes this handler whichever replica applied the
    // outcome; polling is only the fallback for a lost notification.
    let poll_every = match state.db.engine {
        onlinebank_core::db::Engine::Sqlite => Duration::from_millis(100),
        onlinebank_core::db::Engine::Postgres => Duration::from_millis(500),
    };
    loop {
        let poll = Instant::now() + poll_every;
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep_until(poll.min(deadline)) => {}
        }
        match store::standing(&state.db, id).await? {
            Standing::Live(row) if row.status == RequestStatus::Completed => {
                stage("outcome", started);
                return Ok(Outcome::Live(row));
            }
            Standing::Cancelled(reason) => return Ok(Outcome::failed(reason)),
            Standing::Unknown => return Ok(Outcome::Vanished),
            Standing::Live(row) => {
                if Instant::now() >= deadline {
                    return Ok(Outcome::Live(row));
                }
            }
        }
    }
}

/// PENDING -> AUTHORIZED with AuthCertified in the outbox; false if no longer pending.
async fn authorize(
    conn: &mut onlinebank_core::db::Conn,
    request_id: Uuid,
    certified: Event,
) -> anyhow::Result<bool> {
    if !store::authorize(conn, request_id).await? {
        return Ok(false);
    }
    onlinebank_bus::outbox::enqueue(conn, certified).await?;
    Ok(true)
}

/// Step-up refused: compensate (releasing the key) and record AuthCancelled.
async fn refuse(
    conn: &mut onlinebank_core::db::Conn,
    request_id: Uuid,
    reason: Reason,
    cancelled: Event,
) -> anyhow::Result<()> {
    store::cancel(conn, request_id, reason, true).await?;
    onlinebank_bus::outbox::enqueue(conn, cancelled).await?;
    Ok(())
}

/// Records how long a stage of the write path took (`saga_stage_seconds{stage}`).
pub fn stage(name: &'static str, started: Instant) {
    metrics::histogram!("saga_stage_seconds", "stage" => name)
        .record(started.elapsed().as_secs_f64());
}

//! The write path of one request, from its PENDING record to the answer.
//!
//! Runs in a task of its own, not in the connection's handler: a client that hangs up cannot
//! stop it half-way. The saga ([`steps`], pure) names the steps:
//! 1. step-up with auth, bounded by a timeout;
//! 2. verified in time -> certify: in ONE transaction, PENDING -> AUTHORIZED and AuthCertified
//!    into the outbox; refused -> refuse: the request is deleted (AuthCancelled recorded); no
//!    answer in time -> give up: the request is deleted and the client told "busy". A late OK can
//!    never move money: the AUTHORIZED transition only happens here, right after an in-time OK;
//! 3. await (bounded) the account's outcome, applied by the outcome consumer.
//!
//! [`run`] is its driver: it carries out each effect (auth, the database, the outbox, the wait,
//! the clock, metrics) and feeds what came of it back to the saga. It ends in an [`Outcome`];
//! `api.rs` alone turns that into HTTP. Its only errors are storage failures (answered through
//! `onlinebank_core::error`'s one mapping of them).

mod steps;

pub use steps::Outcome;
use steps::{Effect, Input, Saga, SagaStep};

use crate::stepup::StepUpVerdict;
use crate::store::{self, Compensation, RequestStatus};
use crate::RequestState;
use onlinebank_bus::outbox::Outgoing;
use onlinebank_core::db::Conn;
use onlinebank_core::event::{AuthCancelled, AuthCertified, Event, WriteKind};
use onlinebank_core::ids::RequestId;
use onlinebank_core::ids::{AccountNo, CustomerId};
use onlinebank_core::money::Won;
use onlinebank_core::trace::{CallContext, EventCall};
use onlinebank_core::{ApiError, Reason};
use std::ops::ControlFlow;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::Instrument;

/// A write request as its saga needs it: what to do, for whom, and the step-up password.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub request_id: RequestId,
    pub customer_id: CustomerId,
    pub session_id: String,
    pub kind: WriteKind,
    /// A transfer's source.
    pub account_no: AccountNo,
    /// A transfer's target.
    pub to_account_no: Option<AccountNo>,
    pub amount: Won,
    pub password: String,
}

/// Removes the waiter registration on every path out of the saga.
struct WaiterGuard<'a> {
    state: &'a RequestState,
    request_id: RequestId,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.state.waiters.remove(self.request_id);
    }
}

/// Drives one request's saga to its outcome.
pub async fn run(state: &RequestState, request: &WriteRequest) -> Result<Outcome, ApiError> {
    // Register before the outcome can possibly arrive.
    let wake = state.waiters.register(request.request_id);
    let _guard = WaiterGuard {
        state,
        request_id: request.request_id,
    };
    let saga = Saga {
        request,
        wait: state.settings.request.wait,
    };
    let (mut step, mut effect) = saga.start();
    let mut started = Instant::now();
    loop {
        // Each step in a span of its own, inside the call's: its lines name the step and the
        // bank's request.
        let span = tracing::info_span!(
            "saga",
            step = effect.name(),
            request = %request.request_id,
        );
        match perform(state, request, effect, &wake, &mut started)
            .instrument(span)
            .await?
        {
            ControlFlow::Continue(input) => (step, effect) = saga.next(step, input),
            ControlFlow::Break(outcome) => {
                debug_assert!(matches!(step, SagaStep::Done), "answered at {step:?}");
                return Ok(outcome);
            }
        }
    }
}

/// Carries out one effect of the saga and returns what came of it, or the saga's answer.
async fn perform(
    state: &RequestState,
    request: &WriteRequest,
    effect: Effect,
    wake: &Notify,
    started: &mut Instant,
) -> Result<ControlFlow<Outcome, Input>, ApiError> {
    Ok(ControlFlow::Continue(match effect {
        Effect::StepUp => {
            let verdict = step_up(state, request).await;
            stage("step_up", *started);
            *started = Instant::now();
            Input::SteppedUp(verdict)
        }
        Effect::Certify(certified) => {
            let authorized = certify(state, certified).await?;
            if authorized {
                stage("authorize", *started);
            }
            *started = Instant::now();
            Input::Certified {
                authorized,
                now: Instant::now(),
            }
        }
        Effect::Refuse(cancelled) => {
            refuse(state, cancelled).await?;
            Input::Compensated
        }
        Effect::GiveUp => {
            let id = request.request_id;
            state
                .db
                .write(move |conn| {
                    Box::pin(async move {
                        store::cancel(conn, id, Reason::ServiceBusy, Compensation::Uncertified)
                            .await
                    })
                })
                .await?;
            Input::Compensated
        }
        Effect::AwaitOutcome { deadline } => {
            await_outcome(state, request.request_id, wake, deadline).await?
        }
        Effect::Answer(outcome) => {
            if matches!(&outcome, Outcome::Live(row) if row.status == RequestStatus::Completed) {
                stage("outcome", *started);
            }
            return Ok(ControlFlow::Break(outcome));
        }
    }))
}

/// Asks auth to verify the request's step-up password.
async fn step_up(state: &RequestState, request: &WriteRequest) -> StepUpVerdict {
    state
        .step_up
        .verify(
            &request.customer_id,
            &request.session_id,
            &request.password,
            request.request_id,
            request.kind,
        )
        .await
}

/// In one write, PENDING -> AUTHORIZED with AuthCertified in the outbox, then wakes the relay;
/// false if the request was no longer pending.
async fn certify(state: &RequestState, certified: AuthCertified) -> Result<bool, ApiError> {
    let event = Outgoing::of_current_call(Event::AuthCertified(certified));
    let authorized = state
        .db
        .write(move |conn| Box::pin(certify_on(conn, event)))
        .await?;
    if authorized {
        state.relay.wake();
    }
    Ok(authorized)
}

/// The certify write: PENDING -> AUTHORIZED with `certified` (an AuthCertified) in the outbox;
/// false, and nothing written, if the request was no longer pending.
pub async fn certify_on(conn: &mut Conn, certified: Outgoing) -> anyhow::Result<bool> {
    if !store::authorize(conn, certified.event.request_id()).await? {
        return Ok(false);
    }
    onlinebank_bus::outbox::enqueue(conn, certified).await?;
    Ok(true)
}

/// The refuse write: the request compensated (its key released) with `cancelled` (an
/// AuthCancelled) in the outbox, caused by `call` (taken in the customer's task: the write runs
/// on the writer's).
pub async fn refuse_on(
    conn: &mut Conn,
    cancelled: AuthCancelled,
    call: Option<EventCall>,
) -> anyhow::Result<()> {
    let (id, reason) = (cancelled.request_id, cancelled.reason);
    let event = Outgoing {
        event: Event::AuthCancelled(cancelled),
        call,
    };
    store::cancel(conn, id, reason, Compensation::Uncertified).await?;
    onlinebank_bus::outbox::enqueue(conn, event).await?;
    Ok(())
}

/// Step-up refused: in one write, compensate (releasing the key) and record AuthCancelled; then
/// wakes the relay.
async fn refuse(state: &RequestState, cancelled: AuthCancelled) -> Result<(), ApiError> {
    let call = CallContext::current().map(|context| context.publishing());
    state
        .db
        .write(move |conn| Box::pin(refuse_on(conn, cancelled, call)))
        .await?;
    state.relay.wake();
    Ok(())
}

/// Waits for the outcome, no later than `deadline`, then reads the request.
///
/// Woken by the consumer, polling as a fallback (another instance may have consumed it). Wait
/// first, then read: the outcome cannot be there before its wake (a wake that came early is kept
/// by the `Notify` until awaited), so a read before the first wait would only find the request
/// still AUTHORIZED. On PostgreSQL the outcome listener wakes this handler whichever replica
/// applied the outcome; polling is only the fallback for a lost notification.
async fn await_outcome(
    state: &RequestState,
    request_id: RequestId,
    wake: &Notify,
    deadline: Instant,
) -> Result<Input, ApiError> {
    let poll_every = match state.db.engine {
        onlinebank_core::db::Engine::Sqlite => Duration::from_millis(100),
        onlinebank_core::db::Engine::Postgres => Duration::from_millis(500),
    };
    let poll = Instant::now() + poll_every;
    tokio::select! {
        _ = wake.notified() => {}
        _ = tokio::time::sleep_until(poll.min(deadline)) => {}
    }
    let standing = store::standing(&state.db, request_id).await?;
    Ok(Input::Read {
        standing,
        now: Instant::now(),
    })
}

/// Records how long a stage of the write path took (`onlinebank_saga_stage_seconds{stage}`).
pub fn stage(name: &'static str, started: Instant) {
    metrics::histogram!("onlinebank_saga_stage_seconds", "stage" => name)
        .record(started.elapsed().as_secs_f64());
}

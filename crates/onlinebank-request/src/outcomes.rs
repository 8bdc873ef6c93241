//! Closing the saga: account outcomes complete or compensate requests; a sweeper compensates
//! requests whose step-up never finished (the process died mid-call).

use crate::store::{self, Compensation};
use crate::RequestState;
use onlinebank_bus::handler::EventHandler;
use onlinebank_bus::wiring::{Consumes, Wiring};
use onlinebank_core::args;
use onlinebank_core::db::{BoxFuture, Conn, Engine};
use onlinebank_core::event::{Envelope, Event, TOPIC_ACCOUNTS};
use onlinebank_core::ids::RequestId;
use onlinebank_core::log_limit::LogLimit;
use onlinebank_core::reason::Refusal;
use onlinebank_core::Reason;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The account outcomes, up to 512 per transaction.
pub(crate) const CONSUMES: Consumes = Consumes {
    topics: &[TOPIC_ACCOUNTS],
    batch: 512,
};
/// Compensated requests stay readable this long (at least 24 h).
const KEEP_CANCELLED_MS: i64 = 7 * 24 * 3600 * 1000;

pub fn start(wiring: &Wiring, state: &RequestState) {
    wiring.consume(&state.db, CONSUMES, Outcomes(Some(state.waiters.clone())));
    let ctx = wiring.ctx;
    ctx.tasks.spawn(sweep(state.clone(), ctx.shutdown.clone()));
    if state.db.engine == Engine::Postgres {
        ctx.tasks.spawn(listen(state.clone(), ctx.shutdown.clone()));
    }
}

/// PostgreSQL's channel on which the outcome consumer announces the requests it finished, so
/// the replica whose client is waiting answers at once (it need not be the one that consumed).
const OUTCOMES_CHANNEL: &str = "onlinebank_request_outcomes";

/// Wakes this replica's waiting handlers for every request another (or this) replica finished.
async fn listen(state: RequestState, shutdown: CancellationToken) {
    onlinebank_core::db::listen(
        &state.db.url,
        OUTCOMES_CHANNEL,
        &shutdown,
        |_| {},
        |payload| {
            for id in payload.split(',') {
                if let Ok(id) = id.parse::<RequestId>() {
                    state.waiters.wake(id);
                }
            }
        },
    )
    .await;
}

/// Account outcomes complete or compensate their requests; every waiting handler of the batch's
/// requests is woken (also for an outcome another instance applied first).
/// The handlers to wake: none where nobody waits (the simulator drives its own).
#[derive(Clone)]
struct Outcomes(Option<crate::waiters::Waiters>);

/// request's outcome consumer group, the topics it reads and its projection (the real
/// [`EventHandler`]), for the deterministic simulator.
pub fn projection() -> (&'static str, &'static [&'static str], impl EventHandler) {
    (
        onlinebank_core::Role::Request.as_str(),
        CONSUMES.topics,
        Outcomes(None),
    )
}

impl EventHandler for Outcomes {
    /// A request's outcomes: a transfer's debit is not one (its second leg is).
    fn wants(&self, event: &Event) -> bool {
        !matches!(event, Event::TransferDebited(_))
    }

    fn apply<'c>(
        &'c self,
        conn: &'c mut Conn,
        events: &'c [Envelope],
    ) -> BoxFuture<'c, anyhow::Result<()>> {
        Box::pin(apply(conn, events))
    }

    /// On PostgreSQL, tells every replica's listener which requests finished (delivered when
    /// this transaction commits).
    fn finish<'c>(
        &'c self,
        conn: &'c mut Conn,
        batch: &'c [Envelope],
    ) -> BoxFuture<'c, anyhow::Result<()>> {
        Box::pin(async move {
            if conn.engine() != Engine::Postgres {
                return Ok(());
            }
            for chunk in batch.chunks(150) {
                let ids: Vec<String> = chunk
                    .iter()
                    .map(|envelope| envelope.correlation_id.to_string())
                    .collect();
                let ids = ids.join(",");
                conn.execute(
                    "SELECT CAST(1 AS BIGINT) FROM pg_notify($1, $2)",
                    args![OUTCOMES_CHANNEL, ids.as_str()],
                )
                .await?;
            }
            Ok(())
        })
    }

    fn committed(&self, batch: &[Envelope]) {
        let Some(waiters) = &self.0 else { return };
        for envelope in batch {
            waiters.wake(envelope.correlation_id);
        }
    }
}

/// Completes the requests of the batch's account changes (one statement) and compensates those
/// of its refusals. A request has one outcome, so their order does not matter.
async fn apply(conn: &mut Conn, events: &[Envelope]) -> anyhow::Result<()> {
    let mut completed = Vec::with_capacity(events.len());
    for envelope in events {
        let event = &envelope.event;
        if let Some((_, change)) = event.as_account_change() {
            completed.push(store::Completion {
                id: change.request_id,
                balance: change.balance,
                version: change.version,
            });
        } else if let Event::TransferCredited(credited) = event {
            // A transfer is done when its target is credited; its answer is the source's.
            completed.push(store::Completion {
                id: credited.request_id,
                balance: credited.source_balance,
                version: credited.source_version,
            });
        } else if let Event::AccountRequestCancelled(cancelled) = event {
            let refusal = Refusal {
                reason: cancelled.reason,
                allowed_today: cancelled.allowed_today,
            };
            store::cancel(conn, cancelled.request_id, refusal, Compensation::Refused).await?;
        } else if let Event::TransferReversed(reversed) = event {
            store::cancel(
                conn,
                reversed.request_id,
                reversed.reason,
                Compensation::Refused,
            )
            .await?;
        }
    }
    store::complete(conn, &completed).await?;
    Ok(())
}

/// Compensates PENDING requests older than the step-up could take, and forgets old
/// compensations and idempotency keys.
async fn sweep(state: RequestState, shutdown: CancellationToken) {
    let grace = sweep_grace(state.settings.request.step_up_timeout);
    let mut round: u64 = 0;
    // Retried every second: while the disk is full, logged once per period with a count.
    let mut sweeping = LogLimit::new(
        "sweeping stale requests failed",
        "sweeping stale requests works again",
        "request",
    );
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return,
        }
        round += 1;
        let now = onlinebank_core::time::now_ms();
        let swept = sweep_stale(&state, now - grace).await;
        let _ = sweeping.note(swept);
        if round % 600 == 1 {
            if let Err(error) = store::purge_old(&state.db, now - KEEP_CANCELLED_MS).await {
                tracing::warn!(%error, "purging old compensations failed");
            }
        }
    }
}

/// How old a PENDING request must be before the sweeper compensates it: longer than its step-up
/// could take, and 5 s more.
pub fn sweep_grace(step_up_timeout: Duration) -> i64 {
    i64::try_from(step_up_timeout.as_millis()).unwrap_or(i64::MAX / 4) + 5_000
}

/// The sweeper's write for one stale request (read before by [`store::stale_pending`]): it is
/// compensated as interrupted and its key released, if it is still PENDING (its saga may have
/// certified it since the read).
pub async fn interrupt_on(
    conn: &mut Conn,
    id: RequestId,
) -> Result<bool, onlinebank_core::db::Error> {
    store::cancel(conn, id, Reason::Interrupted, Compensation::Uncertified).await
}

async fn sweep_stale(state: &RequestState, cutoff: i64) -> anyhow::Result<()> {
    let stale = store::stale_pending(&state.db, cutoff).await?;
    if stale.is_empty() {
        return Ok(());
    }
    let count = stale.len();
    state
        .db
        .write(move |conn| {
            Box::pin(async move {
                for id in &stale {
                    interrupt_on(conn, *id).await?;
                }
                Ok::<(), onlinebank_core::db::Error>(())
            })
        })
        .await
        .map_err(|error| anyhow::anyhow!("compensating stale requests: {error}"))?;
    tracing::info!(count, "compensated requests whose step-up never finished");
    Ok(())
}

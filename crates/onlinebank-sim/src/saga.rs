//! The request role's front end and saga as the simulator drives them, with the real writes and
//! reads at every step (`onlinebank_request::sim`), and the clients: each request sent with an
//! Idempotency-Key, and sent again with it (at once, or after a while) or given up when its
//! answer is unknown or says "try again".
//!
//! The sequencing mirrors `onlinebank_request::api::record_and_run` and `saga::run`: record (key
//! and row in one transaction), step-up, then refuse, give up or certify, then read the request
//! until its outcome or the wait's end (202).

use crate::node::now;
use crate::world::{Task, World, REQUEST};
use onlinebank_bus::outbox::Outgoing;
use onlinebank_core::ambient;
use onlinebank_core::event::{AuthCancelled, AuthCertified, Event};
use onlinebank_core::ids::RequestId;
use onlinebank_core::Reason;
use onlinebank_request::sim::{self as request, KeyClaim, RequestRow, RequestStatus, Standing};
use rand::Rng;
use std::time::Duration;

/// The step-up timeout and the saga's wait for an outcome: the bank's defaults.
pub const STEP_UP_TIMEOUT_MS: u64 = onlinebank_core::settings::defaults::STEP_UP_TIMEOUT_MS;
const WAIT_MS: u64 = onlinebank_core::settings::defaults::REQUEST_WAIT_MS;
/// A client sends one request at most this many times.
const MAX_SENDS: usize = 6;

/// auth's verdict on a step-up, as request hears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Verified,
    Refused(Reason),
    /// No answer within the step-up timeout.
    Unavailable,
}

/// What the client was told, and about which request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Not answered yet, or request was down (connection refused).
    NotSent,
    /// The saga died with its process, or the answer was lost on its way.
    Lost,
    Completed(RequestId),
    Refused(RequestId, Reason),
    /// 202: certified, its outcome not there within the wait.
    Accepted(RequestId),
    /// 409: the key's earlier request is still being processed.
    InFlight(RequestId),
}

impl Answer {
    /// Whether the client does not know what happened, or was told to try again.
    fn unsettled(&self) -> bool {
        match self {
            Answer::Completed(_) => false,
            Answer::Refused(_, reason) => {
                matches!(reason, Reason::ServiceBusy | Reason::Interrupted)
            }
            _ => true,
        }
    }
}

/// One sending of an op.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub op: usize,
    /// The id request gave this sending (a replayed key answers for an earlier one).
    pub request_id: RequestId,
    /// Whether its record claimed the key and inserted the request.
    pub recorded: bool,
    /// How long its step-up takes at auth.
    pub step_up_ms: u64,
    /// How long its certify write waits for the database.
    pub write_delay_ms: u64,
    /// Whether the saga has its step-up's verdict (auth's answer or the timeout, whichever came
    /// first).
    pub stepped_up: bool,
    pub answer: Answer,
}

impl World {
    /// The client sends op (again): request claims its key and records it PENDING in one
    /// transaction (the real `record`), or answers a replayed key from the earlier request.
    pub(crate) fn submit(&mut self, op: usize) -> anyhow::Result<()> {
        let certified = AuthCertified {
            request_id: RequestId::generate(),
            ..self.ops[op].request.clone()
        };
        let attempt = self.attempts.len();
        let first = !self.attempts.iter().any(|earlier| earlier.op == op);
        let (step_up_ms, write_delay_ms) = if first {
            (self.ops[op].step_up_ms, self.ops[op].write_delay_ms)
        } else {
            crate::workload::latencies(&mut self.rng, &self.shape)
        };
        self.attempts.push(Attempt {
            op,
            request_id: certified.request_id,
            step_up_ms,
            write_delay_ms,
            recorded: false,
            stepped_up: false,
            answer: Answer::NotSent,
        });
        self.note(format!(
            "op {op} send {attempt}: {} {} {} by {}",
            certified.kind.as_str(),
            certified.account_no,
            certified.amount.won(),
            certified.customer_id
        ));
        if !self.nodes[REQUEST].up {
            self.answer(attempt, Answer::NotSent);
            return Ok(());
        }
        let row = RequestRow {
            id: certified.request_id,
            customer_id: certified.customer_id.clone(),
            kind: certified.kind,
            account_no: certified.account_no.clone(),
            to_account_no: certified.to_account_no.clone(),
            amount: certified.amount,
            status: RequestStatus::Pending,
            balance: None,
            version: None,
            created_at: ambient::wall_ms(),
            completed_at: None,
        };
        let key = format!("key-{op}");
        let fingerprint = format!(
            "{}/{}/{}/{:?}",
            row.kind.as_str(),
            row.account_no,
            row.amount.won(),
            row.to_account_no
        );
        let claim = self.nodes[REQUEST]
            .write(|conn| Ok(now(request::record(conn, &row, Some(&key), &fingerprint))??))?;
        match claim {
            KeyClaim::Claimed => {
                self.attempts[attempt].recorded = true;
                let epoch = self.nodes[REQUEST].epoch;
                let to_auth = self.rng.random_range(0..=5);
                self.after(to_auth, Task::StepUpRead { attempt, epoch });
                let verdict = Verdict::Unavailable;
                let timeout = Task::SteppedUp {
                    attempt,
                    epoch,
                    verdict,
                };
                self.after(STEP_UP_TIMEOUT_MS, timeout);
            }
            KeyClaim::Replay(earlier) => {
                let answer = match self.standing(earlier)? {
                    Standing::Live(row) if row.status == RequestStatus::Completed => {
                        Answer::Completed(earlier)
                    }
                    Standing::Cancelled(refusal) => Answer::Refused(earlier, refusal.reason),
                    Standing::Live(_) | Standing::Unknown => Answer::InFlight(earlier),
                };
                self.answer(attempt, answer);
            }
            KeyClaim::Reused => anyhow::bail!("op {op}: its key was taken by another body"),
        }
        Ok(())
    }

    fn standing(&mut self, id: RequestId) -> anyhow::Result<Standing> {
        Ok(now(request::standing_on(
            &mut self.nodes[REQUEST].conn,
            id,
        ))??)
    }

    /// Whether the saga started in `epoch` of request is still alive; if not, its client lost
    /// the answer.
    fn alive(&mut self, attempt: usize, epoch: u64) -> bool {
        let node = &self.nodes[REQUEST];
        let alive = node.up && node.epoch == epoch;
        if !alive {
            self.answer(attempt, Answer::Lost);
        }
        alive
    }

    /// The client hears `answer` (unless it is lost on its way) and, when it does not know
    /// what happened or was told to try again, may send the op again.
    fn answer(&mut self, attempt: usize, answer: Answer) {
        let lost = answer != Answer::NotSent
            && self.faulty()
            && self.rng.random_bool(self.faults.lost_answer);
        let told = if lost { Answer::Lost } else { answer };
        self.note(format!("send {attempt} answered {told:?}"));
        self.attempts[attempt].answer = told.clone();
        let op = self.attempts[attempt].op;
        if !told.unsettled() {
            return;
        }
        let sends = self.attempts.iter().filter(|a| a.op == op).count();
        if sends < MAX_SENDS && self.rng.random_bool(self.faults.retry) {
            let delay = if self.rng.random_bool(0.5) {
                self.rng.random_range(0..=200)
            } else {
                self.rng.random_range(1_000..=15_000)
            };
            self.after(delay, Task::Submit(op));
        } else {
            self.note(format!("op {op} given up"));
        }
    }

    /// auth's answer reaches request, or the step-up's timeout does, whichever comes first:
    /// refuse, give up or certify, as the saga does.
    pub(crate) fn stepped_up(
        &mut self,
        attempt: usize,
        epoch: u64,
        verdict: Verdict,
    ) -> anyhow::Result<()> {
        if std::mem::replace(&mut self.attempts[attempt].stepped_up, true) {
            // The later of the answer and the timeout is not heard.
            return Ok(());
        }
        if !self.alive(attempt, epoch) {
            return Ok(());
        }
        let op = self.ops[self.attempts[attempt].op].clone();
        let id = self.attempts[attempt].request_id;
        self.note(format!("send {attempt} stepped up: {verdict:?}"));
        match verdict {
            Verdict::Unavailable => {
                self.nodes[REQUEST].write(|conn| {
                    let uncertified = request::Compensation::Uncertified;
                    Ok(now(request::cancel(
                        conn,
                        id,
                        Reason::ServiceBusy,
                        uncertified,
                    ))??)
                })?;
                self.answer(attempt, Answer::Refused(id, Reason::ServiceBusy));
            }
            Verdict::Refused(reason) => {
                let cancelled = AuthCancelled {
                    request_id: id,
                    customer_id: op.request.customer_id,
                    kind: op.request.kind,
                    account_no: op.request.account_no,
                    amount: op.request.amount,
                    reason,
                };
                self.nodes[REQUEST]
                    .write(|conn| now(request::refuse_on(conn, cancelled, None))?)?;
                self.answer(attempt, Answer::Refused(id, reason));
            }
            Verdict::Verified => {
                let delay = self.attempts[attempt].write_delay_ms;
                self.after(delay, Task::Certify { attempt, epoch });
            }
        }
        Ok(())
    }

    /// The certify write (the real one); then the saga waits for the outcome.
    pub(crate) fn certify(&mut self, attempt: usize, epoch: u64) -> anyhow::Result<()> {
        if !self.alive(attempt, epoch) {
            return Ok(());
        }
        let certified = Outgoing {
            event: Event::AuthCertified(AuthCertified {
                request_id: self.attempts[attempt].request_id,
                ..self.ops[self.attempts[attempt].op].request.clone()
            }),
            call: None,
        };
        let authorized =
            self.nodes[REQUEST].write(|conn| now(request::certify_on(conn, certified))?)?;
        self.note(format!("send {attempt} certified: {authorized}"));
        let deadline = self.now_ms + WAIT_MS;
        self.await_outcome(attempt, epoch, deadline)
    }

    /// Reads the request's standing (the real read): answers it, or waits 100 ms more.
    pub(crate) fn await_outcome(
        &mut self,
        attempt: usize,
        epoch: u64,
        deadline: u64,
    ) -> anyhow::Result<()> {
        if !self.alive(attempt, epoch) {
            return Ok(());
        }
        let id = self.attempts[attempt].request_id;
        match self.standing(id)? {
            Standing::Live(row) if row.status == RequestStatus::Completed => {
                self.answer(attempt, Answer::Completed(id))
            }
            Standing::Cancelled(refusal) => {
                self.answer(attempt, Answer::Refused(id, refusal.reason))
            }
            _ if self.now_ms >= deadline => self.answer(attempt, Answer::Accepted(id)),
            _ => self.after(
                100,
                Task::Await {
                    attempt,
                    epoch,
                    deadline,
                },
            ),
        }
        Ok(())
    }

    /// The sweeper's read: PENDING requests older than the step-up could take. Its write comes
    /// in a separate step, as in the bank (a read, then a write queued behind others).
    pub(crate) fn sweep(&mut self) -> anyhow::Result<()> {
        if !self.nodes[REQUEST].up {
            return Ok(());
        }
        let grace = request::sweep_grace(Duration::from_millis(STEP_UP_TIMEOUT_MS));
        let cutoff = ambient::wall_ms() - grace;
        let ids = now(request::stale_pending_on(
            &mut self.nodes[REQUEST].conn,
            cutoff,
        ))??;
        if !ids.is_empty() {
            let epoch = self.nodes[REQUEST].epoch;
            let gap = self.rng.random_range(0..=self.faults.sweep_gap_ms);
            self.after(gap, Task::SweepWrite { ids, epoch });
        }
        Ok(())
    }

    pub(crate) fn sweep_write(&mut self, ids: Vec<RequestId>, epoch: u64) -> anyhow::Result<()> {
        let node = &self.nodes[REQUEST];
        if !node.up || node.epoch != epoch {
            return Ok(());
        }
        let swept = self.nodes[REQUEST].write(|conn| {
            let mut swept = 0;
            for id in &ids {
                swept += usize::from(now(request::interrupt_on(conn, *id))??);
            }
            Ok(swept)
        })?;
        self.note(format!("sweeper compensated {swept} of {}", ids.len()));
        Ok(())
    }
}

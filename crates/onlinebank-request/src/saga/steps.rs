//! The saga of one write request as a state machine: named steps, the inputs that move it on and
//! the effects it asks for, all plain data. Nothing here reads a clock, draws a random number or
//! does I/O: the driver ([`super::run`]) carries out each [`Effect`] and feeds back what came of
//! it as an [`Input`], with the time it read.

use super::WriteRequest;
use crate::stepup::StepUpVerdict;
use crate::store::{RequestRow, RequestStatus, Standing};
use onlinebank_core::event::{AuthCancelled, AuthCertified};
use onlinebank_core::reason::Refusal;
use onlinebank_core::Reason;
use std::time::Duration;
use tokio::time::Instant;

/// How a request's saga ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Completed, or still in flight when the wait ended (the client follows it up by id).
    Live(RequestRow),
    /// Compensated, nothing happened, for `refusal`'s reason; `retry_after` when auth said when
    /// to retry.
    Failed {
        refusal: Refusal,
        retry_after: Option<u64>,
    },
    /// The step-up found the customer's session ended: nothing happened.
    SessionExpired,
    /// The request's record disappeared while the saga waited for it (a fault).
    Vanished,
}

impl Outcome {
    fn failed(refusal: impl Into<Refusal>) -> Self {
        Outcome::Failed {
            refusal: refusal.into(),
            retry_after: None,
        }
    }
}

/// Where a request's saga stands.
#[derive(Debug, Clone)]
pub enum SagaStep {
    /// Waiting for auth's answer to the step-up.
    StepUp,
    /// Verified in time: moving the request PENDING -> AUTHORIZED with AuthCertified.
    Certify,
    /// auth refused: compensating, AuthCancelled recorded; then `outcome` is the answer.
    Refuse { outcome: Outcome },
    /// No answer from auth in time: compensating as busy, nothing recorded.
    GiveUp,
    /// Authorized: waiting until `deadline` for the account's outcome.
    AwaitOutcome { deadline: Instant },
    /// Over, answered.
    Done,
}

/// What came of the last effect.
#[derive(Debug, Clone)]
pub enum Input {
    /// auth's answer to the step-up, or why there was none.
    SteppedUp(StepUpVerdict),
    /// The certify write ran at `now`: `authorized` unless the request had been swept meanwhile.
    Certified { authorized: bool, now: Instant },
    /// The compensation (refuse or give up) is written.
    Compensated,
    /// The request as read at `now`.
    Read { standing: Standing, now: Instant },
}

/// What the saga asks its driver to do next.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Ask auth to verify the step-up password (answered by [`Input::SteppedUp`]).
    StepUp,
    /// In one write: PENDING -> AUTHORIZED and this event into the outbox, then wake the relay
    /// ([`Input::Certified`]).
    Certify(AuthCertified),
    /// In one write: compensate for the event's reason and put the event into the outbox, then
    /// wake the relay ([`Input::Compensated`]).
    Refuse(AuthCancelled),
    /// Compensate as busy, with no event ([`Input::Compensated`]).
    GiveUp,
    /// Wait for the outcome's wake, or a poll, but no later than `deadline`; then read the
    /// request ([`Input::Read`]).
    AwaitOutcome { deadline: Instant },
    /// The saga is over: answer this outcome.
    Answer(Outcome),
}

impl Effect {
    /// The step's name in logs and spans.
    pub fn name(&self) -> &'static str {
        match self {
            Effect::StepUp => "step_up",
            Effect::Certify(_) => "certify",
            Effect::Refuse(_) => "refuse",
            Effect::GiveUp => "give_up",
            Effect::AwaitOutcome { .. } => "await_outcome",
            Effect::Answer(_) => "answer",
        }
    }
}

/// The saga of one write request: its record and how long it waits for the account's outcome.
#[derive(Debug, Clone, Copy)]
pub struct Saga<'a> {
    pub request: &'a WriteRequest,
    /// How long to wait for the account's outcome once authorized.
    pub wait: Duration,
}

impl Saga<'_> {
    /// The first step, and its effect.
    pub fn start(&self) -> (SagaStep, Effect) {
        (SagaStep::StepUp, Effect::StepUp)
    }

    /// The step after `step` given `input`, and the effect it asks for.
    ///
    /// The driver gives each effect's own input; any other pairing is a bug in the driver.
    pub fn next(&self, step: SagaStep, input: Input) -> (SagaStep, Effect) {
        match (step, input) {
            (SagaStep::StepUp, Input::SteppedUp(verdict)) => self.after_step_up(verdict),
            (SagaStep::Certify, Input::Certified { authorized, now }) => {
                if authorized {
                    let deadline = now + self.wait;
                    (
                        SagaStep::AwaitOutcome { deadline },
                        Effect::AwaitOutcome { deadline },
                    )
                } else {
                    // Swept while auth was answering: it was already compensated.
                    done(Outcome::failed(Reason::ServiceBusy))
                }
            }
            (SagaStep::Refuse { outcome }, Input::Compensated) => done(outcome),
            (SagaStep::GiveUp, Input::Compensated) => done(Outcome::failed(Reason::ServiceBusy)),
            (SagaStep::AwaitOutcome { deadline }, Input::Read { standing, now }) => {
                after_read(deadline, standing, now)
            }
            (step, input) => unreachable!("the saga at {step:?} was given {input:?}"),
        }
    }

    fn after_step_up(&self, verdict: StepUpVerdict) -> (SagaStep, Effect) {
        let request = self.request;
        match verdict {
            StepUpVerdict::Verified => (
                SagaStep::Certify,
                Effect::Certify(AuthCertified {
                    request_id: request.request_id,
                    customer_id: request.customer_id.clone(),
                    kind: request.kind,
                    account_no: request.account_no.clone(),
                    amount: request.amount,
                    to_account_no: request.to_account_no.clone(),
                }),
            ),
            StepUpVerdict::Refused {
                reason,
                session_expired,
                retry_after,
            } => {
                let outcome = if session_expired {
                    Outcome::SessionExpired
                } else {
                    Outcome::Failed {
                        refusal: reason.into(),
                        retry_after,
                    }
                };
                let cancelled = AuthCancelled {
                    request_id: request.request_id,
                    customer_id: request.customer_id.clone(),
                    kind: request.kind,
                    account_no: request.account_no.clone(),
                    amount: request.amount,
                    reason,
                };
                (SagaStep::Refuse { outcome }, Effect::Refuse(cancelled))
            }
            StepUpVerdict::Unavailable => (SagaStep::GiveUp, Effect::GiveUp),
        }
    }
}

/// The end of the saga, answering `outcome`.
fn done(outcome: Outcome) -> (SagaStep, Effect) {
    (SagaStep::Done, Effect::Answer(outcome))
}

/// After reading the request while awaiting its outcome: completed or compensated ends the saga,
/// still in flight waits on until `deadline`, then answers it as in flight.
fn after_read(deadline: Instant, standing: Standing, now: Instant) -> (SagaStep, Effect) {
    match standing {
        Standing::Live(row) if row.status == RequestStatus::Completed => done(Outcome::Live(row)),
        Standing::Cancelled(refusal) => done(Outcome::failed(refusal)),
        Standing::Unknown => done(Outcome::Vanished),
        Standing::Live(row) if now >= deadline => done(Outcome::Live(row)),
        Standing::Live(_) => (
            SagaStep::AwaitOutcome { deadline },
            Effect::AwaitOutcome { deadline },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onlinebank_core::event::WriteKind;
    use onlinebank_core::ids::RequestId;
    use onlinebank_core::ids::{AccountNo, CustomerId};

    const WAIT: Duration = Duration::from_secs(5);

    fn request() -> WriteRequest {
        WriteRequest {
            request_id: RequestId::generate(),
            customer_id: CustomerId::parse("alice").unwrap(),
            session_id: "session".to_owned(),
            kind: WriteKind::Deposit,
            account_no: AccountNo::generate(),
            to_account_no: None,
            amount: onlinebank_core::money::Won::try_from(1_000).unwrap(),
            password: "pw".to_owned(),
        }
    }

    fn row(request: &WriteRequest, status: RequestStatus) -> RequestRow {
        RequestRow {
            id: request.request_id,
            customer_id: request.customer_id.clone(),
            kind: request.kind,
            account_no: request.account_no.clone(),
            to_account_no: request.to_account_no.clone(),
            amount: request.amount,
            status,
            balance: None,
            version: None,
            created_at: 0,
            completed_at: None,
        }
    }

    fn saga(request: &WriteRequest) -> Saga<'_> {
        Saga {
            request,
            wait: WAIT,
        }
    }

    /// The saga taken from its start through `inputs`.
    fn after(request: &WriteRequest, inputs: Vec<Input>) -> (SagaStep, Effect) {
        let saga = saga(request);
        let (mut step, mut effect) = saga.start();
        for input in inputs {
            (step, effect) = saga.next(step, input);
        }
        (step, effect)
    }

    fn refused(reason: Reason, session_expired: bool, retry_after: Option<u64>) -> Input {
        Input::SteppedUp(StepUpVerdict::Refused {
            reason,
            session_expired,
            retry_after,
        })
    }

    /// The outcome the saga answers with; panics if it is not over.
    fn answered((step, effect): (SagaStep, Effect)) -> Outcome {
        assert!(matches!(step, SagaStep::Done), "answered at {step:?}");
        match effect {
            Effect::Answer(outcome) => outcome,
            effect => panic!("not over: {effect:?}"),
        }
    }

    /// The saga of `request`, certified at `now`: awaiting its outcome.
    fn certified(now: Instant) -> Vec<Input> {
        vec![
            Input::SteppedUp(StepUpVerdict::Verified),
            Input::Certified {
                authorized: true,
                now,
            },
        ]
    }

    #[test]
    fn it_starts_with_the_step_up() {
        let request = request();
        let (step, effect) = saga(&request).start();
        assert!(matches!(step, SagaStep::StepUp));
        assert!(matches!(effect, Effect::StepUp), "{effect:?}");
    }

    #[test]
    fn a_verified_step_up_certifies_the_request_as_it_is() {
        let request = request();
        let (step, effect) = after(&request, vec![Input::SteppedUp(StepUpVerdict::Verified)]);
        assert!(matches!(step, SagaStep::Certify));
        let Effect::Certify(certified) = effect else {
            panic!("{effect:?}");
        };
        assert_eq!(
            certified,
            AuthCertified {
                request_id: request.request_id,
                customer_id: request.customer_id.clone(),
                kind: request.kind,
                account_no: request.account_no.clone(),
                amount: request.amount,
                to_account_no: request.to_account_no.clone(),
            }
        );
    }

    #[test]
    fn a_refused_step_up_records_the_refusal_then_answers_its_reason() {
        let request = request();
        for (reason, retry_after) in [
            (Reason::StepUpFailed, None),
            (Reason::LockedOut, Some(42)),
            (Reason::LockedOut, None),
        ] {
            let refusal = refused(reason, false, retry_after);
            let (step, effect) = after(&request, vec![refusal.clone()]);
            assert!(matches!(step, SagaStep::Refuse { .. }));
            let Effect::Refuse(cancelled) = effect else {
                panic!("{effect:?}");
            };
            assert_eq!(
                cancelled,
                AuthCancelled {
                    request_id: request.request_id,
                    customer_id: request.customer_id.clone(),
                    kind: request.kind,
                    account_no: request.account_no.clone(),
                    amount: request.amount,
                    reason,
                }
            );
            let outcome = answered(after(&request, vec![refusal, Input::Compensated]));
            assert!(
                matches!(outcome, Outcome::Failed { refusal: r, retry_after: a } if r == reason.into() && a == retry_after),
                "{outcome:?}"
            );
        }
    }

    #[test]
    fn an_ended_session_is_recorded_as_refused_and_answered_as_expired() {
        let request = request();
        let refusal = refused(Reason::StepUpFailed, true, None);
        let (_, effect) = after(&request, vec![refusal.clone()]);
        assert!(matches!(
            effect,
            Effect::Refuse(AuthCancelled {
                reason: Reason::StepUpFailed,
                ..
            })
        ));
        let outcome = answered(after(&request, vec![refusal, Input::Compensated]));
        assert!(matches!(outcome, Outcome::SessionExpired), "{outcome:?}");
    }

    #[test]
    fn no_step_up_answer_gives_up_as_busy_without_an_event() {
        let request = request();
        let (step, effect) = after(&request, vec![Input::SteppedUp(StepUpVerdict::Unavailable)]);
        assert!(matches!(step, SagaStep::GiveUp));
        assert!(matches!(effect, Effect::GiveUp), "{effect:?}");
        let outcome = answered(after(
            &request,
            vec![
                Input::SteppedUp(StepUpVerdict::Unavailable),
                Input::Compensated,
            ],
        ));
        assert!(
            matches!(
                outcome,
                Outcome::Failed {
                    refusal: Refusal {
                        reason: Reason::ServiceBusy,
                        allowed_today: None,
                    },
                    retry_after: None
                }
            ),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_request_swept_while_auth_answered_is_answered_busy() {
        let request = request();
        let outcome = answered(after(
            &request,
            vec![
                Input::SteppedUp(StepUpVerdict::Verified),
                Input::Certified {
                    authorized: false,
                    now: Instant::now(),
                },
            ],
        ));
        assert!(
            matches!(
                outcome,
                Outcome::Failed {
                    refusal: Refusal {
                        reason: Reason::ServiceBusy,
                        allowed_today: None,
                    },
                    retry_after: None
                }
            ),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_certified_request_awaits_its_outcome_for_the_wait_from_the_certify_write() {
        let request = request();
        let now = Instant::now();
        let (step, effect) = after(&request, certified(now));
        assert!(matches!(step, SagaStep::AwaitOutcome { deadline } if deadline == now + WAIT));
        assert!(
            matches!(effect, Effect::AwaitOutcome { deadline } if deadline == now + WAIT),
            "{effect:?}"
        );
    }

    #[test]
    fn a_completed_request_ends_the_wait_with_its_record() {
        let request = request();
        let now = Instant::now();
        let mut inputs = certified(now);
        inputs.push(Input::Read {
            standing: Standing::Live(row(&request, RequestStatus::Completed)),
            now: now + WAIT / 2,
        });
        let outcome = answered(after(&request, inputs));
        assert!(
            matches!(&outcome, Outcome::Live(row) if row.status == RequestStatus::Completed),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_request_compensated_or_swept_while_awaited_answers_the_reason() {
        let request = request();
        let now = Instant::now();
        // Refused by the account, or swept (compensated busy) by the sweeper meanwhile.
        for reason in [Reason::InsufficientFunds, Reason::ServiceBusy] {
            let mut inputs = certified(now);
            inputs.push(Input::Read {
                standing: Standing::Cancelled(reason.into()),
                now,
            });
            let outcome = answered(after(&request, inputs));
            assert!(
                matches!(outcome, Outcome::Failed { refusal: r, retry_after: None } if r == reason.into()),
                "{outcome:?}"
            );
        }
    }

    #[test]
    fn a_request_that_vanished_while_awaited_is_answered_as_vanished() {
        let request = request();
        let now = Instant::now();
        let mut inputs = certified(now);
        inputs.push(Input::Read {
            standing: Standing::Unknown,
            now,
        });
        let outcome = answered(after(&request, inputs));
        assert!(matches!(outcome, Outcome::Vanished), "{outcome:?}");
    }

    #[test]
    fn a_request_in_flight_is_awaited_until_the_deadline_then_answered_in_flight() {
        let request = request();
        let now = Instant::now();
        let deadline = now + WAIT;
        for status in [RequestStatus::Authorized, RequestStatus::Pending] {
            let before = Input::Read {
                standing: Standing::Live(row(&request, status)),
                now: deadline - Duration::from_millis(1),
            };
            let mut inputs = certified(now);
            inputs.push(before.clone());
            let (step, effect) = after(&request, inputs.clone());
            assert!(matches!(step, SagaStep::AwaitOutcome { deadline: d } if d == deadline));
            assert!(
                matches!(effect, Effect::AwaitOutcome { deadline: d } if d == deadline),
                "{effect:?}"
            );
            inputs.push(Input::Read {
                standing: Standing::Live(row(&request, status)),
                now: deadline,
            });
            let outcome = answered(after(&request, inputs));
            assert!(
                matches!(&outcome, Outcome::Live(row) if row.status == status),
                "{outcome:?}"
            );
        }
    }

    #[test]
    #[should_panic(expected = "was given")]
    fn an_input_that_does_not_follow_the_step_is_a_bug() {
        let request = request();
        after(&request, vec![Input::Compensated]);
    }
}

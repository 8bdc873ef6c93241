//! The auth role as the simulator runs it: sessions opened by the real `open_session_on`, and a
//! step-up in two steps as in `onlinebank_auth::api::step_up`: the session and its lock read
//! (`session_on`, `admit`) and the password checked by the real HMAC verifier, then, after
//! auth's latency, the deciding write (`record_attempt_on`: the lockout decided on the record
//! read in that write, the audit written with it). Step-ups of one customer interleave between
//! the two. Not simulated: argon2id (login, sign-up, a verifier under another pepper).

use crate::node::now;
use crate::saga::Verdict;
use crate::world::{Task, World, AUTH};
use onlinebank_auth::sim::{
    admit, open_session_on, record_attempt_on, session_on, Attempt, Audit, Decision, LockoutRule,
    NewSession, StepUpCheck, StepUpKeys,
};
use onlinebank_core::ambient;
use onlinebank_core::ids::CustomerId;
use onlinebank_core::secret::DerivedKey;
use onlinebank_core::settings::defaults;
use onlinebank_core::Reason;
use rand::Rng;

/// The password every simulated customer logged in with.
const PASSWORD: &str = "the right password";

/// The lockout rule: the bank's defaults.
pub const RULE: LockoutRule = LockoutRule {
    threshold: defaults::LOCKOUT_THRESHOLD as i64,
    window: defaults::LOCKOUT_SECS as i64 * 1_000,
};

/// The step-up keys of every simulated auth (one pepper, as `--token-secret` gives).
fn keys() -> StepUpKeys {
    StepUpKeys::derived(DerivedKey([7; 32]))
}

/// The session a customer's requests carry.
pub fn session_id(customer: &CustomerId) -> String {
    format!("session-{customer}")
}

impl World {
    /// Registers `customers` (the row only: no argon2id) and opens each one's session with the
    /// real write.
    pub(crate) fn open_sessions(&mut self, customers: &[CustomerId]) -> anyhow::Result<()> {
        let at = ambient::wall_ms();
        for customer in customers {
            let session_id = session_id(customer);
            let verifier = keys().verifier(&session_id, PASSWORD);
            let expires_at = at + i64::try_from(defaults::TOKEN_TTL_SECS)? * 1_000;
            self.nodes[AUTH].write(|conn| {
                now(conn.execute(
                    "INSERT INTO customers (user_id, name, password_hash, created_at) VALUES ($1, $1, 'not simulated', $2)",
                    onlinebank_core::args![customer.as_str(), at],
                ))??;
                let session = NewSession {
                    session_id: &session_id,
                    user_id: customer.as_str(),
                    verifier: &verifier,
                    expires_at,
                };
                match now(open_session_on(conn, session, RULE, at))?? {
                    Ok(()) => Ok(()),
                    Err(locked) => Err(anyhow::anyhow!("{customer} locked until {locked}")),
                }
            })?;
        }
        Ok(())
    }

    /// auth's first step: the session and its lock read, the password checked; the write comes
    /// after auth's latency.
    pub(crate) fn step_up_read(&mut self, attempt: usize, epoch: u64) -> anyhow::Result<()> {
        if !self.nodes[AUTH].up {
            return Ok(());
        }
        let op = &self.ops[self.attempts[attempt].op];
        let session_id = session_id(&op.request.customer_id);
        let password = if op.wrong_password {
            "a wrong one"
        } else {
            PASSWORD
        };
        let latency = self.attempts[attempt].step_up_ms;
        let session = now(session_on(&mut self.nodes[AUTH].conn, &session_id))??;
        let at = ambient::wall_ms();
        let Some(session) = session.filter(|session| session.expires_at > at) else {
            // Answered 401 before anything is recorded: the saga refuses the request.
            let verdict = Verdict::Refused(Reason::StepUpFailed);
            let back = self.rng.random_range(0..=5);
            self.after(
                back,
                Task::SteppedUp {
                    attempt,
                    epoch,
                    verdict,
                },
            );
            return Ok(());
        };
        let tried = match admit(session.locked_until, at) {
            Err(until) => Attempt::WhileLocked(until),
            Ok(()) => match keys().check(&session_id, password, &session.verifier) {
                StepUpCheck::Matches => Attempt::Succeeded,
                StepUpCheck::Wrong | StepUpCheck::OtherPepper => Attempt::Failed,
            },
        };
        let auth_epoch = self.nodes[AUTH].epoch;
        let write = Task::StepUpWrite {
            attempt,
            epoch,
            auth_epoch,
            tried,
        };
        self.after(latency, write);
        Ok(())
    }

    /// auth's deciding write, then its answer on its way to request.
    pub(crate) fn step_up_write(
        &mut self,
        attempt: usize,
        epoch: u64,
        auth_epoch: u64,
        tried: Attempt,
    ) -> anyhow::Result<()> {
        let node = &self.nodes[AUTH];
        if !node.up || node.epoch != auth_epoch {
            return Ok(());
        }
        let op = &self.ops[self.attempts[attempt].op];
        let user_id = op.request.customer_id.clone();
        let audit = Audit {
            request_id: self.attempts[attempt].request_id.to_string(),
            session_id: session_id(&user_id),
            action: op.request.kind.as_str().to_owned(),
            new_verifier: None,
        };
        let at = ambient::wall_ms();
        let decision = self.nodes[AUTH].write(|conn| {
            let deciding = record_attempt_on(conn, user_id.as_str(), tried, Some(&audit), RULE, at);
            Ok(now(deciding)??)
        })?;
        self.note(format!(
            "auth decided send {attempt}: {tried:?} -> {decision:?}"
        ));
        let verdict = match decision {
            Decision::Accepted => Verdict::Verified,
            Decision::Refused { .. } => Verdict::Refused(Reason::StepUpFailed),
            Decision::Locked(_) => Verdict::Refused(Reason::LockedOut),
        };
        let back = self.rng.random_range(0..=5);
        let answer = Task::SteppedUp {
            attempt,
            epoch,
            verdict,
        };
        self.after(back, answer);
        Ok(())
    }
}

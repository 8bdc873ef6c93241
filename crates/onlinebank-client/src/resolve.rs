//! Finding out what became of a write whose outcome the client did not learn: poll
//! `GET /api/v1/requests/{id}` while its id is known, otherwise re-send it with the same
//! Idempotency-Key (which replays the first answer, or performs it now if it never arrived).
//! `service_busy` on a re-send proves nothing about the first attempt, so it is retried like any
//! other unknown, until the deadline.

use crate::outcome::{classify_request, classify_write, Outcome};
use serde::Serialize;
use serde_json::Value;
use std::future::Future;
use std::time::{Duration, Instant};

/// The two calls resolution needs; `Client` provides them, and the tests' client over it.
pub trait Transport: Sync {
    /// `POST /api/v1/requests` with the bearer token and the Idempotency-Key: the status and the
    /// body (`Null` when it is not JSON), or the label of the transport failure. `body` is a
    /// `wire::Write`, or (in tests) any JSON.
    fn write<B: Serialize + Sync + ?Sized>(
        &self,
        token: &str,
        key: &str,
        body: &B,
    ) -> impl Future<Output = Result<(u16, Value), String>> + Send;

    /// `GET /api/v1/requests/{id}` with the bearer token, as `write` answers.
    fn request(
        &self,
        token: &str,
        id: &str,
    ) -> impl Future<Output = Result<(u16, Value), String>> + Send;
}

/// Sends a write with its Idempotency-Key and classifies the answer.
pub async fn send<T: Transport, B: Serialize + Sync + ?Sized>(
    transport: &T,
    token: &str,
    key: &str,
    body: &B,
) -> Outcome {
    match transport.write(token, key, body).await {
        Ok((status, json)) => classify_write(status, &json),
        Err(label) => Outcome::lost(label),
    }
}

/// Sends a write and resolves it: how a step that must not be skipped (a setup's open) is done.
pub async fn send_resolved<T: Transport, B: Serialize + Sync + ?Sized>(
    transport: &T,
    token: &str,
    key: &str,
    body: &B,
    deadline: Instant,
) -> Outcome {
    resolve(
        transport,
        token,
        key,
        body,
        Outcome::lost("not sent"),
        deadline,
    )
    .await
}

/// Turns `answer` (the last thing known about the write `body` sent with `key`) into a
/// definitive one (completed or refused), or returns the last answer seen at `deadline`.
pub async fn resolve<T: Transport, B: Serialize + Sync + ?Sized>(
    transport: &T,
    token: &str,
    key: &str,
    body: &B,
    mut answer: Outcome,
    deadline: Instant,
) -> Outcome {
    let mut pause = Duration::from_millis(50);
    loop {
        if answer.is_definitive() {
            return answer;
        }
        answer = match answer.request_id().map(str::to_owned) {
            Some(id) => match transport.request(token, &id).await {
                Ok((status, json)) => classify_request(status, &json, &id),
                Err(label) => Outcome::Unknown {
                    label,
                    id: Some(id),
                },
            },
            None => send(transport, token, key, body).await,
        };
        if answer.is_definitive() || Instant::now() + pause >= deadline {
            return answer;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Write;
    use serde_json::json;
    use std::sync::Mutex;

    /// Outcomes from a script; records what was asked.
    struct Script {
        writes: Mutex<Vec<(u16, Value)>>,
        polls: Mutex<Vec<(u16, Value)>>,
        asked: Mutex<Vec<String>>,
    }

    impl Transport for Script {
        async fn write<B: Serialize + Sync + ?Sized>(
            &self,
            _: &str,
            key: &str,
            _: &B,
        ) -> Result<(u16, Value), String> {
            self.asked
                .lock()
                .map_err(|_| "poisoned")?
                .push(format!("write {key}"));
            self.writes
                .lock()
                .map_err(|_| "poisoned")?
                .pop()
                .ok_or("timeout".into())
        }

        async fn request(&self, _: &str, id: &str) -> Result<(u16, Value), String> {
            self.asked
                .lock()
                .map_err(|_| "poisoned")?
                .push(format!("poll {id}"));
            self.polls
                .lock()
                .map_err(|_| "poisoned")?
                .pop()
                .ok_or("timeout".into())
        }
    }

    #[tokio::test]
    async fn busy_and_lost_answers_are_resent_and_pending_ones_polled() {
        let script = Script {
            // Popped from the end: busy, then 202, then (polled) completed.
            writes: Mutex::new(vec![
                (202, json!({"requestId":"r1","status":"pending"})),
                (503, json!({"error":{"code":"service_busy"}})),
            ]),
            polls: Mutex::new(vec![(200, json!({"status":"completed","balance":7}))]),
            asked: Mutex::new(Vec::new()),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let body = Write::close("1", "pw");
        let answer = resolve(&script, "t", "k", &body, Outcome::lost("x"), deadline).await;
        assert_eq!(
            answer,
            Outcome::Completed {
                id: Some("r1".into()),
                balance: Some(7)
            }
        );
        let asked = script.asked.lock().map(|a| a.clone()).unwrap_or_default();
        assert_eq!(asked, ["write k", "write k", "poll r1"]);
    }

    #[tokio::test]
    async fn a_deadline_ends_resolution_with_the_last_answer() {
        let script = Script {
            writes: Mutex::new(Vec::new()),
            polls: Mutex::new(Vec::new()),
            asked: Mutex::new(Vec::new()),
        };
        let deadline = Instant::now() + Duration::from_millis(200);
        let answer = send_resolved(&script, "t", "k", &Write::close("1", "pw"), deadline).await;
        assert_eq!(answer, Outcome::lost("timeout"));
    }
}

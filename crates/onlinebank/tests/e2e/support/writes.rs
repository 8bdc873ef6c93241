//! Writes whose outcome a client must learn, also across crashes. What an answer means and how
//! an unknown one is resolved is `onlinebank_client`'s (shared with the CLI and the bench); this is
//! the tests' client speaking it, with the contract's promises about a write's answer asserted on
//! the way, and `Op`, one write of the crash and chaos tests' streams.

use super::*;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use onlinebank_client::account_check::{check_account, Entry, Sent, Views};
pub use onlinebank_client::{resolve, wire, Outcome, Transport, Write, WriteKind};

/// How long a client waits for one answer.
pub const OP_TIMEOUT: Duration = Duration::from_secs(20);

/// Fails the test when a write's answer breaks the contract: a completed write carries its
/// request id and balance, a 202 its request id.
#[track_caller]
fn assert_write_contract(reply: &Reply) {
    let body = &reply.body;
    if reply.status == 200 && body["status"] == "completed" {
        assert!(
            body["requestId"].is_string(),
            "completed without requestId: {}",
            reply.text
        );
        assert!(
            body["balance"].is_i64(),
            "completed without balance: {}",
            reply.text
        );
    }
    if reply.status == 202 {
        assert!(
            body["requestId"].is_string(),
            "202 without requestId: {}",
            reply.text
        );
    }
}

/// The tests' client as the kit's transport: every call bounded by `OP_TIMEOUT` (a timeout is a
/// lost answer).
impl Transport for Api {
    async fn write<B: Serialize + Sync + ?Sized>(
        &self,
        token: &str,
        key: &str,
        body: &B,
    ) -> Result<(u16, Value), String> {
        let body = serde_json::to_value(body).map_err(|error| error.to_string())?;
        let sent = self
            .post_req("/api/v1/requests")
            .bearer(token)
            .header("Idempotency-Key", key)
            .json(body);
        let reply = bounded(sent).await?;
        assert_write_contract(&reply);
        Ok((reply.status, reply.body))
    }

    async fn request(&self, token: &str, id: &str) -> Result<(u16, Value), String> {
        let asked = self
            .get_req(&format!("/api/v1/requests/{id}"))
            .bearer(token);
        Ok(bounded(asked).await?.pair())
    }
}

/// Sends, waiting at most `OP_TIMEOUT`.
async fn bounded(request: Req<'_>) -> Result<Reply, String> {
    tokio::time::timeout(OP_TIMEOUT, request.try_send())
        .await
        .unwrap_or_else(|_| Err("client timeout".into()))
}

/// Sends a write with its Idempotency-Key and classifies the answer (a timeout is unknown).
pub async fn send(api: &Api, token: &str, key: &str, body: Value) -> Outcome {
    onlinebank_client::send(api, token, key, &body).await
}

/// The transactions of an account as ledger entries (newest first); fails the test on an entry
/// without request id, type or amount.
pub async fn ledger_of(api: &Api, token: &str, no: &str) -> Vec<Entry> {
    api.all_transactions(token, no)
        .await
        .into_iter()
        .map(|item| {
            let shown = format!("{item:?}");
            Entry::from_transaction(item, &shown).unwrap_or_else(|error| panic!("{no}: {error}"))
        })
        .collect()
}

/// One write of a test's stream: what was sent, and what the client learnt of it first and at
/// last (after resolution).
#[derive(Debug, Clone)]
pub struct Op {
    /// The index of the customer who sent it.
    pub customer: usize,
    /// A transfer's source.
    pub account: String,
    /// A transfer's target.
    pub to: Option<String>,
    pub kind: WriteKind,
    pub amount: i64,
    pub key: String,
    pub first: Outcome,
    /// When the first outcome arrived, as the server formats times.
    pub first_at: String,
    pub last: Outcome,
}

impl Op {
    /// A write not sent yet, with a fresh Idempotency-Key.
    pub fn new(customer: usize, account: &str, kind: WriteKind, amount: i64) -> Op {
        Op {
            customer,
            account: account.to_owned(),
            to: None,
            kind,
            amount,
            key: uuid::Uuid::new_v4().to_string(),
            first: Outcome::lost("not sent"),
            first_at: String::new(),
            last: Outcome::lost("not sent"),
        }
    }

    /// A transfer of `amount` from `from` (the customer's) to `to`, not sent yet.
    pub fn transfer(customer: usize, from: &str, to: &str, amount: i64) -> Op {
        Op {
            to: Some(to.to_owned()),
            ..Op::new(customer, from, WriteKind::Transfer, amount)
        }
    }

    /// A write already known `completed` (no key: it is never re-sent).
    pub fn completed(
        customer: usize,
        account: &str,
        kind: WriteKind,
        amount: i64,
        done: Outcome,
    ) -> Op {
        Op {
            key: String::new(),
            first: done.clone(),
            first_at: rfc3339_ms(std::time::SystemTime::now()),
            last: done,
            ..Op::new(customer, account, kind, amount)
        }
    }

    /// The body, with the step-up password `pw`.
    pub fn body<'a>(&'a self, pw: &'a str) -> Write<'a> {
        match self.kind {
            WriteKind::Open => Write::open(Some(&self.account), Some(self.amount), pw),
            WriteKind::Close => Write::close(&self.account, pw),
            WriteKind::Transfer => {
                let to = self.to.as_deref().unwrap_or_default();
                Write::transfer(&self.account, to, self.amount, pw)
            }
            kind => Write::money(kind, &self.account, self.amount, pw),
        }
    }

    /// Sends it once through `api` as `customer`; its first outcome is also its last so far.
    pub async fn send(&mut self, api: &Api, customer: &Customer) {
        let body = self.body(&customer.pw);
        let outcome = onlinebank_client::send(api, &customer.token, &self.key, &body).await;
        self.first_at = rfc3339_ms(std::time::SystemTime::now());
        self.first = outcome.clone();
        self.last = outcome;
    }

    /// Resolves its last outcome through `transport` (the same key, or its request id) until it
    /// is definitive or `deadline` passes.
    pub async fn settle(
        &mut self,
        transport: &impl Transport,
        customer: &Customer,
        deadline: Instant,
    ) {
        let body = self.body(&customer.pw);
        let last = resolve(
            transport,
            &customer.token,
            &self.key,
            &body,
            self.last.clone(),
            deadline,
        )
        .await;
        self.last = last;
    }

    /// As the account check of a transfer's target takes it (None: not a transfer).
    pub fn sent_in(&self) -> Option<(&str, Sent<'_>)> {
        let to = self.to.as_deref()?;
        let sent = Sent {
            kind: onlinebank_client::wire::EntryKind::TransferIn,
            ..self.sent()
        };
        Some((to, sent))
    }

    /// As the account check (of its own account, a transfer's source) takes it.
    pub fn sent(&self) -> Sent<'_> {
        Sent {
            kind: onlinebank_client::wire::EntryKind::of_write(self.kind),
            amount: self.amount,
            first: &self.first,
            last: &self.last,
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC), the format the bank answers times in.
pub fn rfc3339_ms(time: std::time::SystemTime) -> String {
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// One deposit of a test's stream, sent with its own Idempotency-Key and an amount no other
/// deposit has: who sent it where, when it went, when and how it was first answered, and the
/// request it completed as. (The backup, quiesce and rolling-restart tests judge these.)
#[derive(Debug, Clone)]
pub struct SentDeposit {
    /// The index of the customer who sent it.
    pub customer: usize,
    pub account: String,
    pub amount: i64,
    pub key: String,
    pub sent_at: Instant,
    pub answered_at: Instant,
    /// The first answer, or why none arrived.
    pub answer: Result<Reply, String>,
    /// The id of the request it completed as: from a completed first answer, or once resolved
    /// by its key.
    pub id: Option<String>,
}

impl SentDeposit {
    /// A deposit sent at `sent_at` and answered (`answer`) now.
    pub fn answered(
        customer: usize,
        account: String,
        amount: i64,
        key: String,
        sent_at: Instant,
        answer: Result<Reply, String>,
    ) -> Self {
        let mut deposit = SentDeposit {
            customer,
            account,
            amount,
            key,
            sent_at,
            answered_at: Instant::now(),
            answer,
            id: None,
        };
        if deposit.completed() {
            deposit.id = deposit.reply().and_then(|(_, body)| {
                let request: wire::Request = wire::decode(&body);
                request.request_id
            });
        }
        deposit
    }

    /// The first answer's status and body (`None`: no answer arrived).
    pub fn reply(&self) -> Option<(u16, Value)> {
        self.answer.as_ref().ok().map(Reply::pair)
    }

    /// The first answer: its status and text, or why none arrived.
    pub fn answer_text(&self) -> String {
        match &self.answer {
            Ok(reply) => format!("{} {}", reply.status, reply.text),
            Err(error) => error.clone(),
        }
    }

    /// Whether the first answer said it completed.
    pub fn completed(&self) -> bool {
        matches!(&self.answer, Ok(reply) if reply.status == 200 && reply.body["status"] == "completed")
    }

    /// Whether the first answer refused it as the bank was paused (503 `service_busy`).
    pub fn paused(&self) -> bool {
        matches!(&self.answer, Ok(reply) if reply.status == 503
            && reply.body["error"]["code"] == "service_busy")
    }

    /// Whether it was acknowledged as applied before `at`.
    pub fn acked_before(&self, at: Instant) -> bool {
        self.completed() && self.answered_at < at
    }

    /// The deposits of `sent` by account, each account's in the order they were sent.
    pub fn by_account(sent: &[SentDeposit]) -> BTreeMap<&str, Vec<&SentDeposit>> {
        let mut by_account: BTreeMap<&str, Vec<&SentDeposit>> = BTreeMap::new();
        for deposit in sent {
            by_account
                .entry(&deposit.account)
                .or_default()
                .push(deposit);
        }
        by_account
    }
}

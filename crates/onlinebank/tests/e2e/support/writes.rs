//! Writes whose outcome a client must learn, also across crashes. What an answer means and how
//! an unknown one is resolved is `onlinebank_kit`'s (shared with the bench); this is the tests'
//! client speaking it, with the contract's promises about a write's answer asserted on the way.

use super::*;
use serde_json::Value;
use std::time::Duration;

pub use onlinebank_kit::ledger::{check_account, Entry, Sent, Views};
pub use onlinebank_kit::{resolve, Answer};

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
impl onlinebank_kit::Transport for Api {
    async fn write(&self, token: &str, key: &str, body: &Value) -> Result<(u16, Value), String> {
        let sent = self
            .post_req("/api/v1/requests")
            .bearer(token)
            .header("Idempotency-Key", key)
            .json(body.clone());
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
pub async fn send(api: &Api, token: &str, key: &str, body: Value) -> Answer {
    onlinebank_kit::send(api, token, key, &body).await
}

/// The transactions of an account as ledger entries (newest first); fails the test on an entry
/// without request id, type or amount.
pub async fn ledger_of(api: &Api, token: &str, no: &str) -> Vec<Entry> {
    api.all_transactions(token, no)
        .await
        .iter()
        .map(|item| Entry::parse(item).unwrap_or_else(|error| panic!("{no}: {error}")))
        .collect()
}

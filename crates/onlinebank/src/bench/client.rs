//! The load generator's view of the bank's HTTP contract (docs/api.md): one pooled client, and
//! answers reduced to what the bench needs to count them (status, error code, request id) and to
//! know whether a write happened.
//!
//! It exists so that the workload, the setup and the invariant check classify answers the same
//! way: what counts as "applied", "refused" (nothing happened) or "unknown" (resolve before
//! judging) is decided here and only here.

use bytes::Bytes;
use serde_json::Value;
use std::time::Duration;

/// One pooled HTTP client bound to the gateway's base URL.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
}

/// An answer: HTTP status and body, or the kind of transport failure.
#[derive(Debug)]
pub enum Reply {
    Http { status: u16, body: Bytes },
    Transport(&'static str),
}

impl Reply {
    pub fn status(&self) -> Option<u16> {
        match self {
            Reply::Http { status, .. } => Some(*status),
            Reply::Transport(_) => None,
        }
    }

    pub fn is_success(&self) -> bool {
        matches!(self.status(), Some(200..=299))
    }

    pub fn json(&self) -> Option<Value> {
        match self {
            Reply::Http { body, .. } => serde_json::from_slice(body).ok(),
            Reply::Transport(_) => None,
        }
    }

    /// How an unsuccessful answer is counted: the contract's error code, else `http_<status>`,
    /// or `transport_<kind>`.
    pub fn label(&self) -> String {
        match self {
            Reply::Http { status, body } => serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|json| error_code(&json))
                .unwrap_or_else(|| format!("http_{status}")),
            Reply::Transport(kind) => format!("transport_{kind}"),
        }
    }
}

/// `{"error":{"code":...}}`
pub fn error_code(body: &Value) -> Option<String> {
    body.get("error")?.get("code")?.as_str().map(str::to_owned)
}

/// What a write's answer says about whether it happened.
#[derive(Debug)]
pub enum WriteOutcome {
    /// 200 completed: the balance moved.
    Applied,
    /// A definite "no": a business refusal or an answer meaning nothing happened.
    Refused(String),
    /// Maybe: 202 pending, 502/504 outcome_unknown, other 5xx, transport errors, a key still in
    /// flight. `request_id` is known when the answer carried one.
    Unknown {
        label: String,
        request_id: Option<String>,
    },
}

/// Classifies the answer to `POST /api/v1/requests` (a write).
pub fn classify_write(reply: &Reply) -> WriteOutcome {
    let Reply::Http { status, .. } = reply else {
        return WriteOutcome::Unknown {
            label: reply.label(),
            request_id: None,
        };
    };
    let json = reply.json().unwrap_or(Value::Null);
    let request_id = json
        .get("requestId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let code = error_code(&json);
    match (*status, code.as_deref()) {
        (200, _) if json.get("status").and_then(Value::as_str) == Some("completed") => {
            WriteOutcome::Applied
        }
        (202, _) => WriteOutcome::Unknown {
            label: "pending_202".to_owned(),
            request_id,
        },
        // Busy means nothing happened (the key, if any, was released).
        (503, Some("service_busy")) => WriteOutcome::Refused("service_busy".to_owned()),
        (409, Some("idempotency_key_in_flight")) => WriteOutcome::Unknown {
            label: "idempotency_key_in_flight".to_owned(),
            request_id,
        },
        (400..=499, _) => WriteOutcome::Refused(reply.label()),
        _ => WriteOutcome::Unknown {
            label: reply.label(),
            request_id,
        },
    }
}

fn transport_kind(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else if error.is_body() || error.is_decode() {
        "body"
    } else if error.is_request() {
        "request"
    } else {
        "other"
    }
}

impl Api {
    /// `pool` idle connections are kept per host: one per client of the workload. `timeout`
    /// bounds each call.
    pub fn new(base: &str, pool: usize, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(pool)
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            timeout,
        })
    }

    /// The same client (and pool) with at least `timeout` per call: setup and the invariant
    /// check are patient even when the workload's calls are not.
    pub fn at_least(&self, timeout: Duration) -> Self {
        Self {
            timeout: self.timeout.max(timeout),
            ..self.clone()
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        match request.timeout(self.timeout).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.bytes().await {
                    Ok(body) => Reply::Http { status, body },
                    Err(error) => Reply::Transport(transport_kind(&error)),
                }
            }
            Err(error) => Reply::Transport(transport_kind(&error)),
        }
    }

    /// `GET {base}{path}` with an optional bearer token.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    /// `POST {base}{path}` with a JSON body, an optional bearer token and Idempotency-Key.
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: &Value,
    ) -> Reply {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        self.send(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, body: &str) -> Reply {
        Reply::Http {
            status,
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn writes_are_classified_by_the_contract() {
        let completed = http(200, r#"{"status":"completed","balance":5}"#);
        assert!(matches!(classify_write(&completed), WriteOutcome::Applied));
        let refused = http(
            409,
            r#"{"error":{"code":"insufficient_funds","message":"x"},"requestId":"r"}"#,
        );
        assert!(
            matches!(classify_write(&refused), WriteOutcome::Refused(code) if code == "insufficient_funds")
        );
        let busy = http(503, r#"{"error":{"code":"service_busy","message":"x"}}"#);
        assert!(matches!(classify_write(&busy), WriteOutcome::Refused(_)));
        let pending = http(202, r#"{"requestId":"abc","status":"pending"}"#);
        assert!(matches!(
            classify_write(&pending),
            WriteOutcome::Unknown { request_id: Some(id), .. } if id == "abc"
        ));
        let lost = http(504, r#"{"error":{"code":"outcome_unknown","message":"x"}}"#);
        assert!(
            matches!(classify_write(&lost), WriteOutcome::Unknown { label, .. } if label == "outcome_unknown")
        );
        assert!(matches!(
            classify_write(&Reply::Transport("timeout")),
            WriteOutcome::Unknown { label, .. } if label == "transport_timeout"
        ));
        assert_eq!(http(500, "oops").label(), "http_500");
    }
}

//! One pooled HTTP client bound to the gateway's base URL, with answers reduced to what a load
//! generator needs to count them (status, error code) and to know whether a write happened.

use crate::answer::{classify_legacy_write, classify_write, http_label, Answer};
use crate::resolve::Transport;
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
            Reply::Http { status, .. } => http_label(*status, &self.json().unwrap_or(Value::Null)),
            Reply::Transport(kind) => format!("transport_{kind}"),
        }
    }

    /// Status and JSON body (`Null` when it is not JSON), or the transport failure's label.
    pub fn pair(&self) -> Result<(u16, Value), String> {
        match self {
            Reply::Http { status, .. } => Ok((*status, self.json().unwrap_or(Value::Null))),
            Reply::Transport(_) => Err(self.label()),
        }
    }

    /// What this answer to a v1 write means.
    pub fn write_answer(&self) -> Answer {
        match self.pair() {
            Ok((status, json)) => classify_write(status, &json),
            Err(label) => Answer::lost(label),
        }
    }

    /// What this answer to a legacy write (`POST /requests`) means.
    pub fn legacy_write_answer(&self) -> Answer {
        match self.pair() {
            Ok((status, json)) => classify_legacy_write(status, &json),
            Err(label) => Answer::lost(label),
        }
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
    pub fn new(base: &str, pool: usize, timeout: Duration) -> Result<Self, reqwest::Error> {
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

impl Transport for Api {
    async fn write(&self, token: &str, key: &str, body: &Value) -> Result<(u16, Value), String> {
        self.post("/api/v1/requests", Some(token), Some(key), body)
            .await
            .pair()
    }

    async fn request(&self, token: &str, id: &str) -> Result<(u16, Value), String> {
        self.get(&format!("/api/v1/requests/{id}"), Some(token))
            .await
            .pair()
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
    fn answers_are_labelled_and_classified() {
        assert_eq!(http(500, "oops").label(), "http_500");
        assert_eq!(
            http(409, r#"{"error":{"code":"insufficient_funds"}}"#).label(),
            "insufficient_funds"
        );
        assert_eq!(Reply::Transport("timeout").label(), "transport_timeout");
        assert_eq!(
            Reply::Transport("timeout").write_answer(),
            Answer::lost("transport_timeout")
        );
        let busy = http(503, r#"{"error":{"code":"service_busy","message":"x"}}"#);
        assert_eq!(busy.write_answer(), Answer::Busy);
        let legacy = http(201, r#"{"id":"a","requestStatus":"RequestCompleted"}"#);
        assert!(matches!(
            legacy.legacy_write_answer(),
            Answer::Completed { .. }
        ));
    }
}

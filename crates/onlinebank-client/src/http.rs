//! One HTTP client bound to the gateway's base URL, with one method per call of the contract,
//! each taking its typed body; answers are reduced to status, body and the headers a client
//! acts on, or the kind of transport failure.

use crate::outcome::{classify_legacy_write, classify_write, error_code, http_label, Outcome};
use crate::resolve::Transport;
use crate::wire::{self, ErrorDetail, LegacyDeposit, Login, Read, SignUp, Write};
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// One HTTP client bound to the gateway's base URL.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
}

/// An answer: HTTP status, body and the headers a client acts on, or the kind of transport
/// failure.
#[derive(Debug)]
pub enum Reply {
    Http {
        status: u16,
        body: Bytes,
        /// `Retry-After`, as answered.
        retry_after: Option<String>,
        /// A redirect's `Location`, made absolute.
        location: Option<String>,
    },
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

    /// The body as JSON (`None`: a transport failure, or not JSON).
    pub fn json(&self) -> Option<Value> {
        match self {
            Reply::Http { body, .. } => serde_json::from_slice(body).ok(),
            Reply::Transport(_) => None,
        }
    }

    /// The body as text (lossy UTF-8; empty for a transport failure).
    pub fn text(&self) -> String {
        match self {
            Reply::Http { body, .. } => String::from_utf8_lossy(body).into_owned(),
            Reply::Transport(_) => String::new(),
        }
    }

    /// The body as `T` (its default when the body is not JSON or not `T`).
    pub fn decode<T: Default + for<'de> serde::Deserialize<'de>>(&self) -> T {
        match self {
            Reply::Http { body, .. } => serde_json::from_slice(body).unwrap_or_default(),
            Reply::Transport(_) => T::default(),
        }
    }

    /// The error body's detail, if the answer has one.
    pub fn error(&self) -> Option<ErrorDetail> {
        wire::error_of(&self.json().unwrap_or(Value::Null))
    }

    /// How an unsuccessful answer is counted: the contract's error code, else `http_<status>`,
    /// or `transport_<kind>`.
    pub fn label(&self) -> String {
        match self {
            Reply::Http { status, .. } => http_label(
                *status,
                error_code(&self.json().unwrap_or(Value::Null)).as_ref(),
            ),
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
    pub fn write_outcome(&self) -> Outcome {
        match self.pair() {
            Ok((status, json)) => classify_write(status, &json),
            Err(label) => Outcome::lost(label),
        }
    }

    /// What this answer to a legacy write (`POST /requests`) means.
    pub fn legacy_write_outcome(&self) -> Outcome {
        match self.pair() {
            Ok((status, json)) => classify_legacy_write(status, &json),
            Err(label) => Outcome::lost(label),
        }
    }
}

/// The kind of a transport failure: `timeout`, `connect`, `body`, `request` or `other`.
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

/// A header's value as text.
fn header(response: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<String> {
    let value = response.headers().get(name)?.to_str().ok()?;
    Some(value.to_owned())
}

impl Client {
    /// A client for load: no proxy, no Nagle delay, `pool` idle connections kept per host (one
    /// per client of the workload); `timeout` bounds each call.
    pub fn pooled(base: &str, pool: usize, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(pool)
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self::on(base, http, timeout))
    }

    /// A client for a person: the system's proxy settings, and no redirect ever followed (every
    /// call carries a password or a token; the bank answers in place). `timeout` bounds each
    /// call.
    pub fn unredirected(base: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self::on(base, http, timeout))
    }

    /// `base` through `http`; `timeout` bounds each call.
    pub fn on(base: &str, http: reqwest::Client, timeout: Duration) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            timeout,
        }
    }

    /// The base URL, without a trailing `/`.
    pub fn base(&self) -> &str {
        &self.base
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
                let retry_after = header(&response, reqwest::header::RETRY_AFTER);
                let location = header(&response, reqwest::header::LOCATION)
                    .and_then(|location| response.url().join(&location).ok())
                    .map(String::from);
                match response.bytes().await {
                    Ok(body) => Reply::Http {
                        status,
                        body,
                        retry_after,
                        location,
                    },
                    Err(error) => Reply::Transport(transport_kind(&error)),
                }
            }
            Err(error) => Reply::Transport(transport_kind(&error)),
        }
    }

    /// `method {base}{path}` with an optional bearer token.
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// `GET {base}{path}` with an optional bearer token.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(self.call(reqwest::Method::GET, path, token))
            .await
    }

    /// `DELETE {base}{path}` with an optional bearer token.
    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(self.call(reqwest::Method::DELETE, path, token))
            .await
    }

    /// `POST {base}{path}` with a JSON body, an optional bearer token and Idempotency-Key.
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: &(impl Serialize + ?Sized),
    ) -> Reply {
        let mut request = self.call(reqwest::Method::POST, path, token).json(body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        self.send(request).await
    }

    /// `POST /api/v1/customers`.
    pub async fn sign_up(&self, body: &SignUp<'_>, key: Option<&str>) -> Reply {
        self.post("/api/v1/customers", None, key, body).await
    }

    /// `POST /api/v1/sessions`.
    pub async fn login(&self, body: &Login<'_>, key: Option<&str>) -> Reply {
        self.post("/api/v1/sessions", None, key, body).await
    }

    /// `DELETE /api/v1/sessions/current`.
    pub async fn logout(&self, token: &str) -> Reply {
        self.delete("/api/v1/sessions/current", Some(token)).await
    }

    /// `POST /api/v1/requests`: a write, with its Idempotency-Key.
    pub async fn write(&self, token: &str, key: &str, body: &Write<'_>) -> Reply {
        self.post("/api/v1/requests", Some(token), Some(key), body)
            .await
    }

    /// `POST /api/v1/requests`: a balance or history read, answered at once as a
    /// [`wire::ReadAnswer`].
    pub async fn read(&self, token: &str, body: &Read<'_>) -> Reply {
        self.post("/api/v1/requests", Some(token), None, body).await
    }

    /// `POST /requests`: the original system's deposit, with an Idempotency-Key.
    pub async fn legacy_deposit(&self, key: &str, body: &LegacyDeposit<'_>) -> Reply {
        self.post("/requests", None, Some(key), body).await
    }

    /// `GET /api/v1/requests/{id}`.
    pub async fn request(&self, token: &str, id: &str) -> Reply {
        self.get(&format!("/api/v1/requests/{id}"), Some(token))
            .await
    }

    /// `GET /api/v1/accounts`.
    pub async fn accounts(&self, token: &str) -> Reply {
        self.get("/api/v1/accounts", Some(token)).await
    }

    /// `GET /api/v1/accounts/{no}`.
    pub async fn account(&self, token: &str, no: &str) -> Reply {
        self.get(&format!("/api/v1/accounts/{no}"), Some(token))
            .await
    }

    /// `GET /api/v1/accounts/{no}/statement?from=&to=&format=`: days `YYYY-MM-DD` of the
    /// bank's calendar, both included; as CSV when `csv`.
    pub async fn statement(&self, token: &str, no: &str, from: &str, to: &str, csv: bool) -> Reply {
        let mut path = format!("/api/v1/accounts/{no}/statement?from=");
        path.extend(url_escape(from));
        path.push_str("&to=");
        path.extend(url_escape(to));
        path.push_str(if csv { "&format=csv" } else { "&format=json" });
        self.get(&path, Some(token)).await
    }

    /// `GET /api/v1/accounts/{no}/transactions?limit={limit}[&before={before}]`; `before` is
    /// percent-encoded here.
    pub async fn transactions(
        &self,
        token: &str,
        no: &str,
        limit: u32,
        before: Option<&str>,
    ) -> Reply {
        let mut path = format!("/api/v1/accounts/{no}/transactions?limit={limit}");
        if let Some(before) = before {
            path.push_str("&before=");
            path.extend(url_escape(before));
        }
        self.get(&path, Some(token)).await
    }
}

/// Percent-encodes a query value: every character but `A-Z a-z 0-9 - . _ ~`.
pub fn url_escape(value: &str) -> impl Iterator<Item = char> + '_ {
    value.chars().flat_map(|c| {
        let plain = c.is_ascii_alphanumeric() || "-._~".contains(c);
        let escaped: Vec<char> = if plain {
            vec![c]
        } else {
            let mut bytes = [0u8; 4];
            c.encode_utf8(&mut bytes)
                .bytes()
                .flat_map(|byte| format!("%{byte:02X}").chars().collect::<Vec<_>>())
                .collect()
        };
        escaped
    })
}

impl Transport for Client {
    async fn write<B: Serialize + Sync + ?Sized>(
        &self,
        token: &str,
        key: &str,
        body: &B,
    ) -> Result<(u16, Value), String> {
        self.post("/api/v1/requests", Some(token), Some(key), body)
            .await
            .pair()
    }

    async fn request(&self, token: &str, id: &str) -> Result<(u16, Value), String> {
        Client::request(self, token, id).await.pair()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, body: &str) -> Reply {
        Reply::Http {
            status,
            body: Bytes::from(body.to_owned()),
            retry_after: None,
            location: None,
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
            Reply::Transport("timeout").write_outcome(),
            Outcome::lost("transport_timeout")
        );
        let busy = http(503, r#"{"error":{"code":"service_busy","message":"x"}}"#);
        assert_eq!(busy.write_outcome(), Outcome::Busy);
        let legacy = http(201, r#"{"id":"a","requestStatus":"RequestCompleted"}"#);
        assert!(matches!(
            legacy.legacy_write_outcome(),
            Outcome::Completed { .. }
        ));
    }

    #[test]
    fn cursors_are_escaped_for_the_query() {
        assert_eq!(url_escape("a b/c=").collect::<String>(), "a%20b%2Fc%3D");
        assert_eq!(url_escape("v1.2_x-~").collect::<String>(), "v1.2_x-~");
    }
}

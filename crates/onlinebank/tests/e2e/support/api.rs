//! The gateway's HTTP API as the tests drive it: a request builder (any method, header or body,
//! malformed ones included), one helper per flow whose bodies are `onlinebank_client`'s wire
//! types, and every answer body recorded (for the never-echo checks).

use super::*;
use onlinebank_client::wire::{self, ErrorCode, Login, NewSession, Read, SignUp, Transaction};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An answer: status, headers and the body (parsed when it is JSON, else a JSON string).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn pair(&self) -> (u16, Value) {
        (self.status, self.body.clone())
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// A registered and logged-in customer.
#[derive(Debug, Clone)]
pub struct Customer {
    pub user: String,
    pub name: String,
    pub pw: String,
    pub token: String,
}

/// The gateway's HTTP API, recording every answer body (for the never-echo checks).
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    seen: Arc<Mutex<Vec<String>>>,
}

/// One HTTP request being built.
pub struct Req<'a> {
    api: &'a Api,
    method: reqwest::Method,
    path: String,
    bearer: Option<String>,
    basic: Option<(String, String)>,
    json: Option<Value>,
    raw: Option<(Option<String>, Vec<u8>)>,
    headers: Vec<(String, String)>,
}

impl<'a> Req<'a> {
    pub fn bearer(self, token: &str) -> Self {
        self.bearer_opt(Some(token))
    }

    /// A bearer token, or none.
    pub fn bearer_opt(mut self, token: Option<&str>) -> Self {
        self.bearer = token.map(str::to_owned);
        self
    }

    pub fn basic(mut self, user: &str, pw: &str) -> Self {
        self.basic = Some((user.to_owned(), pw.to_owned()));
        self
    }

    pub fn json(mut self, body: Value) -> Self {
        self.json = Some(body);
        self
    }

    /// A typed body, sent as JSON.
    pub fn body(self, body: &impl serde::Serialize) -> Self {
        self.json(serde_json::to_value(body).expect("a wire body is JSON"))
    }

    /// A raw body with the given content type (`None`: no content-type header).
    pub fn raw(mut self, content_type: Option<&str>, bytes: Vec<u8>) -> Self {
        self.raw = Some((content_type.map(str::to_owned), bytes));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sends; transport errors are returned (the crash test expects some).
    pub async fn try_send(self) -> Result<Reply, String> {
        let url = format!("{}{}", self.api.base, self.path);
        let mut builder = self.api.http.request(self.method.clone(), &url);
        if let Some(token) = &self.bearer {
            builder = builder.bearer_auth(token);
        }
        if let Some((user, pw)) = &self.basic {
            builder = builder.basic_auth(user, Some(pw));
        }
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(body) = &self.json {
            builder = builder.json(body);
        }
        if let Some((content_type, bytes)) = self.raw {
            if let Some(content_type) = content_type {
                builder = builder.header("content-type", content_type);
            }
            builder = builder.body(bytes);
        }
        let response = builder
            .send()
            .await
            .map_err(|error| format!("{} {url}: {:#}", self.method, anyhow::Error::new(error)))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .map_err(|error| format!("{} {url} (body): {error}", self.method))?;
        self.api.record(&text);
        let body = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
        Ok(Reply {
            status,
            headers,
            body,
            text,
        })
    }

    /// Sends; a transport error fails the test.
    pub async fn send(self) -> Reply {
        let what = format!("{} {}", self.method, self.path);
        self.try_send()
            .await
            .unwrap_or_else(|error| panic!("{what} failed: {error}"))
    }

    pub async fn pair(self) -> (u16, Value) {
        self.send().await.pair()
    }
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api::on(base, client(256))
    }

    /// `base` through `http`, with an answer record of its own.
    pub fn on(base: &str, http: reqwest::Client) -> Api {
        Api {
            base: base.trim_end_matches('/').to_owned(),
            http,
            seen: Arc::default(),
        }
    }

    /// The same API through a client that never reuses a connection.
    pub fn unpooled(&self) -> Api {
        self.with_http(client(0))
    }

    /// The same API through another HTTP client.
    pub fn with_http(&self, http: reqwest::Client) -> Api {
        Api {
            base: self.base.clone(),
            http,
            seen: self.seen.clone(),
        }
    }

    fn record(&self, text: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() < 100_000 {
            seen.push(text.to_owned());
        }
    }

    /// Every answer body this client has received so far.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fails if any answer so far contained `secret`.
    #[track_caller]
    pub fn assert_never_answered(&self, secret: &str) {
        let seen = self.seen();
        assert!(!seen.is_empty(), "no answers recorded");
        for body in &seen {
            assert!(
                !body.contains(secret),
                "an answer echoed the password {secret:?}: {body}"
            );
        }
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> Req<'_> {
        Req {
            api: self,
            method,
            path: path.to_owned(),
            bearer: None,
            basic: None,
            json: None,
            raw: None,
            headers: Vec::new(),
        }
    }

    pub fn get_req(&self, path: &str) -> Req<'_> {
        self.req(reqwest::Method::GET, path)
    }

    pub fn post_req(&self, path: &str) -> Req<'_> {
        self.req(reqwest::Method::POST, path)
    }

    /// `GET path` with a bearer token (or none).
    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.get_req(path).bearer_opt(token).pair().await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.post_req(path)
            .bearer_opt(token)
            .json(body)
            .pair()
            .await
    }

    // --- customers and sessions

    pub async fn register(&self, user: &str, name: &str, pw: &str) -> (u16, Value) {
        let body = SignUp {
            user_id: user,
            name,
            password: pw,
        };
        self.post_req("/api/v1/customers").body(&body).pair().await
    }

    pub async fn login(&self, user: &str, pw: &str) -> (u16, Value) {
        let body = Login {
            user_id: user,
            password: pw,
        };
        self.post_req("/api/v1/sessions").body(&body).pair().await
    }

    /// Logs in and returns the token; fails the test otherwise.
    pub async fn token(&self, user: &str, pw: &str) -> String {
        let (status, body) = self.login(user, pw).await;
        assert_eq!(status, 200, "login {user}: {body}");
        let session: NewSession = wire::decode(&body);
        assert!(
            !session.token.is_empty(),
            "login answer without token: {body}"
        );
        session.token
    }

    /// Registers `user` with a distinctive password and logs in.
    pub async fn customer(&self, user: &str) -> Customer {
        let name = format!("Name of {}", user.split('@').next().unwrap_or(user));
        let pw = format!("pw-{}-Zq7#x", user.replace('@', "-at-"));
        let (status, body) = self.register(user, &name, &pw).await;
        assert_eq!(status, 201, "register {user}: {body}");
        let token = self.token(user, &pw).await;
        Customer {
            user: user.to_owned(),
            name,
            pw,
            token,
        }
    }

    // --- requests

    pub async fn request(&self, token: &str, body: Value) -> (u16, Value) {
        self.post("/api/v1/requests", Some(token), body).await
    }

    pub async fn request_with_key(&self, token: &str, key: &str, body: Value) -> (u16, Value) {
        self.post_req("/api/v1/requests")
            .bearer(token)
            .header("Idempotency-Key", key)
            .json(body)
            .pair()
            .await
    }

    pub async fn open(
        &self,
        token: &str,
        pw: &str,
        account_no: Option<&str>,
        amount: Option<i64>,
    ) -> (u16, Value) {
        self.request(token, Write::open(account_no, amount, pw).to_json())
            .await
    }

    /// Opens an account and fails the test unless it completed.
    pub async fn open_ok(&self, c: &Customer, no: &str, amount: i64) -> Value {
        let (status, body) = self.open(&c.token, &c.pw, Some(no), Some(amount)).await;
        assert_eq!(status, 200, "open {no} for {}: {body}", c.user);
        assert_eq!(body["status"], "completed", "open {no}: {body}");
        body
    }

    /// `clients` customers (`<prefix><n>@test`), each with `accounts_each` accounts opened with
    /// `opening`, numbered from `first_no + n * 100`.
    pub async fn savers(
        &self,
        prefix: &str,
        first_no: usize,
        (clients, accounts_each): (usize, usize),
        opening: i64,
    ) -> Vec<(Customer, Vec<String>)> {
        let mut all = Vec::new();
        for client in 0..clients {
            let customer = self.customer(&format!("{prefix}{client}@test")).await;
            let mut accounts = Vec::new();
            for index in 0..accounts_each {
                let no = format!("{}", first_no + client * 100 + index);
                self.open_ok(&customer, &no, opening).await;
                accounts.push(no);
            }
            all.push((customer, accounts));
        }
        all
    }

    pub async fn deposit(&self, token: &str, pw: &str, no: &str, amount: i64) -> (u16, Value) {
        self.request(token, money("deposit", no, amount, pw)).await
    }

    pub async fn withdraw(&self, token: &str, pw: &str, no: &str, amount: i64) -> (u16, Value) {
        self.request(token, money("withdraw", no, amount, pw)).await
    }

    pub async fn close(&self, token: &str, pw: &str, no: &str) -> (u16, Value) {
        self.request(token, Write::close(no, pw).to_json()).await
    }

    /// `POST /api/v1/requests` type balance: a [`wire::ReadAnswer`].
    pub async fn balance(&self, token: &str, no: &str) -> (u16, Value) {
        self.post_req("/api/v1/requests")
            .bearer(token)
            .body(&Read::balance(no))
            .pair()
            .await
    }

    /// `POST /api/v1/requests` type history: a [`wire::ReadAnswer`].
    pub async fn history(&self, token: &str, no: &str) -> (u16, Value) {
        self.post_req("/api/v1/requests")
            .bearer(token)
            .body(&Read::history(no))
            .pair()
            .await
    }

    pub async fn get_request(&self, token: &str, id: &str) -> (u16, Value) {
        self.get(&format!("/api/v1/requests/{id}"), Some(token))
            .await
    }

    /// `GET /api/v1/accounts/{no}`.
    pub async fn account(&self, token: &str, no: &str) -> (u16, Value) {
        self.get(&format!("/api/v1/accounts/{no}"), Some(token))
            .await
    }

    pub async fn accounts(&self, token: &str) -> (u16, Value) {
        self.get("/api/v1/accounts", Some(token)).await
    }

    /// `GET /api/v1/accounts/{no}/transactions?{query}` (an empty query is no parameter).
    pub async fn transactions(&self, token: &str, no: &str, query: &str) -> (u16, Value) {
        let path = format!("/api/v1/accounts/{no}/transactions?{query}");
        self.get(&path, Some(token)).await
    }

    /// Every transaction of an account, newest first, following `next` (pages of 100).
    pub async fn all_transactions(&self, token: &str, no: &str) -> Vec<Transaction> {
        let mut items = Vec::new();
        let mut query = "limit=100".to_owned();
        for _ in 0..1000 {
            let (status, body) = self.transactions(token, no, &query).await;
            assert_eq!(status, 200, "transactions of {no}: {body}");
            let page: wire::Page<Transaction> = serde_json::from_value(body.clone())
                .unwrap_or_else(|error| panic!("transactions of {no}: {error} in {body}"));
            items.extend(page.items);
            match body["next"].as_str() {
                Some(next) => query = format!("limit=100&before={}", encode(next)),
                None => {
                    assert!(
                        body["next"].is_null(),
                        "next is neither a cursor nor null: {body}"
                    );
                    return items;
                }
            }
        }
        panic!("transactions of {no} never ended");
    }

    /// Polls `GET /api/v1/accounts/{no}` until `done` accepts it.
    pub async fn account_when(
        &self,
        token: &str,
        no: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(what, SETTLE, || async {
            let (status, body) = self.account(token, no).await;
            if status == 200 && done(&body) {
                Ok(body)
            } else {
                Err(format!("{status} {body}"))
            }
        })
        .await
    }

    /// Polls the read model until the account shows `balance`.
    pub async fn wait_balance(&self, token: &str, no: &str, balance: i64) -> Value {
        self.account_when(
            token,
            no,
            &format!("account {no} to show balance {balance}"),
            |b| wire::decode::<wire::Account>(b).balance == Some(balance),
        )
        .await
    }

    /// Turns a 202 into the final answer by polling the request: `(200, completed request)` or
    /// `(404, request_cancelled with reason)`; other answers are returned as they are.
    pub async fn settle(&self, token: &str, reply: (u16, Value)) -> (u16, Value) {
        if reply.0 != 202 {
            return reply;
        }
        let id = reply.1["requestId"]
            .as_str()
            .unwrap_or_else(|| panic!("202 without requestId: {}", reply.1))
            .to_owned();
        eventually(
            &format!("request {id} to finish"),
            Duration::from_secs(60),
            || async {
                let (status, body) = self.get_request(token, &id).await;
                let request: wire::Request = wire::decode(&body);
                let code = request.error.as_ref().map(|error| &error.code);
                match (status, code) {
                    (200, _) if request.is_completed() => Ok((status, body)),
                    (404, Some(ErrorCode::RequestCancelled)) => Ok((status, body)),
                    _ => Err(format!("{status} {body}")),
                }
            },
        )
        .await
    }
}

/// An HTTP client keeping at most `pool` idle connections per host.
fn client(pool: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(pool)
        .build()
        .expect("http client")
}

/// A deposit or withdraw body (`kind` names one).
pub fn money(kind: &str, no: &str, amount: i64, pw: &str) -> Value {
    let kind = WriteKind::parse(kind).unwrap_or_else(|| panic!("{kind:?} is no write"));
    Write::money(kind, no, amount, pw).to_json()
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// What a settled answer amounts to: `"completed"` or the failure's code/reason.
pub fn outcome(reply: &(u16, Value)) -> String {
    let (status, body) = reply;
    let request: wire::Request = wire::decode(body);
    if *status == 200 && request.is_completed() {
        return "completed".into();
    }
    match (wire::error_of(body), request.reason) {
        (Some(error), Some(reason)) if error.code == ErrorCode::RequestCancelled => reason,
        (Some(error), _) => error.code.as_str().to_owned(),
        (None, _) => format!("status {status}: {body}"),
    }
}

//! The original Spring system's endpoints, translated onto the v1 API.
//!
//! `POST /requests` takes `{accountNo, requestId:"01".."06", requestName, amountOfMoney, userId,
//! userName, userPassword}`: the credentials log in (auth) and act as the step-up password; the
//! answer keeps the original shape (Spring Data REST with `_links`) without ever echoing the
//! password. `GET /requests` and `GET /mypages/search/findByAccountNo` answer HAL documents too,
//! but unlike the original they need credentials (Bearer or Basic) and show only the caller's own.

use crate::admission::Client;
use crate::openapi::schemas::{
    ErrorBody, LegacyAnswer, LegacyMypage, LegacyMypageSearch, LegacyRequestPage,
};
use crate::proxy::PeerAnswer;
use crate::GatewayState;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use onlinebank_core::client_addr::ClientKey;
use onlinebank_core::command::{ReadKind, RequestType};
use onlinebank_core::event::WriteKind;
use onlinebank_core::http::{bearer_token, JsonBody};
use onlinebank_core::internal::{self, LegacySessionAnswer, LegacySessionRequest};
use onlinebank_core::{ApiError, ErrorCode, Reason, Role};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use tokio::sync::OwnedSemaphorePermit;

/// One of the original system's operations: its code, its name, and the v1 request type it is.
#[derive(Debug, Clone, Copy)]
struct Operation {
    code: &'static str,
    name: &'static str,
    kind: RequestType,
}

const OPERATIONS: [Operation; 6] = [
    Operation::new("01", "Deposit", RequestType::Write(WriteKind::Deposit)),
    Operation::new("02", "Withdraw", RequestType::Write(WriteKind::Withdraw)),
    Operation::new("03", "Balance", RequestType::Read(ReadKind::Balance)),
    Operation::new("04", "Transaction", RequestType::Read(ReadKind::History)),
    Operation::new("05", "addAccount", RequestType::Write(WriteKind::Open)),
    Operation::new("06", "deleteAccount", RequestType::Write(WriteKind::Close)),
];

impl Operation {
    const fn new(code: &'static str, name: &'static str, kind: RequestType) -> Self {
        Self { code, name, kind }
    }

    fn by_code(code: &str) -> Option<Self> {
        OPERATIONS
            .into_iter()
            .find(|operation| operation.code == code)
    }

    /// The code and name of the v1 type `kind` (both empty for a type the legacy API lacks).
    fn of_type(kind: &str) -> (&'static str, &'static str) {
        OPERATIONS
            .into_iter()
            .find(|operation| operation.kind.as_str() == kind)
            .map_or(("", ""), |operation| (operation.code, operation.name))
    }

    /// Whether the v1 body carries the legacy amount: deposits and withdrawals always, an open
    /// when one was given.
    fn carries_amount(self, given: bool) -> bool {
        match self.kind {
            RequestType::Write(WriteKind::Deposit | WriteKind::Withdraw) => true,
            RequestType::Write(WriteKind::Open) => given,
            _ => false,
        }
    }
}

/// `POST /requests` (the original system's body). `requestId` is the operation: "01" deposit,
/// "02" withdraw, "03" balance, "04" history, "05" open, "06" close.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = LegacySubmit)]
pub struct LegacyRequest {
    account_no: Option<String>,
    request_id: Option<String>,
    request_name: Option<String>,
    /// Won (a whole number; the original's clients may also send its digits as a string).
    #[schema(value_type = Option<i64>)]
    amount_of_money: Option<Value>,
    user_id: Option<String>,
    user_name: Option<String>,
    user_password: Option<String>,
}

/// The start of every `_links.*.href`: the configured `--public-url`, or nothing (links relative
/// to the bank's address, valid HAL). Never the client's `Host` header, which anyone can set.
fn base_url(state: &GatewayState) -> &str {
    &state.public_url
}

fn json_headers(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
        headers.insert(header::AUTHORIZATION, value);
    }
    headers
}

/// Logs in with a user id and password; answers auth's error as is. The login takes a place of
/// the unauthenticated routes in the caller's share (as `POST /api/v1/sessions` does: a stranger
/// can make it run an argon2id), never a customer's slot. Auth answers credentials that recently
/// passed argon2id from its legacy verifier, with the same session's token: no hash and no
/// session row per request (see `onlinebank_auth::legacy`).
async fn login(
    state: &GatewayState,
    client: ClientKey,
    user_id: &str,
    password: &str,
) -> Result<String, Response> {
    let _place = state
        .admission
        .admit(client)
        .await
        .map_err(IntoResponse::into_response)?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = HeaderValue::from_str(&state.internal_token) {
        headers.insert(onlinebank_core::http::INTERNAL_HEADER, value);
    }
    let credentials = LegacySessionRequest {
        user_id: user_id.to_owned(),
        password: password.to_owned(),
    };
    let body = serde_json::to_vec(&credentials)
        .map_err(|error| ApiError::internal(error).into_response())?;
    let answer = state
        .upstreams
        .call(
            Role::Auth,
            Method::POST,
            internal::LEGACY_SESSIONS,
            &headers,
            Bytes::from(body),
        )
        .await
        .map_err(IntoResponse::into_response)?;
    if answer.status != StatusCode::OK {
        return Err(answer.into_response());
    }
    serde_json::from_slice::<LegacySessionAnswer>(&answer.body)
        .map(|session| session.token)
        .map_err(|_| ApiError::internal("login answered no token").into_response())
}

/// The caller's token from `Authorization: Bearer` or `Authorization: Basic userId:password`,
/// and a read slot taken once the caller is known (a stranger's Basic login holds none).
async fn caller_token(
    state: &GatewayState,
    client: ClientKey,
    headers: &HeaderMap,
) -> Result<(String, OwnedSemaphorePermit), Response> {
    let token = caller_token_only(state, client, headers).await?;
    let slot = state
        .slot(crate::Slots::Read)
        .map_err(IntoResponse::into_response)?;
    Ok((token, slot))
}

/// A bearer token passes the gateway's one token check ([`crate::checked_bearer`]: a logged-out
/// session's token is refused here as on the v1 API); Basic credentials log in.
async fn caller_token_only(
    state: &GatewayState,
    client: ClientKey,
    headers: &HeaderMap,
) -> Result<String, Response> {
    if let Some(token) = bearer_token(headers) {
        return crate::checked_bearer(state, token)
            .map(str::to_owned)
            .map_err(IntoResponse::into_response);
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, encoded)| STANDARD.decode(encoded.trim()).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok());
    let Some((user_id, password)) = basic.as_deref().and_then(|pair| pair.split_once(':')) else {
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "send your credentials: HTTP Basic with userId:password (curl -u 1@sk.com:1234), \
             or Authorization: Bearer <token> from POST /api/v1/sessions",
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"onlinebank\", Bearer realm=\"onlinebank\""),
        );
        return Err(response);
    };
    login(state, client, user_id, password).await
}

/// The legacy `amountOfMoney`. A JSON number is passed on as it is (request checks it as any
/// amount: a fraction or a negative is 400 `invalid_amount`). A string must be the digits of a
/// whole number of won, as the original's clients write it: no sign, no spaces, no leading zero
/// ("0" itself is the amount addAccount sends). Anything else is 400 `invalid_amount`, the code a
/// bad amount gets on every endpoint.
fn amount_of(raw: Option<&Value>) -> Result<Option<Value>, ApiError> {
    match raw {
        Some(Value::String(text)) => strict_won(text).map(Value::from).map(Some).ok_or_else(|| {
            ApiError::from_reason(Reason::InvalidAmount).with_message(
                "amountOfMoney must be a whole number of won: digits only, \
                 without a sign, spaces or leading zeros",
            )
        }),
        other => Ok(other.cloned()),
    }
}

/// `text` as a number of won if it is only ASCII digits, without a leading zero (but "0").
fn strict_won(text: &str) -> Option<i64> {
    let only_digits = !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
    let leading_zero = text.len() > 1 && text.starts_with('0');
    if !only_digits || leading_zero {
        return None;
    }
    text.parse().ok()
}

/// Submit a request in the original system's shape (credentials in the body).
///
/// The credentials act as login and step-up. A refused request answers its status with the
/// original fields, `requestStatus: "RequestCancelled"`, the legacy `message` and the `error`
/// object; a refusal before anything was sent (a bad body, a failed login) is the error object.
#[utoipa::path(post, path = "/requests", tag = "legacy", security(()),
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, description = "As on `POST /api/v1/requests`")),
    request_body = LegacyRequest,
    responses(
        (status = 201, description = "Completed: the request's fields (never the password), `requestStatus`, `balance`, `_links`; \"04\" adds `transactions`", body = LegacyAnswer),
        (status = 202, description = "Accepted, still running (`RequestPending`)", body = LegacyAnswer),
        (status = 400, description = "`invalid_request` (requestId not \"01\"-\"06\", no userId/userPassword, a bad account number), `invalid_amount`, `malformed_json`", body = LegacyAnswer),
        (status = 401, description = "`invalid_credentials`; `session_expired`", body = LegacyAnswer),
        (status = 403, description = "`step_up_failed`", body = LegacyAnswer),
        (status = 404, description = "`account_not_found` (\"Account Not Exist\")", body = LegacyAnswer),
        (status = 409, description = "`account_exists`, `insufficient_funds` (\"Not Sufficient\"), `daily_limit_exceeded`, `account_closed`, `balance_not_zero`, `balance_overflow`, `idempotency_key_in_flight`", body = LegacyAnswer),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused`", body = LegacyAnswer),
        (status = 429, description = "`locked_out`", body = LegacyAnswer,
            headers(("Retry-After" = u64, description = "Seconds until the lockout ends"))),
        (status = 502, description = "`outcome_unknown`", body = LegacyAnswer),
        (status = 503, description = "`service_busy`, `interrupted`", body = LegacyAnswer,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 504, description = "`outcome_unknown`", body = LegacyAnswer),
    )
)]
pub async fn submit(
    State(state): State<GatewayState>,
    Client(client): Client,
    headers: HeaderMap,
    JsonBody(legacy): JsonBody<LegacyRequest>,
) -> Response {
    let Some(operation) = legacy.request_id.as_deref().and_then(Operation::by_code) else {
        return ApiError::validation("requestId must be one of \"01\" to \"06\"").into_response();
    };
    let (Some(user_id), Some(password)) =
        (legacy.user_id.as_deref(), legacy.user_password.as_deref())
    else {
        return ApiError::validation("userId and userPassword are required").into_response();
    };
    let amount = match amount_of(legacy.amount_of_money.as_ref()) {
        Ok(amount) => amount,
        Err(error) => return error.into_response(),
    };
    let token = match login(&state, client, user_id, password).await {
        Ok(token) => token,
        Err(response) => return response,
    };
    let (slots, role) = if operation.kind.is_read() {
        (crate::Slots::Read, Role::Mypage)
    } else {
        (crate::Slots::Write, Role::Request)
    };
    let _slot = match state.slot(slots) {
        Ok(slot) => slot,
        Err(error) => return error.into_response(),
    };
    let mut body = json!({"type": operation.kind.as_str(), "accountNo": legacy.account_no, "password": password});
    if operation.carries_amount(amount.is_some()) {
        body["amount"] = amount.clone().unwrap_or(Value::Null);
    }
    let mut forward_headers = json_headers(&token);
    if let Some(key) = headers.get("idempotency-key") {
        forward_headers.insert("idempotency-key", key.clone());
    }
    let answer = state
        .upstreams
        .call(
            role,
            Method::POST,
            "/api/v1/requests",
            &forward_headers,
            Bytes::from(body.to_string()),
        )
        .await;
    match answer {
        Ok(answer) => {
            let shaped = json!({
                "requestId": operation.code,
                "requestName": legacy.request_name.clone().unwrap_or_else(|| operation.name.to_owned()),
                "amountOfMoney": amount.unwrap_or(Value::from(0)),
                "userId": user_id,
                "userName": legacy.user_name,
            });
            submitted(&state, &legacy, operation, shaped, &answer)
        }
        Err(error) => error.into_response(),
    }
}

/// The v1 answer to a legacy submission, in the original system's shape (`shaped` holds what
/// the caller sent).
fn submitted(
    state: &GatewayState,
    legacy: &LegacyRequest,
    operation: Operation,
    mut shaped: Value,
    answer: &PeerAnswer,
) -> Response {
    let result = answer.json();
    shaped["accountNo"] = result
        .get("accountNo")
        .cloned()
        .or_else(|| legacy.account_no.clone().map(Value::from))
        .unwrap_or(Value::Null);
    if !answer.status.is_success() {
        return cancelled(shaped, &result, answer);
    }
    let completed = result.get("status").and_then(Value::as_str) == Some("completed");
    shaped["requestStatus"] = json!(if completed {
        "RequestCompleted"
    } else {
        "RequestPending"
    });
    shaped["balance"] = result.get("balance").cloned().unwrap_or(Value::Null);
    if operation.kind.is_read() {
        shaped["amountOfMoney"] = shaped["balance"].clone();
    }
    if operation.kind == RequestType::Read(ReadKind::History) {
        shaped["transactions"] = result.get("transactions").cloned().unwrap_or(json!([]));
    }
    let id = result
        .get("requestId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    shaped["id"] = json!(id);
    // A read (03, 04) leaves no request behind: its links lead to the account's view instead,
    // so every link handed out answers (with the caller's credentials).
    let href = if operation.kind.is_read() {
        let account_no = shaped["accountNo"].as_str().unwrap_or_default();
        account_link(state, account_no)
    } else {
        format!("{}/requests/{id}", base_url(state))
    };
    shaped["_links"] = json!({"self": {"href": href}, "request": {"href": href}});
    let status = if completed {
        StatusCode::CREATED
    } else {
        StatusCode::ACCEPTED
    };
    (status, Json(shaped)).into_response()
}

/// A refused legacy submission: the request cancelled, with the legacy message of its reason.
fn cancelled(mut shaped: Value, result: &Value, answer: &PeerAnswer) -> Response {
    let reason = result
        .pointer("/error/code")
        .and_then(Value::as_str)
        .and_then(Reason::parse);
    shaped["requestStatus"] = json!("RequestCancelled");
    shaped["message"] = json!(reason
        .map(Reason::legacy_message)
        .unwrap_or("Request Failed"));
    shaped["error"] = result.get("error").cloned().unwrap_or(Value::Null);
    if let Some(id) = result.get("requestId") {
        shaped["id"] = id.clone();
    }
    let mut response = (answer.status, Json(shaped)).into_response();
    if let Some(retry) = answer.headers.get(header::RETRY_AFTER) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, retry.clone());
    }
    response
}

/// The legacy link to an account's view.
fn account_link(state: &GatewayState, account_no: &str) -> String {
    const QUERY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.');
    let encoded = percent_encoding::utf8_percent_encode(account_no, QUERY);
    format!(
        "{}/mypages/search/findByAccountNo?accountNo={encoded}",
        base_url(state)
    )
}

/// The caller's requests as a Spring Data REST (HAL) page.
#[utoipa::path(get, path = "/requests", tag = "legacy", security(("bearer" = []), ("basic" = [])),
    params(
        ("page" = Option<String>, Query, nullable = false, description = "The page, from 0 (default 0)"),
        ("size" = Option<String>, Query, nullable = false, description = "1-100 (default 20)"),
    ),
    responses(
        (status = 200, description = "A page of the caller's requests", body = LegacyRequestPage),
        (status = 401, description = "`unauthorized`: no credentials, or a token that is not valid (with `WWW-Authenticate`); `invalid_credentials`: wrong Basic credentials", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Basic realm=\"onlinebank\", Bearer realm=\"onlinebank\"`"))),
        (status = 429, description = "`locked_out`: too many failed logins", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the lockout ends"))),
        (status = 502, description = "`outcome_unknown`", body = ErrorBody),
        (status = 503, description = "`service_busy`: no login place or read slot free, or a role down", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 504, description = "`outcome_unknown`", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<GatewayState>,
    Client(client): Client,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (token, _slot) = match caller_token(&state, client, &headers).await {
        Ok(token) => token,
        Err(response) => return response,
    };
    let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let size: usize = query
        .get("size")
        .and_then(|s| s.parse().ok())
        .filter(|size| (1..=100).contains(size))
        .unwrap_or(20);
    let answer = match state
        .upstreams
        .call(
            Role::Request,
            Method::GET,
            "/api/v1/requests?limit=100",
            &json_headers(&token),
            Bytes::new(),
        )
        .await
    {
        Ok(answer) if answer.status == StatusCode::OK => answer,
        Ok(answer) => return answer.into_response(),
        Err(error) => return error.into_response(),
    };
    let base = base_url(&state);
    let items: Vec<Value> = answer
        .json()
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let total = items.len();
    let rows: Vec<Value> = items
        .iter()
        .skip(page.saturating_mul(size))
        .take(size)
        .map(|item| request_row(item, base))
        .collect();
    Json(json!({
        "_embedded": {"requests": rows},
        "_links": {
            "self": {"href": format!("{base}/requests")},
            "profile": {"href": format!("{base}/profile/requests")},
        },
        "page": {
            "size": size,
            "totalElements": total,
            "totalPages": total.div_ceil(size),
            "number": page,
        },
    }))
    .into_response()
}

/// The account's view row, if it is the caller's.
#[utoipa::path(get, path = "/mypages/search/findByAccountNo", tag = "legacy", security(("bearer" = []), ("basic" = [])),
    params(("accountNo" = Option<String>, Query, nullable = false, description = "The account number")),
    responses(
        (status = 200, description = "The caller's row of this account (none if it is not the caller's)", body = LegacyMypageSearch),
        (status = 401, description = "`unauthorized`: no credentials, or a token that is not valid (with `WWW-Authenticate`); `invalid_credentials`: wrong Basic credentials", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Basic realm=\"onlinebank\", Bearer realm=\"onlinebank\"`"))),
        (status = 429, description = "`locked_out`: too many failed logins", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the lockout ends"))),
        (status = 502, description = "`outcome_unknown`", body = ErrorBody),
        (status = 503, description = "`service_busy`: no login place or read slot free, or a role down", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 504, description = "`outcome_unknown`", body = ErrorBody),
    )
)]
pub async fn find_by_account_no(
    State(state): State<GatewayState>,
    Client(client): Client,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (token, _slot) = match caller_token(&state, client, &headers).await {
        Ok(token) => token,
        Err(response) => return response,
    };
    let base = base_url(&state);
    let account_no = query.get("accountNo").cloned().unwrap_or_default();
    let rows = match mypage_row(&state, &token, &account_no).await {
        Ok(row) => row.into_iter().collect::<Vec<_>>(),
        Err(response) => return response,
    };
    Json(json!({
        "_embedded": {"mypages": rows},
        "_links": {"self": {"href": format!("{base}/mypages/search/findByAccountNo?accountNo={account_no}")}},
    }))
    .into_response()
}

/// One of the caller's account view rows (the `self` link of `findByAccountNo`'s rows).
#[utoipa::path(get, path = "/mypages/{account_no}", tag = "legacy", security(("bearer" = []), ("basic" = [])),
    params(("account_no" = String, Path, description = "The account number")),
    responses(
        (status = 200, description = "The account's view row", body = LegacyMypage),
        (status = 404, description = "`account_not_found`: not the caller's, or no such account", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no credentials, or a token that is not valid (with `WWW-Authenticate`); `invalid_credentials`: wrong Basic credentials", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Basic realm=\"onlinebank\", Bearer realm=\"onlinebank\"`"))),
        (status = 429, description = "`locked_out`: too many failed logins", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the lockout ends"))),
        (status = 502, description = "`outcome_unknown`", body = ErrorBody),
        (status = 503, description = "`service_busy`: no login place or read slot free, or a role down", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 504, description = "`outcome_unknown`", body = ErrorBody),
    )
)]
pub async fn mypage(
    State(state): State<GatewayState>,
    Client(client): Client,
    headers: HeaderMap,
    axum::extract::Path(account_no): axum::extract::Path<String>,
) -> Response {
    let (token, _slot) = match caller_token(&state, client, &headers).await {
        Ok(token) => token,
        Err(response) => return response,
    };
    match mypage_row(&state, &token, &account_no).await {
        Ok(Some(row)) => Json(row).into_response(),
        Ok(None) => ApiError::from_reason(Reason::AccountNotFound).into_response(),
        Err(response) => response,
    }
}

/// The caller's view row of `account_no` in the original shape, `None` if there is none.
async fn mypage_row(
    state: &GatewayState,
    token: &str,
    account_no: &str,
) -> Result<Option<Value>, Response> {
    if onlinebank_core::ids::AccountNo::parse(account_no).is_err() {
        return Ok(None);
    }
    let answer: PeerAnswer = state
        .upstreams
        .call(
            Role::Mypage,
            Method::GET,
            &format!("/api/v1/accounts/{account_no}"),
            &json_headers(token),
            Bytes::new(),
        )
        .await
        .map_err(IntoResponse::into_response)?;
    match answer.status {
        StatusCode::OK => {
            let base = base_url(state);
            let view = answer.json();
            let last = view.get("lastRequest").cloned().unwrap_or(Value::Null);
            let kind = last.get("type").and_then(Value::as_str).unwrap_or_default();
            let (code, name) = Operation::of_type(kind);
            Ok(Some(json!({
                "accountNo": view.get("accountNo"),
                "lastRequestId": code,
                "lastRequestName": name,
                "requestMoney": last.get("amount"),
                "amountOfMoney": view.get("balance"),
                "requestStatus": last.get("status"),
                "lastModifiedDate": last.get("at").cloned().unwrap_or_else(|| view.get("updatedAt").cloned().unwrap_or(Value::Null)),
                "status": view.get("status"),
                "version": view.get("version"),
                "_links": {"self": {"href": format!("{base}/mypages/{account_no}")}},
            })))
        }
        StatusCode::NOT_FOUND => Ok(None),
        _ => Err(answer.into_response()),
    }
}

/// The ALPS description of a request, as Spring Data REST links it from every page of
/// `GET /requests`.
#[utoipa::path(get, path = "/profile/requests", tag = "legacy", security(()),
    responses((status = 200, description = "The ALPS document", body = Object))
)]
pub async fn profile() -> Response {
    let field = |name: &str| json!({"name": name, "type": "SEMANTIC"});
    Json(json!({
        "alps": {
            "version": "1.0",
            "descriptor": [{
                "id": "request-representation",
                "href": "/profile/requests",
                "descriptor": [
                    field("accountNo"), field("requestId"), field("requestName"),
                    field("amountOfMoney"), field("balance"), field("requestStatus"),
                    field("id"),
                ],
            }],
        }
    }))
    .into_response()
}

/// One request in the original system's shape.
fn request_row(item: &Value, base: &str) -> Value {
    let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
    let (code, name) = Operation::of_type(kind);
    let id = item
        .get("requestId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let completed = item.get("status").and_then(Value::as_str) == Some("completed");
    let href = format!("{base}/requests/{id}");
    json!({
        "accountNo": item.get("accountNo"),
        "requestId": code,
        "requestName": name,
        "amountOfMoney": item.get("amount"),
        "balance": item.get("balance"),
        "requestStatus": if completed { "RequestCompleted" } else { "RequestPending" },
        "id": id,
        "_links": {"self": {"href": href}, "request": {"href": href}},
    })
}

/// One of the caller's requests in the original shape.
#[utoipa::path(get, path = "/requests/{id}", tag = "legacy", security(("bearer" = []), ("basic" = [])),
    params(("id" = String, Path, description = "The request's id (a UUID)")),
    responses(
        (status = 200, description = "The request", body = LegacyAnswer),
        (status = 404, description = "`request_not_found`; `request_cancelled` with `reason`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no credentials, or a token that is not valid (with `WWW-Authenticate`); `invalid_credentials`: wrong Basic credentials", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Basic realm=\"onlinebank\", Bearer realm=\"onlinebank\"`"))),
        (status = 429, description = "`locked_out`: too many failed logins", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the lockout ends"))),
        (status = 502, description = "`outcome_unknown`", body = ErrorBody),
        (status = 503, description = "`service_busy`: no login place or read slot free, or a role down", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 504, description = "`outcome_unknown`", body = ErrorBody),
    )
)]
pub async fn show(
    State(state): State<GatewayState>,
    Client(client): Client,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let (token, _slot) = match caller_token(&state, client, &headers).await {
        Ok(token) => token,
        Err(response) => return response,
    };
    let Ok(id) = id.parse::<onlinebank_core::ids::RequestId>() else {
        return ApiError::not_found(ErrorCode::RequestNotFound, "request not found")
            .into_response();
    };
    let answer = match state
        .upstreams
        .call(
            Role::Request,
            Method::GET,
            &format!("/api/v1/requests/{id}"),
            &json_headers(&token),
            Bytes::new(),
        )
        .await
    {
        Ok(answer) => answer,
        Err(error) => return error.into_response(),
    };
    if answer.status != StatusCode::OK {
        return answer.into_response();
    }
    Json(request_row(&answer.json(), base_url(&state))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_amount_is_only_digits_without_a_sign_spaces_or_leading_zeros() {
        assert_eq!(strict_won("100"), Some(100));
        assert_eq!(strict_won("0"), Some(0));
        for bad in [
            "+100",
            "-100",
            "0100",
            "00",
            " 100 ",
            "100 ",
            "",
            "1e3",
            "1_000",
            "1,000",
            "1.5",
            "１００",
            "99999999999999999999",
        ] {
            assert_eq!(strict_won(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_bad_string_amount_is_invalid_amount_and_a_json_number_is_passed_on() {
        let bad = amount_of(Some(&json!("+100")));
        assert!(matches!(bad, Err(error) if error.code == "invalid_amount"));
        assert_eq!(amount_of(Some(&json!("100"))).ok(), Some(Some(json!(100))));
        assert_eq!(amount_of(Some(&json!(1.5))).ok(), Some(Some(json!(1.5))));
        assert_eq!(amount_of(None).ok(), Some(None));
    }
}

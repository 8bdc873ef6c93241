//! The routes the gateway forwards to a role (through one proxy handler each role), and the
//! health routes every listener adds: one description per route. These functions are never
//! called (hence `dead_code` is allowed): `#[utoipa::path]` needs a function to describe.
#![allow(dead_code)]

use super::schemas::{
    AccountDetail, AccountList, Customer, ErrorBody, Health, LogIn, NotReady, Pong, RequestAnswer,
    RequestBody, RequestPage, Session, SignUp, Statement, StatementFormat, TransactionPage,
};

/// Sign up a customer.
#[utoipa::path(post, path = "/api/v1/customers", tag = "customers", security(()),
    request_body = SignUp,
    responses(
        (status = 201, description = "The customer was created", body = Customer),
        (status = 400, description = "`invalid_request` (a field's shape), `malformed_json`", body = ErrorBody),
        (status = 409, description = "`customer_exists`: the user id is taken", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over 64 KiB", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not `application/json`", body = ErrorBody),
        (status = 502, description = "`outcome_unknown`: auth was lost mid-call", body = ErrorBody),
        (status = 503, description = "`service_busy`: no sign-up place free (per client and in all), or auth busy or down; nothing happened", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 504, description = "`outcome_unknown`: auth did not answer in time", body = ErrorBody),
    )
)]
fn sign_up() {}

/// Log in: a bearer token.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "customers", security(()),
    request_body = LogIn,
    responses(
        (status = 200, description = "The session's token", body = Session),
        (status = 400, description = "`invalid_request`, `malformed_json`", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`: wrong user id or password (alike for an unknown user)", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 429, description = "`locked_out`: five failures in a row; even the right password waits", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the lockout ends"))),
        (status = 502, description = "`outcome_unknown`", body = ErrorBody),
        (status = 503, description = "`service_busy`: no login place free (per client and in all), or argon2's queue is full; nothing happened", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 504, description = "`outcome_unknown`", body = ErrorBody),
    )
)]
fn log_in() {}

/// Log out: end the token's session.
#[utoipa::path(delete, path = "/api/v1/sessions/current", tag = "customers", security(("bearer" = [])),
    responses(
        (status = 204, description = "The session ended"),
        (status = 401, description = "`unauthorized`: no valid bearer token", body = ErrorBody),
        (status = 502, description = "`outcome_unknown`", body = ErrorBody),
        (status = 503, description = "`service_busy`", body = ErrorBody),
        (status = 504, description = "`outcome_unknown`", body = ErrorBody),
    )
)]
fn log_out() {}

/// Submit a request: open, close, deposit, withdraw, transfer (writes), balance, history (reads).
///
/// A write waits for its outcome (5 s by default); if it is still running then, the answer is
/// 202 with `Location: /api/v1/requests/{id}`, to be polled.
#[utoipa::path(post, path = "/api/v1/requests", tag = "requests", security(("bearer" = [])),
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 128,
            description = "1-128 visible ASCII characters, scoped to the customer: the same key with the same body replays the first answer and applies once"),
    ),
    request_body = RequestBody,
    responses(
        (status = 200, description = "Completed", body = RequestAnswer),
        (status = 202, description = "Accepted, still running: poll its `Location`", body = RequestAnswer,
            headers(("Location" = String, description = "`/api/v1/requests/{id}`"))),
        (status = 400, description = "`invalid_request` (missing/unknown fields, unknown type, bad account number, bad Idempotency-Key), `invalid_amount`, `malformed_json`", body = ErrorBody),
        (status = 401, description = "`unauthorized`; `session_expired`: the session ended before the step-up", body = ErrorBody),
        (status = 403, description = "`step_up_failed`: wrong password", body = ErrorBody),
        (status = 404, description = "`account_not_found`: no such account, or someone else's", body = ErrorBody),
        (status = 409, description = "`account_exists`, `insufficient_funds`, `daily_limit_exceeded` (with `allowedToday`), `account_closed`, `balance_not_zero`, `balance_overflow`, `idempotency_key_in_flight`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused`: the same key with another body", body = ErrorBody),
        (status = 429, description = "`locked_out`: too many failed step-ups", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the lockout ends"))),
        (status = 502, description = "`outcome_unknown`: the write may or may not have happened; retry with the same Idempotency-Key", body = ErrorBody),
        (status = 503, description = "`service_busy` (nothing happened), `interrupted` (compensated): retry", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 504, description = "`outcome_unknown`", body = ErrorBody),
    )
)]
fn submit_request() {}

/// The caller's requests, newest first.
#[utoipa::path(get, path = "/api/v1/requests", tag = "requests", security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, nullable = false, minimum = 1, maximum = 100, description = "1-100 (default 20)"),
        ("before" = Option<String>, Query, nullable = false, description = "The previous page's `next`"),
    ),
    responses(
        (status = 200, description = "A page of requests", body = RequestPage),
        (status = 400, description = "`invalid_request`: a bad `limit`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 503, description = "`service_busy`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
fn list_requests() {}

/// One of the caller's requests.
#[utoipa::path(get, path = "/api/v1/requests/{id}", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path, description = "The request's id (a UUID)")),
    responses(
        (status = 200, description = "Pending or completed", body = RequestAnswer),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`request_not_found` (unknown, or someone else's); `request_cancelled` with `reason` (and `allowedToday`): it failed and was compensated", body = ErrorBody),
        (status = 503, description = "`service_busy`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
fn show_request() {}

/// The caller's accounts.
#[utoipa::path(get, path = "/api/v1/accounts", tag = "accounts", security(("bearer" = [])),
    responses(
        (status = 200, description = "Every account of the caller", body = AccountList),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 503, description = "`service_busy`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
fn list_accounts() {}

/// One of the caller's accounts, with its 10 newest transactions.
#[utoipa::path(get, path = "/api/v1/accounts/{account_no}", tag = "accounts", security(("bearer" = [])),
    params(("account_no" = String, Path, pattern = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,30}[A-Za-z0-9])?$", max_length = 32, description = "The account number")),
    responses(
        (status = 200, description = "The account", body = AccountDetail),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`account_not_found`: unknown, or someone else's", body = ErrorBody),
        (status = 503, description = "`service_busy`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
fn show_account() {}

/// An account's transactions, newest first.
#[utoipa::path(get, path = "/api/v1/accounts/{account_no}/transactions", tag = "accounts", security(("bearer" = [])),
    params(
        ("account_no" = String, Path, pattern = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,30}[A-Za-z0-9])?$", max_length = 32, description = "The account number"),
        ("limit" = Option<u32>, Query, nullable = false, minimum = 1, maximum = 100, description = "1-100 (default 20)"),
        ("before" = Option<String>, Query, nullable = false, description = "The previous page's `next`"),
    ),
    responses(
        (status = 200, description = "A page of transactions", body = TransactionPage),
        (status = 400, description = "`invalid_request`: a bad `limit` or `before`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`account_not_found`", body = ErrorBody),
        (status = 503, description = "`service_busy`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
fn account_transactions() {}

/// An account's statement between two days of the bank's calendar, as JSON or CSV.
#[utoipa::path(get, path = "/api/v1/accounts/{account_no}/statement", tag = "accounts", security(("bearer" = [])),
    params(
        ("account_no" = String, Path, pattern = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,30}[A-Za-z0-9])?$", max_length = 32, description = "The account number"),
        ("from" = String, Query, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description = "The first day, YYYY-MM-DD"),
        ("to" = String, Query, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description = "The last day, YYYY-MM-DD (at most 366 days after `from`)"),
        ("format" = Option<StatementFormat>, Query, nullable = false, description = "`json` (the default) or `csv`"),
    ),
    responses(
        (status = 200, description = "The statement (CSV: UTF-8 with a byte order mark, as an attachment)",
            content((Statement = "application/json"), (String = "text/csv"))),
        (status = 400, description = "`invalid_request`: a missing or malformed day, `to` before `from`, a range over 366 days or 10,000 items, another format", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`account_not_found`", body = ErrorBody),
        (status = 503, description = "`service_busy`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
fn account_statement() {}

/// One proxied hop (for benchmarks).
#[utoipa::path(get, path = "/api/v1/ping", tag = "accounts", security(()),
    responses(
        (status = 200, description = "mypage answered", body = Pong),
        (status = 503, description = "`service_busy`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
fn ping() {}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health/live", tag = "health", security(()),
    responses((status = 200, description = "Live", body = Health))
)]
fn live() {}

/// Readiness: started, not draining, and every role's check passes.
#[utoipa::path(get, path = "/health/ready", tag = "health", security(()),
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not ready (starting or draining): `{status: \"not_ready\"}`, or `starting`", body = NotReady),
    )
)]
fn ready() {}

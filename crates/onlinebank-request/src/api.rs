//! request's HTTP handlers.

use crate::saga::{self, Outcome, WriteRequest};
use crate::store::{self, KeyClaim, RequestStatus, Standing};
use crate::RequestState;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use onlinebank_core::command::{Command, RequestBody};
use onlinebank_core::event::WriteKind;
use onlinebank_core::http::{require_internal, shed, Authenticated, JsonBody};
use onlinebank_core::ids::RequestId;
use onlinebank_core::ids::{AccountNo, CustomerId};
use onlinebank_core::internal;
use onlinebank_core::reason::Refusal;
use onlinebank_core::time::ms_to_rfc3339;
use onlinebank_core::{ApiError, ErrorCode};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::Semaphore;

pub(crate) fn router(state: RequestState, internal_token: Arc<str>) -> Router {
    let internal = Router::new()
        .route(internal::REQUESTS_PENDING, get(unfinished))
        .route_layer(middleware::from_fn_with_state(
            internal_token,
            require_internal,
        ));
    let writes = Router::new()
        .route("/api/v1/requests", post(submit))
        .route_layer(middleware::from_fn_with_state(
            (
                "request",
                Arc::new(Semaphore::new(state.settings.max_in_flight_writes)),
            ),
            shed,
        ));
    let reads = Router::new()
        .route("/api/v1/requests", get(list))
        .route("/api/v1/requests/{id}", get(show))
        .route_layer(middleware::from_fn_with_state(
            (
                "request",
                Arc::new(Semaphore::new(state.settings.max_in_flight_reads)),
            ),
            shed,
        ));
    Router::new()
        .merge(writes)
        .merge(reads)
        .merge(internal)
        .with_state(state)
}

const IDEMPOTENCY_HEADER: &str = "idempotency-key";

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|key| !key.is_empty() && key.len() <= 128)
        .ok_or_else(|| {
            ApiError::validation("Idempotency-Key must be 1 to 128 visible ASCII characters")
        })?;
    Ok(Some(key.to_owned()))
}

/// What makes two bodies "the same" for an idempotency key. The password is left out: it is not
/// part of what the request does, and a hash of it must not be stored.
fn body_fingerprint(body: &RequestBody) -> String {
    let amount = body
        .amount
        .as_ref()
        .map(Value::to_string)
        .unwrap_or_default();
    let canonical = if body.from_account_no.is_none() && body.to_account_no.is_none() {
        // As before transfers: keys recorded by earlier releases still match their bodies.
        json!([body.kind, body.account_no, amount]).to_string()
    } else {
        json!([
            body.kind,
            body.account_no,
            amount,
            body.from_account_no,
            body.to_account_no
        ])
        .to_string()
    };
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

async fn submit(
    State(state): State<RequestState>,
    bearer: Authenticated,
    headers: HeaderMap,
    JsonBody(body): JsonBody<RequestBody>,
) -> Result<Response, ApiError> {
    let Command::Write {
        kind,
        account_no,
        to_account_no,
        amount,
        password,
    } = body.parse(state.settings.max_amount)?
    else {
        return Err(ApiError::validation(
            "balance and history are answered by the read side",
        ));
    };
    let key = idempotency_key(&headers)?;
    if state.step_up.is_refusing() {
        // auth is failing or slow: answer at once, record nothing.
        return Err(ApiError::busy());
    }
    // auth only signs tokens for registered (valid) customer ids.
    let customer_id = CustomerId::parse(bearer.customer_id()).map_err(ApiError::internal)?;
    let account_no = account_no.unwrap_or_else(AccountNo::generate);
    let row = store::RequestRow {
        id: RequestId::generate(),
        customer_id,
        kind,
        account_no,
        to_account_no,
        amount,
        status: RequestStatus::Pending,
        balance: None,
        version: None,
        created_at: onlinebank_core::time::now_ms(),
        completed_at: None,
    };

    let fingerprint = body_fingerprint(&body);
    let session_id = bearer.session_id().to_owned();
    // From here on the work runs on its own task: a client that hangs up cannot leave a
    // transaction or a saga half-done; the request finishes or is compensated either way.
    // It stays in the customer's call: its logs and its calls to auth carry the call's ids.
    tokio::spawn(onlinebank_core::trace::carry(async move {
        match record_and_run(state, row, key, fingerprint, session_id, kind, password).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        }
    }))
    .await
    .map_err(ApiError::internal)
}

/// Claims the Idempotency-Key and records the request PENDING in one transaction, then runs the
/// saga.
async fn record_and_run(
    state: RequestState,
    row: store::RequestRow,
    key: Option<String>,
    fingerprint: String,
    session_id: String,
    kind: WriteKind,
    password: String,
) -> Result<Response, ApiError> {
    let pending = row.clone();
    let started = tokio::time::Instant::now();
    let claim = state
        .db
        .write(move |conn| {
            Box::pin(async move { record(conn, &pending, key.as_deref(), &fingerprint).await })
        })
        .await?;
    crate::saga::stage("record", started);
    match claim {
        KeyClaim::Claimed => {}
        KeyClaim::Replay(earlier) => return replay(&state, earlier).await,
        KeyClaim::Reused => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was used with a different request",
            ))
        }
    }
    let request = WriteRequest {
        request_id: row.id,
        customer_id: row.customer_id,
        session_id,
        kind,
        account_no: row.account_no,
        to_account_no: row.to_account_no,
        amount: row.amount,
        password,
    };
    let outcome = saga::run(&state, &request).await;
    Ok(answer(outcome, request.request_id))
}

/// The answer to a request's saga: its record (200 completed, 202 in flight), or why nothing
/// happened.
fn answer(outcome: Result<Outcome, ApiError>, request_id: RequestId) -> Response {
    let error = match outcome {
        Ok(Outcome::Live(row)) => return answer_live(&row),
        Ok(Outcome::Failed {
            refusal,
            retry_after,
        }) => {
            let error = ApiError::from_refusal(refusal);
            match retry_after {
                Some(seconds) => error.with_retry_after(seconds),
                None => error,
            }
        }
        Ok(Outcome::SessionExpired) => ApiError::session_expired(),
        Ok(Outcome::Vanished) => ApiError::internal("request vanished"),
        Err(error) => error,
    };
    error.with_request_id(request_id).into_response()
}

/// Claims the key (if any) and inserts the request PENDING, in the caller's transaction.
/// Nothing is written unless the key is new.
pub async fn record(
    conn: &mut onlinebank_core::db::Conn,
    row: &store::RequestRow,
    key: Option<&str>,
    fingerprint: &str,
) -> Result<KeyClaim, onlinebank_core::db::Error> {
    let unclaimed =
        onlinebank_core::ambient::armed(onlinebank_core::ambient::Injection::KeyUnclaimed);
    if let Some(key) = key.filter(|_| !unclaimed) {
        let claim =
            store::claim_key(conn, row.customer_id.as_str(), key, fingerprint, row.id).await?;
        if !matches!(claim, KeyClaim::Claimed) {
            return Ok(claim);
        }
    }
    store::insert_pending(conn, row).await?;
    Ok(KeyClaim::Claimed)
}

/// The answer to a replayed Idempotency-Key: the earlier request's answer as it stands.
async fn replay(state: &RequestState, earlier_id: RequestId) -> Result<Response, ApiError> {
    match store::standing(&state.db, earlier_id).await? {
        Standing::Live(row) if row.status == RequestStatus::Completed => Ok(answer_live(&row)),
        Standing::Cancelled(refusal) => {
            Err(ApiError::from_refusal(refusal).with_request_id(earlier_id))
        }
        Standing::Live(_) | Standing::Unknown => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::IdempotencyKeyInFlight,
            "a request with this Idempotency-Key is still being processed",
        )
        .with_request_id(earlier_id)),
    }
}

async fn show(
    State(state): State<RequestState>,
    bearer: Authenticated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found(ErrorCode::RequestNotFound, "request not found");
    // Only the canonical (hyphenated, lower-case) text names a request, as it is stored.
    let request_id = id
        .parse::<RequestId>()
        .ok()
        .filter(|parsed| parsed.to_string() == id)
        .ok_or_else(not_found)?;
    let owner = store::owner(&state.db, request_id).await?;
    if owner.as_deref() != Some(bearer.customer_id()) {
        return Err(not_found());
    }
    match store::standing(&state.db, request_id).await? {
        Standing::Live(row) => Ok(Json(request_json(&row)).into_response()),
        Standing::Cancelled(Refusal {
            reason,
            allowed_today,
        }) => {
            let mut body = ApiError::not_found(ErrorCode::RequestCancelled, reason.message())
                .with_request_id(request_id)
                .body();
            body["reason"] = json!(reason.answered().code());
            if let Some(allowed) = allowed_today {
                body["allowedToday"] = json!(allowed);
            }
            Ok((StatusCode::NOT_FOUND, Json(body)).into_response())
        }
        Standing::Unknown => Err(not_found()),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<String>,
    before: Option<String>,
}

async fn list(
    State(state): State<RequestState>,
    bearer: Authenticated,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = onlinebank_core::http::page_limit(query.limit.as_deref())?;
    let mut rows = store::list_for_customer(
        &state.db,
        bearer.customer_id(),
        query.before.as_deref(),
        limit + 1,
    )
    .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let next = if more {
        rows.last().map(|row| row.id.to_string())
    } else {
        None
    };
    let items: Vec<Value> = rows.iter().map(request_json).collect();
    Ok(Json(json!({"items": items, "next": next})))
}

async fn unfinished(
    State(state): State<RequestState>,
) -> Result<Json<internal::PendingAnswer>, ApiError> {
    let rows = store::unfinished(&state.db).await?;
    let items = rows.into_iter().filter_map(pending_request).collect();
    Ok(Json(internal::PendingAnswer::of(items)))
}

/// An unfinished request as [`internal::REQUESTS_PENDING`] lists it (`None`: it is completed).
fn pending_request(row: store::RequestRow) -> Option<internal::PendingRequest> {
    let stage = match row.status {
        RequestStatus::Pending => internal::PendingStage::Pending,
        RequestStatus::Authorized => internal::PendingStage::Authorized,
        RequestStatus::Completed => return None,
    };
    Some(internal::PendingRequest {
        request_id: row.id,
        kind: row.kind,
        status: internal::LiveStatus::Pending,
        account_no: row.account_no,
        amount: row.amount,
        created_at: ms_to_rfc3339(row.created_at),
        stage,
        customer_id: row.customer_id,
    })
}

/// The JSON of a live (pending or completed) request.
fn request_json(row: &store::RequestRow) -> Value {
    let completed = row.status == RequestStatus::Completed;
    let mut body = json!({
        "requestId": row.id,
        "type": row.kind.as_str(),
        "status": if completed { "completed" } else { "pending" },
        "accountNo": row.account_no,
        "amount": row.amount,
        "createdAt": ms_to_rfc3339(row.created_at),
    });
    if let Some(to_account_no) = &row.to_account_no {
        body["fromAccountNo"] = json!(row.account_no);
        body["toAccountNo"] = json!(to_account_no);
    }
    if completed {
        body["balance"] = json!(row.balance);
        body["version"] = json!(row.version);
        body["completedAt"] = json!(row.completed_at.map(ms_to_rfc3339));
    }
    body
}

/// 200 for a completed request, 202 with its Location for one still in flight.
fn answer_live(row: &store::RequestRow) -> Response {
    let body = Json(request_json(row));
    if row.status == RequestStatus::Completed {
        return (StatusCode::OK, body).into_response();
    }
    let mut response = (StatusCode::ACCEPTED, body).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/requests/{}", row.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

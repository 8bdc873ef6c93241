//! request's SQLite store: requests, their compensations and idempotency keys.

use onlinebank_core::Reason;
use sqlx::{AnyConnection, AnyPool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RequestRow {
    pub id: String,
    pub customer_id: String,
    pub kind: String,
    pub account_no: String,
    pub amount: i64,
    pub status: String,
    pub balance: Option<i64>,
    pub version: Option<i64>,
    pub created_at: i64,
    pub completed_at: Option<i64>,
}

/// Where a request stands, as seen by its client.
#[derive(Debug, Clone)]
pub enum Standing {
    Live(RequestRow),
    Cancelled(Reason),
    Unknown,
}

const REQUEST_COLUMNS: &str =
    "id, customer_id, kind, account_no, amount, status, balance, version, created_at, completed_at";

pub async fn insert_pending(conn: &mut AnyConnection, row: &RequestRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO requests (id, customer_id, kind, account_no, amount, status, created_at)
         VALUES ($1, $2, $3, $4, $5, 'PENDING', $6)",
    )
    .bind(&row.id)
    .bind(&row.customer_id)
    .bind(&row.kind)
    .bind(&row.account_no)
    .bind(row.amount)
    .bind(row.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// PENDING -> AUTHORIZED; false if the request is no longer pending (e.g. swept).
pub async fn authorize(conn: &mut AnyConnection, id: &str) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE requests SET status = 'AUTHORIZED' WHERE id = $1 AND status = 'PENDING'",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn complete(
    conn: &mut AnyConnection,
    id: &str,
    balance: i64,
    version: i64,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE requests SET status = 'COMPLETED', balance = $1, version = $2, completed_at = $3
         WHERE id = $4 AND status != 'COMPLETED'",
    )
    .bind(balance)
    .bind(version)
    .bind(onlinebank_core::time::now_ms())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Compensation: deletes the request and records why. With `release_key`, also frees the
/// idempotency key so the client can simply retry (nothing happened).
pub async fn cancel(
    conn: &mut AnyConnection,
    id: &str,
    reason: Reason,
    release_key: bool,
) -> Result<bool, sqlx::Error> {
    let deleted: Option<RequestRow> = sqlx::query_as(&format!(
        "DELETE FROM requests WHERE id = $1 AND status != 'COMPLETED' RETURNING {REQUEST_COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = deleted else {
        return Ok(false);
    };
    sqlx::query(
        "INSERT INTO cancelled_requests (id, customer_id, kind, account_no, amount, reason, cancelled_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&row.id)
    .bind(&row.customer_id)
    .bind(&row.kind)
    .bind(&row.account_no)
    .bind(row.amount)
    .bind(reason.code())
    .bind(onlinebank_core::time::now_ms())
    .execute(&mut *conn)
    .await?;
    if release_key {
        sqlx::query("DELETE FROM idempotency_keys WHERE request_id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(true)
}

pub async fn standing(pool: &AnyPool, id: &str) -> Result<Standing, sqlx::Error> {
    let live: Option<RequestRow> = sqlx::query_as(&format!(
        "SELECT {REQUEST_COLUMNS} FROM requests WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    if let Some(row) = live {
        return Ok(Standing::Live(row));
    }
    let cancelled: Option<String> =
        sqlx::query_scalar("SELECT reason FROM cancelled_requests WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(match cancelled {
        Some(reason) => Standing::Cancelled(Reason::parse(&reason).unwrap_or(Reason::Interrupted)),
        None => Standing::Unknown,
    })
}

/// The owner of a request, live or cancelled.
pub async fn owner(pool: &AnyPool, id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT customer_id FROM requests WHERE id = $1
         UNION ALL SELECT customer_id FROM cancelled_requests WHERE id = $1 LIMIT 1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

pub async fn list_for_customer(
    pool: &AnyPool,
    customer_id: &str,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<RequestRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {REQUEST_COLUMNS} FROM requests WHERE customer_id = $1 AND id < $2
         ORDER BY id DESC LIMIT $3"
    ))
    .bind(customer_id)
    .bind(before.unwrap_or("~"))
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub async fn unfinished(pool: &AnyPool) -> Result<Vec<RequestRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {REQUEST_COLUMNS} FROM requests WHERE status != 'COMPLETED' ORDER BY id"
    ))
    .fetch_all(pool)
    .await
}

/// PENDING requests created before `cutoff`: their step-up can no longer count.
pub async fn stale_pending(pool: &AnyPool, cutoff: i64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM requests WHERE status = 'PENDING' AND created_at < $1 ORDER BY created_at LIMIT 500",
    )
    .bind(cutoff)
    .fetch_all(pool)
    .await
}

pub async fn purge_cancelled(pool: &AnyPool, before: i64) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM cancelled_requests WHERE cancelled_at < $1")
            .bind(before)
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

/// What an idempotency key says about a new request.
#[derive(Debug)]
pub enum KeyClaim {
    /// The key is new and now belongs to this request.
    Claimed,
    /// The key was used with the same body for this earlier request.
    Replay(String),
    /// The key was used with a different body.
    Reused,
}

pub async fn claim_key(
    conn: &mut AnyConnection,
    customer_id: &str,
    key: &str,
    body_hash: &str,
    request_id: &str,
) -> Result<KeyClaim, sqlx::Error> {
    // Insert first: two replicas (or two PostgreSQL transactions) claiming the same key at once
    // meet at the unique key; the later one waits for the earlier to commit and then finds its
    // row below instead of failing.
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (customer_id, key, body_hash, request_id, created_at)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (customer_id, key) DO NOTHING",
    )
    .bind(customer_id)
    .bind(key)
    .bind(body_hash)
    .bind(request_id)
    .bind(onlinebank_core::time::now_ms())
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(KeyClaim::Claimed);
    }
    let (existing_hash, existing_request): (String, String) = sqlx::query_as(
        "SELECT body_hash, request_id FROM idempotency_keys WHERE customer_id = $1 AND key = $2",
    )
    .bind(customer_id)
    .bind(key)
    .fetch_one(&mut *conn)
    .await?;
    Ok(if existing_hash == body_hash {
        KeyClaim::Replay(existing_request)
    } else {
        KeyClaim::Reused
    })
}

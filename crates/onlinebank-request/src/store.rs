//! request's store (SQLite or PostgreSQL, one portable SQL): requests, their compensations and
//! idempotency keys.

use onlinebank_core::args;
use onlinebank_core::db::{Conn, Db, Error, FromRow, Row};
use onlinebank_core::Reason;

#[derive(Debug, Clone)]
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

impl FromRow for RequestRow {
    fn from_row(row: &Row<'_>) -> Result<Self, Error> {
        Ok(Self {
            id: row.get(0)?,
            customer_id: row.get(1)?,
            kind: row.get(2)?,
            account_no: row.get(3)?,
            amount: row.get(4)?,
            status: row.get(5)?,
            balance: row.get(6)?,
            version: row.get(7)?,
            created_at: row.get(8)?,
            completed_at: row.get(9)?,
        })
    }
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

pub async fn insert_pending(conn: &mut Conn, row: &RequestRow) -> Result<(), Error> {
    conn.execute(
        "INSERT INTO requests (id, customer_id, kind, account_no, amount, status, created_at)
         VALUES ($1, $2, $3, $4, $5, 'PENDING', $6)",
        args![
            &row.id,
            &row.customer_id,
            &row.kind,
            &row.account_no,
            row.amount,
            row.created_at
        ],
    )
    .await?;
    Ok(())
}

/// PENDING -> AUTHORIZED; false if the request is no longer pending (e.g. swept).
pub async fn authorize(conn: &mut Conn, id: &str) -> Result<bool, Error> {
    let changed = conn
        .execute(
            "UPDATE requests SET status = 'AUTHORIZED' WHERE id = $1 AND status = 'PENDING'",
            args![id],
        )
        .await?;
    Ok(changed == 1)
}

pub async fn complete(
    conn: &mut Conn,
    id: &str,
    balance: i64,
    version: i64,
) -> Result<bool, Error> {
    let changed = conn
        .execute(
            "UPDATE requests SET status = 'COMPLETED', balance = $1, version = $2, completed_at = $3
             WHERE id = $4 AND status != 'COMPLETED'",
            args![balance, version, onlinebank_core::time::now_ms(), id],
        )
        .await?;
    Ok(changed == 1)
}

/// Compensation: deletes the request and records why. With `release_key`, also frees the
/// idempotency key so the client can simply retry (nothing happened).
pub async fn cancel(
    conn: &mut Conn,
    id: &str,
    reason: Reason,
    release_key: bool,
) -> Result<bool, Error> {
    let deleted: Option<RequestRow> = conn
        .fetch_optional(
            &format!(
                "DELETE FROM requests WHERE id = $1 AND status != 'COMPLETED' RETURNING {REQUEST_COLUMNS}"
            ),
            args![id],
        )
        .await?;
    let Some(row) = deleted else {
        return Ok(false);
    };
    conn.execute(
        "INSERT INTO cancelled_requests (id, customer_id, kind, account_no, amount, reason, cancelled_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        args![
            &row.id,
            &row.customer_id,
            &row.kind,
            &row.account_no,
            row.amount,
            reason.code(),
            onlinebank_core::time::now_ms()
        ],
    )
    .await?;
    if release_key {
        conn.execute(
            "DELETE FROM idempotency_keys WHERE request_id = $1",
            args![id],
        )
        .await?;
    }
    Ok(true)
}

pub async fn standing(db: &Db, id: &str) -> Result<Standing, Error> {
    let mut conn = db.read().await?;
    let live: Option<RequestRow> = conn
        .fetch_optional(
            &format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE id = $1"),
            args![id],
        )
        .await?;
    if let Some(row) = live {
        return Ok(Standing::Live(row));
    }
    let cancelled: Option<String> = conn
        .scalar(
            "SELECT reason FROM cancelled_requests WHERE id = $1",
            args![id],
        )
        .await?;
    Ok(match cancelled {
        Some(reason) => Standing::Cancelled(Reason::parse(&reason).ok_or_else(|| {
            onlinebank_core::db::Error::Decode(format!("cancelled request's reason {reason:?}"))
        })?),
        None => Standing::Unknown,
    })
}

/// The owner of a request, live or cancelled.
pub async fn owner(db: &Db, id: &str) -> Result<Option<String>, Error> {
    db.read()
        .await?
        .scalar(
            "SELECT customer_id FROM requests WHERE id = $1
             UNION ALL SELECT customer_id FROM cancelled_requests WHERE id = $1 LIMIT 1",
            args![id],
        )
        .await
}

pub async fn list_for_customer(
    db: &Db,
    customer_id: &str,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<RequestRow>, Error> {
    db.read()
        .await?
        .fetch_all(
            &format!(
                "SELECT {REQUEST_COLUMNS} FROM requests WHERE customer_id = $1 AND id < $2
                 ORDER BY id DESC LIMIT $3"
            ),
            args![customer_id, before.unwrap_or("~"), limit],
        )
        .await
}

pub async fn unfinished(db: &Db) -> Result<Vec<RequestRow>, Error> {
    db.read()
        .await?
        .fetch_all(
            &format!(
                "SELECT {REQUEST_COLUMNS} FROM requests WHERE status != 'COMPLETED' ORDER BY id"
            ),
            &[],
        )
        .await
}

/// PENDING requests created before `cutoff`: their step-up can no longer count.
pub async fn stale_pending(db: &Db, cutoff: i64) -> Result<Vec<String>, Error> {
    let rows: Vec<(String,)> = db
        .read()
        .await?
        .fetch_all(
            "SELECT id FROM requests WHERE status = 'PENDING' AND created_at < $1 ORDER BY created_at LIMIT 500",
            args![cutoff],
        )
        .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Forgets compensations and idempotency keys older than `before`.
pub async fn purge_old(db: &Db, before: i64) -> Result<(), Error> {
    db.write(move |conn| {
        Box::pin(async move {
            conn.execute(
                "DELETE FROM cancelled_requests WHERE cancelled_at < $1",
                args![before],
            )
            .await?;
            conn.execute(
                "DELETE FROM idempotency_keys WHERE created_at < $1",
                args![before],
            )
            .await?;
            Ok(())
        })
    })
    .await
    .map_err(Error::from)
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
    conn: &mut Conn,
    customer_id: &str,
    key: &str,
    body_hash: &str,
    request_id: &str,
) -> Result<KeyClaim, Error> {
    // Insert first: two replicas (or two PostgreSQL transactions) claiming the same key at once
    // meet at the unique key; the later one waits for the earlier to commit and then finds its
    // row below instead of failing.
    let inserted = conn
        .execute(
            "INSERT INTO idempotency_keys (customer_id, key, body_hash, request_id, created_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (customer_id, key) DO NOTHING",
            args![
                customer_id,
                key,
                body_hash,
                request_id,
                onlinebank_core::time::now_ms()
            ],
        )
        .await?;
    if inserted == 1 {
        return Ok(KeyClaim::Claimed);
    }
    let (existing_hash, existing_request): (String, String) = conn
        .fetch_one(
            "SELECT body_hash, request_id FROM idempotency_keys WHERE customer_id = $1 AND key = $2",
            args![customer_id, key],
        )
        .await?;
    Ok(if existing_hash == body_hash {
        KeyClaim::Replay(existing_request)
    } else {
        KeyClaim::Reused
    })
}

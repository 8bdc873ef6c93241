//! auth's SQLite store.

use onlinebank_core::error::is_unique_violation;
use sqlx::{AnyConnection, AnyPool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CustomerRow {
    pub user_id: String,
    pub name: String,
    pub password_hash: String,
    pub locked_until: i64,
    pub failed_attempts: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub user_id: String,
    pub verifier: Vec<u8>,
    pub expires_at: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Inserted {
    Yes,
    AlreadyExists,
}

pub async fn insert_customer(
    pool: &AnyPool,
    user_id: &str,
    name: &str,
    password_hash: &str,
) -> Result<Inserted, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO customers (user_id, name, password_hash, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(user_id)
    .bind(name)
    .bind(password_hash)
    .bind(onlinebank_core::time::now_ms())
    .execute(pool)
    .await;
    match result {
        Ok(_) => Ok(Inserted::Yes),
        Err(error) if is_unique_violation(&error) => Ok(Inserted::AlreadyExists),
        Err(error) => Err(error),
    }
}

pub async fn customer(pool: &AnyPool, user_id: &str) -> Result<Option<CustomerRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT user_id, name, password_hash, locked_until, failed_attempts FROM customers WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(pool)
    .await
}

/// Counts a failed attempt; the attempt that reaches `threshold` locks the customer until
/// `lock_until` and starts the count again. Returns whether this attempt locked.
pub async fn record_failure(
    conn: &mut AnyConnection,
    user_id: &str,
    threshold: i64,
    lock_until: i64,
) -> Result<bool, sqlx::Error> {
    let locked: Option<i64> = sqlx::query_scalar(
        "UPDATE customers SET
            failed_attempts = CASE WHEN failed_attempts + 1 >= $1 THEN 0 ELSE failed_attempts + 1 END,
            locked_until = CASE WHEN failed_attempts + 1 >= $1 THEN $2 ELSE locked_until END
         WHERE user_id = $3
         RETURNING CAST(CASE WHEN locked_until = $2 THEN 1 ELSE 0 END AS BIGINT)",
    )
    .bind(threshold)
    .bind(lock_until)
    .bind(user_id)
    .fetch_optional(conn)
    .await?;
    Ok(locked.unwrap_or(0) != 0)
}

pub async fn reset_failures(conn: &mut AnyConnection, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE customers SET failed_attempts = 0 WHERE user_id = $1 AND failed_attempts > 0",
    )
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn insert_session(
    pool: &AnyPool,
    session_id: &str,
    user_id: &str,
    verifier: &[u8],
    now: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sessions (id, user_id, verifier, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(session_id)
    .bind(user_id)
    .bind(verifier)
    .bind(now)
    .bind(expires_at)
    .execute(pool)
    .await?;
    // Expired sessions are of no use to anyone; drop a few on the way.
    sqlx::query(
        "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires_at < $1 LIMIT 100)",
    )
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn session(pool: &AnyPool, session_id: &str) -> Result<Option<SessionRow>, sqlx::Error> {
    sqlx::query_as("SELECT user_id, verifier, expires_at FROM sessions WHERE id = $1")
        .bind(session_id)
        .fetch_optional(pool)
        .await
}

pub async fn audit_step_up(
    conn: &mut AnyConnection,
    request_id: &str,
    user_id: &str,
    session_id: &str,
    action: &str,
    outcome: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO step_up_audit (request_id, user_id, session_id, action, outcome, at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(request_id)
    .bind(user_id)
    .bind(session_id)
    .bind(action)
    .bind(outcome)
    .bind(onlinebank_core::time::now_ms())
    .execute(conn)
    .await?;
    Ok(())
}

//! auth's store (SQLite or PostgreSQL, one portable SQL).

use onlinebank_core::args;
use onlinebank_core::db::{Conn, Db, Error, FromRow, Row};

#[derive(Debug, Clone)]
pub struct CustomerRow {
    pub user_id: String,
    pub name: String,
    pub password_hash: String,
    pub locked_until: i64,
    pub failed_attempts: i64,
}

impl FromRow for CustomerRow {
    fn from_row(row: &Row<'_>) -> Result<Self, Error> {
        Ok(Self {
            user_id: row.get(0)?,
            name: row.get(1)?,
            password_hash: row.get(2)?,
            locked_until: row.get(3)?,
            failed_attempts: row.get(4)?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct SessionRow {
    pub user_id: String,
    pub verifier: Vec<u8>,
    pub expires_at: i64,
}

impl FromRow for SessionRow {
    fn from_row(row: &Row<'_>) -> Result<Self, Error> {
        Ok(Self {
            user_id: row.get(0)?,
            verifier: row.get(1)?,
            expires_at: row.get(2)?,
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Inserted {
    Yes,
    AlreadyExists,
}

pub async fn insert_customer(
    db: &Db,
    user_id: &str,
    name: &str,
    password_hash: &str,
) -> Result<Inserted, Error> {
    let (user_id, name, password_hash) = (
        user_id.to_owned(),
        name.to_owned(),
        password_hash.to_owned(),
    );
    let result = db
        .write(move |mut conn| async move {
            let result = conn
                .execute(
                    "INSERT INTO customers (user_id, name, password_hash, created_at) VALUES ($1, $2, $3, $4)",
                    args![&user_id, &name, &password_hash, onlinebank_core::time::now_ms()],
                )
                .await;
            (conn, result)
        })
        .await;
    match result.map_err(Error::from) {
        Ok(_) => Ok(Inserted::Yes),
        Err(error) if error.is_unique_violation() => Ok(Inserted::AlreadyExists),
        Err(error) => Err(error),
    }
}

pub async fn customer(db: &Db, user_id: &str) -> Result<Option<CustomerRow>, Error> {
    db.read()
        .await?
        .fetch_optional(
            "SELECT user_id, name, password_hash, locked_until, failed_attempts FROM customers WHERE user_id = $1",
            args![user_id],
        )
        .await
}

/// Counts a failed attempt; the attempt that reaches `threshold` locks the customer until
/// `lock_until` and starts the count again. Returns whether this attempt locked.
pub async fn record_failure(
    conn: &mut Conn,
    user_id: &str,
    threshold: i64,
    lock_until: i64,
) -> Result<bool, Error> {
    let locked: Option<i64> = conn
        .scalar(
            "UPDATE customers SET
                failed_attempts = CASE WHEN failed_attempts + 1 >= $1 THEN 0 ELSE failed_attempts + 1 END,
                locked_until = CASE WHEN failed_attempts + 1 >= $1 THEN $2 ELSE locked_until END
             WHERE user_id = $3
             RETURNING CAST(CASE WHEN locked_until = $2 THEN 1 ELSE 0 END AS BIGINT)",
            args![threshold, lock_until, user_id],
        )
        .await?;
    Ok(locked.unwrap_or(0) != 0)
}

pub async fn reset_failures(conn: &mut Conn, user_id: &str) -> Result<(), Error> {
    conn.execute(
        "UPDATE customers SET failed_attempts = 0 WHERE user_id = $1 AND failed_attempts > 0",
        args![user_id],
    )
    .await?;
    Ok(())
}

pub async fn insert_session(
    db: &Db,
    session_id: &str,
    user_id: &str,
    verifier: &[u8],
    now: i64,
    expires_at: i64,
) -> Result<(), Error> {
    let (session_id, user_id, verifier) =
        (session_id.to_owned(), user_id.to_owned(), verifier.to_vec());
    let result = db
        .write(move |mut conn| async move {
            let result = async {
                conn.execute(
                    "INSERT INTO sessions (id, user_id, verifier, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
                    args![&session_id, &user_id, &verifier, now, expires_at],
                )
                .await?;
                // Expired sessions are of no use to anyone; drop a few on the way.
                conn.execute(
                    "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires_at < $1 LIMIT 100)",
                    args![now],
                )
                .await?;
                Ok(())
            }
            .await;
            (conn, result)
        })
        .await;
    result.map_err(Error::from)
}

pub async fn session(db: &Db, session_id: &str) -> Result<Option<SessionRow>, Error> {
    db.read()
        .await?
        .fetch_optional(
            "SELECT user_id, verifier, expires_at FROM sessions WHERE id = $1",
            args![session_id],
        )
        .await
}

pub async fn audit_step_up(
    conn: &mut Conn,
    request_id: &str,
    user_id: &str,
    session_id: &str,
    action: &str,
    outcome: &str,
) -> Result<(), Error> {
    conn.execute(
        "INSERT INTO step_up_audit (request_id, user_id, session_id, action, outcome, at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        args![
            request_id,
            user_id,
            session_id,
            action,
            outcome,
            onlinebank_core::time::now_ms()
        ],
    )
    .await?;
    Ok(())
}

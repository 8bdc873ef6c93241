//! auth's store (SQLite or PostgreSQL, one portable SQL).

use crate::lockout::{self, Attempt, Decision, Lockout, LockoutRule};
use onlinebank_core::args;
use onlinebank_core::db::{Conn, Db, Engine, Error, FromRow, Row};

#[derive(Debug, Clone)]
pub struct CustomerRow {
    pub user_id: String,
    pub name: String,
    pub password_hash: String,
}

impl FromRow for CustomerRow {
    fn from_row(row: &Row<'_>) -> Result<Self, Error> {
        Ok(Self {
            user_id: row.get(0)?,
            name: row.get(1)?,
            password_hash: row.get(2)?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct SessionRow {
    pub user_id: String,
    pub verifier: Vec<u8>,
    pub expires_at: i64,
    /// The user's lock when the session was read (0 when none).
    pub locked_until: i64,
}

impl FromRow for SessionRow {
    fn from_row(row: &Row<'_>) -> Result<Self, Error> {
        Ok(Self {
            user_id: row.get(0)?,
            verifier: row.get(1)?,
            expires_at: row.get(2)?,
            locked_until: row.get(3)?,
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
        .write(move |conn| Box::pin(async move {
conn
                .execute(
                    "INSERT INTO customers (user_id, name, password_hash, created_at) VALUES ($1, $2, $3, $4)",
                    args![&user_id, &name, &password_hash, onlinebank_core::time::now_ms()],
                )
                .await
}))
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
            "SELECT user_id, name, password_hash FROM customers WHERE user_id = $1",
            args![user_id],
        )
        .await
}

/// A customer's stored password hash, lock (0 when none) and counted failures, in one read;
/// `None` for an unknown id.
pub async fn credentials(db: &Db, user_id: &str) -> Result<Option<(String, i64, i64)>, Error> {
    let row: Option<(String, i64, i64)> = db
        .read()
        .await?
        .fetch_optional(
            "SELECT c.password_hash, COALESCE(l.locked_until, 0), COALESCE(l.failed_attempts, 0) \
             FROM customers c LEFT JOIN lockouts l ON l.user_id = c.user_id WHERE c.user_id = $1",
            args![user_id],
        )
        .await?;
    Ok(row)
}

/// A user id's lock, or 0 when it has none (known and unknown ids alike).
pub async fn locked_until(db: &Db, user_id: &str) -> Result<i64, Error> {
    let locked: Option<i64> = db
        .read()
        .await?
        .scalar(
            "SELECT locked_until FROM lockouts WHERE user_id = $1",
            args![user_id],
        )
        .await?;
    Ok(locked.unwrap_or(0))
}

impl FromRow for Lockout {
    fn from_row(row: &Row<'_>) -> Result<Self, Error> {
        Ok(Self {
            failed_attempts: row.get(0)?,
            locked_until: row.get(1)?,
            updated_at: row.get(2)?,
        })
    }
}

/// `user_id`'s lockout record, in the caller's write ([`Lockout::default`] when it has none).
/// On PostgreSQL the row stays locked until the write ends: a concurrent attempt of the id waits
/// for this one and then reads what it wrote (an UPDATE would too; a plain SELECT would read the
/// row from before a lock being committed). SQLite runs every write one after the other.
async fn stored_lockout(conn: &mut Conn, user_id: &str) -> Result<Lockout, Error> {
    let sql = match conn.engine() {
        Engine::Postgres => {
            "SELECT failed_attempts, locked_until, updated_at FROM lockouts WHERE user_id = $1
             FOR UPDATE"
        }
        Engine::Sqlite => {
            "SELECT failed_attempts, locked_until, updated_at FROM lockouts WHERE user_id = $1"
        }
    };
    let stored: Option<Lockout> = conn.fetch_optional(sql, args![user_id]).await?;
    Ok(stored.unwrap_or_default())
}

/// Decides `attempt` on `user_id`'s record read in the caller's write, and stores the record
/// [`lockout::decide`] leaves (the row exists when it changes: a failure inserts it first, a
/// success changes only a row with failures).
pub async fn decide_attempt(
    conn: &mut Conn,
    user_id: &str,
    attempt: Attempt,
    rule: LockoutRule,
    now: i64,
) -> Result<Decision, Error> {
    let mut stored = stored_lockout(conn, user_id).await?;
    use onlinebank_core::ambient::{armed, Injection};
    if attempt == Attempt::Failed && armed(Injection::LockoutOutsideWrite) {
        // The simulator's known bug: the lock as read in this write is not looked at.
        stored.locked_until = 0;
    }
    let (decision, changed) = lockout::decide(stored, attempt, now, rule);
    if let Some(changed) = changed {
        conn.execute(
            "UPDATE lockouts SET failed_attempts = $1, locked_until = $2, updated_at = $3
             WHERE user_id = $4",
            args![
                changed.failed_attempts,
                changed.locked_until,
                changed.updated_at,
                user_id
            ],
        )
        .await?;
    }
    Ok(decision)
}

/// Counts a wrong password for `user_id`, in the caller's write: atomically with every other
/// attempt, and only while the id is not locked (see [`lockout::decide`]). Ids quiet for a whole
/// window are forgotten on the way.
pub async fn record_failure(
    conn: &mut Conn,
    user_id: &str,
    rule: LockoutRule,
    now: i64,
) -> Result<Decision, Error> {
    conn.execute(
        "INSERT INTO lockouts (user_id, failed_attempts, locked_until, updated_at)
         VALUES ($1, 0, 0, $2) ON CONFLICT (user_id) DO NOTHING",
        args![user_id, now],
    )
    .await?;
    let decision = decide_attempt(conn, user_id, Attempt::Failed, rule, now).await?;
    // Ids quiet for a whole window are forgotten, up to 100 per failure: more than a failure
    // adds, so the rows stay within the ids tried over one window. On PostgreSQL, rows another
    // transaction is writing are skipped: deleting one would lose the failure being counted
    // there, and two sweeps waiting for each other's rows would deadlock.
    let sweep = match conn.engine() {
        Engine::Postgres => {
            "DELETE FROM lockouts WHERE user_id IN (SELECT user_id FROM lockouts
                 WHERE updated_at < $1 AND locked_until <= $2 LIMIT 100 FOR UPDATE SKIP LOCKED)"
        }
        Engine::Sqlite => {
            "DELETE FROM lockouts WHERE user_id IN (SELECT user_id FROM lockouts
                 WHERE updated_at < $1 AND locked_until <= $2 LIMIT 100)"
        }
    };
    conn.execute(sweep, args![now - rule.window, now]).await?;
    Ok(decision)
}

/// Accepts a right password, in the caller's write (serialised with every failure): refused
/// ([`Decision::Locked`]) if the id is locked by now, else the count of failures starts again.
/// An id with no failure counted (the usual step-up) writes nothing.
pub async fn accept_success(
    conn: &mut Conn,
    user_id: &str,
    rule: LockoutRule,
    now: i64,
) -> Result<Decision, Error> {
    decide_attempt(conn, user_id, Attempt::Succeeded, rule, now).await
}

/// The session a right password opens.
pub struct NewSession<'a> {
    pub session_id: &'a str,
    pub user_id: &'a str,
    pub verifier: &'a [u8],
    pub expires_at: i64,
}

/// Opens a session for a right password, unless the id got locked meanwhile
/// (`Ok(Err(locked_until))`): the lock check and the insert are one write.
pub async fn open_session(
    db: &Db,
    session: NewSession<'_>,
    rule: LockoutRule,
    now: i64,
) -> Result<Result<(), i64>, Error> {
    // Owned, for the writer: the write may run on another thread.
    let (session_id, user_id, verifier) = (
        session.session_id.to_owned(),
        session.user_id.to_owned(),
        session.verifier.to_vec(),
    );
    let expires_at = session.expires_at;
    let result = db
        .write(move |conn| {
            Box::pin(async move {
                let session = NewSession {
                    session_id: &session_id,
                    user_id: &user_id,
                    verifier: &verifier,
                    expires_at,
                };
                open_session_on(conn, session, rule, now).await
            })
        })
        .await;
    result.map_err(Error::from)
}

/// [`open_session`] in the caller's write.
pub async fn open_session_on(
    conn: &mut Conn,
    session: NewSession<'_>,
    rule: LockoutRule,
    now: i64,
) -> Result<Result<(), i64>, Error> {
    let NewSession {
        session_id,
        user_id,
        verifier,
        expires_at,
    } = session;
    if let Decision::Locked(locked_until) = accept_success(conn, user_id, rule, now).await? {
        return Ok(Err(locked_until));
    }
    conn.execute(
        "INSERT INTO sessions (id, user_id, verifier, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        args![session_id, user_id, verifier, now, expires_at],
    )
    .await?;
    // Expired sessions and revocations are of no use to anyone; drop a few on the way.
    conn.execute(
        "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires_at < $1 LIMIT 100)",
        args![now],
    )
    .await?;
    conn.execute(
        "DELETE FROM revoked_sessions WHERE session_id IN
             (SELECT session_id FROM revoked_sessions WHERE expires_at < $1 LIMIT 100)",
        args![now],
    )
    .await?;
    Ok(Ok(()))
}

/// Ends a session: its row goes (so no step-up succeeds with it) and its revocation is kept
/// until the token expires, for the gateway. Returns whether the session existed.
///
/// The revocation's time is read inside the write, so on SQLite (one writer) revocations become
/// visible in the order of their times; the gateway still asks again for a margin of the past
/// (see `onlinebank_gateway::revocations`) for writers that commit late or clocks of replicas.
pub async fn revoke_session(db: &Db, session_id: &str, user_id: &str) -> Result<bool, Error> {
    let (session_id, user_id) = (session_id.to_owned(), user_id.to_owned());
    let result = db
        .write(move |conn| Box::pin(async move {
                let now = onlinebank_core::time::now_ms();
                let expires_at: Option<i64> = conn
                    .scalar(
                        "DELETE FROM sessions WHERE id = $1 AND user_id = $2 RETURNING expires_at",
                        args![&session_id, &user_id],
                    )
                    .await?;
                let Some(expires_at) = expires_at else {
                    return Ok(false);
                };
                conn.execute(
                    "INSERT INTO revoked_sessions (session_id, revoked_at, expires_at) VALUES ($1, $2, $3)
                     ON CONFLICT (session_id) DO NOTHING",
                    args![&session_id, now, expires_at],
                )
                .await?;
                Ok(true)

}))
        .await;
    result.map_err(Error::from)
}

/// A revoked session, as the gateway needs it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Revoked {
    pub session_id: String,
    pub revoked_at: i64,
    pub expires_at: i64,
}

impl FromRow for Revoked {
    fn from_row(row: &Row<'_>) -> Result<Self, Error> {
        Ok(Self {
            session_id: row.get(0)?,
            revoked_at: row.get(1)?,
            expires_at: row.get(2)?,
        })
    }
}

/// Sessions revoked at or after `since` whose tokens have not expired, oldest first.
pub async fn revoked_since(
    db: &Db,
    since: i64,
    now: i64,
    limit: i64,
) -> Result<Vec<Revoked>, Error> {
    db.read()
        .await?
        .fetch_all(
            "SELECT session_id, revoked_at, expires_at FROM revoked_sessions
             WHERE revoked_at >= $1 AND expires_at > $2 ORDER BY revoked_at LIMIT $3",
            args![since, now, limit],
        )
        .await
}

/// A session with its user's lock, in one read (the lock is checked again in the write that
/// accepts or counts the attempt).
pub async fn session(db: &Db, session_id: &str) -> Result<Option<SessionRow>, Error> {
    session_on(&mut db.read().await?, session_id).await
}

/// [`session`] on a connection.
pub async fn session_on(conn: &mut Conn, session_id: &str) -> Result<Option<SessionRow>, Error> {
    conn.fetch_optional(
        "SELECT s.user_id, s.verifier, s.expires_at, COALESCE(l.locked_until, 0)
             FROM sessions s LEFT JOIN lockouts l ON l.user_id = s.user_id WHERE s.id = $1",
        args![session_id],
    )
    .await
}

/// Replaces a session's step-up verifier, in the caller's write (one made under another pepper,
/// once argon2id has accepted the password: the next step-up is checked by HMAC again).
pub async fn replace_verifier(
    conn: &mut Conn,
    session_id: &str,
    verifier: &[u8],
) -> Result<(), Error> {
    conn.execute(
        "UPDATE sessions SET verifier = $1 WHERE id = $2",
        args![verifier, session_id],
    )
    .await?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use onlinebank_core::time::now_ms;
    use std::time::Duration;

    async fn migrated(url: &str) -> Db {
        let db = Db::open(url, "auth").await.unwrap();
        db.migrate(&crate::migrations()).await.unwrap();
        db
    }

    const RULE: LockoutRule = LockoutRule {
        threshold: 5,
        window: 60_000,
    };

    /// A wrong password counted.
    const COUNTED: Decision = Decision::Refused { locked_now: false };
    /// The wrong password that locks.
    const LOCKS: Decision = Decision::Refused { locked_now: true };

    async fn fail(db: &Db, user_id: &'static str, now: i64) -> Decision {
        db.write(move |conn| {
            Box::pin(async move { record_failure(conn, user_id, RULE, now).await })
        })
        .await
        .unwrap()
    }

    async fn succeed(db: &Db, user_id: &'static str) -> Decision {
        db.write(move |conn| {
            Box::pin(async move { accept_success(conn, user_id, RULE, now_ms()).await })
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_success_resets_the_count_and_is_refused_while_locked_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = migrated(&dir.path().join("auth.db").display().to_string()).await;
        let now = now_ms();
        assert_eq!(
            succeed(&db, "alice").await,
            Decision::Accepted,
            "an id with no row"
        );
        for _ in 0..4 {
            assert_eq!(fail(&db, "alice", now).await, COUNTED);
        }
        assert_eq!(succeed(&db, "alice").await, Decision::Accepted);
        for _ in 0..4 {
            assert_eq!(fail(&db, "alice", now).await, COUNTED, "not reset");
        }
        assert_eq!(fail(&db, "alice", now).await, LOCKS);
        assert_eq!(succeed(&db, "alice").await, Decision::Locked(now + 60_000));
        assert_eq!(
            fail(&db, "alice", now).await,
            Decision::Locked(now + 60_000)
        );
    }

    #[tokio::test]
    async fn failures_older_than_a_quiet_window_are_forgotten_even_before_the_sweep_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = migrated(&dir.path().join("auth.db").display().to_string()).await;
        let now = now_ms();
        for _ in 0..4 {
            assert_eq!(fail(&db, "alice", now - 120_000).await, COUNTED);
        }
        // Four failures two windows ago and one now: not five in a row.
        assert_eq!(fail(&db, "alice", now).await, COUNTED);
        for _ in 0..3 {
            assert_eq!(fail(&db, "alice", now).await, COUNTED);
        }
        assert_eq!(fail(&db, "alice", now).await, LOCKS);
    }

    /// The sweep of quiet ids that every failure runs must not delete the row of an id whose
    /// failure another transaction is counting at that moment (PostgreSQL: that count would be
    /// lost, and two sweeps waiting on each other's rows would deadlock).
    #[tokio::test]
    #[ignore = "needs PostgreSQL (ONLINEBANK_TEST_POSTGRES): ./.ci/run runs it"]
    async fn the_sweep_of_quiet_ids_leaves_an_id_being_counted_on_postgres() {
        let url = onlinebank_core::db::testing::fresh_postgres("auth_sweep")
            .await
            .unwrap();
        let db = migrated(&url).await;
        let now = now_ms();
        // Bob failed long ago: his row is quiet and due to be swept.
        assert_eq!(fail(&db, "bob", now - 120_000).await, COUNTED);
        let counting = tokio::spawn({
            let db = db.clone();
            async move {
                db.write(move |conn| {
                    Box::pin(async move {
                        let result = record_failure(conn, "bob", RULE, now).await;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        result
                    })
                })
                .await
                .unwrap()
            }
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        let started = std::time::Instant::now();
        assert_eq!(fail(&db, "alice", now).await, COUNTED);
        let waited = started.elapsed();
        assert_eq!(counting.await.unwrap(), COUNTED);
        assert!(
            waited < Duration::from_millis(300),
            "alice's failure waited {waited:?} for bob's"
        );
        let bob: Option<i64> = db
            .read()
            .await
            .unwrap()
            .scalar(
                "SELECT failed_attempts FROM lockouts WHERE user_id = $1",
                args!["bob"],
            )
            .await
            .unwrap();
        assert_eq!(
            bob,
            Some(1),
            "bob's failure counted at the same time was swept, or his old one not forgotten"
        );
    }

    /// On PostgreSQL (read committed, several auth replicas) a right password must not be
    /// accepted on a read from before a lock that a concurrent failure is committing. (SQLite runs
    /// every write on one writer, one after the other.)
    #[tokio::test]
    #[ignore = "needs PostgreSQL (ONLINEBANK_TEST_POSTGRES): ./.ci/run runs it"]
    async fn a_success_is_refused_when_a_concurrent_failure_locks_on_postgres() {
        let url = onlinebank_core::db::testing::fresh_postgres("auth_lockout")
            .await
            .unwrap();
        let db = migrated(&url).await;
        let now = now_ms();
        for _ in 0..4 {
            assert_eq!(fail(&db, "alice", now).await, COUNTED);
        }
        // The fifth failure keeps its transaction open a while before committing.
        let locking = tokio::spawn({
            let db = db.clone();
            async move {
                db.write(move |conn| {
                    Box::pin(async move {
                        let result = record_failure(conn, "alice", RULE, now).await;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        result
                    })
                })
                .await
                .unwrap()
            }
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        let accepted = succeed(&db, "alice").await;
        assert_eq!(locking.await.unwrap(), LOCKS);
        assert_eq!(
            accepted,
            Decision::Locked(now + 60_000),
            "a right password was accepted while a failure locked the id"
        );
    }
}

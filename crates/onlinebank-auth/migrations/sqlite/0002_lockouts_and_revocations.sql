-- Lockout state per user id, known or not: the same rules and the same work for an id that has no
-- customer, so answers cannot tell who exists. Rows of ids quiet for a lockout window are deleted.
-- (customers.failed_attempts and customers.locked_until are no longer used.)
CREATE TABLE lockouts (
    user_id TEXT PRIMARY KEY,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
);
CREATE INDEX lockouts_by_update ON lockouts (updated_at);
INSERT INTO lockouts (user_id, failed_attempts, locked_until, updated_at)
    SELECT user_id, failed_attempts, locked_until, created_at FROM customers
    WHERE failed_attempts > 0 OR locked_until > 0;

-- Sessions ended by logout, until their tokens expire: the gateway learns them from here.
CREATE TABLE revoked_sessions (
    session_id TEXT PRIMARY KEY,
    revoked_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX revoked_sessions_by_time ON revoked_sessions (revoked_at);

-- PostgreSQL twin of ../sqlite/0001_init.sql: the same tables, PostgreSQL types.
-- Customers: the password is kept only as an argon2id PHC string.
CREATE TABLE customers (
    user_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    failed_attempts BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

-- Sessions: the step-up verifier is HMAC(HMAC(pepper, session id), password); the pepper is
-- derived from the bank's secret and never stored here.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES customers (user_id),
    verifier BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- Every step-up verification and its outcome.
CREATE TABLE step_up_audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    at BIGINT NOT NULL
);

-- PostgreSQL twin of ../sqlite/0001_init.sql: the same tables, PostgreSQL types.
-- The customers' requests. PENDING: waiting for step-up; AUTHORIZED: step-up passed and
-- AuthCertified is in the outbox; COMPLETED: the account applied it. A failed request is
-- deleted and its reason kept in cancelled_requests.
CREATE TABLE requests (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    account_no TEXT NOT NULL,
    amount BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('PENDING', 'AUTHORIZED', 'COMPLETED')),
    balance BIGINT,
    version BIGINT,
    created_at BIGINT NOT NULL,
    completed_at BIGINT
);
CREATE INDEX requests_by_customer ON requests (customer_id, id);
CREATE INDEX requests_by_status ON requests (status, created_at);

-- Why a request was compensated; kept at least 24 hours so the client can learn it.
CREATE TABLE cancelled_requests (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    account_no TEXT NOT NULL,
    amount BIGINT NOT NULL,
    reason TEXT NOT NULL,
    cancelled_at BIGINT NOT NULL
);
CREATE INDEX cancelled_requests_by_time ON cancelled_requests (cancelled_at);

-- Idempotency keys, per customer: the body they were first used with and the request they made.
-- The answer to a replay is derived from that request's state.
CREATE TABLE idempotency_keys (
    customer_id TEXT NOT NULL,
    key TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    request_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (customer_id, key)
);

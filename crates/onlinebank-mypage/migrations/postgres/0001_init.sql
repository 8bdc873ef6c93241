-- PostgreSQL twin of ../sqlite/0001_init.sql: the same tables, PostgreSQL types.
-- The read model: one row per account, as of the newest account event applied.
CREATE TABLE accounts_view (
    account_no TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    balance BIGINT NOT NULL,
    status TEXT NOT NULL,
    version BIGINT NOT NULL,
    opened_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    -- The customer's last request on this account, completed or cancelled (legacy view).
    last_request_id TEXT,
    last_request_kind TEXT,
    last_request_amount BIGINT,
    last_request_status TEXT,
    last_request_at TEXT
);
CREATE INDEX accounts_view_by_customer ON accounts_view (customer_id);

-- Every completed account change, newest first by version.
CREATE TABLE transactions_view (
    account_no TEXT NOT NULL,
    version BIGINT NOT NULL,
    request_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    amount BIGINT NOT NULL,
    balance_after BIGINT NOT NULL,
    occurred_at TEXT NOT NULL,
    PRIMARY KEY (account_no, version)
);

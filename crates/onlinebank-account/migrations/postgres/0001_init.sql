-- PostgreSQL twin of ../sqlite/0001_init.sql: the same tables, PostgreSQL types.
-- Accounts and balances: the source of truth. A balance can never go below zero.
CREATE TABLE accounts (
    account_no TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    balance BIGINT NOT NULL CHECK (balance >= 0),
    status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    version BIGINT NOT NULL,
    opened_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX accounts_by_customer ON accounts (customer_id);

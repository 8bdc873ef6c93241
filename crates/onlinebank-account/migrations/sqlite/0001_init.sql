-- Accounts and balances: the source of truth. A balance can never go below zero.
CREATE TABLE accounts (
    account_no TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    balance INTEGER NOT NULL CHECK (balance >= 0),
    status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    version INTEGER NOT NULL,
    opened_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX accounts_by_customer ON accounts (customer_id);

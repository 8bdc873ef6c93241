-- The transaction ledger: one entry per account change, append-only.
CREATE TABLE ledger (
    entry_id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    request_id TEXT NOT NULL,
    account_no TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('open', 'deposit', 'withdraw', 'close')),
    amount INTEGER NOT NULL CHECK (amount >= 0),
    -- What the entry adds to the balance: +amount for open and deposit, -amount for withdraw.
    signed_amount INTEGER NOT NULL,
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    version INTEGER NOT NULL,
    occurred_at TEXT NOT NULL,
    recorded_at INTEGER NOT NULL,
    UNIQUE (account_no, version)
);

CREATE TRIGGER ledger_is_append_only_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

CREATE TRIGGER ledger_is_append_only_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

-- PostgreSQL twin of ../sqlite/0001_init.sql: the same tables, PostgreSQL types.
-- The transaction ledger: one entry per account change, append-only.
CREATE TABLE ledger (
    entry_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    request_id TEXT NOT NULL,
    account_no TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('open', 'deposit', 'withdraw', 'close')),
    amount BIGINT NOT NULL CHECK (amount >= 0),
    -- What the entry adds to the balance: +amount for open and deposit, -amount for withdraw.
    signed_amount BIGINT NOT NULL,
    balance_after BIGINT NOT NULL CHECK (balance_after >= 0),
    version BIGINT NOT NULL,
    occurred_at TEXT NOT NULL,
    recorded_at BIGINT NOT NULL,
    UNIQUE (account_no, version)
);

CREATE FUNCTION ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only';
END;
$$;

CREATE TRIGGER ledger_is_append_only BEFORE UPDATE OR DELETE ON ledger
FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();

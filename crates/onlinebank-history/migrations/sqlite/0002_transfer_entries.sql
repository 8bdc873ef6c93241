-- The ledger takes a transfer's three items (transfer_out on the source, transfer_in on the
-- target, transfer_reversed when the money came back) and names each one's other account.
-- SQLite cannot change a CHECK in place: the table is rebuilt with every entry as it was (the
-- implicit delete of DROP TABLE fires no trigger) and its append-only triggers made again. The
-- previous release writes the same columns: it runs on this schema.
CREATE TABLE ledger_with_transfers (
    entry_id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    request_id TEXT NOT NULL,
    account_no TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('open', 'deposit', 'withdraw', 'close', 'transfer_out',
                                       'transfer_in', 'transfer_reversed')),
    amount INTEGER NOT NULL CHECK (amount >= 0),
    -- What the entry adds to the balance: +amount for open, deposit, transfer_in and
    -- transfer_reversed, -amount for withdraw and transfer_out.
    signed_amount INTEGER NOT NULL,
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    version INTEGER NOT NULL,
    occurred_at TEXT NOT NULL,
    recorded_at INTEGER NOT NULL,
    counterpart_account_no TEXT,
    UNIQUE (account_no, version)
);
INSERT INTO ledger_with_transfers (entry_id, event_id, request_id, account_no, customer_id, kind,
                                   amount, signed_amount, balance_after, version, occurred_at,
                                   recorded_at)
SELECT entry_id, event_id, request_id, account_no, customer_id, kind, amount, signed_amount,
       balance_after, version, occurred_at, recorded_at
FROM ledger ORDER BY entry_id;
DROP TABLE ledger;
ALTER TABLE ledger_with_transfers RENAME TO ledger;

CREATE TRIGGER ledger_is_append_only_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

CREATE TRIGGER ledger_is_append_only_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

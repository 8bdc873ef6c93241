-- PostgreSQL twin of ../sqlite/0002_transfer_entries.sql.
-- The ledger takes a transfer's three items (transfer_out on the source, transfer_in on the
-- target, transfer_reversed when the money came back) and names each one's other account. The
-- previous release writes the same columns: it runs on this schema.
ALTER TABLE ledger DROP CONSTRAINT ledger_kind_check;
ALTER TABLE ledger ADD CONSTRAINT ledger_kind_check
    CHECK (kind IN ('open', 'deposit', 'withdraw', 'close', 'transfer_out', 'transfer_in',
                    'transfer_reversed'));
ALTER TABLE ledger ADD COLUMN counterpart_account_no TEXT;

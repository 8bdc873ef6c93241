-- PostgreSQL twin of ../sqlite/0002_transfer_counterpart.sql.
-- A transfer's other account on each of its items (transfer_out, transfer_in,
-- transfer_reversed); NULL for every other item. An added nullable column: the previous
-- release runs on this schema.
ALTER TABLE transactions_view ADD COLUMN counterpart_account_no TEXT;

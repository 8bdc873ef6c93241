-- PostgreSQL twin of ../sqlite/0003_transfer_target.sql.
-- A transfer's target account (NULL for every other kind of request; account_no is a transfer's
-- source). An added nullable column: the previous release runs on this schema.
ALTER TABLE requests ADD COLUMN to_account_no TEXT;

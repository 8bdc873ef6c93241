-- PostgreSQL twin of ../sqlite/0002_allowed_today.sql.
-- For a request refused with daily_limit_exceeded: the won that could still leave the account
-- that day, answered as allowedToday. NULL for every other refusal. An added nullable column:
-- the previous release runs on this schema.
ALTER TABLE cancelled_requests ADD COLUMN allowed_today BIGINT;

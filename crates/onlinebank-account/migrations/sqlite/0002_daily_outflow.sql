-- What left each account on its last day with withdrawals, for the daily limit (--daily-limit,
-- per day of the bank's calendar, --time-zone). NULL: nothing yet. Added columns only: the
-- previous release runs on this schema (it leaves them as they are).
ALTER TABLE accounts ADD COLUMN outflow_day TEXT;
ALTER TABLE accounts ADD COLUMN outflow_won INTEGER;

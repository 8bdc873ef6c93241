-- The won of each account's transfers out that are debited but not yet credited or reversed
-- (the transfer's second leg is still to come). An account with money in flight cannot be closed,
-- so a reversal always finds its source open. An added column with a default: the previous
-- release runs on this schema (it leaves the column as it is).
ALTER TABLE accounts ADD COLUMN in_flight INTEGER NOT NULL DEFAULT 0;

-- The bus's tables in every publishing or consuming role's own database, applied after the
-- role's migrations (numbered from 1001 so they sort after any role's own). Before they were
-- migrations, the roles created them at start-up: IF NOT EXISTS keeps such a database as it is.

-- Events written in the caller's transaction, shipped to the bus by the relay, then deleted.
CREATE TABLE IF NOT EXISTS outbox (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The last sequence number given to each aggregate (account) by this publisher.
CREATE TABLE IF NOT EXISTS aggregate_sequences (
    aggregate TEXT PRIMARY KEY,
    last BIGINT NOT NULL
);

-- Events this consumer has applied, so a redelivery is applied once.
CREATE TABLE IF NOT EXISTS inbox (
    event_id TEXT PRIMARY KEY,
    processed_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_by_time ON inbox (processed_at);

-- Every statement that inserts into the outbox announces it on the channel of the role's schema
-- (delivered when the transaction commits), so every replica's relay wakes.
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('onlinebank_outbox_' || current_schema(), '');
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER outbox_notify AFTER INSERT ON outbox
FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

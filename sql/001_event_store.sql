-- The event store: every fact the system knows, in one append-only table. It is also the outbox
-- that the relay publishes to RabbitMQ.
CREATE TABLE events (
    position       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id       uuid        NOT NULL UNIQUE,
    stream_id      text        NOT NULL,
    version        integer     NOT NULL CHECK (version > 0),
    type           text        NOT NULL,
    data           jsonb       NOT NULL,
    correlation_id uuid        NOT NULL,
    causation_id   uuid,
    actor          text,
    schema_version smallint    NOT NULL DEFAULT 1,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    -- The id of the transaction that wrote the row. Positions are taken at insert but become visible
    -- at commit, so "position > checkpoint" skips rows of slow transactions. Readers instead take only
    -- rows whose transaction is below the snapshot's xmin (every such transaction has ended, so no
    -- row can still appear there) and order by (tx_id, position).
    tx_id          bigint      NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    UNIQUE (stream_id, version)
);

CREATE INDEX events_commit_order ON events (tx_id, position);
CREATE INDEX events_type ON events (type, position);
CREATE INDEX events_correlation ON events (correlation_id);

-- Where each reader (the relay, each projection) has got to, in (tx_id, position) order.
CREATE TABLE checkpoints (
    name       text PRIMARY KEY,
    tx_id      bigint      NOT NULL DEFAULT 0,
    position   bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Wakes the relay early; its polling remains the truth, so a lost notification only costs latency.
CREATE FUNCTION notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('orders_events', '');
    RETURN NULL;
END $$;

CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_events();

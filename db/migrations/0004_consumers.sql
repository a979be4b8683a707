-- +goose Up
-- The consumer kit's bookkeeping (events/consumer), for every bounded
-- context that consumes events in this database. Each context's handler
-- writes its own tables in the same transaction as these rows, so an event
-- takes effect exactly once per consumer.

-- inbox holds every event a consumer has taken: a redelivered event finds
-- its row and is acknowledged without a second effect. event_id is the
-- CloudEvents id, which any producer may choose, so it is text.
CREATE TABLE inbox (
    consumer    text NOT NULL,
    event_id    text NOT NULL,
    event_type  text NOT NULL,
    source      text NOT NULL,
    subject     text NOT NULL DEFAULT '',
    sequence    bigint NOT NULL DEFAULT 0,
    -- Where the event was read from: its stream and stream sequence (for a
    -- redriven or replayed event, the original ones).
    stream      text NOT NULL,
    stream_seq  bigint NOT NULL,
    -- applied: the handler ran; stale: older than what the consumer had
    -- already applied of the aggregate, taken without effect; skipped: an
    -- operator redrove it from the dead letters as a skip.
    outcome     text NOT NULL DEFAULT 'applied' CHECK (outcome IN ('applied', 'stale', 'skipped')),
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX inbox_received_idx ON inbox (consumer, received_at);

-- inbox_sequences is, per ordered consumer and aggregate (ce-source +
-- ce-subject), the ce-sequence of the last event it took, so that an event
-- whose predecessor it has not taken is held back. The row is also the lock
-- that serialises one aggregate's events across concurrent consumers.
CREATE TABLE inbox_sequences (
    consumer      text NOT NULL,
    source        text NOT NULL,
    subject       text NOT NULL,
    last_sequence bigint NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, source, subject)
);

-- +goose Down
DROP TABLE inbox_sequences;
DROP TABLE inbox;

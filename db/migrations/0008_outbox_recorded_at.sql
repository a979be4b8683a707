-- +goose Up
-- When an outbox row was written: the start of the statement that wrote it,
-- inside the writing transaction. occurred_at is when the event happened,
-- which can be well before: an order.placed event happens when the API
-- takes the order, and its row is written once the workflow has started and
-- recorded it. Publish lag and queue age count from recorded_at.
ALTER TABLE outbox_events ADD COLUMN recorded_at timestamptz NOT NULL DEFAULT statement_timestamp();

-- +goose Down
ALTER TABLE outbox_events DROP COLUMN recorded_at;

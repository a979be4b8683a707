-- +goose Up
-- When an outbox row was written: the start of the statement that wrote it,
-- inside the writing transaction, on the database's clock. occurred_at is
-- when the event happened, which can be well before: an order.placed event
-- happens when the API takes the order, and its row is written once the
-- workflow has started and recorded it. Publish lag and queue age count
-- from recorded_at. Rows written before this migration have none (NULL):
-- the default is set after the column is added, so that they are not all
-- stamped with the migration's time, and readers fall back to occurred_at.
ALTER TABLE outbox_events ADD COLUMN recorded_at timestamptz;
ALTER TABLE outbox_events ALTER COLUMN recorded_at SET DEFAULT statement_timestamp();

-- +goose Down
ALTER TABLE outbox_events DROP COLUMN recorded_at;

-- +goose Up
-- The relay deletes published rows once they are older than the retention
-- period, and reports the publish lag of the latest ones: both read
-- published rows by published_at.
CREATE INDEX outbox_events_published_idx ON outbox_events (published_at) WHERE published_at IS NOT NULL;

-- +goose Down
DROP INDEX outbox_events_published_idx;

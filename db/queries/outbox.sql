-- name: InsertOutboxEvent :execrows
INSERT INTO outbox_events (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload, headers, occurred_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (event_id) DO NOTHING;

-- name: ListAggregateOutboxEvents :many
SELECT * FROM outbox_events
WHERE aggregate_type = $1 AND aggregate_id = $2
ORDER BY aggregate_version;

-- name: CountUnpublishedOutboxEvents :one
SELECT count(*) FROM outbox_events WHERE published_at IS NULL;

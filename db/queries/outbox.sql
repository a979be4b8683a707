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

-- The outbox relay's queries (events/relay). They run on the relay's own
-- connection, the one holding the advisory lock.

-- name: TryRelayLock :one
-- Takes the session-level advisory lock that elects the active relay; it
-- is held until released or until the session ends.
SELECT pg_try_advisory_lock(@key::bigint) AS locked;

-- name: ReleaseRelayLock :one
SELECT pg_advisory_unlock(@key::bigint) AS released;

-- name: SetRelaySessionKeepalives :exec
-- Makes the server notice within seconds that the active relay's host is
-- gone (no FIN ever arrives), so that its session ends, the lock is
-- released and a standby takes over. Without it, the kernel default (two
-- hours) applies. Ignored on a Unix-domain socket.
SELECT set_config('tcp_keepalives_idle', '2', false),
       set_config('tcp_keepalives_interval', '1', false),
       set_config('tcp_keepalives_count', '2', false);

-- name: ClaimOutboxBatch :many
-- The oldest unpublished rows, in id order. No row locks: the advisory lock
-- already makes this relay the only claimer (see events/relay).
SELECT id, event_id, aggregate_type, aggregate_id, aggregate_version, event_type,
       payload, headers, occurred_at
FROM outbox_events
WHERE published_at IS NULL
ORDER BY id
LIMIT @max_rows;

-- name: MarkOutboxPublished :execrows
UPDATE outbox_events
SET published_at = @published_at::timestamptz, attempts = attempts + 1
WHERE id = ANY(@ids::bigint[]) AND published_at IS NULL;

-- name: RecordOutboxFailures :execrows
UPDATE outbox_events AS o
SET attempts = o.attempts + 1, last_error = f.last_error
FROM (SELECT unnest(@ids::bigint[]) AS id, unnest(@errors::text[]) AS last_error) AS f
WHERE o.id = f.id AND o.published_at IS NULL;

-- name: DeletePublishedOutboxEvents :execrows
-- One bounded chunk of the retention delete, oldest first.
DELETE FROM outbox_events AS o
WHERE o.id IN (
    SELECT p.id FROM outbox_events AS p
    WHERE p.published_at < @published_before::timestamptz
    ORDER BY p.published_at
    LIMIT @max_rows
);

-- name: OutboxBacklog :one
SELECT count(*) AS backlog,
       count(*) FILTER (WHERE attempts > 0) AS failing
FROM outbox_events
WHERE published_at IS NULL;

-- name: OldestUnpublishedOutboxEvent :one
-- The head of the relay's queue.
SELECT id, occurred_at, attempts, last_error
FROM outbox_events
WHERE published_at IS NULL
ORDER BY id
LIMIT 1;

-- name: OutboxPublishLag :one
-- Publish lag (published_at - occurred_at) of the most recent rows
-- published since @since, at most @max_rows of them.
SELECT count(*) AS events,
       coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), 0)::float8 AS p50_seconds,
       coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY lag), 0)::float8 AS p99_seconds,
       coalesce(max(lag), 0)::float8 AS max_seconds
FROM (
    SELECT extract(epoch FROM published_at - occurred_at) AS lag
    FROM outbox_events
    WHERE published_at >= @since::timestamptz
    ORDER BY published_at DESC
    LIMIT @max_rows
) AS recent;

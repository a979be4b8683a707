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
-- is held until the session ends: the relay discards the session to give
-- it up.
SELECT pg_try_advisory_lock(@key::bigint) AS locked;

-- name: SetRelaySessionKeepalives :exec
-- Makes the server notice within seconds that the active relay's host is
-- gone (no FIN ever arrives), so that its session ends, the lock is
-- released and a standby takes over. Without it, the kernel default (two
-- hours) applies. Ignored on a Unix-domain socket.
SELECT set_config('tcp_keepalives_idle', '2', false),
       set_config('tcp_keepalives_interval', '1', false),
       set_config('tcp_keepalives_count', '2', false);

-- name: SetRelaySessionAsyncCommit :exec
-- The relay's own commits (rows marked published, failures recorded, old
-- rows deleted) do not wait for their WAL to reach the disk. An OS crash or
-- power loss can then lose the last few hundred milliseconds of them, and
-- all that costs is that the next active relay publishes those rows again,
-- which the stream drops as duplicates (Nats-Msg-Id is the event ID, within
-- the duplicate window) and consumers' inboxes would drop anyway. Waiting
-- for the flush made every batch wait for an fsync before the next claim,
-- and the events committed meanwhile with it. The writers' commits, the
-- events themselves, stay synchronous.
SELECT set_config('synchronous_commit', 'off', false);

-- name: ClaimOutboxBatch :many
-- The oldest unpublished rows, in id order, but for @marking: the rows of
-- the previous batch, acknowledged by the stream and not marked yet; the
-- relay marks them on this session right after this claim, while it
-- sends the new batch. No row locks: the advisory lock already makes this
-- relay the only claimer (see events/relay). NOT IN over a subquery is a
-- hashed subplan whatever the plan; id <> ALL(@marking) compares each row
-- with every element under a generic plan.
SELECT id, event_id, aggregate_type, aggregate_id, aggregate_version, event_type,
       payload, headers, occurred_at
FROM outbox_events
WHERE published_at IS NULL
  AND id NOT IN (SELECT unnest(@marking::bigint[]))
ORDER BY id
LIMIT @max_rows;

-- name: MarkOutboxPublished :execrows
-- published_at is when the stream acknowledged the batch's last row, on the
-- database's clock (@acked_ago_seconds before this statement), so that
-- every relay, whatever its host's clock, writes times of one clock: the
-- re-publish window is computed from them (see events/relay).
UPDATE outbox_events
SET published_at = statement_timestamp() - make_interval(secs => @acked_ago_seconds::float8),
    attempts = attempts + 1
WHERE id = ANY(@ids::bigint[]) AND published_at IS NULL;

-- name: MarkOutboxRepublished :execrows
-- Rows the relay published again because the stream had lost them: their
-- published_at moves to the new acknowledgement, as in
-- MarkOutboxPublished, so that the re-publish window after a later crash
-- covers them again.
UPDATE outbox_events
SET published_at = statement_timestamp() - make_interval(secs => @acked_ago_seconds::float8),
    attempts = attempts + 1
WHERE id = ANY(@ids::bigint[]) AND published_at IS NOT NULL;

-- name: LatestOutboxPublication :one
-- When the relay last published: after a crash of NATS or of the relay,
-- about the time of the crash.
SELECT coalesce(max(published_at), 'epoch')::timestamptz AS latest, (max(published_at) IS NOT NULL)::boolean AS found
FROM outbox_events
WHERE published_at IS NOT NULL;

-- name: OutboxPublishedSince :one
-- The id range and count of the rows published at or after @since.
SELECT coalesce(min(id), 0)::bigint AS first_id,
       coalesce(max(id), 0)::bigint AS last_id,
       count(*) AS rows
FROM outbox_events
WHERE published_at >= @since::timestamptz;

-- name: ListOutboxPublishedSince :many
-- One page, in id order, of the rows published at or after @since, with
-- ids in (@after_id, @last_id].
SELECT id, event_id, aggregate_type, aggregate_id, aggregate_version, event_type,
       payload, headers, occurred_at
FROM outbox_events
WHERE id > @after_id AND id <= @last_id AND published_at >= @since::timestamptz
ORDER BY id
LIMIT @max_rows;

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
-- The head of the relay's queue, and how long it has waited, on the
-- database's clock.
SELECT id, occurred_at, coalesce(recorded_at, occurred_at)::timestamptz AS recorded_at,
       extract(epoch FROM statement_timestamp() - coalesce(recorded_at, occurred_at))::float8 AS age_seconds,
       attempts, last_error
FROM outbox_events
WHERE published_at IS NULL
ORDER BY id
LIMIT 1;

-- name: OutboxPublishLag :one
-- Publish lag (published_at - recorded_at: from the row's write to the
-- stream's acknowledgement) of the most recent rows published since
-- @since, at most @max_rows of them.
SELECT count(*) AS events,
       coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), 0)::float8 AS p50_seconds,
       coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY lag), 0)::float8 AS p99_seconds,
       coalesce(max(lag), 0)::float8 AS max_seconds
FROM (
    SELECT extract(epoch FROM published_at - coalesce(recorded_at, occurred_at)) AS lag
    FROM outbox_events
    WHERE published_at >= @since::timestamptz
    ORDER BY published_at DESC
    LIMIT @max_rows
) AS recent;

-- name: OutboxRecordedAt :many
-- When the rows of the given events were written: the bench's commit ->
-- delivery lag counts from there.
SELECT event_id, coalesce(recorded_at, occurred_at)::timestamptz AS recorded_at
FROM outbox_events WHERE event_id = ANY(@event_ids::uuid[]);

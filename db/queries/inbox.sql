-- name: InsertInbox :execrows
-- Takes an event for a consumer; no row means the consumer already took it.
-- A concurrent insert of the same event waits here until the first
-- transaction ends, so two deliveries of one event never both apply.
INSERT INTO inbox (consumer, event_id, event_type, source, subject, sequence, stream, stream_seq)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (consumer, event_id) DO NOTHING;

-- name: SetInboxOutcome :exec
UPDATE inbox SET outcome = $3 WHERE consumer = $1 AND event_id = $2;

-- name: LockInboxSequence :one
-- Locks the aggregate's row for the rest of the transaction and returns the
-- last sequence the consumer took; 0 for an aggregate it has never seen (the
-- row is then new, and rolled back unless the event is taken).
INSERT INTO inbox_sequences (consumer, source, subject, last_sequence)
VALUES ($1, $2, $3, 0)
ON CONFLICT (consumer, source, subject) DO UPDATE SET consumer = EXCLUDED.consumer
RETURNING last_sequence;

-- name: SetInboxSequence :exec
UPDATE inbox_sequences SET last_sequence = $4, updated_at = now()
WHERE consumer = $1 AND source = $2 AND subject = $3;


-- name: InboxHas :one
-- Whether the consumer took the event already (with any outcome).
SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer = $1 AND event_id = $2) AS taken;

-- name: DeleteOldInbox :execrows
-- Deletes up to max_rows of the consumer's inbox rows taken before the
-- cutoff (the inbox retention), oldest first.
DELETE FROM inbox d
WHERE d.consumer = sqlc.arg(consumer) AND d.received_at < sqlc.arg(before)
  AND (d.consumer, d.event_id) IN (
    SELECT i.consumer, i.event_id FROM inbox i
    WHERE i.consumer = sqlc.arg(consumer) AND i.received_at < sqlc.arg(before)
    ORDER BY i.received_at
    LIMIT sqlc.arg(max_rows)
);

-- name: DeleteIdleInboxSequences :execrows
-- Deletes up to max_rows of an ordered consumer's aggregate rows last
-- moved before the cutoff. A row an event is moving now is locked; the
-- delete waits for it, then checks the outer condition again on the row
-- as moved, and leaves it.
DELETE FROM inbox_sequences d
WHERE d.consumer = sqlc.arg(consumer) AND d.updated_at < sqlc.arg(before)
  AND (d.consumer, d.source, d.subject) IN (
    SELECT s.consumer, s.source, s.subject FROM inbox_sequences s
    WHERE s.consumer = sqlc.arg(consumer) AND s.updated_at < sqlc.arg(before)
    ORDER BY s.updated_at
    LIMIT sqlc.arg(max_rows)
);

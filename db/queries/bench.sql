-- name: InsertOutboxEventsBulk :execrows
-- Commits many events in one statement: the relay drain benchmark's
-- backlog. The arrays are zipped row by row, in order.
INSERT INTO outbox_events (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload, occurred_at)
SELECT unnest(@event_ids::uuid[]), @aggregate_type::text, unnest(@aggregate_ids::text[]), unnest(@versions::bigint[]),
       @event_type::text, unnest(@payloads::text[])::jsonb, now();

-- name: ServerVersion :one
SELECT current_setting('server_version')::text;

-- name: InsertOrder :execrows
INSERT INTO orders (id, customer_id, restaurant_id, delivery_address, status, total_cents, accept_by, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
ON CONFLICT (id) DO NOTHING;

-- name: InsertOrderItem :exec
INSERT INTO order_items (order_id, line, menu_item_id, name, unit_price_cents, quantity)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (order_id, line) DO NOTHING;

-- name: GetOrder :one
SELECT * FROM orders WHERE id = $1;

-- name: ListOrderItems :many
SELECT * FROM order_items WHERE order_id = $1 ORDER BY line;

-- name: ListRestaurantOrders :many
SELECT * FROM orders
WHERE restaurant_id = @restaurant_id
  AND (sqlc.narg(status)::text IS NULL OR status = sqlc.narg(status)::text)
ORDER BY created_at, id
LIMIT @max_rows;

-- name: InsertTimeline :exec
INSERT INTO order_timeline (order_id, version, event_id, event_type, status, reason, occurred_at)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: ListOrderTimeline :many
SELECT * FROM order_timeline WHERE order_id = $1 ORDER BY version;

-- name: LockOrder :one
SELECT * FROM orders WHERE id = $1 FOR UPDATE;

-- name: TimelineHasEvent :one
-- Run after LockOrder, in a statement of its own: a statement's snapshot is
-- taken when it starts, so only a check that starts after the lock is
-- granted sees the event a concurrent retry committed while we waited.
SELECT EXISTS (SELECT 1 FROM order_timeline WHERE event_id = $1);

-- name: RecordStep :one
-- Records one step of a locked order in one statement: bumps its version
-- and sets its status, and writes the timeline row and the outbox row under
-- the new version. outbox_rows is 0 when the event was in the outbox
-- already, which the timeline check before it makes a bug.
WITH adv AS (
    UPDATE orders
    SET version = version + 1, status = @status, reason = @reason, updated_at = @occurred_at
    WHERE orders.id = @id
    RETURNING orders.id, orders.version
), tl AS (
    INSERT INTO order_timeline (order_id, version, event_id, event_type, status, reason, occurred_at)
    SELECT adv.id, adv.version, @event_id, @event_type, @status, @event_reason, @occurred_at FROM adv
), ob AS (
    INSERT INTO outbox_events (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload, headers, occurred_at)
    SELECT @event_id, @aggregate_type, adv.id::text, adv.version, @event_type, @payload, @headers, @occurred_at FROM adv
    ON CONFLICT (event_id) DO NOTHING
    RETURNING outbox_events.id
)
SELECT adv.version, (SELECT count(*) FROM ob) AS outbox_rows FROM adv;

-- name: InsertOrder :execrows
INSERT INTO orders (id, customer_id, restaurant_id, delivery_address, status, total_cents, accept_by, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
ON CONFLICT (id) DO NOTHING;

-- name: InsertOrderItem :exec
INSERT INTO order_items (order_id, line, menu_item_id, name, unit_price_cents, quantity)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (order_id, line) DO NOTHING;

-- name: LockOrder :one
SELECT * FROM orders WHERE id = $1 FOR UPDATE;

-- name: GetOrder :one
SELECT * FROM orders WHERE id = $1;

-- name: AdvanceOrder :one
-- Bumps the version of a locked order and sets its status; the caller
-- writes the matching timeline and outbox rows in the same transaction.
UPDATE orders
SET version = version + 1, status = $2, reason = $3, updated_at = $4
WHERE id = $1
RETURNING version;

-- name: ListOrderItems :many
SELECT * FROM order_items WHERE order_id = $1 ORDER BY line;

-- name: ListRestaurantOrders :many
SELECT * FROM orders
WHERE restaurant_id = @restaurant_id
  AND (sqlc.narg(status)::text IS NULL OR status = sqlc.narg(status)::text)
ORDER BY created_at, id
LIMIT @max_rows;

-- name: TimelineHasEvent :one
SELECT EXISTS (SELECT 1 FROM order_timeline WHERE event_id = $1);

-- name: InsertTimeline :exec
INSERT INTO order_timeline (order_id, version, event_id, event_type, status, reason, occurred_at)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: ListOrderTimeline :many
SELECT * FROM order_timeline WHERE order_id = $1 ORDER BY version;

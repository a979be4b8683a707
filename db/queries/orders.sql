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

-- name: ListOrderWithItems :many
-- An order with its items, one row per item, in one round trip; no rows
-- for an unknown order (a recorded order has at least one item).
SELECT sqlc.embed(orders), sqlc.embed(order_items)
FROM orders JOIN order_items ON order_items.order_id = orders.id
WHERE orders.id = $1
ORDER BY order_items.line;

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

-- name: TimelineHasEvent :one
-- Whether an event is on an order's timeline: asked, after ApplyStep wrote
-- nothing, to tell a step already applied from an unknown order.
SELECT EXISTS (SELECT 1 FROM order_timeline WHERE event_id = $1);

-- name: PlaceOrder :one
-- Records a new order in one statement, and so in one transaction: the
-- order at version 1, its items (line i+1 is element i of the arrays), and
-- order.placed on its timeline and in the outbox. An order already
-- recorded (a retried activity) hits the conflict and nothing is written:
-- placed is 0.
WITH o AS (
    INSERT INTO orders (id, customer_id, restaurant_id, delivery_address, status, total_cents, accept_by, version, created_at, updated_at)
    VALUES (@id, @customer_id, @restaurant_id, @delivery_address, @status, @total_cents, @accept_by, 1, @placed_at, @placed_at)
    ON CONFLICT (id) DO NOTHING
    RETURNING orders.id, orders.version, orders.status
), items AS (
    INSERT INTO order_items (order_id, line, menu_item_id, name, unit_price_cents, quantity)
    SELECT o.id, g.n, (@item_menu_item_ids::text[])[g.n], (@item_names::text[])[g.n],
           (@item_unit_price_cents::bigint[])[g.n], (@item_quantities::int[])[g.n]
    FROM o, generate_subscripts(@item_menu_item_ids::text[], 1) AS g (n)
), tl AS (
    INSERT INTO order_timeline (order_id, version, event_id, event_type, status, reason, occurred_at)
    SELECT o.id, o.version, @event_id, @event_type, o.status, '', @placed_at FROM o
), ob AS (
    INSERT INTO outbox_events (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload, headers, occurred_at)
    SELECT @event_id, @aggregate_type, o.id::text, o.version, @event_type, @payload, @headers, @placed_at FROM o
)
SELECT count(*) AS placed FROM o;

-- name: ApplyStep :one
-- Applies one step of an order in one statement, and so in one
-- transaction: it bumps the order's version (taking its row lock, so that
-- version order is commit order) and, when @status is not empty, sets its
-- status and reason; when @payment_status is not empty it upserts the
-- order's payment; and it writes the timeline row and the outbox row under
-- the new version. The event's payload is @payload with the order's status,
-- customer and restaurant taken from the updated row.
--
-- An order whose status is in @closed_statuses matches no row either: the
-- caller passes the final statuses for a step that must not come after the
-- end (one that sets a status, or authorizes or captures the payment: an
-- attempt the workflow stopped waiting for when it was cancelled), and none
-- for the compensations and notices that come after it.
--
-- A step whose event is already on the timeline (a retried activity)
-- matches no row and writes nothing. A concurrent retry that commits the
-- same event while this statement waits for the row lock is not seen by
-- the NOT EXISTS (its snapshot is older), but then the timeline's or the
-- outbox's unique event_id fails the statement, and again nothing is
-- written.
WITH adv AS (
    UPDATE orders
    SET version    = orders.version + 1,
        status     = CASE WHEN @status::text = '' THEN orders.status ELSE @status::text END,
        reason     = CASE WHEN @status::text = '' THEN orders.reason ELSE @reason::text END,
        updated_at = @occurred_at
    WHERE orders.id = @id
      AND orders.status <> ALL(@closed_statuses::text[])
      AND NOT EXISTS (SELECT 1 FROM order_timeline t WHERE t.event_id = @event_id)
    RETURNING orders.id, orders.version, orders.status, orders.customer_id, orders.restaurant_id
), pay AS (
    INSERT INTO payments (order_id, authorization_id, amount_cents, status, updated_at)
    SELECT adv.id, @authorization_id::text, @amount_cents::bigint, @payment_status::text, @occurred_at
    FROM adv
    WHERE @payment_status::text <> ''
    ON CONFLICT (order_id) DO UPDATE
    SET authorization_id = EXCLUDED.authorization_id, status = EXCLUDED.status,
        decline_reason = EXCLUDED.decline_reason, updated_at = EXCLUDED.updated_at
), ev AS (
    SELECT adv.id, adv.version, adv.status,
           @payload::jsonb || jsonb_build_object('status', adv.status, 'customer_id', adv.customer_id, 'restaurant_id', adv.restaurant_id) AS payload
    FROM adv
), tl AS (
    INSERT INTO order_timeline (order_id, version, event_id, event_type, status, reason, occurred_at)
    SELECT ev.id, ev.version, @event_id, @event_type, ev.status, @event_reason, @occurred_at FROM ev
), ob AS (
    INSERT INTO outbox_events (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload, headers, occurred_at)
    SELECT @event_id, @aggregate_type, ev.id::text, ev.version, @event_type, ev.payload, @headers, @occurred_at FROM ev
)
SELECT ev.version FROM ev;

-- name: ListRestaurants :many
SELECT * FROM restaurants ORDER BY name;

-- name: GetRestaurant :one
SELECT * FROM restaurants WHERE id = $1;

-- name: UpsertRestaurant :exec
INSERT INTO restaurants (id, name, accept_timeout_seconds)
VALUES ($1, $2, $3)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, accept_timeout_seconds = EXCLUDED.accept_timeout_seconds;

-- name: ListMenuItems :many
SELECT * FROM menu_items WHERE restaurant_id = $1 ORDER BY name;

-- name: UpsertMenuItem :exec
INSERT INTO menu_items (id, restaurant_id, name, price_cents, available)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, price_cents = EXCLUDED.price_cents, available = EXCLUDED.available;

-- name: GetPlacementRefs :many
-- What POST /v1/orders reads before it starts a workflow, in one round
-- trip: whether the customer exists, the restaurant (restaurant_found),
-- whether an order with the ID derived from the request's key exists
-- already (a retry), and the requested menu items that exist, one row
-- each: a single row with menu_item_found false when none does.
SELECT EXISTS (SELECT 1 FROM customers c WHERE c.id = @customer_id) AS customer_found,
       EXISTS (SELECT 1 FROM orders o WHERE o.id = @order_id) AS order_found,
       (r.id IS NOT NULL)::boolean AS restaurant_found,
       coalesce(r.name, '')::text AS restaurant_name,
       coalesce(r.accept_timeout_seconds, 0)::int AS restaurant_accept_timeout_seconds,
       (m.id IS NOT NULL)::boolean AS menu_item_found,
       coalesce(m.id, '')::text AS menu_item_id,
       coalesce(m.restaurant_id, '')::text AS menu_item_restaurant_id,
       coalesce(m.name, '')::text AS menu_item_name,
       coalesce(m.price_cents, 0)::bigint AS menu_item_price_cents,
       coalesce(m.available, false)::boolean AS menu_item_available
FROM (SELECT 1) AS one
LEFT JOIN restaurants r ON r.id = @restaurant_id
LEFT JOIN menu_items m ON m.id = ANY(@menu_item_ids::text[]);

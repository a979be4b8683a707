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

-- name: GetMenuItems :many
SELECT * FROM menu_items WHERE id = ANY(@ids::text[]);

-- name: UpsertMenuItem :exec
INSERT INTO menu_items (id, restaurant_id, name, price_cents, available)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, price_cents = EXCLUDED.price_cents, available = EXCLUDED.available;

-- name: GetAnalyticsOrder :one
SELECT * FROM analytics.orders WHERE order_id = $1;

-- name: InsertAnalyticsOrder :execrows
INSERT INTO analytics.orders (order_id, restaurant_id, day, placed_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (order_id) DO NOTHING;

-- name: SetAnalyticsOrderAccepted :exec
UPDATE analytics.orders
SET accepted_at = @accepted_at, accept_ms = sqlc.narg(accept_ms), outcome = 'accepted'
WHERE order_id = @order_id;

-- name: SetAnalyticsOrderNotified :exec
UPDATE analytics.orders SET notified = true WHERE order_id = $1;

-- name: SetAnalyticsOrderOutcome :exec
UPDATE analytics.orders SET outcome = $2 WHERE order_id = $1;

-- name: CountRestaurantDay :exec
-- Adds one to a counter of a restaurant's day; the counter is named by
-- @counter, one of placed, accepted, rejected, timed_out, cancelled.
INSERT INTO analytics.restaurant_days AS d (restaurant_id, day, placed, accepted, rejected, timed_out, cancelled)
VALUES (
    @restaurant_id, @day,
    (@counter::text = 'placed')::int,
    (@counter::text = 'accepted')::int,
    (@counter::text = 'rejected')::int,
    (@counter::text = 'timed_out')::int,
    (@counter::text = 'cancelled')::int
)
ON CONFLICT (restaurant_id, day) DO UPDATE SET
    placed    = d.placed + EXCLUDED.placed,
    accepted  = d.accepted + EXCLUDED.accepted,
    rejected  = d.rejected + EXCLUDED.rejected,
    timed_out = d.timed_out + EXCLUDED.timed_out,
    cancelled = d.cancelled + EXCLUDED.cancelled;

-- name: ListRestaurantDays :many
SELECT * FROM analytics.restaurant_days
WHERE restaurant_id = @restaurant_id AND day BETWEEN @from_day AND @to_day
ORDER BY day;

-- name: ListRestaurantAcceptMedians :many
-- The median time to accept per day, over the orders whose placement and
-- acceptance the projection both saw.
SELECT day, (percentile_cont(0.5) WITHIN GROUP (ORDER BY accept_ms))::float8 AS median_ms
FROM analytics.orders
WHERE restaurant_id = @restaurant_id AND day BETWEEN @from_day AND @to_day AND accept_ms IS NOT NULL
GROUP BY day
ORDER BY day;

-- name: RestaurantAcceptMedian :one
-- The median time to accept over a range of days; n = 0 when there is none.
SELECT count(accept_ms) AS n,
       COALESCE(percentile_cont(0.5) WITHIN GROUP (ORDER BY accept_ms), 0)::float8 AS median_ms
FROM analytics.orders
WHERE restaurant_id = @restaurant_id AND day BETWEEN @from_day AND @to_day AND accept_ms IS NOT NULL;

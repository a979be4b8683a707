-- +goose Up
-- Whether the analytics projection saw the restaurant being notified of an
-- order (order.restaurant_notified). The order workflow emits
-- order.rejected also for a declined payment, before the restaurant hears
-- of the order: a rejection counts as the restaurant's only for an order it
-- was notified of. And a cancellation counts only before the acceptance:
-- an accepted order whose workflow is cancelled later stays accepted.
ALTER TABLE analytics.orders ADD COLUMN notified boolean NOT NULL DEFAULT false;

-- Backfill: the projection ignored order.restaurant_notified until now, but
-- the consumer kit's inbox recorded every one it took.
UPDATE analytics.orders o SET notified = true
FROM inbox i
WHERE i.consumer = 'analytics' AND i.source = '/orderflow/orders'
  AND i.event_type LIKE 'orderflow.order.restaurant\_notified.v%'
  AND i.outcome = 'applied'
  AND lower(i.subject) = o.order_id::text;

-- Repair the counts taken under the old rules. An order counted as
-- rejected although the restaurant was never notified of it:
UPDATE analytics.restaurant_days d SET rejected = d.rejected - x.n
FROM (
    SELECT restaurant_id, day, count(*) AS n FROM analytics.orders
    WHERE outcome = 'rejected' AND NOT notified
    GROUP BY restaurant_id, day
) x
WHERE d.restaurant_id = x.restaurant_id AND d.day = x.day;

-- An order counted as cancelled although it was accepted first, or
-- although the projection first saw it at its cancellation (so it cannot
-- tell; the row was made by that event: no placement, notification or
-- acceptance seen):
UPDATE analytics.restaurant_days d SET cancelled = d.cancelled - x.n
FROM (
    SELECT restaurant_id, day, count(*) AS n FROM analytics.orders
    WHERE outcome = 'cancelled'
      AND (accepted_at IS NOT NULL OR (placed_at IS NULL AND NOT notified))
    GROUP BY restaurant_id, day
) x
WHERE d.restaurant_id = x.restaurant_id AND d.day = x.day;

-- +goose Down
-- The counts stay repaired.
ALTER TABLE analytics.orders DROP COLUMN notified;

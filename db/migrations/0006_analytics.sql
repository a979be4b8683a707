-- +goose Up
-- The restaurant analytics context (package analytics): a projection of the
-- order events per restaurant and day, in a schema of its own. A day is the
-- UTC calendar day the order was placed on; every count of an order goes to
-- that day, even when the outcome came after midnight.
CREATE SCHEMA analytics;

-- One row per order the projection has seen: the day it counts on and how
-- long the restaurant took to accept it.
CREATE TABLE analytics.orders (
    order_id      uuid PRIMARY KEY,
    restaurant_id text NOT NULL,
    day           date NOT NULL,
    -- NULL when the projection never saw the order.placed event (it joined
    -- the stream after it).
    placed_at     timestamptz,
    accepted_at   timestamptz,
    -- Milliseconds from placed to accepted, when both are known.
    accept_ms     bigint,
    outcome       text NOT NULL DEFAULT ''
);
CREATE INDEX analytics_orders_accept_idx ON analytics.orders (restaurant_id, day) WHERE accept_ms IS NOT NULL;

-- The counts per restaurant and day.
CREATE TABLE analytics.restaurant_days (
    restaurant_id text NOT NULL,
    day           date NOT NULL,
    placed        integer NOT NULL DEFAULT 0,
    accepted      integer NOT NULL DEFAULT 0,
    rejected      integer NOT NULL DEFAULT 0,
    timed_out     integer NOT NULL DEFAULT 0,
    cancelled     integer NOT NULL DEFAULT 0,
    PRIMARY KEY (restaurant_id, day)
);

-- +goose Down
DROP SCHEMA analytics CASCADE;

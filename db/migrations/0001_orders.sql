-- +goose Up
-- The order context: restaurants and their menus, customers, orders with
-- their line items and timeline, the order's view of its payment,
-- notifications sent, and the transactional outbox.

CREATE TABLE restaurants (
    id                     text PRIMARY KEY,
    name                   text NOT NULL,
    accept_timeout_seconds integer NOT NULL DEFAULT 600 CHECK (accept_timeout_seconds > 0),
    created_at             timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE menu_items (
    id            text PRIMARY KEY,
    restaurant_id text NOT NULL REFERENCES restaurants (id),
    name          text NOT NULL,
    price_cents   bigint NOT NULL CHECK (price_cents > 0),
    available     boolean NOT NULL DEFAULT true
);
CREATE INDEX menu_items_restaurant_idx ON menu_items (restaurant_id);

CREATE TABLE customers (
    id    text PRIMARY KEY,
    name  text NOT NULL,
    email text NOT NULL UNIQUE
);

CREATE TABLE orders (
    id               uuid PRIMARY KEY,
    customer_id      text NOT NULL REFERENCES customers (id),
    restaurant_id    text NOT NULL REFERENCES restaurants (id),
    delivery_address text NOT NULL,
    status           text NOT NULL,
    reason           text NOT NULL DEFAULT '',
    total_cents      bigint NOT NULL CHECK (total_cents >= 0),
    accept_by        timestamptz NOT NULL,
    -- version is bumped, under the row lock, by every change that emits an
    -- event, so an order's events are numbered in commit order.
    version          bigint NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_restaurant_status_idx ON orders (restaurant_id, status, created_at);

CREATE TABLE order_items (
    order_id         uuid NOT NULL REFERENCES orders (id),
    line             integer NOT NULL,
    menu_item_id     text NOT NULL REFERENCES menu_items (id),
    name             text NOT NULL,
    unit_price_cents bigint NOT NULL,
    quantity         integer NOT NULL CHECK (quantity BETWEEN 1 AND 100),
    PRIMARY KEY (order_id, line)
);

-- Every event an order has emitted, kept for good (the outbox is pruned once
-- published). Its unique event_id makes a retried activity a no-op.
CREATE TABLE order_timeline (
    order_id    uuid NOT NULL REFERENCES orders (id),
    version     bigint NOT NULL,
    event_id    uuid NOT NULL UNIQUE,
    event_type  text NOT NULL,
    status      text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    occurred_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, version)
);

-- The order context's view of its payment; the gateway keeps its own ledger.
CREATE TABLE payments (
    order_id         uuid PRIMARY KEY REFERENCES orders (id),
    authorization_id text NOT NULL DEFAULT '',
    amount_cents     bigint NOT NULL,
    status           text NOT NULL,
    decline_reason   text NOT NULL DEFAULT '',
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE notifications (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    order_id        uuid NOT NULL,
    recipient       text NOT NULL CHECK (recipient IN ('restaurant', 'customer')),
    recipient_id    text NOT NULL,
    kind            text NOT NULL,
    message         text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_order_idx ON notifications (order_id, id);

CREATE TABLE outbox_events (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id          uuid NOT NULL UNIQUE,
    aggregate_type    text NOT NULL,
    aggregate_id      text NOT NULL,
    aggregate_version bigint NOT NULL,
    event_type        text NOT NULL,
    payload           jsonb NOT NULL,
    headers           jsonb,
    occurred_at       timestamptz NOT NULL DEFAULT now(),
    published_at      timestamptz,
    attempts          integer NOT NULL DEFAULT 0,
    last_error        text
);
CREATE INDEX outbox_events_unpublished_idx ON outbox_events (id) WHERE published_at IS NULL;
CREATE INDEX outbox_events_aggregate_idx ON outbox_events (aggregate_id, aggregate_version);

-- +goose Down
DROP TABLE outbox_events;
DROP TABLE notifications;
DROP TABLE payments;
DROP TABLE order_timeline;
DROP TABLE order_items;
DROP TABLE orders;
DROP TABLE customers;
DROP TABLE menu_items;
DROP TABLE restaurants;

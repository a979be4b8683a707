-- +goose Up
-- The promotions context (package promotions): it learns about orders only
-- from the order events it consumes, and keeps its own tables in a schema
-- of its own.
CREATE SCHEMA promotions;

-- A voucher thanks a customer for a completed order. order_id is unique:
-- exactly one voucher per order, whatever the redeliveries, enforced by the
-- database as well as by the consumer's inbox.
CREATE TABLE promotions.vouchers (
    code         text PRIMARY KEY,
    customer_id  text NOT NULL,
    order_id     uuid NOT NULL UNIQUE,
    amount_cents bigint NOT NULL CHECK (amount_cents > 0),
    issued_at    timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    -- The order.completed event the voucher was issued for.
    event_id     text NOT NULL
);
CREATE INDEX vouchers_customer_idx ON promotions.vouchers (customer_id, issued_at DESC);

-- +goose Down
DROP SCHEMA promotions CASCADE;

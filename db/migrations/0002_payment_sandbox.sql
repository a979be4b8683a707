-- +goose Up
-- The sandbox payment gateway's own books. In production these live at the
-- payment provider; the sandbox keeps them here so tests can audit them.

CREATE TABLE sandbox_authorizations (
    id              text PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    token           text NOT NULL,
    amount_cents    bigint NOT NULL,
    status          text NOT NULL CHECK (status IN ('authorized', 'declined', 'captured', 'voided', 'refunded')),
    decline_reason  text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Calls per idempotency key, so tok_transient can fail a set number of times.
CREATE TABLE sandbox_attempts (
    idempotency_key text PRIMARY KEY,
    attempts        integer NOT NULL
);

-- Money movements: a capture moves money from the customer, a refund back.
CREATE TABLE sandbox_ledger (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    authorization_id text NOT NULL REFERENCES sandbox_authorizations (id),
    entry            text NOT NULL CHECK (entry IN ('authorize', 'capture', 'void', 'refund')),
    amount_cents     bigint NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (authorization_id, entry)
);

-- +goose Down
DROP TABLE sandbox_ledger;
DROP TABLE sandbox_attempts;
DROP TABLE sandbox_authorizations;

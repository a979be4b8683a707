-- name: UpsertPayment :exec
INSERT INTO payments (order_id, authorization_id, amount_cents, status, decline_reason, updated_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (order_id) DO UPDATE
SET authorization_id = EXCLUDED.authorization_id, status = EXCLUDED.status,
    decline_reason = EXCLUDED.decline_reason, updated_at = EXCLUDED.updated_at;

-- name: GetPayment :one
SELECT * FROM payments WHERE order_id = $1;

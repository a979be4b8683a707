-- name: InsertVoucher :execrows
INSERT INTO promotions.vouchers (code, customer_id, order_id, amount_cents, issued_at, expires_at, event_id)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (order_id) DO NOTHING;

-- name: ListCustomerVouchers :many
SELECT * FROM promotions.vouchers
WHERE customer_id = $1
ORDER BY issued_at DESC, code
LIMIT @max_rows;

-- name: CountOrderVouchers :one
SELECT count(*) FROM promotions.vouchers WHERE order_id = $1;

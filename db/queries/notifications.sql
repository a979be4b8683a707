-- name: InsertNotification :execrows
INSERT INTO notifications (idempotency_key, order_id, recipient, recipient_id, kind, message)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (idempotency_key) DO NOTHING;

-- name: ListOrderNotifications :many
SELECT * FROM notifications WHERE order_id = $1 ORDER BY id;

-- name: NotificationSent :one
-- Whether the notification with an idempotency key was recorded.
SELECT EXISTS (SELECT 1 FROM notifications WHERE idempotency_key = $1);

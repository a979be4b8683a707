-- name: ListCustomers :many
SELECT * FROM customers ORDER BY name;

-- name: GetCustomer :one
SELECT * FROM customers WHERE id = $1;

-- name: UpsertCustomer :exec
INSERT INTO customers (id, name, email)
VALUES ($1, $2, $3)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email;

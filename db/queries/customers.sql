-- name: ListCustomers :many
SELECT * FROM customers ORDER BY name;

-- name: UpsertCustomer :exec
INSERT INTO customers (id, name, email)
VALUES ($1, $2, $3)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email;

-- name: GetSandboxAuthorizationByKey :one
SELECT * FROM sandbox_authorizations WHERE idempotency_key = $1;

-- name: GetSandboxAuthorization :one
SELECT * FROM sandbox_authorizations WHERE id = $1;

-- name: MoveSandboxAuthorization :one
-- Moves an authorization from @from_status to @to_status and books
-- @entry, in one statement (one transaction). The row lock makes the
-- status check and the move one step: of two concurrent moves, the second
-- rechecks the status the first left. moved is 0 when the authorization is
-- unknown or not in @from_status.
WITH moved AS (
    UPDATE sandbox_authorizations
    SET status = @to_status, updated_at = now()
    WHERE sandbox_authorizations.id = @id AND sandbox_authorizations.status = @from_status::text
    RETURNING sandbox_authorizations.id, sandbox_authorizations.amount_cents
), ledger AS (
    INSERT INTO sandbox_ledger (authorization_id, entry, amount_cents)
    SELECT moved.id, @entry, moved.amount_cents FROM moved
    ON CONFLICT (authorization_id, entry) DO NOTHING
)
SELECT count(*) AS moved FROM moved;

-- name: CountSandboxAttempt :one
INSERT INTO sandbox_attempts (idempotency_key, attempts) VALUES ($1, 1)
ON CONFLICT (idempotency_key) DO UPDATE SET attempts = sandbox_attempts.attempts + 1
RETURNING attempts;

-- name: SandboxNetCharged :one
-- Money taken from the customer for one idempotency key: captures less refunds.
SELECT COALESCE(SUM(CASE l.entry WHEN 'capture' THEN l.amount_cents WHEN 'refund' THEN -l.amount_cents ELSE 0 END), 0)::bigint
FROM sandbox_ledger l JOIN sandbox_authorizations a ON a.id = l.authorization_id
WHERE a.idempotency_key = $1;

-- name: PlaceSandboxHold :one
-- Inserts a hold and, when @entry is not empty (an approval), its ledger
-- entry, in one statement (one transaction), unless its idempotency key
-- already has one: a concurrent call with the same key waits for the first
-- and then inserts nothing. placed is 0 when the key already has a hold.
WITH ins AS (
    INSERT INTO sandbox_authorizations (id, idempotency_key, token, amount_cents, status, decline_reason)
    VALUES (@id, @idempotency_key, @token, @amount_cents, @status, @decline_reason)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, amount_cents
), ledger AS (
    INSERT INTO sandbox_ledger (authorization_id, entry, amount_cents)
    SELECT ins.id, @entry::text, ins.amount_cents FROM ins WHERE @entry::text <> ''
)
SELECT count(*) AS placed FROM ins;

-- name: ListSandboxLedgerByKey :many
-- Every money movement of one idempotency key, oldest first, for audits.
SELECT l.* FROM sandbox_ledger l JOIN sandbox_authorizations a ON a.id = l.authorization_id
WHERE a.idempotency_key = $1
ORDER BY l.id;

-- name: CancelSandboxKey :execrows
-- Closes an idempotency key that holds nothing with a row in @status (the
-- sandbox's 'cancelled'); a concurrent PlaceSandboxHold on the key either
-- inserted first (no row is inserted and the caller reads its hold) or
-- waits for this one and inserts nothing.
INSERT INTO sandbox_authorizations (id, idempotency_key, token, amount_cents, status)
VALUES (@id, @idempotency_key, '', 0, @status)
ON CONFLICT (idempotency_key) DO NOTHING;

-- +goose Up
-- A key the sandbox gateway was told to cancel while it held nothing under
-- it: a row with status 'cancelled' (no token, no amount, no ledger entry)
-- that closes the key. An authorization that arrives under the key later
-- (one the order workflow stopped waiting for when it was cancelled, still
-- on its way) finds the row and is declined, instead of placing a hold
-- nobody would ever void. Real providers offer the same by merchant
-- reference ("technical cancel").
ALTER TABLE sandbox_authorizations DROP CONSTRAINT sandbox_authorizations_status_check;
ALTER TABLE sandbox_authorizations ADD CONSTRAINT sandbox_authorizations_status_check
    CHECK (status IN ('authorized', 'declined', 'captured', 'voided', 'refunded', 'cancelled'));

-- +goose Down
DELETE FROM sandbox_authorizations WHERE status = 'cancelled';
ALTER TABLE sandbox_authorizations DROP CONSTRAINT sandbox_authorizations_status_check;
ALTER TABLE sandbox_authorizations ADD CONSTRAINT sandbox_authorizations_status_check
    CHECK (status IN ('authorized', 'declined', 'captured', 'voided', 'refunded'));

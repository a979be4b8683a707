package activities

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/db"
)

// Test card tokens the sandbox understands, as a card provider's sandbox
// documents them, so that demos and tests can pick each payment outcome.
const (
	// SandboxTokenVisa is a card that always approves.
	SandboxTokenVisa = "tok_visa"
	// SandboxTokenDeclined is a card the issuer declines ("card declined").
	SandboxTokenDeclined = "tok_declined"
	// SandboxTokenInsufficientFunds is a card without the money
	// ("insufficient funds").
	SandboxTokenInsufficientFunds = "tok_insufficient_funds"
	// SandboxTokenTransient fails the first two Authorize calls of a key
	// with a retryable error and then approves, to exercise retries.
	SandboxTokenTransient = "tok_transient"
)

// sandboxTransientFailures is how many Authorize calls per idempotency key
// SandboxTokenTransient fails before it approves.
const sandboxTransientFailures = 2

// sandboxCancelled is the status of a key cancelled while it held nothing
// (CancelKey): not a payment status, only the sandbox's mark that the key
// is closed.
const sandboxCancelled = "cancelled"

// Ledger entries of the sandbox's books.
const (
	entryAuthorize = "authorize"
	entryCapture   = "capture"
	entryVoid      = "void"
	entryRefund    = "refund"
)

// SandboxGateway is a PaymentGateway that behaves like a card provider's
// sandbox — idempotency keys, test tokens, holds that are captured, voided or
// refunded once — and keeps its books in PostgreSQL (the sandbox_* tables),
// so that tests and the demo can audit every cent without a provider.
type SandboxGateway struct {
	store *db.Store
}

// NewSandboxGateway returns a SandboxGateway keeping its books in store.
func NewSandboxGateway(store *db.Store) *SandboxGateway {
	return &SandboxGateway{store: store}
}

var _ PaymentGateway = (*SandboxGateway)(nil)

// Authorize places a hold of amountCents on the test card token, once per
// idempotency key: a repeat returns the same authorization ID, and a
// declined key stays declined.
func (g *SandboxGateway) Authorize(ctx context.Context, idempotencyKey, token string, amountCents int64) (string, error) {
	if idempotencyKey == "" {
		return "", invalidf("sandbox: authorize without an idempotency key")
	}
	if amountCents < 0 {
		return "", invalidf("sandbox: negative amount %d", amountCents)
	}
	if token == SandboxTokenTransient {
		// Counted on its own (committed) so that a failed call counts too.
		attempt, err := g.store.CountSandboxAttempt(ctx, idempotencyKey)
		if err != nil {
			return "", fmt.Errorf("sandbox: count attempt: %w", err)
		}
		auth, err := g.store.GetSandboxAuthorizationByKey(ctx, idempotencyKey)
		switch {
		case err == nil:
			return replay(auth, token, amountCents)
		case !errors.Is(err, sql.ErrNoRows):
			return "", fmt.Errorf("sandbox: get authorization: %w", err)
		case attempt <= sandboxTransientFailures:
			return "", fmt.Errorf("sandbox: issuer unavailable (attempt %d of key %s), try again", attempt, idempotencyKey)
		}
	}

	status, reason := string(orderflow.PaymentAuthorized), ""
	switch token {
	case SandboxTokenVisa, SandboxTokenTransient:
	case SandboxTokenDeclined:
		status, reason = string(orderflow.PaymentDeclined), "card declined"
	case SandboxTokenInsufficientFunds:
		status, reason = string(orderflow.PaymentDeclined), "insufficient funds"
	default:
		status, reason = string(orderflow.PaymentDeclined), "unknown test token "+token
	}
	id, err := newAuthorizationID()
	if err != nil {
		return "", err
	}
	// One statement places the hold and books it. A key that has a hold
	// already (a retry, or a concurrent call that inserted first: ours then
	// waits for it and inserts nothing) is answered with that hold.
	entry := "" // a decline moves no money
	if status == string(orderflow.PaymentAuthorized) {
		entry = entryAuthorize
	}
	placed, err := g.store.PlaceSandboxHold(ctx, db.PlaceSandboxHoldParams{
		ID: id, IdempotencyKey: idempotencyKey, Token: token, AmountCents: amountCents,
		Status: status, DeclineReason: reason, Entry: entry,
	})
	if err != nil {
		return "", fmt.Errorf("sandbox: authorize: %w", err)
	}
	auth := db.SandboxAuthorization{
		ID: id, IdempotencyKey: idempotencyKey, Token: token, AmountCents: amountCents,
		Status: status, DeclineReason: reason,
	}
	if placed == 0 {
		if auth, err = g.store.GetSandboxAuthorizationByKey(ctx, idempotencyKey); err != nil {
			return "", fmt.Errorf("sandbox: get authorization: %w", err)
		}
	}
	return replay(auth, token, amountCents)
}

// replay answers an Authorize call with the hold its key already has. Like
// a real provider, it refuses a key reused for another card or amount: that
// is a bug in the caller, and retrying cannot fix it.
func replay(auth db.SandboxAuthorization, token string, amountCents int64) (string, error) {
	if auth.Status == sandboxCancelled {
		return "", &DeclinedError{Reason: "cancelled before it was authorized", KeyCancelled: true}
	}
	if auth.Status == string(orderflow.PaymentDeclined) {
		return "", &DeclinedError{Reason: auth.DeclineReason}
	}
	if auth.Token != token || auth.AmountCents != amountCents {
		return "", invalidf("sandbox: idempotency key %s was used for %s / %d, not %s / %d",
			auth.IdempotencyKey, auth.Token, auth.AmountCents, token, amountCents)
	}
	return auth.ID, nil
}

// Capture takes the held money. Capturing again is a no-op; capturing a
// hold that was voided or refunded is an error.
func (g *SandboxGateway) Capture(ctx context.Context, authorizationID string) error {
	return g.move(ctx, authorizationID, entryCapture, orderflow.PaymentAuthorized, orderflow.PaymentCaptured)
}

// Void releases the hold. Voiding again is a no-op; voiding a captured
// hold is an error (refund it instead).
func (g *SandboxGateway) Void(ctx context.Context, authorizationID string) error {
	return g.move(ctx, authorizationID, entryVoid, orderflow.PaymentAuthorized, orderflow.PaymentVoided)
}

// Refund returns captured money. Refunding again is a no-op; refunding a
// hold that was never captured is an error (void it instead).
func (g *SandboxGateway) Refund(ctx context.Context, authorizationID string) error {
	return g.move(ctx, authorizationID, entryRefund, orderflow.PaymentCaptured, orderflow.PaymentRefunded)
}

// CancelKey returns the authorization placed under idempotencyKey or, when
// there is none, closes the key with a cancelled row, which makes a later
// Authorize under it a decline.
func (g *SandboxGateway) CancelKey(ctx context.Context, idempotencyKey string) (Hold, error) {
	if idempotencyKey == "" {
		return Hold{}, invalidf("sandbox: cancel without an idempotency key")
	}
	id, err := newAuthorizationID()
	if err != nil {
		return Hold{}, err
	}
	cancelled, err := g.store.CancelSandboxKey(ctx, db.CancelSandboxKeyParams{ID: id, IdempotencyKey: idempotencyKey, Status: sandboxCancelled})
	if err != nil {
		return Hold{}, fmt.Errorf("sandbox: cancel %s: %w", idempotencyKey, err)
	}
	if cancelled == 1 {
		return Hold{}, ErrNoHold
	}
	auth, err := g.store.GetSandboxAuthorizationByKey(ctx, idempotencyKey)
	if err != nil {
		return Hold{}, fmt.Errorf("sandbox: look up %s: %w", idempotencyKey, err)
	}
	if auth.Status == sandboxCancelled {
		return Hold{}, ErrNoHold // cancelled before: a retry
	}
	return Hold{AuthorizationID: auth.ID, Status: auth.Status, AmountCents: auth.AmountCents}, nil
}

// move takes an authorization from status from to status to and books
// entry, in one statement. An authorization already in status to is left
// alone; any other status cannot make the move, ever, so that error is
// non-retryable.
func (g *SandboxGateway) move(ctx context.Context, authorizationID, entry string, from, to orderflow.PaymentStatus) error {
	moved, err := g.store.MoveSandboxAuthorization(ctx, db.MoveSandboxAuthorizationParams{
		ID: authorizationID, FromStatus: string(from), ToStatus: string(to), Entry: entry,
	})
	if err != nil {
		return fmt.Errorf("sandbox: %s: %w", entry, err)
	}
	if moved == 1 {
		return nil
	}
	auth, err := g.store.GetSandboxAuthorization(ctx, authorizationID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return invalidf("sandbox: %s: unknown authorization %q", entry, authorizationID)
	case err != nil:
		return fmt.Errorf("sandbox: %s: get authorization: %w", entry, err)
	case auth.Status == string(to):
		return nil // moved before: a retry
	}
	return invalidf("sandbox: cannot %s authorization %s: it is %s", entry, authorizationID, auth.Status)
}

// newAuthorizationID returns "auth_" and 24 random hex digits. Random is
// enough: the ID is handed out once and found again by idempotency key.
func newAuthorizationID() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("sandbox: authorization id: %w", err)
	}
	return "auth_" + hex.EncodeToString(b[:]), nil
}

package activities

import (
	"context"
	"errors"
	"fmt"
)

// PaymentGateway is the payment provider as the order context sees it. Its
// calls are idempotent: Authorize on the same key returns the same hold
// (never a second one), and capturing, voiding or refunding twice is a no-op.
type PaymentGateway interface {
	// Authorize places a hold of amount on the card behind token. A decline
	// is a *DeclinedError; any other error may be retried.
	Authorize(ctx context.Context, idempotencyKey, token string, amountCents int64) (authorizationID string, err error)
	Capture(ctx context.Context, authorizationID string) error
	// CancelKey tells what the gateway holds under an idempotency key (the
	// authorization and its status) or, when it holds nothing, cancels the
	// key: an Authorize under it from then on places no hold and is
	// declined, and CancelKey returns ErrNoHold, now and when asked again.
	// A compensation asks the gateway rather than trusting what the
	// workflow last heard, which a crash, a time-out or a cancellation can
	// have left behind; and an Authorize the workflow stopped waiting for
	// may still reach the gateway after the compensation asked.
	CancelKey(ctx context.Context, idempotencyKey string) (Hold, error)
	Void(ctx context.Context, authorizationID string) error
	Refund(ctx context.Context, authorizationID string) error
}

// DeclinedError is a hard decline: retrying cannot succeed.
type DeclinedError struct {
	Reason string
	// KeyCancelled: declined because the key was cancelled (CancelKey)
	// before this authorization arrived. The order has ended and been
	// compensated; the decline is no news to record.
	KeyCancelled bool
}

// Error tells the gateway's reason for the decline.
func (e *DeclinedError) Error() string { return fmt.Sprintf("payment declined: %s", e.Reason) }

// Hold is what a gateway holds for one idempotency key.
type Hold struct {
	AuthorizationID string
	// Status is authorized, captured, voided, refunded or declined.
	Status      string
	AmountCents int64
}

// ErrNoHold is CancelKey's answer for a key the gateway holds nothing under
// (and, cancelled, never will).
var ErrNoHold = errors.New("payment gateway holds nothing under this key")

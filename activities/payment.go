package activities

import (
	"context"
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
	Void(ctx context.Context, authorizationID string) error
	Refund(ctx context.Context, authorizationID string) error
}

// DeclinedError is a hard decline: retrying cannot succeed.
type DeclinedError struct{ Reason string }

func (e *DeclinedError) Error() string { return fmt.Sprintf("payment declined: %s", e.Reason) }

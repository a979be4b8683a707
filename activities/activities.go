// Package activities holds the order workflow's side effects: recording
// order state, moving money through the payment gateway, and notifying the
// restaurant and the customer. Every state change writes the order row and
// its outbox event in one transaction, and every activity is idempotent on a
// key derived from the order, so Temporal may retry any of them freely.
package activities

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/events"
)

// Error types of non-retryable application errors the activities return;
// the workflow matches on them.
const (
	// ErrTypePaymentDeclined: the gateway declined the authorization; the
	// message is the reason.
	ErrTypePaymentDeclined = "PaymentDeclined"
	// ErrTypeInvalid: the input can never succeed (e.g. unknown order).
	ErrTypeInvalid = "InvalidInput"
)

// Activities are the order workflow's activities, registered on the worker
// as one instance; workflows call them through a typed nil pointer.
type Activities struct {
	Store    *db.Store
	Payments PaymentGateway
	Notifier Notifier
	Logger   *slog.Logger
	// Now is the clock for written timestamps; nil means time.Now.
	Now func() time.Time
}

// NewOrder is what RecordPlaced writes: the order as the API priced it.
type NewOrder struct {
	OrderID         string             `json:"order_id"`
	CustomerID      string             `json:"customer_id"`
	RestaurantID    string             `json:"restaurant_id"`
	DeliveryAddress string             `json:"delivery_address"`
	Items           []events.OrderItem `json:"items"`
	TotalCents      int64              `json:"total_cents"`
	PlacedAt        time.Time          `json:"placed_at"`
	AcceptBy        time.Time          `json:"accept_by"`
}

// AuthorizeInput asks for an authorization hold of the order's total.
type AuthorizeInput struct {
	OrderID      string `json:"order_id"`
	PaymentToken string `json:"payment_token"`
	AmountCents  int64  `json:"amount_cents"`
}

// Authorization is a granted hold.
type Authorization struct {
	AuthorizationID string `json:"authorization_id"`
}

// PaymentInput names the hold a capture, void or refund acts on.
type PaymentInput struct {
	OrderID         string `json:"order_id"`
	AuthorizationID string `json:"authorization_id"`
}

// TransitionInput moves an order to Status, emitting EventType.
type TransitionInput struct {
	OrderID   string `json:"order_id"`
	Status    string `json:"status"`
	EventType string `json:"event_type"`
	Reason    string `json:"reason,omitempty"`
}

// CustomerNotice is one message to the customer; Kind (e.g. "accepted",
// "rejected", "timed_out", "cancelled", "payment_declined", "failed",
// "delivered") makes it unique per order.
type CustomerNotice struct {
	OrderID string `json:"order_id"`
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

var errNotImplemented = errors.New("not implemented")

// RecordPlaced inserts the order, its items and order.placed.
func (a *Activities) RecordPlaced(ctx context.Context, in NewOrder) error {
	return errNotImplemented
}

// AuthorizePayment places a hold through the gateway (idempotency key: the
// order ID), records the payment and emits order.payment_authorized. A
// decline records the payment as declined and returns a non-retryable
// ErrTypePaymentDeclined error whose message is the reason.
func (a *Activities) AuthorizePayment(ctx context.Context, in AuthorizeInput) (Authorization, error) {
	return Authorization{}, errNotImplemented
}

// NotifyRestaurant sends the order to the restaurant and moves it to
// awaiting_acceptance, emitting order.restaurant_notified.
func (a *Activities) NotifyRestaurant(ctx context.Context, orderID string) error {
	return errNotImplemented
}

// Transition moves the order to in.Status and emits in.EventType.
func (a *Activities) Transition(ctx context.Context, in TransitionInput) error {
	return errNotImplemented
}

// CapturePayment captures the hold and emits order.payment_captured.
func (a *Activities) CapturePayment(ctx context.Context, in PaymentInput) error {
	return errNotImplemented
}

// VoidPayment releases the hold and emits order.payment_voided.
func (a *Activities) VoidPayment(ctx context.Context, in PaymentInput) error {
	return errNotImplemented
}

// RefundPayment refunds a capture and emits order.payment_refunded.
func (a *Activities) RefundPayment(ctx context.Context, in PaymentInput) error {
	return errNotImplemented
}

// NotifyCustomer sends the customer a notice and emits order.user_notified.
func (a *Activities) NotifyCustomer(ctx context.Context, in CustomerNotice) error {
	return errNotImplemented
}

// Package events defines the order context's domain events: their stable,
// versioned type names, their payloads (plain structs with JSON tags), and
// how each event's ID is derived so that a retried step never emits twice.
// It imports nothing else of orderflow's, so any context can depend on it.
package events

import (
	"fmt"
	"time"

	"github.com/google/uuid"
)

// AggregateOrder is the outbox aggregate_type of order events.
const AggregateOrder = "order"

// Order event types, as stored in outbox_events.event_type. The CloudEvents
// type adds a prefix and a version: see CEType.
const (
	OrderPlaced             = "order.placed"
	OrderPaymentAuthorized  = "order.payment_authorized"
	OrderRestaurantNotified = "order.restaurant_notified"
	OrderAccepted           = "order.accepted"
	OrderRejected           = "order.rejected"
	OrderTimedOut           = "order.timed_out"
	OrderCancelled          = "order.cancelled"
	OrderPaymentCaptured    = "order.payment_captured"
	OrderPaymentVoided      = "order.payment_voided"
	OrderPaymentRefunded    = "order.payment_refunded"
	OrderUserNotified       = "order.user_notified"
	OrderDeliveryEscalated  = "order.delivery_escalated"
	OrderCompleted          = "order.completed"
	OrderFailed             = "order.failed"
)

// OrderEventTypes lists every order event type.
var OrderEventTypes = []string{
	OrderPlaced, OrderPaymentAuthorized, OrderRestaurantNotified, OrderAccepted,
	OrderRejected, OrderTimedOut, OrderCancelled, OrderPaymentCaptured,
	OrderPaymentVoided, OrderPaymentRefunded, OrderUserNotified,
	OrderDeliveryEscalated, OrderCompleted, OrderFailed,
}

// CEType is the CloudEvents type of an event type, e.g.
// "orderflow.order.accepted.v1".
func CEType(eventType string) string { return "orderflow." + eventType + ".v1" }

// eventNamespace scopes the name-based UUIDs of order events.
var eventNamespace = uuid.MustParse("6f1c2a4e-0d55-4a8e-9c7e-3b9d1f0e7a21")

// EventID derives an event's ID from its order, its type and, for types an
// order can emit more than once (user_notified), a discriminator such as the
// notification kind. Each step of an order emits each event at most once, so
// a retried activity derives the same ID and its insert is a no-op.
func EventID(orderID, eventType, discriminator string) uuid.UUID {
	name := AggregateOrder + "/" + orderID + "/" + eventType
	if discriminator != "" {
		name += "/" + discriminator
	}
	return uuid.NewSHA1(eventNamespace, []byte(name))
}

// Traceparent is the W3C trace context an event travels with: one trace
// per order (its ID derived from the order's), one span per event (from
// the event's ID), sampled. Derived, not random, so that a retried step
// writes the same header and every consumer's work on an order's events
// joins one trace in whatever tracing backend reads it.
func Traceparent(orderID string, eventID uuid.UUID) string {
	trace := uuid.NewSHA1(eventNamespace, []byte("trace/"+orderID))
	return fmt.Sprintf("00-%x-%x-01", trace[:], eventID[:8])
}

// OrderItem is one line of an order.
type OrderItem struct {
	MenuItemID     string `json:"menu_item_id"`
	Name           string `json:"name"`
	UnitPriceCents int64  `json:"unit_price_cents"`
	Quantity       int32  `json:"quantity"`
}

// OrderEvent is the payload of every order event: the order and what the
// step changed. Fields that a type does not concern are omitted.
type OrderEvent struct {
	OrderID      string `json:"order_id"`
	Status       string `json:"status"`
	CustomerID   string `json:"customer_id"`
	RestaurantID string `json:"restaurant_id"`
	// Placed only.
	Items           []OrderItem `json:"items,omitempty"`
	TotalCents      int64       `json:"total_cents,omitempty"`
	DeliveryAddress string      `json:"delivery_address,omitempty"`
	AcceptBy        *time.Time  `json:"accept_by,omitempty"`
	// Reason explains a rejection, time-out, cancellation or failure.
	Reason string `json:"reason,omitempty"`
	// Payment events.
	PaymentStatus   string `json:"payment_status,omitempty"`
	AuthorizationID string `json:"authorization_id,omitempty"`
	AmountCents     int64  `json:"amount_cents,omitempty"`
	// user_notified: which notification went out.
	NotificationKind string    `json:"notification_kind,omitempty"`
	OccurredAt       time.Time `json:"occurred_at"`
}

package workflows

import (
	"time"

	"github.com/orderflow/orderflow/activities"
)

// Names of the order workflow's type, updates and query. They are part of
// the workflow's public contract: never rename one.
const (
	OrderWorkflowName = "Order"

	UpdateAccept    = "accept"
	UpdateReject    = "reject"
	UpdateCancel    = "cancel"
	UpdateDelivered = "delivered"

	QueryStatus = "status"
)

// ErrTypeAlreadyDelivered is the type of the delivered Update's refusal
// when the order is marked delivered already: a copy of a delivery, with
// nothing left to do, unlike a delivery that comes before the workflow
// has taken the acceptance in (a plain refusal), which is to be retried.
const ErrTypeAlreadyDelivered = "AlreadyDelivered"

// ErrTypeNotYetNotified is the type of an accept's or reject's refusal
// while the restaurant has not been notified of the order yet: unlike the
// other refusals, one to try again shortly.
const ErrTypeNotYetNotified = "NotYetNotified"

// Defaults used when the input leaves a duration zero.
const (
	DefaultAcceptTimeout = 10 * time.Minute
	DefaultDeliverySLA   = 45 * time.Minute
)

// OrderInput starts one order. The API prices the order from the menu
// before it starts the workflow; the workflow never trusts a client price.
type OrderInput struct {
	Order        activities.NewOrder `json:"order"`
	PaymentToken string              `json:"payment_token"`
	// AcceptTimeout is how long the restaurant has to decide, counted from
	// Order.PlacedAt (so Order.AcceptBy = PlacedAt + AcceptTimeout).
	AcceptTimeout time.Duration `json:"accept_timeout"`
	// DeliverySLA is how long after acceptance delivery may take before the
	// order is escalated (it is not cancelled).
	DeliverySLA time.Duration `json:"delivery_sla"`
}

// OrderResult is how an order ended.
type OrderResult struct {
	OrderID       string `json:"order_id"`
	Status        string `json:"status"`
	Reason        string `json:"reason,omitempty"`
	PaymentStatus string `json:"payment_status"`
}

// RejectInput is the restaurant's rejection.
type RejectInput struct {
	Reason string `json:"reason"`
}

// CancelInput is the customer's cancellation.
type CancelInput struct {
	Reason string `json:"reason"`
}

// DecisionResult answers an update: the order's status once the decision
// has been taken.
type DecisionResult struct {
	Status string `json:"status"`
	// Reason is the reason recorded with a reject or a cancel. A caller
	// that retries with another reason gets the first one (the Update ID
	// is the decision's name): it tells the two apart by it. Answers
	// recorded before it was added have none.
	Reason string `json:"reason,omitempty"`
}

// StatusView answers the status query.
type StatusView struct {
	OrderID       string    `json:"order_id"`
	Status        string    `json:"status"`
	Reason        string    `json:"reason,omitempty"`
	PaymentStatus string    `json:"payment_status"`
	AcceptBy      time.Time `json:"accept_by"`
	Escalated     bool      `json:"escalated"`
}

package orderflow

// OrderStatus is where an order stands. The workflow owns it; the orders
// table is its read model.
type OrderStatus string

// Order statuses. Placed and awaiting_acceptance are open; accepted waits for
// delivery; the rest are final.
const (
	StatusPlaced             OrderStatus = "placed"
	StatusAwaitingAcceptance OrderStatus = "awaiting_acceptance"
	StatusAccepted           OrderStatus = "accepted"
	StatusCompleted          OrderStatus = "completed"
	StatusRejected           OrderStatus = "rejected"
	StatusTimedOut           OrderStatus = "timed_out"
	StatusCancelled          OrderStatus = "cancelled"
	StatusFailed             OrderStatus = "failed"
)

// OrderStatuses lists every status, for validation and documentation.
var OrderStatuses = []OrderStatus{
	StatusPlaced, StatusAwaitingAcceptance, StatusAccepted, StatusCompleted,
	StatusRejected, StatusTimedOut, StatusCancelled, StatusFailed,
}

// Final reports whether no further transition can happen.
func (s OrderStatus) Final() bool {
	switch s {
	case StatusCompleted, StatusRejected, StatusTimedOut, StatusCancelled, StatusFailed:
		return true
	}
	return false
}

// PaymentStatus is where an order's payment stands.
type PaymentStatus string

// Payment statuses, as the gateway reports them.
const (
	PaymentPending    PaymentStatus = "pending"
	PaymentAuthorized PaymentStatus = "authorized"
	PaymentCaptured   PaymentStatus = "captured"
	PaymentVoided     PaymentStatus = "voided"
	PaymentRefunded   PaymentStatus = "refunded"
	PaymentDeclined   PaymentStatus = "declined"
)

// OrderWorkflowID is the workflow ID of an order: the business key, so that
// one order can never have two workflows.
func OrderWorkflowID(orderID string) string { return "order:" + orderID }

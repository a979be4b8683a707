package activities

import "context"

// Notification is one message to a restaurant or a customer.
type Notification struct {
	// Key makes the send idempotent: a second send with the same key is a no-op.
	Key         string
	OrderID     string
	Recipient   string // "restaurant" or "customer"
	RecipientID string
	Kind        string
	Message     string
}

// Notifier delivers notifications (push, e-mail, SMS in production).
type Notifier interface {
	Notify(ctx context.Context, n Notification) error
}

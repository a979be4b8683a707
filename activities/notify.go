package activities

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/db"
)

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

// Notification.Recipient values, as the notifications table checks them.
const (
	recipientRestaurant = "restaurant"
	recipientCustomer   = "customer"
)

// Notifier delivers notifications (push, e-mail, SMS in production).
type Notifier interface {
	Notify(ctx context.Context, n Notification) error
}

// SendLog is a Notifier that can tell whether it has sent the notification
// with a key. It is asked whether the restaurant has an order whose step
// (order.restaurant_notified) is not on the timeline: a worker that died
// between sending the order and recording the step leaves exactly that.
// NotifyRestaurant asks it past the order's accept_by, and goes on with a
// sent order (which the workflow then times out and calls off) instead of
// refusing to send what the restaurant already has; NotifyRestaurantOfEnd
// asks it whether to call an ended order off. A Notifier that keeps no such
// log cannot tell: NotifyRestaurant then takes a retry's order as sent (its
// first attempt may have sent it), and the end's notice any order without
// its step as unsent. A wrapper of a Notifier must implement SendLog too,
// or the log is lost behind it.
type SendLog interface {
	Sent(ctx context.Context, key string) (bool, error)
}

// DevNotifier stands in for push, e-mail and SMS on a developer machine:
// it records each notification in the notifications table, where tests and
// the demo can see what a customer or restaurant would have received, and
// logs it once.
type DevNotifier struct {
	store  *db.Store
	logger *slog.Logger
}

var (
	_ Notifier = (*DevNotifier)(nil)
	_ SendLog  = (*DevNotifier)(nil)
)

// NewDevNotifier returns a DevNotifier writing to store and logging to
// logger (nil: no log).
func NewDevNotifier(store *db.Store, logger *slog.Logger) *DevNotifier {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &DevNotifier{store: store, logger: logger}
}

// Notify records n unless a notification with n.Key was already recorded,
// so a retried activity never sends twice.
func (d *DevNotifier) Notify(ctx context.Context, n Notification) error {
	if n.Key == "" {
		return invalidf("notification for order %s has no idempotency key", n.OrderID)
	}
	orderID, err := uuid.Parse(n.OrderID)
	if err != nil {
		return invalidf("notification %q: order id %q is not a UUID", n.Key, n.OrderID)
	}
	inserted, err := d.store.InsertNotification(ctx, db.InsertNotificationParams{
		IdempotencyKey: n.Key,
		OrderID:        orderID,
		Recipient:      n.Recipient,
		RecipientID:    n.RecipientID,
		Kind:           n.Kind,
		Message:        n.Message,
	})
	if err != nil {
		return constraintError(fmt.Sprintf("insert notification %s", n.Key), err)
	}
	if inserted > 0 {
		d.logger.InfoContext(ctx, "notification sent",
			"key", n.Key, "order_id", n.OrderID, "recipient", n.Recipient,
			"recipient_id", n.RecipientID, "kind", n.Kind, "message", n.Message)
	}
	return nil
}

// Sent reports whether the notification with key was recorded.
func (d *DevNotifier) Sent(ctx context.Context, key string) (bool, error) {
	sent, err := d.store.NotificationSent(ctx, key)
	if err != nil {
		return false, fmt.Errorf("was notification %s sent: %w", key, err)
	}
	return sent, nil
}

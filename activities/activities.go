// Package activities holds the order workflow's side effects: recording
// order state, moving money through the payment gateway, and notifying the
// restaurant and the customer. Every state change writes the order row and
// its outbox event in one transaction, and every activity is idempotent on a
// key derived from the order, so Temporal may retry any of them freely.
package activities

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/orderflow/orderflow"
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
	// ErrTypeOrderEnded: the order had ended already, so the step was not
	// applied; the error's details hold the order's final status. It
	// happens when a workflow cancellation overtakes a step the workflow
	// then stopped waiting for (the abandoned attempt completed the order,
	// say), and the compensation finds the order ended.
	ErrTypeOrderEnded = "OrderEnded"
	// ErrTypeOrderAccepted: a step that must come before an acceptance
	// (TransitionInput.UnlessAccepted) met an order the database has as
	// accepted. It happens when a workflow task that accepted the order
	// ran its local activities (recorded the acceptance, captured, told
	// the customer) and was then lost in a crash: the history no longer
	// holds the acceptance, and a reject, cancel or time-out can come
	// after it. The workflow then carries the acceptance through instead.
	ErrTypeOrderAccepted = "OrderAccepted"
	// ErrTypeTooLate: the order's accept_by passed before the restaurant
	// was sent it (its payment was authorized late, or a worker outage
	// held it up), so it is not sent: the restaurant could only answer it
	// too late.
	ErrTypeTooLate = "TooLate"
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
	// Committed, when set, is called after every transaction that wrote an
	// outbox row has committed: the in-process relay's wake-up, so events
	// leave right away instead of at the next poll. It must not block.
	Committed func()
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
	// UnlessAccepted refuses the step, with an ErrTypeOrderAccepted error,
	// when the order is accepted: for an end that only an order still
	// awaiting acceptance may come to (rejected, timed out, cancelled by
	// the customer).
	UnlessAccepted bool `json:"unless_accepted,omitempty"`
}

// CustomerNotice is one message to the customer; Kind makes it unique per
// order: a notice of progress (NoticeAccepted, NoticeDeliveryLate) or of
// the order's end (the final status it ended in, or NoticePaymentDeclined).
type CustomerNotice struct {
	OrderID string `json:"order_id"`
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// RecordPlaced inserts the order, its items and order.placed.
func (a *Activities) RecordPlaced(ctx context.Context, in NewOrder) error {
	id, err := parseOrderID(in.OrderID)
	if err != nil {
		return err
	}
	if len(in.Items) == 0 {
		return invalidf("order %s has no items", id)
	}
	if in.AcceptBy.IsZero() {
		return invalidf("order %s has no accept_by deadline", id)
	}
	placedAt := a.now()
	if !in.PlacedAt.IsZero() {
		placedAt = dbTime(in.PlacedAt)
	}
	acceptBy := dbTime(in.AcceptBy)
	eventID := events.EventID(id.String(), events.OrderPlaced, "")
	// The event tells what the statement stores: the same values.
	payload, err := json.Marshal(events.OrderEvent{
		OrderID: id.String(), Status: string(orderflow.StatusPlaced),
		CustomerID: in.CustomerID, RestaurantID: in.RestaurantID,
		Items: in.Items, TotalCents: in.TotalCents, DeliveryAddress: in.DeliveryAddress,
		AcceptBy: &acceptBy, OccurredAt: placedAt,
	})
	if err != nil {
		return fmt.Errorf("encode %s payload: %w", events.OrderPlaced, err)
	}
	headers, err := eventHeaders(id.String(), eventID)
	if err != nil {
		return fmt.Errorf("encode %s headers: %w", events.OrderPlaced, err)
	}
	p := db.PlaceOrderParams{
		ID: id, CustomerID: in.CustomerID, RestaurantID: in.RestaurantID,
		DeliveryAddress: in.DeliveryAddress, Status: string(orderflow.StatusPlaced),
		TotalCents: in.TotalCents, AcceptBy: acceptBy, PlacedAt: placedAt,
		EventID: eventID, EventType: events.OrderPlaced, AggregateType: events.AggregateOrder,
		Payload: payload, Headers: headers,
	}
	for _, it := range in.Items {
		p.ItemMenuItemIds = append(p.ItemMenuItemIds, it.MenuItemID)
		p.ItemNames = append(p.ItemNames, it.Name)
		p.ItemUnitPriceCents = append(p.ItemUnitPriceCents, it.UnitPriceCents)
		p.ItemQuantities = append(p.ItemQuantities, it.Quantity)
	}
	// One statement writes the order, its items and order.placed; a retry
	// finds the order in place and writes nothing.
	placed, err := a.Store.PlaceOrder(ctx, p)
	if err != nil {
		return surface(constraintError("record order", err))
	}
	if placed == 0 {
		a.logger().DebugContext(ctx, "order already recorded", "order_id", id)
		return nil
	}
	a.committed()
	return nil
}

// AuthorizePayment places a hold through the gateway (idempotency key: the
// order ID), records the payment and emits order.payment_authorized. A
// decline records the payment as declined and returns a non-retryable
// ErrTypePaymentDeclined error whose message is the reason.
func (a *Activities) AuthorizePayment(ctx context.Context, in AuthorizeInput) (Authorization, error) {
	id, err := parseOrderID(in.OrderID)
	if err != nil {
		return Authorization{}, err
	}
	if in.AmountCents < 0 {
		return Authorization{}, invalidf("order %s: negative amount %d", id, in.AmountCents)
	}
	o, err := a.getOrder(ctx, id)
	if err != nil {
		return Authorization{}, surface(err)
	}
	if err := ended(o, "authorize payment"); err != nil {
		return Authorization{}, err
	}
	// The gateway answers a retry with the hold it already placed, so a
	// crash between this call and the commit below costs nothing.
	authID, err := a.Payments.Authorize(ctx, id.String(), in.PaymentToken, in.AmountCents)
	if declined, ok := errors.AsType[*DeclinedError](err); ok {
		// A key cancelled before this attempt arrived is a late attempt of
		// an order that was cancelled and released meanwhile: the ended
		// order's payment row stays as the compensation left it.
		if !declined.KeyCancelled {
			if err := a.Store.UpsertPayment(ctx, db.UpsertPaymentParams{
				OrderID: id, AmountCents: in.AmountCents, Status: string(orderflow.PaymentDeclined),
				DeclineReason: declined.Reason, UpdatedAt: a.now(),
			}); err != nil {
				return Authorization{}, fmt.Errorf("record declined payment: %w", err)
			}
		}
		return Authorization{}, temporal.NewNonRetryableApplicationError(declined.Reason, ErrTypePaymentDeclined, err)
	}
	if err != nil {
		return Authorization{}, err // as the gateway said it: Temporal retries unless it is non-retryable
	}
	err = a.apply(ctx, step{
		orderID: id, eventType: events.OrderPaymentAuthorized,
		payment: &paymentState{authorizationID: authID, amountCents: in.AmountCents, status: orderflow.PaymentAuthorized},
	})
	if err != nil {
		return Authorization{}, surface(err)
	}
	return Authorization{AuthorizationID: authID}, nil
}

// NotifyRestaurant sends the order to the restaurant and moves it to
// awaiting_acceptance, emitting order.restaurant_notified. Past the order's
// accept_by it sends nothing (see tooLateToSend).
func (a *Activities) NotifyRestaurant(ctx context.Context, orderID string) error {
	id, err := parseOrderID(orderID)
	if err != nil {
		return err
	}
	rows, err := a.Store.ListOrderWithItems(ctx, id)
	if err != nil {
		return fmt.Errorf("get order and items: %w", err)
	}
	if len(rows) == 0 {
		return unknownOrder(id)
	}
	o := rows[0].Order
	if err := ended(o, "notify restaurant"); err != nil {
		return err
	}
	if !a.now().Before(o.AcceptBy) {
		if err := a.tooLateToSend(ctx, o); err != nil {
			return err
		}
	}
	items := make([]db.OrderItem, len(rows))
	for i, r := range rows {
		items[i] = r.OrderItem
	}
	if err := a.Notifier.Notify(ctx, Notification{
		Key:         newOrderKey(id),
		OrderID:     id.String(),
		Recipient:   recipientRestaurant,
		RecipientID: o.RestaurantID,
		Kind:        "new_order",
		Message:     restaurantMessage(o, items),
	}); err != nil {
		return surface(fmt.Errorf("notify restaurant: %w", err))
	}
	err = a.apply(ctx, step{
		orderID: id, eventType: events.OrderRestaurantNotified, status: orderflow.StatusAwaitingAcceptance,
	})
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.Type() == ErrTypeOrderEnded {
		// The order ended while it was being sent (the workflow stopped
		// waiting for this step when it was cancelled, say): the
		// restaurant has it, but the timeline does not say so, so the end's
		// own notice (NotifyRestaurantOfEnd) passes it by. Call it off here.
		ended, gerr := a.getOrder(ctx, id)
		if gerr != nil {
			return surface(gerr)
		}
		if cerr := a.callOff(ctx, ended); cerr != nil {
			return cerr
		}
	}
	return surface(err)
}

// newOrderKey is the idempotency key of the notification that sends the
// restaurant order id.
func newOrderKey(id uuid.UUID) string { return id.String() + "/restaurant/new_order" }

// tooLateToSend refuses to send the restaurant order o past its accept_by
// with a non-retryable ErrTypeTooLate error, unless the order may have
// been sent already: wasSent says it was (its step is on the timeline, as
// when a workflow task lost in a crash ran this step and the replayed
// workflow runs it again; or the notifier's SendLog has it, as when the
// worker died after the send and before the step), or, with a notifier
// that keeps no log, this is a retry, whose first attempt may have sent it
// before failing. Then the step goes on as before (sending again is a
// no-op) and the workflow times the order out at once, calling it off at
// the restaurant.
func (a *Activities) tooLateToSend(ctx context.Context, o db.Order) error {
	sent, err := a.wasSent(ctx, o.ID)
	if err != nil {
		return err
	}
	_, logged := a.Notifier.(SendLog)
	retry := activity.IsActivity(ctx) && activity.GetInfo(ctx).Attempt > 1
	if sent || (retry && !logged) {
		return nil
	}
	return temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("notify restaurant: order %s's accept_by (%s) has passed: too late to send it", o.ID, o.AcceptBy.UTC().Format(time.RFC3339Nano)),
		ErrTypeTooLate, nil)
}

// RestaurantNotice asks to tell a restaurant that an order it was sent has
// ended unfulfilled (cancelled, timed out or failed).
type RestaurantNotice struct {
	OrderID string `json:"order_id"`
}

// NotifyRestaurantOfEnd tells the restaurant that an order it was sent
// (wasSent) has ended unfulfilled, so that it does not prepare it; an
// order the restaurant was never sent, or that it rejected itself, is left
// alone. (An order that ended while it was being sent is called off by
// NotifyRestaurant.) It records a notification only: the end's own event
// is the order's change.
func (a *Activities) NotifyRestaurantOfEnd(ctx context.Context, in RestaurantNotice) error {
	id, err := parseOrderID(in.OrderID)
	if err != nil {
		return err
	}
	o, err := a.getOrder(ctx, id)
	if err != nil {
		return surface(err)
	}
	sent, err := a.wasSent(ctx, id)
	if err != nil || !sent {
		return err
	}
	return a.callOff(ctx, o)
}

// wasSent reports whether the restaurant was sent order id: its step,
// order.restaurant_notified, is on the timeline, or the notifier's SendLog
// has the notification (a worker that died between the send and the step
// leaves no step, and the workflow replayed after it may never run the
// step again: cancelled meanwhile, say).
func (a *Activities) wasSent(ctx context.Context, id uuid.UUID) (bool, error) {
	sent, err := a.Store.TimelineHasEvent(ctx, events.EventID(id.String(), events.OrderRestaurantNotified, ""))
	if err != nil {
		return false, fmt.Errorf("was the restaurant sent order %s: %w", id, err)
	}
	if sends, ok := a.Notifier.(SendLog); ok && !sent {
		if sent, err = sends.Sent(ctx, newOrderKey(id)); err != nil {
			return false, fmt.Errorf("was the restaurant sent order %s: %w", id, err)
		}
	}
	return sent, nil
}

// callOff tells the restaurant that order o is off, once, when it ended
// cancelled, timed out or failed; the notice's kind is that status.
func (a *Activities) callOff(ctx context.Context, o db.Order) error {
	id := o.ID
	st := orderflow.OrderStatus(o.Status)
	var msg string
	switch st {
	case orderflow.StatusTimedOut:
		msg = fmt.Sprintf("Order %s was not accepted in time and is cancelled. Do not prepare it.", id)
	case orderflow.StatusCancelled:
		msg = fmt.Sprintf("Order %s was cancelled (%s). Do not prepare it.", id, o.Reason)
	case orderflow.StatusFailed:
		msg = fmt.Sprintf("Order %s is called off: something went wrong (%s). Do not prepare it.", id, o.Reason)
	default: // not ended, rejected by the restaurant, or completed
		return nil
	}
	if err := a.Notifier.Notify(ctx, Notification{
		Key:         id.String() + "/restaurant/" + o.Status,
		OrderID:     id.String(),
		Recipient:   recipientRestaurant,
		RecipientID: o.RestaurantID,
		Kind:        o.Status,
		Message:     msg,
	}); err != nil {
		return surface(fmt.Errorf("notify restaurant: %w", err))
	}
	return nil
}

// transitionEvents are the event types Transition may emit. Every other type
// belongs to the activity that makes its change and fills its fields: sent
// through Transition, it would take that step's event ID, and the real step
// would later be skipped as already applied.
var transitionEvents = []string{
	events.OrderAccepted, events.OrderRejected, events.OrderTimedOut, events.OrderCancelled,
	events.OrderDeliveryEscalated, events.OrderCompleted, events.OrderFailed,
}

// Transition moves the order to in.Status and emits in.EventType.
func (a *Activities) Transition(ctx context.Context, in TransitionInput) error {
	id, err := parseOrderID(in.OrderID)
	if err != nil {
		return err
	}
	if !slices.Contains(orderflow.OrderStatuses, orderflow.OrderStatus(in.Status)) {
		return invalidf("unknown order status %q", in.Status)
	}
	if !slices.Contains(transitionEvents, in.EventType) {
		return invalidf("event type %q cannot be emitted by Transition", in.EventType)
	}
	return surface(a.apply(ctx, step{
		orderID: id, eventType: in.EventType, status: orderflow.OrderStatus(in.Status), reason: in.Reason,
		unlessAccepted: in.UnlessAccepted,
	}))
}

// CapturePayment captures the hold and emits order.payment_captured.
func (a *Activities) CapturePayment(ctx context.Context, in PaymentInput) error {
	return a.movePayment(ctx, in, a.Payments.Capture, orderflow.PaymentCaptured, events.OrderPaymentCaptured)
}

// VoidPayment releases the hold and emits order.payment_voided.
func (a *Activities) VoidPayment(ctx context.Context, in PaymentInput) error {
	return a.movePayment(ctx, in, a.Payments.Void, orderflow.PaymentVoided, events.OrderPaymentVoided)
}

// RefundPayment refunds a capture and emits order.payment_refunded.
func (a *Activities) RefundPayment(ctx context.Context, in PaymentInput) error {
	return a.movePayment(ctx, in, a.Payments.Refund, orderflow.PaymentRefunded, events.OrderPaymentRefunded)
}

// ReleasePayment gives back whatever the gateway holds for the order — it
// voids an authorization and refunds a capture — and records the outcome
// with its event (order.payment_voided or order.payment_refunded). It asks
// the gateway (by the order's idempotency key) instead of trusting what the
// workflow last heard: an authorization that succeeded at the gateway but
// whose recording failed, or a capture whose answer was lost, is released
// all the same. When the gateway holds nothing, the key is cancelled there:
// an authorization the workflow stopped waiting for when it was cancelled
// may still be on its way, and must not place a hold after this. It
// returns the payment's status afterwards: voided, refunded, declined, or
// "" when the gateway holds nothing.
func (a *Activities) ReleasePayment(ctx context.Context, in PaymentInput) (string, error) {
	id, err := parseOrderID(in.OrderID)
	if err != nil {
		return "", err
	}
	if _, err := a.getOrder(ctx, id); err != nil {
		return "", surface(err)
	}
	var (
		hold      Hold
		status    orderflow.PaymentStatus
		eventType string
	)
	// Twice at most: a capture the workflow stopped waiting for can land
	// between the look-up and the void, which the gateway then refuses;
	// the second look sees the capture and refunds it.
	for look := 1; ; look++ {
		hold, err = a.Payments.CancelKey(ctx, id.String())
		if errors.Is(err, ErrNoHold) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		var move func(context.Context, string) error
		switch orderflow.PaymentStatus(hold.Status) {
		case orderflow.PaymentDeclined:
			return hold.Status, nil
		case orderflow.PaymentAuthorized, orderflow.PaymentVoided:
			status, eventType, move = orderflow.PaymentVoided, events.OrderPaymentVoided, a.Payments.Void
		case orderflow.PaymentCaptured, orderflow.PaymentRefunded:
			status, eventType, move = orderflow.PaymentRefunded, events.OrderPaymentRefunded, a.Payments.Refund
		default:
			return "", invalidf("order %s: the gateway reports payment status %q", id, hold.Status)
		}
		err = move(ctx, hold.AuthorizationID)
		if err == nil {
			break
		}
		var appErr *temporal.ApplicationError
		if look == 2 || !errors.As(err, &appErr) || !appErr.NonRetryable() {
			return "", err
		}
	}
	err = a.apply(ctx, step{
		orderID: id, eventType: eventType,
		payment: &paymentState{authorizationID: hold.AuthorizationID, amountCents: hold.AmountCents, status: status},
	})
	if err != nil {
		return "", surface(err)
	}
	return string(status), nil
}

// movePayment asks the gateway to move the order's hold (the gateway makes
// a repeat a no-op and refuses an impossible move), then records the new
// payment status and emits eventType in one transaction.
func (a *Activities) movePayment(ctx context.Context, in PaymentInput, move func(context.Context, string) error, status orderflow.PaymentStatus, eventType string) error {
	id, err := parseOrderID(in.OrderID)
	if err != nil {
		return err
	}
	// No payment row also stands for no order: either way no money moves.
	p, err := a.Store.GetPayment(ctx, id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return invalidf("order %s has no payment (unknown order, or never authorized)", id)
	case err != nil:
		return fmt.Errorf("get payment: %w", err)
	case in.AuthorizationID == "" || in.AuthorizationID != p.AuthorizationID:
		// Never move money held for another order.
		return invalidf("order %s is paid by authorization %q, not %q", id, p.AuthorizationID, in.AuthorizationID)
	}
	if err := move(ctx, p.AuthorizationID); err != nil {
		return err // as the gateway said it: Temporal retries unless it is non-retryable
	}
	return surface(a.apply(ctx, step{
		orderID: id, eventType: eventType,
		payment: &paymentState{authorizationID: p.AuthorizationID, amountCents: p.AmountCents, status: status},
	}))
}

// NotifyCustomer sends the customer a notice and emits order.user_notified.
// A notice of progress (NoticeAccepted, NoticeDeliveryLate) that has not
// gone yet is refused once the order has ended, as a forward step is
// (ended, ErrTypeOrderEnded): an attempt that begins after the end (a
// worker cut off from Temporal, a retry) would reach the customer after
// the end's own notice. One already past this check when the order ends
// still goes; the window is one notifier call. Any other notice, of the
// end among them, goes whenever it is asked for.
func (a *Activities) NotifyCustomer(ctx context.Context, in CustomerNotice) error {
	id, err := parseOrderID(in.OrderID)
	if err != nil {
		return err
	}
	if in.Kind == "" {
		return invalidf("order %s: customer notice without a kind", id)
	}
	o, err := a.getOrder(ctx, id)
	if err != nil {
		return surface(err)
	}
	if progressNotice(in.Kind) && orderflow.OrderStatus(o.Status).Final() {
		// A retry of a notice that went before the end is done, not late.
		sent, err := a.Store.TimelineHasEvent(ctx, events.EventID(id.String(), events.OrderUserNotified, in.Kind))
		if err != nil {
			return fmt.Errorf("check timeline: %w", err)
		}
		if sent {
			return nil
		}
		return ended(o, "notify customer: "+in.Kind)
	}
	if err := a.Notifier.Notify(ctx, Notification{
		Key:         id.String() + "/customer/" + in.Kind,
		OrderID:     id.String(),
		Recipient:   recipientCustomer,
		RecipientID: o.CustomerID,
		Kind:        in.Kind,
		Message:     in.Message,
	}); err != nil {
		return surface(fmt.Errorf("notify customer: %w", err))
	}
	return surface(a.apply(ctx, step{
		orderID: id, eventType: events.OrderUserNotified, discriminator: in.Kind, notificationKind: in.Kind,
	}))
}

// Kinds of customer notices the workflow sends besides those named after a
// final status.
const (
	// NoticeAccepted: the restaurant accepted the order.
	NoticeAccepted = "accepted"
	// NoticeDeliveryLate: the delivery is past its SLA.
	NoticeDeliveryLate = "delivery_late"
	// NoticePaymentDeclined: a declined payment ended the order.
	NoticePaymentDeclined = "payment_declined"
)

// progressNotice tells whether a customer notice of this kind tells of
// the order's progress, which is stale once it has ended.
func progressNotice(kind string) bool {
	return kind == NoticeAccepted || kind == NoticeDeliveryLate
}

// restaurantMessage is what the restaurant reads: the dishes, the total,
// where to deliver and by when to answer.
func restaurantMessage(o db.Order, items []db.OrderItem) string {
	var b strings.Builder
	fmt.Fprintf(&b, "New order %s:", o.ID)
	for i, it := range items {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %dx %s", it.Quantity, it.Name)
	}
	fmt.Fprintf(&b, "; total %d.%02d; deliver to %s; accept by %s",
		o.TotalCents/100, o.TotalCents%100, o.DeliveryAddress, o.AcceptBy.UTC().Format(time.RFC3339))
	return b.String()
}

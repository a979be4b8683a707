package activities

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sqlc-dev/pqtype"
	"go.temporal.io/sdk/temporal"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/events"
)

// step is one state change of an order: the event it emits and what else
// it changes with it.
type step struct {
	orderID   uuid.UUID
	eventType string
	// discriminator tells apart the events of a type an order emits more
	// than once (user_notified: the notification kind).
	discriminator string
	// status is the order's status after the step, and reason why; an empty
	// status leaves the order's status and reason as they are.
	status orderflow.OrderStatus
	reason string
	// payment, when set, is the order's payment after the step: the step
	// writes it to the payments row and the event carries it.
	payment *paymentState
	// notificationKind is the notice a user_notified step sent.
	notificationKind string
	// unlessAccepted: the step does not apply to an accepted order either
	// (TransitionInput.UnlessAccepted).
	unlessAccepted bool
}

// forward tells a step that must not be applied to an order that has
// ended: one that sets a status (a final status is final), or that records
// an authorization or a capture. Such a step can come late: the SDK stops
// waiting for a local activity when the workflow is cancelled, and the
// abandoned attempt may still write after the compensation has. The
// compensations' own steps (voided, refunded) and the notices are not
// forward: they come after the end.
func (s step) forward() bool {
	if s.status != "" {
		return true
	}
	return s.payment != nil && (s.payment.status == orderflow.PaymentAuthorized || s.payment.status == orderflow.PaymentCaptured)
}

// finalStatuses are the statuses after which no forward step applies.
func finalStatuses() []string {
	var final []string
	for _, st := range orderflow.OrderStatuses {
		if st.Final() {
			final = append(final, string(st))
		}
	}
	return final
}

// paymentState is the order context's view of its payment after a step.
type paymentState struct {
	authorizationID string
	amountCents     int64
	status          orderflow.PaymentStatus
}

// apply records s: the order's version bump, status and payment, the
// timeline row and the outbox row, in one statement (db's ApplyStep), which
// PostgreSQL runs as one transaction — one round trip per step. A step
// whose event is already on the timeline (a retried activity) writes
// nothing twice. The row lock the statement takes makes version order equal
// commit order.
func (a *Activities) apply(ctx context.Context, s step) error {
	orderID := s.orderID.String()
	eventID := events.EventID(orderID, s.eventType, s.discriminator)
	at := a.now()
	eventReason := ""
	if s.status != "" {
		eventReason = s.reason
	}
	// Status, CustomerID and RestaurantID are the order row's: the
	// statement sets them in the payload from the row it updates.
	ev := events.OrderEvent{
		OrderID:          orderID,
		Reason:           eventReason,
		NotificationKind: s.notificationKind,
		OccurredAt:       at,
	}
	params := db.ApplyStepParams{
		ID: s.orderID, Status: string(s.status), Reason: s.reason, OccurredAt: at,
		EventID: eventID, EventType: s.eventType, EventReason: eventReason,
		AggregateType:  events.AggregateOrder,
		ClosedStatuses: []string{}, // never nil: NULL would match no order at all
	}
	if s.forward() {
		params.ClosedStatuses = finalStatuses()
	}
	if s.unlessAccepted {
		params.ClosedStatuses = append(params.ClosedStatuses, string(orderflow.StatusAccepted))
	}
	if p := s.payment; p != nil {
		ev.PaymentStatus, ev.AuthorizationID, ev.AmountCents = string(p.status), p.authorizationID, p.amountCents
		params.PaymentStatus, params.AuthorizationID, params.AmountCents = string(p.status), p.authorizationID, p.amountCents
	}
	var err error
	if params.Payload, err = json.Marshal(ev); err != nil {
		return fmt.Errorf("encode %s payload: %w", s.eventType, err)
	}
	if params.Headers, err = eventHeaders(orderID, eventID); err != nil {
		return fmt.Errorf("encode %s headers: %w", s.eventType, err)
	}
	version, err := a.Store.ApplyStep(ctx, params)
	switch {
	case err == nil:
		a.committed()
		a.logger().DebugContext(ctx, "order event recorded", "order_id", orderID, "event_type", s.eventType, "version", version)
		return nil
	case errors.Is(err, sql.ErrNoRows), isUniqueViolation(err):
		// Nothing was written: the step was applied before (or by a
		// concurrent retry that won the row lock), or there is no order.
		return a.notApplied(ctx, s, eventID, err)
	default:
		return fmt.Errorf("record %s: %w", s.eventType, err)
	}
}

// notApplied explains a step that wrote nothing (cause: no row matched, or
// a unique event_id was taken): nil when its event is on the timeline
// already, an ErrTypeInvalid error when the order does not exist, an
// ErrTypeOrderEnded one when a forward step met an ended order, an
// ErrTypeOrderAccepted one when an UnlessAccepted step met an accepted one.
func (a *Activities) notApplied(ctx context.Context, s step, eventID uuid.UUID, cause error) error {
	orderID, eventType := s.orderID, s.eventType
	done, err := a.Store.TimelineHasEvent(ctx, eventID)
	if err != nil {
		return fmt.Errorf("check timeline: %w", err)
	}
	if done {
		a.logger().DebugContext(ctx, "order step already applied", "order_id", orderID, "event_type", eventType, "event_id", eventID)
		return nil
	}
	o, err := a.getOrder(ctx, orderID)
	if err != nil {
		return err
	}
	if errors.Is(cause, sql.ErrNoRows) {
		// Only a forward step is refused on an ended order (the others
		// match it), and retrying cannot help.
		if err := ended(o, "record "+eventType); err != nil {
			return err
		}
		if s.unlessAccepted && orderflow.OrderStatus(o.Status) == orderflow.StatusAccepted {
			return temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("record %s: order %s is accepted already", eventType, o.ID), ErrTypeOrderAccepted, nil)
		}
		// Otherwise the order exists now but did not when the step ran: it
		// was being recorded meanwhile. A retry applies the step.
		return fmt.Errorf("record %s: order %s was not recorded yet", eventType, orderID)
	}
	// The event ID is taken, yet not on the timeline: the outbox holds the
	// event without its timeline row, which are only ever written together.
	return fmt.Errorf("record %s: event %s is in the outbox but not on the timeline: %w", eventType, eventID, cause)
}

// committed wakes the relay, if there is one in this process.
func (a *Activities) committed() {
	if a.Committed != nil {
		a.Committed()
	}
}

// eventHeaders are an event's outbox headers: its W3C traceparent.
func eventHeaders(orderID string, eventID uuid.UUID) (pqtype.NullRawMessage, error) {
	h, err := json.Marshal(map[string]string{events.HeaderTraceparent: events.Traceparent(orderID, eventID)})
	if err != nil {
		return pqtype.NullRawMessage{}, err
	}
	return pqtype.NullRawMessage{RawMessage: h, Valid: true}, nil
}

// getOrder reads an order before a step that calls out (gateway, notifier),
// so an unknown order fails before any money moves or message goes out.
func (a *Activities) getOrder(ctx context.Context, id uuid.UUID) (db.Order, error) {
	o, err := a.Store.GetOrder(ctx, id)
	if errors.Is(err, sql.ErrNoRows) {
		return db.Order{}, unknownOrder(id)
	}
	if err != nil {
		return db.Order{}, fmt.Errorf("get order: %w", err)
	}
	return o, nil
}

// ended refuses a forward step on order o once it has ended, with a
// non-retryable ErrTypeOrderEnded error whose details are o's status:
// before the step calls a gateway or a notifier, and (apply) instead of
// its write, for an order that ends while the call is out.
func ended(o db.Order, what string) error {
	if st := orderflow.OrderStatus(o.Status); st.Final() {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s: order %s is %s: the step comes after the end", what, o.ID, st), ErrTypeOrderEnded, nil, string(st))
	}
	return nil
}

func (a *Activities) now() time.Time {
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	return dbTime(now())
}

func (a *Activities) logger() *slog.Logger {
	if a.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Logger
}

// dbTime is t as PostgreSQL stores it (UTC, microseconds), so that an
// event's payload and its columns carry the same instant.
func dbTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// parseOrderID reads an order ID; a malformed one can never succeed.
func parseOrderID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, invalidf("order id %q is not a UUID", s)
	}
	return id, nil
}

func unknownOrder(id uuid.UUID) error { return invalidf("unknown order %s", id) }

// invalidf returns a non-retryable ErrTypeInvalid error: input no retry can
// fix.
func invalidf(format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), ErrTypeInvalid, nil)
}

// PostgreSQL error codes of input that no retry can fix.
const (
	pgForeignKeyViolation = "23503"
	pgCheckViolation      = "23514"
)

// pgUniqueViolation is the error code of a duplicate key.
const pgUniqueViolation = "23505"

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == pgUniqueViolation
}

// constraintError wraps err with what; a violated foreign key or check
// constraint (unknown customer, restaurant or menu item; a quantity out of
// range) becomes a non-retryable ErrTypeInvalid error.
func constraintError(what string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == pgForeignKeyViolation || pgErr.Code == pgCheckViolation) {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %s", what, pgErr.Message), ErrTypeInvalid, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// surface returns the first *temporal.ApplicationError in err's chain
// itself. Temporal reads an activity error's type and retryability from the
// returned value only: once wrapped (by fmt.Errorf, say) a non-retryable
// error would be retried as a generic one.
func surface(err error) error {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr
	}
	return err
}

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

// step is one state change of an order: the event it emits and, through
// write, whatever else it changes in the same transaction.
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
	// at is when the step happened; zero means now.
	at time.Time
	// write makes the step's other changes and fills the event's
	// step-specific fields. It runs only when the step is applied for the
	// first time, under the order's row lock.
	write func(ctx context.Context, q *db.Queries, o db.Order, ev *events.OrderEvent) error
}

// apply runs s in a transaction of its own.
func (a *Activities) apply(ctx context.Context, s step) error {
	err := a.Store.InTx(ctx, func(q *db.Queries) error { return a.emit(ctx, q, s) })
	if err == nil {
		a.committed()
	}
	return err
}

// committed wakes the relay, if there is one in this process. A step that
// was already applied wakes it too, which costs one idle claim.
func (a *Activities) committed() {
	if a.Committed != nil {
		a.Committed()
	}
}

// emit applies s inside the caller's transaction: it locks the order,
// returns at once when the step's event is already on the order's timeline
// (a retried activity writes nothing twice), and otherwise bumps the order's
// version and writes the step's own rows, the timeline row and the outbox
// row. The row lock makes version order equal commit order.
func (a *Activities) emit(ctx context.Context, q *db.Queries, s step) error {
	orderID := s.orderID.String()
	eventID := events.EventID(orderID, s.eventType, s.discriminator)
	o, err := q.LockOrder(ctx, s.orderID)
	if errors.Is(err, sql.ErrNoRows) {
		return unknownOrder(s.orderID)
	}
	if err != nil {
		return fmt.Errorf("lock order: %w", err)
	}
	done, err := q.TimelineHasEvent(ctx, eventID)
	if err != nil {
		return fmt.Errorf("check timeline: %w", err)
	}
	if done {
		a.logger().DebugContext(ctx, "order step already applied", "order_id", orderID, "event_type", s.eventType, "event_id", eventID)
		return nil
	}

	at := s.at
	if at.IsZero() {
		at = a.now()
	}
	status, reason := o.Status, o.Reason
	eventReason := ""
	if s.status != "" {
		status, reason, eventReason = string(s.status), s.reason, s.reason
	}
	ev := events.OrderEvent{
		OrderID:      orderID,
		Status:       status,
		CustomerID:   o.CustomerID,
		RestaurantID: o.RestaurantID,
		Reason:       eventReason,
		OccurredAt:   at,
	}
	if s.write != nil {
		if err := s.write(ctx, q, o, &ev); err != nil {
			return err
		}
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode %s payload: %w", s.eventType, err)
	}
	headers, err := json.Marshal(map[string]string{events.HeaderTraceparent: events.Traceparent(orderID, eventID)})
	if err != nil {
		return fmt.Errorf("encode %s headers: %w", s.eventType, err)
	}
	// One statement: the version bump, the timeline row and the outbox row.
	rec, err := q.RecordStep(ctx, db.RecordStepParams{
		ID: o.ID, Status: status, Reason: reason, OccurredAt: at,
		EventID: eventID, EventType: s.eventType, EventReason: eventReason,
		AggregateType: events.AggregateOrder, Payload: payload,
		Headers: pqtype.NullRawMessage{RawMessage: headers, Valid: true},
	})
	if err != nil {
		return fmt.Errorf("record %s: %w", s.eventType, err)
	}
	if rec.OutboxRows == 0 {
		// The timeline and the outbox are written together, so the outbox
		// cannot hold an event the timeline lacks; refuse to number it twice.
		return fmt.Errorf("insert outbox: event %s is in the outbox but not on the timeline", eventID)
	}
	a.logger().DebugContext(ctx, "order event recorded", "order_id", orderID, "event_type", s.eventType, "version", rec.Version)
	return nil
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
// returned value only: once wrapped (by fmt.Errorf, or by the errors.Join in
// db.Store.InTx) a non-retryable error would be retried as a generic one.
func surface(err error) error {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr
	}
	return err
}

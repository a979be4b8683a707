// Package inbound is the order context's side of the choreography: it
// consumes the events of other contexts that move an order on. Today that
// is delivery.completed from the delivery context, which becomes the order
// workflow's delivered Update, the same one POST /v1/orders/{id}/delivered
// sends.
package inbound

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/events/consumer"
	"github.com/orderflow/orderflow/workflows"
)

// DeliveriesConsumer is the durable consumer of delivery.completed, and its
// inbox key.
const DeliveriesConsumer = "orders-delivery"

// updateAckWait bounds one delivery: the Update returns once the workflow
// has completed the order, which takes an activity or two.
const updateAckWait = time.Minute

// ErrNotYetAccepted is the transient error of a delivery reported for an
// order the restaurant has not accepted yet: it is retried along the
// consumer's backoff, and dead-lettered if the order never gets there.
var ErrNotYetAccepted = errors.New("order not accepted yet")

// Deliveries turns delivery.completed into the delivered Update.
type Deliveries struct {
	store    *db.Store
	temporal client.Client
	logger   *slog.Logger
}

// NewDeliveries returns the consumer's handler over the order context's
// database (its inbox, and the read model it checks a refused Update
// against) and the Temporal client.
func NewDeliveries(store *db.Store, tc client.Client, logger *slog.Logger) *Deliveries {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Deliveries{store: store, temporal: tc, logger: logger.With("context", "orders")}
}

// ConsumerConfig is the consumer of delivery.completed. Its handler waits
// for a workflow, so few messages are taken at once and each may take up to
// a minute. Callers may tune it before consumer.New.
func (d *Deliveries) ConsumerConfig(js jetstream.JetStream) consumer.Config {
	return consumer.Config{
		Name:          DeliveriesConsumer,
		Stream:        events.DeliveryStream,
		Subjects:      []string{events.Subject(events.DeliveryCompleted, "*")},
		Handler:       d.Handle,
		Validate:      consumer.ValidateSchema,
		DB:            d.store.DB,
		JetStream:     js,
		Logger:        d.logger,
		AckWait:       updateAckWait,
		MaxAckPending: 256,
	}
}

// Handle sends the delivered Update for the event's order, idempotently:
// the Update's ID is the event's, so Temporal answers a repeated one with
// the first outcome, and a refusal is judged by the order's state (already
// delivered or completed: done; not accepted yet: retried; ended otherwise:
// nothing to do).
func (d *Deliveries) Handle(ctx context.Context, _ *sql.Tx, env events.Envelope) error {
	if env.EventType() != events.DeliveryCompleted {
		return nil
	}
	var ev events.DeliveryCompletedEvent
	if err := json.Unmarshal(env.Data, &ev); err != nil {
		return consumer.Permanentf("decode %s: %w", env.Type, err)
	}
	id, err := uuid.Parse(ev.OrderID)
	if err != nil {
		return consumer.Permanentf("%s: order id %q is not a UUID", env.Type, ev.OrderID)
	}
	h, err := d.temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   orderflow.OrderWorkflowID(id.String()),
		UpdateID:     "delivery:" + env.ID,
		UpdateName:   workflows.UpdateDelivered,
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	var res workflows.DecisionResult
	if err == nil {
		err = h.Get(ctx, &res)
	}
	if err == nil {
		d.logger.InfoContext(ctx, "order delivered", "order_id", id, "courier_id", ev.CourierID, "status", res.Status)
		return nil
	}
	return d.refused(ctx, id, err)
}

// refused decides what a failed Update means.
func (d *Deliveries) refused(ctx context.Context, id uuid.UUID, err error) error {
	var (
		appErr *temporal.ApplicationError
		nf     *serviceerror.NotFound
	)
	refusedByWorkflow := errors.As(err, &appErr)
	if !refusedByWorkflow && !errors.As(err, &nf) {
		return fmt.Errorf("delivered update of order %s: %w", id, err)
	}
	o, gerr := d.store.GetOrder(ctx, id)
	switch {
	case errors.Is(gerr, sql.ErrNoRows) && refusedByWorkflow:
		return fmt.Errorf("order %s is not recorded yet: %w", id, ErrNotYetAccepted)
	case errors.Is(gerr, sql.ErrNoRows):
		return consumer.Permanentf("no order %s", id)
	case gerr != nil:
		return fmt.Errorf("get order: %w", gerr)
	}
	switch st := orderflow.OrderStatus(o.Status); {
	case st == orderflow.StatusCompleted:
		d.logger.DebugContext(ctx, "order already completed", "order_id", id)
		return nil
	case st == orderflow.StatusAccepted && refusedByWorkflow && appErr.Type() == workflows.ErrTypeAlreadyDelivered:
		// The validator refuses a second delivered: it is on its way.
		d.logger.DebugContext(ctx, "order already marked delivered", "order_id", id)
		return nil
	case st == orderflow.StatusPlaced || st == orderflow.StatusAwaitingAcceptance || st == orderflow.StatusAccepted && refusedByWorkflow:
		// Accepted in the database but refused as not accepted: the
		// acceptance is recorded and the workflow has not taken it in yet
		// (its worker restarted between the two, say). Dropping the
		// delivery would leave the order waiting for one forever.
		return fmt.Errorf("order %s is %s: %w", id, st, ErrNotYetAccepted)
	case st.Final():
		d.logger.WarnContext(ctx, "delivery reported for an order that ended otherwise; nothing to do", "order_id", id, "status", st)
		return nil
	default:
		return fmt.Errorf("delivered update of order %s (%s): %w", id, st, err)
	}
}

// Package courier is a simulated delivery context for `orderflow dev` and
// the tests: for every accepted order it publishes delivery.completed a
// fixed time after the acceptance, as a real delivery context would once
// its courier handed the order over. It consumes order.accepted with the
// consumer kit and waits by having JetStream redeliver the event when the
// time has come (consumer.RetryAfter), not by sleeping, so a restart loses
// no delivery and sends none twice.
package courier

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

	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/events/consumer"
)

// ConsumerName is the courier's durable consumer and inbox key.
const ConsumerName = "courier"

// Config describes the courier.
type Config struct {
	// Delay is how long after an order's acceptance it is delivered.
	Delay time.Duration
	// Store holds the courier's inbox.
	Store     *db.Store
	JetStream jetstream.JetStream
	Logger    *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Courier is the simulated delivery context.
type Courier struct {
	cfg Config
	log *slog.Logger
}

// New returns a courier; Delay must be positive.
func New(cfg Config) (*Courier, error) {
	if cfg.Delay <= 0 {
		return nil, errors.New("courier: the delay must be positive")
	}
	if cfg.Store == nil || cfg.JetStream == nil {
		return nil, errors.New("courier: a store and a JetStream connection are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Courier{cfg: cfg, log: cfg.Logger.With("context", "courier")}, nil
}

// ConsumerConfig is the courier's consumer: order.accepted only. Every
// order on its way holds a message unacknowledged until its delivery, so
// MaxAckPending is large; MaxDeliver leaves room for redeliveries that come
// a little early.
func (c *Courier) ConsumerConfig() consumer.Config {
	return consumer.Config{
		Name:          ConsumerName,
		Stream:        events.OrderStream,
		Subjects:      []string{events.Subject(events.OrderAccepted, "*")},
		Handler:       c.Handle,
		Validate:      consumer.ValidateSchema,
		DB:            c.cfg.Store.DB,
		JetStream:     c.cfg.JetStream,
		Logger:        c.log,
		MaxAckPending: 20000,
	}
}

// Handle waits until the order's delivery time, then publishes
// delivery.completed. Its event ID is derived from the order, so a publish
// repeated after a crash is the same event: the stream's duplicate window
// and the order context's inbox drop the copy.
func (c *Courier) Handle(ctx context.Context, _ *sql.Tx, env events.Envelope) error {
	if env.EventType() != events.OrderAccepted {
		return nil
	}
	var ev events.OrderEvent
	if err := json.Unmarshal(env.Data, &ev); err != nil {
		return consumer.Permanentf("decode %s: %w", env.Type, err)
	}
	orderID, err := uuid.Parse(ev.OrderID)
	if err != nil {
		return consumer.Permanentf("%s without an order id", env.Type)
	}
	accepted := ev.OccurredAt
	if accepted.IsZero() {
		accepted = env.Time
	}
	due := accepted.Add(c.cfg.Delay).UTC().Truncate(time.Microsecond)
	if wait := due.Sub(c.cfg.Now()); wait > 0 {
		return consumer.RetryAfter(wait, "the courier is on the way")
	}
	out, err := Delivered(orderID, CourierID(orderID), due)
	if err != nil {
		return err
	}
	if _, err := c.cfg.JetStream.PublishMsg(ctx, out.Msg()); err != nil {
		return fmt.Errorf("publish %s: %w", events.DeliveryCompleted, err)
	}
	c.log.InfoContext(ctx, "order delivered", "order_id", orderID, "courier_id", CourierID(orderID), "delivered_at", due)
	return nil
}

// CourierID names the simulated courier of an order.
func CourierID(orderID uuid.UUID) string {
	return fmt.Sprintf("courier-%x", orderID[:2])
}

// Delivered is the delivery.completed event of an order, as the delivery
// context publishes it.
func Delivered(orderID uuid.UUID, courierID string, at time.Time) (events.Envelope, error) {
	id := orderID.String()
	data, err := json.Marshal(events.DeliveryCompletedEvent{OrderID: id, CourierID: courierID, DeliveredAt: at.UTC()})
	if err != nil {
		return events.Envelope{}, err
	}
	return events.Envelope{
		ID:      events.DeliveryEventID(id, events.DeliveryCompleted).String(),
		Type:    events.CEType(events.DeliveryCompleted),
		Source:  events.SourceDelivery,
		Subject: id,
		Time:    at.UTC(),
		// A delivery has this one event.
		Sequence: 1,
		Data:     data,
	}, nil
}

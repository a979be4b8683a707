// Package analytics is the restaurant analytics bounded context: a
// projection of the order events per restaurant and day — orders placed,
// accepted, rejected, timed out and cancelled, and the median time to
// accept. It reads the whole order stream with an ordered consumer (so an
// order's acceptance is counted after its placement), keeps its tables in
// a schema of its own (analytics), and the HTTP API mounts its read side.
//
// A day is the UTC calendar day an order was placed on; all of the order's
// counts go to that day, also an acceptance after midnight.
//
// The counts are the restaurant's, judged from each order's own history as
// the projection saw it, never from reason texts. Placed counts every order
// placed at the restaurant, also one whose payment was then declined. The
// order workflow ends such an order with order.rejected before the
// restaurant hears of it; a rejection counts only for an order the
// restaurant was notified of (order.restaurant_notified), and so does a
// time-out (an order authorized only after its accept_by times out before
// the restaurant is sent it). order.cancelled
// ends an order cancelled by the customer before the restaurant decided,
// and also one whose workflow was cancelled, maybe after the acceptance: a
// cancellation counts only before the acceptance, and an order cancelled
// after it stays counted as accepted. Rejections and cancellations need the
// order's earlier events: an order the projection first sees at its
// rejection, time-out or cancellation (its earlier events had aged out of
// the stream before the projection started) counts as none of them. Every
// order the projection sees counts as placed, also one it first sees after
// its placement (on the day of that first event), so that placed is at
// least the sum of the outcomes.
package analytics

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

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/events/consumer"
)

// ConsumerName is the analytics context's durable consumer and inbox key.
const ConsumerName = "analytics"

// MaxDays bounds the days one stats request covers.
const MaxDays = 366

// DateLayout is how days are written.
const DateLayout = time.DateOnly

// outcomes names the per-day counter and the order outcome of each event
// type that ends an order's wait for the restaurant.
var outcomes = map[string]string{
	events.OrderAccepted:  "accepted",
	events.OrderRejected:  "rejected",
	events.OrderTimedOut:  "timed_out",
	events.OrderCancelled: "cancelled",
}

// projected tells the event types the projection applies; it ignores the
// others.
func projected(eventType string) bool {
	_, ok := outcomes[eventType]
	return ok || eventType == events.OrderPlaced || eventType == events.OrderRestaurantNotified
}

// Service is the analytics context.
type Service struct {
	store  *db.Store
	logger *slog.Logger
}

// New returns the context over its database.
func New(store *db.Store, logger *slog.Logger) *Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Service{store: store, logger: logger.With("context", "analytics")}
}

// ConsumerConfig is the context's consumer: the whole order stream,
// ordered per order, schema-checked. Callers may tune it before
// consumer.New.
func (s *Service) ConsumerConfig(js jetstream.JetStream) consumer.Config {
	return consumer.Config{
		Name:      ConsumerName,
		Stream:    events.OrderStream,
		Ordered:   true,
		Handler:   s.Handle,
		Validate:  consumer.ValidateSchema,
		DB:        s.store.DB,
		JetStream: js,
		Logger:    s.logger,
	}
}

// Handle projects one order event, in the consumer's transaction (so each
// event counts once). Types the projection does not use are ignored.
func (s *Service) Handle(ctx context.Context, tx *sql.Tx, env events.Envelope) error {
	eventType := env.EventType()
	if !projected(eventType) {
		return nil
	}
	var ev events.OrderEvent
	if err := json.Unmarshal(env.Data, &ev); err != nil {
		return consumer.Permanentf("decode %s: %w", env.Type, err)
	}
	orderID, err := uuid.Parse(ev.OrderID)
	if err != nil || ev.RestaurantID == "" {
		return consumer.Permanentf("%s without an order id and a restaurant id", env.Type)
	}
	at := ev.OccurredAt
	if at.IsZero() {
		at = env.Time
	}
	q := db.New(tx)
	o, err := q.GetAnalyticsOrder(ctx, orderID)
	seen := err == nil // the projection saw an earlier event of the order
	if errors.Is(err, sql.ErrNoRows) {
		// Normally order.placed; another type when the projection joined
		// the stream after the order's placement (it counts on the day of
		// this event then, with no time to accept).
		o = db.AnalyticsOrder{OrderID: orderID, RestaurantID: ev.RestaurantID, Day: day(at)}
		if eventType == events.OrderPlaced {
			o.PlacedAt = sql.NullTime{Time: at, Valid: true}
		}
		n, err := q.InsertAnalyticsOrder(ctx, db.InsertAnalyticsOrderParams{
			OrderID: o.OrderID, RestaurantID: o.RestaurantID, Day: o.Day, PlacedAt: o.PlacedAt,
		})
		if err != nil {
			return fmt.Errorf("insert order: %w", err)
		}
		if n == 1 && eventType != events.OrderPlaced {
			// The order was placed all the same, before the projection's
			// reach: placed counts every order, and is at least the sum
			// of the outcomes.
			if err := q.CountRestaurantDay(ctx, db.CountRestaurantDayParams{RestaurantID: o.RestaurantID, Day: o.Day, Counter: "placed"}); err != nil {
				return fmt.Errorf("count placed: %w", err)
			}
		}
	} else if err != nil {
		return fmt.Errorf("get order: %w", err)
	}
	counter := ""
	switch eventType {
	case events.OrderPlaced:
		counter = "placed"
	case events.OrderRestaurantNotified:
		if err := q.SetAnalyticsOrderNotified(ctx, orderID); err != nil {
			return fmt.Errorf("set notified: %w", err)
		}
	case events.OrderAccepted:
		var ms sql.NullInt64
		if o.PlacedAt.Valid && !at.Before(o.PlacedAt.Time) {
			ms = sql.NullInt64{Int64: at.Sub(o.PlacedAt.Time).Milliseconds(), Valid: true}
		}
		if err := q.SetAnalyticsOrderAccepted(ctx, db.SetAnalyticsOrderAcceptedParams{
			OrderID: orderID, AcceptedAt: sql.NullTime{Time: at, Valid: true}, AcceptMs: ms,
		}); err != nil {
			return fmt.Errorf("set accepted: %w", err)
		}
		counter = "accepted"
	default:
		outcome := outcomes[eventType]
		if err := q.SetAnalyticsOrderOutcome(ctx, db.SetAnalyticsOrderOutcomeParams{OrderID: orderID, Outcome: outcome}); err != nil {
			return fmt.Errorf("set outcome: %w", err)
		}
		switch {
		case eventType == events.OrderRejected && !o.Notified:
			// The restaurant never heard of the order: its payment was
			// declined (or the projection cannot tell).
		case eventType == events.OrderTimedOut && !o.Notified:
			// Not the restaurant's time-out: the payment was authorized
			// only after accept_by, and the order never sent to it (or the
			// projection cannot tell).
		case eventType == events.OrderCancelled && (!seen || o.AcceptedAt.Valid):
			// Cancelled after the acceptance (it stays accepted), or the
			// projection cannot tell.
		default:
			counter = outcome
		}
	}
	if counter == "" {
		return nil
	}
	if err := q.CountRestaurantDay(ctx, db.CountRestaurantDayParams{RestaurantID: o.RestaurantID, Day: o.Day, Counter: counter}); err != nil {
		return fmt.Errorf("count %s: %w", counter, err)
	}
	return nil
}

// Counts are a restaurant's numbers over a day or a range of days.
type Counts struct {
	// Placed counts every order placed at the restaurant, also those whose
	// payment was declined, that failed, or that still wait: it is at
	// least the sum of the four outcomes below.
	Placed   int `json:"placed"`
	Accepted int `json:"accepted"`
	// Rejected by the restaurant: a declined payment, which rejects the
	// order before the restaurant is notified, is not counted.
	Rejected int `json:"rejected"`
	// TimedOut counts the orders the restaurant was sent and did not
	// answer in time.
	TimedOut int `json:"timed_out"`
	// Cancelled before the restaurant decided, by the customer or by the
	// cancellation of the order's workflow. An order cancelled after its
	// acceptance stays counted as accepted.
	Cancelled int `json:"cancelled"`
	// MedianSecondsToAccept is the median time from placement to
	// acceptance; nil when no accepted order's placement is known.
	MedianSecondsToAccept *float64 `json:"median_seconds_to_accept"`
}

// Day is one day's counts.
type Day struct {
	Day string `json:"day"`
	Counts
}

// RestaurantStats is a restaurant's projection over a range of days.
type RestaurantStats struct {
	RestaurantID string `json:"restaurant_id"`
	From         string `json:"from"`
	To           string `json:"to"`
	// Totals covers the whole range; its median is over every acceptance
	// in it, not a median of the daily medians.
	Totals Counts `json:"totals"`
	// Days lists every day of the range, oldest first, with zeros for a
	// day without orders.
	Days []Day `json:"days"`
}

// Stats is the restaurant's projection from one day to another, both
// included. A restaurant with no orders in the range has zeros:
// analytics knows restaurants only from events.
func (s *Service) Stats(ctx context.Context, restaurantID string, from, to time.Time) (RestaurantStats, error) {
	from, to = day(from), day(to)
	if to.Before(from) {
		return RestaurantStats{}, orderflow.FieldErrorf("from", "%s is after to (%s)", from.Format(DateLayout), to.Format(DateLayout))
	}
	if n := int(to.Sub(from).Hours()/24) + 1; n > MaxDays {
		return RestaurantStats{}, orderflow.FieldErrorf("from", "the range covers %d days; at most %d", n, MaxDays)
	}
	rows, err := s.store.ListRestaurantDays(ctx, db.ListRestaurantDaysParams{RestaurantID: restaurantID, FromDay: from, ToDay: to})
	if err != nil {
		return RestaurantStats{}, fmt.Errorf("list days: %w", err)
	}
	medians, err := s.store.ListRestaurantAcceptMedians(ctx, db.ListRestaurantAcceptMediansParams{RestaurantID: restaurantID, FromDay: from, ToDay: to})
	if err != nil {
		return RestaurantStats{}, fmt.Errorf("list medians: %w", err)
	}
	total, err := s.store.RestaurantAcceptMedian(ctx, db.RestaurantAcceptMedianParams{RestaurantID: restaurantID, FromDay: from, ToDay: to})
	if err != nil {
		return RestaurantStats{}, fmt.Errorf("median: %w", err)
	}
	byDay := map[string]*Day{}
	out := RestaurantStats{RestaurantID: restaurantID, From: from.Format(DateLayout), To: to.Format(DateLayout)}
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		out.Days = append(out.Days, Day{Day: d.Format(DateLayout)})
	}
	for i := range out.Days {
		byDay[out.Days[i].Day] = &out.Days[i]
	}
	for _, r := range rows {
		d := byDay[r.Day.UTC().Format(DateLayout)]
		if d == nil {
			continue
		}
		d.Placed, d.Accepted, d.Rejected = int(r.Placed), int(r.Accepted), int(r.Rejected)
		d.TimedOut, d.Cancelled = int(r.TimedOut), int(r.Cancelled)
		out.Totals.Placed += d.Placed
		out.Totals.Accepted += d.Accepted
		out.Totals.Rejected += d.Rejected
		out.Totals.TimedOut += d.TimedOut
		out.Totals.Cancelled += d.Cancelled
	}
	for _, m := range medians {
		if d := byDay[m.Day.UTC().Format(DateLayout)]; d != nil {
			d.MedianSecondsToAccept = seconds(m.MedianMs)
		}
	}
	if total.N > 0 {
		out.Totals.MedianSecondsToAccept = seconds(total.MedianMs)
	}
	return out, nil
}

// day is the UTC calendar day of t, at midnight.
func day(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func seconds(ms float64) *float64 {
	s := ms / 1000
	return &s
}

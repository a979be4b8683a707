package courier_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/courier"
	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/db/dbtest"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/events/consumer"
	"github.com/orderflow/orderflow/events/eventtest"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// counts are what couriers' consumers did, across restarts.
type counts struct {
	// deferred: deliveries put off until their time; applied: events
	// handled and committed (for an acceptance, its delivery published).
	deferred, applied atomic.Int64
}

// start runs a courier until stop is called or the test ends, counting
// into n.
func start(tb testing.TB, store *db.Store, bus *eventtest.Bus, delay time.Duration, n *counts) (stop func()) {
	tb.Helper()
	c, err := courier.New(courier.Config{Delay: delay, Store: store, JetStream: bus.JS, Logger: eventtest.Logger()})
	if err != nil {
		tb.Fatal(err)
	}
	cfg := c.ConsumerConfig()
	cfg.Observe = func(o consumer.Outcome) {
		switch o.Result {
		case consumer.Deferred:
			n.deferred.Add(1)
		case consumer.Applied:
			n.applied.Add(1)
		}
		if o.Result == consumer.Terminated || o.Result == consumer.Retried {
			tb.Errorf("courier: %s %s: %v", o.Result, o.Env.Type, o.Err)
		}
	}
	k, err := consumer.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	var stopped atomic.Bool
	stop = func() {
		if stopped.Swap(true) {
			return
		}
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("courier: %v", err)
		}
	}
	tb.Cleanup(stop)
	return stop
}

// deliveries returns what the delivery stream holds.
func deliveries(tb testing.TB, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	tb.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, events.DeliveryStream)
	if err != nil {
		tb.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := uint64(1); ; seq++ {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out
		}
		if err != nil {
			tb.Fatalf("read %s: %v", events.DeliveryStream, err)
		}
		seq = m.Sequence
		out = append(out, m)
	}
}

func waitDeliveries(tb testing.TB, js jetstream.JetStream, n int) []*jetstream.RawStreamMsg {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := deliveries(tb, js)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d deliveries published, want %d", len(got), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDeliversAfterDelay: delivery.completed comes the configured delay
// after the acceptance, as a valid event of the delivery context.
func TestDeliversAfterDelay(t *testing.T) {
	store, bus := dbtest.New(t), eventtest.Start(t)
	const delay = 500 * time.Millisecond
	var n counts
	start(t, store, bus, delay, &n)
	o := eventtest.Order{ID: uuid.NewString(), CustomerID: "c_ada", RestaurantID: "r_pizza"}
	acceptedAt := time.Now().UTC().Truncate(time.Microsecond)
	bus.Publish(t, eventtest.OrderEvent(o, events.OrderPlaced, 1, acceptedAt.Add(-time.Minute)))
	bus.Publish(t, eventtest.OrderEvent(o, events.OrderAccepted, 4, acceptedAt))

	m := waitDeliveries(t, bus.JS, 1)[0]
	if m.Time.Before(acceptedAt.Add(delay)) {
		t.Errorf("published at %s, before the delivery time %s", m.Time, acceptedAt.Add(delay))
	}
	env, err := events.Decode(m.Header, m.Data)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	wantID := events.DeliveryEventID(o.ID, events.DeliveryCompleted).String()
	if env.ID != wantID || env.Type != "orderflow.delivery.completed.v1" || env.Source != events.SourceDelivery ||
		env.Subject != o.ID || m.Subject != "orderflow.delivery.completed."+o.ID {
		t.Errorf("event = %+v on %s", env, m.Subject)
	}
	if err := events.ValidatePayload(events.DeliveryCompleted, env.Data); err != nil {
		t.Errorf("payload: %v", err)
	}
	var ev events.DeliveryCompletedEvent
	if err := json.Unmarshal(env.Data, &ev); err != nil || ev.OrderID != o.ID || !ev.DeliveredAt.Equal(acceptedAt.Add(delay)) || ev.CourierID == "" {
		t.Errorf("payload = %+v (%v), want delivered at %s", ev, err, acceptedAt.Add(delay))
	}
	if n.deferred.Load() < 1 {
		t.Errorf("the courier never waited")
	}
}

// TestSurvivesRestart: a courier stopped while an order is on its way
// leaves the wait with JetStream; the next one delivers it, once.
func TestSurvivesRestart(t *testing.T) {
	store, bus := dbtest.New(t), eventtest.Start(t)
	const delay = 2 * time.Second
	var n counts
	stop := start(t, store, bus, delay, &n)
	o := eventtest.Order{ID: uuid.NewString(), CustomerID: "c_ada", RestaurantID: "r_pizza"}
	acceptedAt := time.Now().UTC()
	bus.Publish(t, eventtest.OrderEvent(o, events.OrderAccepted, 4, acceptedAt))
	deadline := time.Now().Add(30 * time.Second)
	for n.deferred.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the courier never took the order")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if n := len(deliveries(t, bus.JS)); n != 0 {
		t.Fatalf("%d deliveries before the delay", n)
	}

	start(t, store, bus, delay, &n)
	got := waitDeliveries(t, bus.JS, 1)
	if got[0].Time.Before(acceptedAt.Add(delay)) {
		t.Errorf("published at %s, before the delivery time", got[0].Time)
	}
	// The stream would drop a second publish of the same event ID, so
	// once is counted at the couriers: the acceptance handled (its
	// delivery published and committed) by one of them, one time.
	eventtest.Eventually(t, "the acceptance handled", func() bool { return n.applied.Load() >= 1 })
	time.Sleep(500 * time.Millisecond) // room for a wrong second handling
	if a := n.applied.Load(); a != 1 {
		t.Errorf("the acceptance was handled %d times across the restart; want 1", a)
	}
	if d := len(deliveries(t, bus.JS)); d != 1 {
		t.Fatalf("%d deliveries, want 1", d)
	}
}

// TestNeedsDelay: no delay, no courier.
func TestNeedsDelay(t *testing.T) {
	if _, err := courier.New(courier.Config{}); err == nil {
		t.Fatal("New without a delay succeeded")
	}
}

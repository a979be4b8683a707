// Package eventtest gives tests a real event bus: a private embedded NATS
// JetStream server (events/natsdev) on a free loopback port, with
// orderflow's streams created as the relay creates them, stopped when the
// test ends. It starts in milliseconds, so each test gets its own.
package eventtest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/events/natsdev"
)

// Bus is a running server and a connection to it.
type Bus struct {
	URL string
	NC  *nats.Conn
	JS  jetstream.JetStream
}

// Start starts a server with ORDER_EVENTS and DELIVERY_EVENTS.
func Start(tb testing.TB) *Bus {
	tb.Helper()
	srv, err := natsdev.Start(natsdev.Config{
		StoreDir: filepath.Join(tb.TempDir(), "nats"), Addr: "127.0.0.1:0", Logger: Logger(),
	})
	if err != nil {
		tb.Fatalf("eventtest: start nats: %v", err)
	}
	tb.Cleanup(srv.Stop)
	nc, js := Connect(tb, srv.URL())
	return &Bus{URL: srv.URL(), NC: nc, JS: js}
}

// Connect connects to the NATS server at url with opts, closes the
// connection when the test ends, and creates orderflow's streams there as
// the relay does.
func Connect(tb testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		tb.Fatalf("eventtest: connect to nats: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("eventtest: jetstream: %v", err)
	}
	if err := events.EnsureStreams(context.Background(), js, events.StreamConfig{}); err != nil {
		tb.Fatalf("eventtest: %v", err)
	}
	return nc, js
}

// Eventually polls cond until it holds; the deadline (30 s) bounds a
// hang and asserts nothing about speed.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Publish publishes env as the relay does and returns its stream sequence.
func (b *Bus) Publish(tb testing.TB, env events.Envelope) uint64 {
	tb.Helper()
	return b.PublishMsg(tb, env.Msg())
}

// PublishMsg publishes m and returns its stream sequence.
func (b *Bus) PublishMsg(tb testing.TB, m *nats.Msg) uint64 {
	tb.Helper()
	ack, err := b.JS.PublishMsg(context.Background(), m)
	if err != nil {
		tb.Fatalf("eventtest: publish %s: %v", m.Subject, err)
	}
	return ack.Sequence
}

// Logger logs to stderr with -v and nowhere otherwise.
func Logger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Order describes the order an OrderEvent is about.
type Order struct {
	ID           string
	CustomerID   string
	RestaurantID string
}

// OrderEvent is a schema-valid order event of the given type and version
// (ce-sequence), as the order context emits it at time at.
func OrderEvent(o Order, eventType string, seq int64, at time.Time) events.Envelope {
	at = at.UTC().Truncate(time.Microsecond)
	ev := events.OrderEvent{
		OrderID: o.ID, CustomerID: o.CustomerID, RestaurantID: o.RestaurantID, OccurredAt: at,
		Status: string(orderflow.StatusAccepted),
	}
	switch eventType {
	case events.OrderPlaced:
		acceptBy := at.Add(10 * time.Minute)
		ev.Status, ev.AcceptBy = string(orderflow.StatusPlaced), &acceptBy
		ev.Items = []events.OrderItem{{MenuItemID: "m_margherita", Name: "Margherita", UnitPriceCents: 1150, Quantity: 2}}
		ev.TotalCents, ev.DeliveryAddress = 2300, "1 Main St"
	case events.OrderPaymentAuthorized:
		ev.Status = string(orderflow.StatusPlaced)
		ev.PaymentStatus, ev.AuthorizationID, ev.AmountCents = string(orderflow.PaymentAuthorized), "auth-"+o.ID, 2300
	case events.OrderRestaurantNotified:
		ev.Status = string(orderflow.StatusAwaitingAcceptance)
	case events.OrderRejected:
		ev.Status, ev.Reason = string(orderflow.StatusRejected), "kitchen closed"
	case events.OrderTimedOut:
		ev.Status, ev.Reason = string(orderflow.StatusTimedOut), "restaurant did not answer"
	case events.OrderCancelled:
		ev.Status, ev.Reason = string(orderflow.StatusCancelled), "changed my mind"
	case events.OrderCompleted:
		ev.Status = string(orderflow.StatusCompleted)
	}
	data, err := json.Marshal(ev)
	if err != nil {
		panic(err) // a plain struct always encodes
	}
	return events.Envelope{
		ID:       events.EventID(o.ID, eventType, "").String(),
		Type:     events.CEType(eventType),
		Source:   events.SourceOrders,
		Subject:  o.ID,
		Time:     at,
		Sequence: seq,
		Data:     data,
	}
}

// Lines collects what a command such as consumer.Tail prints, a line at a
// time, and calls Cancel once Want lines have arrived (and a little
// after, to catch any line that should not come), so that a test waits
// for the output instead of for a fixed while.
type Lines struct {
	Want   int
	Cancel context.CancelFunc

	mu   sync.Mutex
	buf  bytes.Buffer
	once sync.Once
}

// Write implements io.Writer.
func (l *Lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.buf.Write(p)
	if bytes.Count(l.buf.Bytes(), []byte("\n")) >= l.Want {
		l.once.Do(func() { time.AfterFunc(200*time.Millisecond, l.Cancel) })
	}
	return n, err
}

// Bytes is what was written so far.
func (l *Lines) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.buf.Bytes())
}

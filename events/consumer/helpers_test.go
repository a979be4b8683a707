package consumer_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/db/dbtest"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/events/consumer"
	"github.com/orderflow/orderflow/events/eventtest"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// orderEvent is an order event of aggregate orderID at version seq, whose
// payload carries the test's mark.
func orderEvent(orderID, eventType string, seq int64, mark string) events.Envelope {
	data, _ := json.Marshal(map[string]any{"order_id": orderID, "mark": mark})
	return events.Envelope{
		ID:       events.EventID(orderID, eventType, fmt.Sprint(seq)).String(),
		Type:     events.CEType(eventType),
		Source:   events.SourceOrders,
		Subject:  orderID,
		Time:     time.Now().UTC(),
		Sequence: seq,
		Data:     data,
	}
}

// effects is the test handler's table: one row per event it applied.
const effectsDDL = `CREATE TABLE kit_effects (
	n        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	consumer text NOT NULL,
	event_id text NOT NULL,
	subject  text NOT NULL,
	sequence bigint NOT NULL
)`

// fixture is a database with the effects table, a bus, and a recording of
// every outcome.
type fixture struct {
	store *db.Store
	bus   *eventtest.Bus

	mu       sync.Mutex
	outcomes []consumer.Outcome
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	f := &fixture{store: dbtest.New(tb), bus: eventtest.Start(tb)}
	if _, err := f.store.DB.Exec(effectsDDL); err != nil {
		tb.Fatalf("create effects table: %v", err)
	}
	return f
}

// record is a handler that writes one effect row per event, in the
// consumer's transaction; fail, when set, decides an error first.
func (f *fixture) record(name string, fail func(env events.Envelope) error) consumer.Handler {
	return func(ctx context.Context, tx *sql.Tx, env events.Envelope) error {
		if fail != nil {
			if err := fail(env); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO kit_effects (consumer, event_id, subject, sequence) VALUES ($1, $2, $3, $4)`,
			name, env.ID, env.Subject, env.Sequence)
		return err
	}
}

// config is a consumer configuration with fast retries.
func (f *fixture) config(tb testing.TB, name string, ordered bool, fail func(events.Envelope) error) consumer.Config {
	return consumer.Config{
		Name: name, Stream: events.OrderStream, Ordered: ordered,
		Handler: f.record(name, fail), DB: f.store.DB, JetStream: f.bus.JS, Logger: testLogger(tb),
		MaxDeliver: 4, Backoff: []time.Duration{20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond},
		AckWait: 5 * time.Second,
		Observe: func(o consumer.Outcome) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.outcomes = append(f.outcomes, o)
		},
	}
}

// run starts a consumer and stops it when the test ends.
func run(tb testing.TB, cfg consumer.Config) *consumer.Consumer {
	tb.Helper()
	c, err := consumer.New(cfg)
	if err != nil {
		tb.Fatalf("new consumer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("consumer %s: %v", cfg.Name, err)
		}
	})
	return c
}

// effect is one row of kit_effects.
type effect struct {
	EventID  string
	Subject  string
	Sequence int64
}

// effects returns the consumer's effects in the order they were written.
func (f *fixture) effects(tb testing.TB, name string) []effect {
	tb.Helper()
	rows, err := f.store.DB.Query(`SELECT event_id, subject, sequence FROM kit_effects WHERE consumer = $1 ORDER BY n`, name)
	if err != nil {
		tb.Fatalf("query effects: %v", err)
	}
	defer rows.Close()
	var out []effect
	for rows.Next() {
		var e effect
		if err := rows.Scan(&e.EventID, &e.Subject, &e.Sequence); err != nil {
			tb.Fatalf("scan effect: %v", err)
		}
		out = append(out, e)
	}
	return out
}

// sequences returns the sequences applied for one aggregate, in order.
func (f *fixture) sequences(tb testing.TB, name, subject string) []int64 {
	tb.Helper()
	var seqs []int64
	for _, e := range f.effects(tb, name) {
		if e.Subject == subject {
			seqs = append(seqs, e.Sequence)
		}
	}
	return seqs
}

// deadLetters waits until the consumer has n dead letters, and returns them.
func (f *fixture) deadLetters(tb testing.TB, name string, n int) []consumer.DeadLetter {
	tb.Helper()
	var got []consumer.DeadLetter
	eventtest.Eventually(tb, fmt.Sprintf("%d dead letters of %s", n, name), func() bool {
		var err error
		got, err = consumer.DeadLetters(context.Background(), f.bus.JS, name)
		if err != nil {
			tb.Fatalf("list dead letters: %v", err)
		}
		return len(got) >= n
	})
	if len(got) != n {
		tb.Fatalf("%d dead letters, want %d: %+v", len(got), n, got)
	}
	return got
}

func newOrderID() string { return uuid.NewString() }

func wantSeqs(tb testing.TB, what string, got, want []int64) {
	tb.Helper()
	if !slices.Equal(got, want) {
		tb.Fatalf("%s: sequences applied %v, want %v", what, got, want)
	}
}

func testLogger(testing.TB) *slog.Logger { return eventtest.Logger() }

// logs is what a consumer logged, for the lines an operator reads there.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// logger logs into l.
func (l *logs) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// Write implements io.Writer.
func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// has reports whether a line so far says s.
func (l *logs) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Contains(l.buf.Bytes(), []byte(s))
}

package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/db/dbtest"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/events/consumer"
	"github.com/orderflow/orderflow/events/eventtest"
)

// TestMain stops the private PostgreSQL that dbtest starts for
// TestEventsCommands.
func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

func TestFromEnvCourierDelay(t *testing.T) {
	tests := []struct {
		name    string
		vars    map[string]string
		want    time.Duration
		wantErr string
	}{
		{name: "unset: no courier", want: 0},
		{name: "set", vars: map[string]string{"ORDERFLOW_COURIER_DELAY": "30s"}, want: 30 * time.Second},
		{name: "not a duration", vars: map[string]string{"ORDERFLOW_COURIER_DELAY": "soon"}, wantErr: "ORDERFLOW_COURIER_DELAY"},
		{name: "negative", vars: map[string]string{"ORDERFLOW_COURIER_DELAY": "-1s"}, wantErr: "ORDERFLOW_COURIER_DELAY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := FromEnv(newEnv(t, tt.vars))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("FromEnv = %v, want an error naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil || cfg.CourierDelay != tt.want {
				t.Fatalf("CourierDelay = %s (%v), want %s", cfg.CourierDelay, err, tt.want)
			}
		})
	}
}

func TestParseSince(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
		err  bool
	}{
		{in: "2026-03-14T12:00:00Z", want: time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)},
		{in: "2026-03-14", want: time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)},
		{in: "yesterday", err: true},
		{in: "-5m", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSince(tt.in)
			if (err != nil) != tt.err || (!tt.err && !got.Equal(tt.want)) {
				t.Fatalf("parseSince(%q) = %s, %v", tt.in, got, err)
			}
		})
	}
	if got, err := parseSince("10m"); err != nil || time.Since(got) < 10*time.Minute {
		t.Fatalf("parseSince(10m) = %s, %v; want ten minutes ago", got, err)
	}
}

// TestEventsCommands drives `orderflow events` against a real bus: a
// consumer dead-letters an event, dlq list shows it, dlq redrive hands it
// back once fixed, replay redelivers, tail prints CloudEvents JSON.
func TestEventsCommands(t *testing.T) {
	bus := eventtest.Start(t)
	store := dbtest.New(t)
	cfg, err := FromEnv(newEnv(t, map[string]string{"NATS_URL": bus.URL}))
	if err != nil {
		t.Fatal(err)
	}
	var fixed atomic.Bool
	var applied, dups atomic.Int64
	k, err := consumer.New(consumer.Config{
		Name: "cli", Stream: events.OrderStream, DB: store.DB, JetStream: bus.JS, Logger: eventtest.Logger(),
		Handler: func(context.Context, *sql.Tx, events.Envelope) error {
			if !fixed.Load() {
				return consumer.Permanentf("not today")
			}
			return nil
		},
		Observe: func(o consumer.Outcome) {
			switch o.Result {
			case consumer.Applied:
				applied.Add(1)
			case consumer.Duplicate:
				dups.Add(1)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	o := eventtest.Order{ID: uuid.NewString(), CustomerID: "c_ada", RestaurantID: "r_pizza"}
	env := eventtest.OrderEvent(o, events.OrderPlaced, 1, time.Now())
	bus.Publish(t, env)

	run := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := eventsCommand(context.Background(), cfg, eventtest.Logger(), args, &out); err != nil {
			t.Fatalf("orderflow events %s: %v", strings.Join(args, " "), err)
		}
		return out.String()
	}
	eventtest.Eventually(t, "the dead letter", func() bool { return strings.Contains(run("dlq", "list"), env.ID) })
	list := run("dlq", "list", "--consumer", "cli")
	for _, want := range []string{"cli", events.OrderStream + " #1", env.Type, env.NATSSubject(), env.ID, "not today"} {
		if !strings.Contains(list, want) {
			t.Errorf("dlq list does not say %q:\n%s", want, list)
		}
	}
	var entry map[string]any
	if err := json.Unmarshal([]byte(run("dlq", "list", "--json")), &entry); err != nil || entry["event_id"] != env.ID || entry["kind"] != "terminated" {
		t.Errorf("dlq list --json = %v (%v)", entry, err)
	}

	fixed.Store(true)
	if out := run("dlq", "redrive", "--consumer", "cli"); !strings.Contains(out, "handed back entry") {
		t.Errorf("dlq redrive said %q", out)
	}
	eventtest.Eventually(t, "the redriven event applied", func() bool { return applied.Load() == 1 })
	if out := run("dlq", "list"); !strings.Contains(out, "no dead letters") {
		t.Errorf("dlq list after redrive:\n%s", out)
	}
	// An entry that is not there is an error, not a quiet success.
	var out bytes.Buffer
	if err := eventsCommand(context.Background(), cfg, eventtest.Logger(), []string{"dlq", "skip", "99", "99"}, &out); err == nil || !strings.Contains(err.Error(), "no dead letter entry 99 ") {
		t.Errorf("dlq skip 99 = %v (said %q); want an error naming entry 99 once", err, out.String())
	}
	// A mistyped command or a -h is answered without a server.
	noBus := cfg
	noBus.NATSURL = "nats://127.0.0.1:1"
	if err := eventsCommand(context.Background(), noBus, eventtest.Logger(), []string{"bogus"}, &out); err == nil || strings.Contains(err.Error(), "connect") {
		t.Errorf("events bogus without a server = %v; want the unknown command", err)
	}
	if err := eventsCommand(context.Background(), noBus, eventtest.Logger(), []string{"tail", "-h"}, &out); err != nil {
		t.Errorf("events tail -h without a server = %v; want its usage", err)
	}

	if out := run("replay", "--consumer", "cli", "--since", "1h"); !strings.Contains(out, "replayed 1 events of ORDER_EVENTS") {
		t.Errorf("replay said %q", out)
	}
	eventtest.Eventually(t, "the replayed event seen", func() bool { return dups.Load() == 1 })

	// Tail runs until cancelled: once its line has come, or after a
	// deadline that only bounds a hang.
	tctx, tcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer tcancel()
	tail := &eventtest.Lines{Want: 1, Cancel: tcancel}
	if err := eventsCommand(tctx, cfg, eventtest.Logger(), []string{"tail", "--all", "--subject", "orderflow.order.*." + o.ID}, tail); err != nil {
		t.Fatalf("tail: %v", err)
	}
	var ce map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(tail.Bytes()), &ce); err != nil {
		t.Fatalf("tail printed %q: %v", tail.Bytes(), err)
	}
	if ce["specversion"] != "1.0" || ce["id"] != env.ID || ce["sequence"] != "1" || ce["subject"] != o.ID {
		t.Errorf("tail printed %v", ce)
	}
	if data, ok := ce["data"].(map[string]any); !ok || data["order_id"] != o.ID {
		t.Errorf("tail's data = %v", ce["data"])
	}
}

package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

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

// TestEventsUsageErrors: a mistake in the arguments of `orderflow events`
// is a plain line on stderr (not a log line) and exit 2, the flag
// package's convention, answered without a server.
func TestEventsUsageErrors(t *testing.T) {
	t.Setenv("NATS_URL", "nats://127.0.0.1:1")
	t.Setenv("TEMPORAL_CONFIG_FILE", filepath.Join(t.TempDir(), "absent.toml"))
	tests := []struct {
		name string
		args []string
		want []string // on stderr
	}{
		{name: "no command", args: nil, want: []string{"orderflow events: no command", "Usage: orderflow events"}},
		{name: "unknown command", args: []string{"frob"}, want: []string{`orderflow events: unknown command "frob"`, "Usage: orderflow events"}},
		{name: "unknown dlq command", args: []string{"dlq", "frob"}, want: []string{`orderflow events dlq: unknown command "frob"`}},
		{name: "no dlq command", args: []string{"dlq"}, want: []string{"orderflow events dlq: list, redrive or skip?"}},
		{name: "bad since", args: []string{"tail", "--since", "yesterday"}, want: []string{`orderflow events tail: --since "yesterday"`}},
		{name: "all and since", args: []string{"tail", "--all", "--since", "1h"}, want: []string{"orderflow events tail: give --all or --since, not both"}},
		{name: "subject with an empty token", args: []string{"tail", "--subject", "orderflow..placed"}, want: []string{`orderflow events tail: --subject "orderflow..placed": an empty token`}},
		{name: "subject with > inside", args: []string{"tail", "--subject", "orderflow.>.placed"}, want: []string{"> must be the last token"}},
		{name: "subject with a partial wildcard", args: []string{"tail", "--subject", "orderflow.order*"}, want: []string{"* and > stand only as whole tokens"}},
		{name: "subject with a space", args: []string{"tail", "--subject", "orderflow order"}, want: []string{"white space"}},
		{name: "empty subject", args: []string{"tail", "--subject", ""}, want: []string{"leave --subject out for every event"}},
		{name: "unknown flag", args: []string{"dlq", "list", "--bogus"}},
		{name: "stray argument", args: []string{"dlq", "list", "nope"}, want: []string{`orderflow events dlq list: takes flags only, not "nope"`}},
		{name: "replay without a consumer", args: []string{"replay", "--since", "1h"}, want: []string{"orderflow events replay: --consumer is required"}},
		{name: "replay from nowhere", args: []string{"replay", "--consumer", "cli"}, want: []string{"orderflow events replay: give --since or --from-seq"}},
		{name: "skip nothing", args: []string{"dlq", "skip"}, want: []string{"orderflow events dlq skip: name the entries"}},
		{name: "skip a word", args: []string{"dlq", "skip", "one"}, want: []string{`orderflow events dlq skip: "one" is not an entry number`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(append([]string{"events"}, tt.args...), &stdout, &stderr)
			if code != 2 {
				t.Errorf("exit code = %d; want 2", code)
			}
			for _, want := range tt.want {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr does not say %q:\n%s", want, stderr.String())
				}
			}
			if strings.Contains(stderr.String(), "level=") || strings.Contains(stderr.String(), "connect") {
				t.Errorf("stderr has a log line or tried the server:\n%s", stderr.String())
			}
		})
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
	start := func(name string, handler consumer.Handler, observe func(consumer.Outcome)) {
		t.Helper()
		k, err := consumer.New(consumer.Config{
			Name: name, Stream: events.OrderStream, DB: store.DB, JetStream: bus.JS, Logger: eventtest.Logger(),
			Handler: handler, Observe: observe,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- k.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	var fixed atomic.Bool
	var applied, dups atomic.Int64
	o := eventtest.Order{ID: uuid.NewString(), CustomerID: "c_ada", RestaurantID: "r_pizza"}
	poisonOrder := uuid.NewString() // an order cli never takes
	start("cli", func(_ context.Context, _ *sql.Tx, env events.Envelope) error {
		if !fixed.Load() || env.Subject == poisonOrder {
			return consumer.Permanentf("not today")
		}
		return nil
	}, func(o consumer.Outcome) {
		switch o.Result {
		case consumer.Applied:
			applied.Add(1)
		case consumer.Duplicate:
			dups.Add(1)
		}
	})
	// audit takes every CloudEvent.
	start("audit", func(context.Context, *sql.Tx, events.Envelope) error { return nil }, nil)

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

	// A consumer name that names no consumer is refused, with the ones
	// there are, where replay needs one, or list or redrive are given one.
	t.Setenv("NATS_URL", bus.URL)
	t.Setenv("TEMPORAL_CONFIG_FILE", filepath.Join(t.TempDir(), "absent.toml"))
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{name: "replay without a consumer", args: []string{"replay", "--since", "1h"}, want: "--consumer is required"},
		{name: "replay to an unknown consumer", args: []string{"replay", "--consumer", "nope", "--since", "1h"}, want: `no consumer "nope"`},
		{name: "dlq list of an unknown consumer", args: []string{"dlq", "list", "--consumer", "nope"}, want: `no consumer "nope"`},
		{name: "dlq redrive of an unknown consumer", args: []string{"dlq", "redrive", "--consumer", "nope"}, want: `no consumer "nope"`},
		// A name NATS refuses was a failure of the server's (exit 1)
		// where an unknown one is a usage error.
		{name: "replay to a consumer name NATS refuses", args: []string{"replay", "--consumer", "cli.x", "--since", "1h"}, want: `no consumer "cli.x"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(append([]string{"events"}, tt.args...), &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tt.want) || !strings.Contains(stderr.String(), "consumers: audit, cli") {
				t.Errorf("exit %d, stdout %q, stderr %q; want 2 and %q, naming audit and cli", code, stdout.String(), stderr.String(), tt.want)
			}
		})
	}
	// Other arguments the server shows to be wrong are usage errors too,
	// not failures logged with exit 1.
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{name: "replay on a subject given as the stream", args: []string{"replay", "--consumer", "cli", "--since", "1h", "--stream", "orderflow.order"},
			want: `orderflow events replay: --stream "orderflow.order" is not a stream name (ORDER_EVENTS, DELIVERY_EVENTS)`},
		{name: "tail of a subject no stream holds", args: []string{"tail", "--subject", "orderflow.orders.>"},
			want: `orderflow events tail: --subject "orderflow.orders.>": no stream of ORDER_EVENTS, DELIVERY_EVENTS holds subject orderflow.orders.> (they hold orderflow.order.>, orderflow.delivery.>)`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(append([]string{"events"}, tt.args...), &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tt.want) || strings.Contains(stderr.String(), "level=ERROR") {
				t.Errorf("exit %d, stdout %q, stderr %q; want 2 and %q as a plain line", code, stdout.String(), stderr.String(), tt.want)
			}
		})
	}

	// dlq skip takes entries in ascending order, whichever consumer's
	// they are, and says of each what it skipped, also of a message with
	// no CloudEvent headers.
	poisoned := eventtest.OrderEvent(eventtest.Order{ID: poisonOrder, CustomerID: "c_ada", RestaurantID: "r_pizza"}, events.OrderPlaced, 1, time.Now())
	bus.Publish(t, poisoned)
	eventtest.Eventually(t, "cli's dead letter", func() bool { return strings.Contains(run("dlq", "list"), poisoned.ID) })
	garbage := nats.NewMsg(events.Subject(events.OrderPlaced, "not-an-order"))
	garbage.Data = []byte("hello")
	bus.PublishMsg(t, garbage)
	var dead []consumer.DeadLetter
	eventtest.Eventually(t, "three dead letters", func() bool {
		dead, err = consumer.DeadLetters(context.Background(), bus.JS, "")
		return err == nil && len(dead) == 3
	})
	var entries []string
	for _, d := range dead {
		entries = append(entries, strconv.FormatUint(d.Seq, 10))
	}
	lines := strings.Split(strings.TrimSpace(run(append([]string{"dlq", "skip"}, entries...)...)), "\n")
	if len(lines) != 3 {
		t.Fatalf("dlq skip %s said %q; want a line per entry", strings.Join(entries, " "), lines)
	}
	for i, line := range lines {
		if !strings.HasPrefix(line, "skipped entry "+entries[i]+" ") || strings.Contains(line, "  ") || strings.Contains(line, "handed back") {
			t.Errorf("line %d of dlq skip %s is %q; want entry %s skipped, every field said", i+1, strings.Join(entries, " "), line, entries[i])
		}
	}
	eventtest.Eventually(t, "the dead letters gone", func() bool { return strings.Contains(run("dlq", "list"), "no dead letters") })
}

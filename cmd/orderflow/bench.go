package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/bench"
	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/devstack"
	"github.com/orderflow/orderflow/devstack/freeport"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/worker"
)

// runBench starts the stack on a data dir of its own and free loopback
// ports (so it runs next to `orderflow dev` without touching it), runs
// every service part in this process as `orderflow dev` does, and measures
// orderflow through its HTTP API next to the bare-Temporal baselines.
func runBench(ctx context.Context, cfg Config, logger *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	n := fs.Int("n", 1000, "orders per round and system")
	c := fs.Int("c", 50, "orders in flight at a time")
	rounds := fs.Int("rounds", 3, "rounds; every figure is the median of the rounds, with min and max")
	warmup := fs.Int("warmup", 50, "orders per system before the first round, not measured")
	drain := fs.Int("drain", 50000, "events in the outbox backlog whose drain the relay is timed on (0: skip)")
	out := fs.String("out", filepath.Join("bench", "results"), "directory for result.json, result.md and result.svg")
	keep := fs.Bool("keep", false, "keep the bench's data dir (the stack's data) after the run")
	logLevel := fs.String("log-level", "warn", "level of the stack's and the service parts' logs during the run (debug, info, warn, error); the bench's own progress goes to the terminal whatever it is")
	downstream := fs.Bool("downstream", false, "also run the promotions and analytics contexts' consumers in this process, as orderflow dev does; by default the bench measures the order context (API, worker, relay, bus, the inbound delivery consumer) with its own lag probe as the consumer, since other contexts run on their own machines in production")
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	// The parts log every order at info (a notification each step sends,
	// for one): thousands of lines a round would bury the progress bar.
	partsCfg := cfg
	if err := partsCfg.LogLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	partsLogger := newLogger(partsCfg, os.Stderr)
	began := time.Now()
	// The drain fills the outbox and the ORDER_EVENTS archive with made-up
	// events. On the bench's own embedded stack that is harmless; into a
	// real database or NATS it goes only when asked for by name.
	drainSet := false
	fs.Visit(func(f *flag.Flag) { drainSet = drainSet || f.Name == "drain" })
	if (cfg.DatabaseURL != "" || cfg.NATSURL != "") && !drainSet {
		logger.Warn("bench: DATABASE_URL or NATS_URL is set: skipping the relay drain, which would write made-up events there (pass -drain N to run it anyway)")
		*drain = 0
	}

	// The bench's own data dir under the configured one: a fresh stack for
	// every run, so that each starts from the same empty state.
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return err
	}
	base, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	dataDir, err := os.MkdirTemp(base, "bench-")
	if err != nil {
		return err
	}
	if err := os.Chmod(dataDir, 0o755); err != nil { // the private PostgreSQL may run as another user
		return err
	}
	if !*keep {
		defer os.RemoveAll(dataDir)
	}
	addrs := map[string]*string{"PostgreSQL": &cfg.PGAddr, "NATS": &cfg.NATSAddr, "Temporal": &cfg.TemporalAddr}
	for name, a := range addrs {
		if *a, err = freeport.Addr(); err != nil {
			return fmt.Errorf("%s address: %w", name, err)
		}
	}
	cfg.UIAddr = "" // nobody looks at it during a run
	logger.Info("bench: starting the stack", "data_dir", dataDir)
	scfg := devStackConfig(cfg, dataDir, partsLogger)
	stack, err := devstack.Start(ctx, scfg)
	if err != nil {
		return err
	}
	defer stack.Close()
	cfg.DatabaseURL, cfg.NATSURL, cfg.EmbeddedNATS = stack.DatabaseURL, stack.NATSURL, stack.EmbeddedNATS()
	if !cfg.TemporalExternal {
		cfg.Temporal.HostPort = stack.TemporalAddr
	}

	d, err := connect(ctx, cfg, partsLogger, true, true, true)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.store.Migrate(ctx, partsLogger); err != nil {
		return err
	}
	if err := d.store.Seed(ctx); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if err := ensureStreams(ctx, cfg, d.nc); err != nil {
		return err
	}
	apiListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer apiListener.Close()

	// The service parts as `orderflow dev` runs them, but for the courier
	// (the bench marks orders delivered itself) and, unless -downstream,
	// the other contexts' consumers.
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	ready := make(chan struct{})
	served := make(chan error, 1)
	go func() {
		served <- serve(sctx, cfg, partsLogger, d, parts{
			api: apiListener, worker: true, relay: true, promotions: *downstream, analytics: *downstream, inbound: true,
		}, func() { close(ready) })
	}()
	select {
	case <-ready:
	case err := <-served:
		return fmt.Errorf("service parts: %w", err)
	}
	js, err := jetstream.New(d.nc)
	if err != nil {
		return err
	}

	pgPID := 0
	if stack.Postgres != nil {
		pgPID = stack.Postgres.PID()
	}
	res, err := bench.Run(ctx, bench.Config{
		N: *n, C: *c, Rounds: *rounds, Warmup: *warmup,
		APIURL:        "http://" + apiListener.Addr().String(),
		Temporal:      d.temporal,
		WorkerOptions: worker.Options(),
		JetStream:     js,
		RecordedAt: func(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]time.Time, error) {
			rows, err := d.store.OutboxRecordedAt(ctx, ids)
			if err != nil {
				return nil, fmt.Errorf("read when outbox rows were written: %w", err)
			}
			at := make(map[uuid.UUID]time.Time, len(rows))
			for _, r := range rows {
				at[r.EventID] = r.RecordedAt
			}
			return at, nil
		},
		PostgresPID: pgPID,
		Drain: func(ctx context.Context, n int) (time.Duration, error) {
			return drainBacklog(ctx, d.store, n)
		},
		DrainEvents: *drain,
		Downstream:  *downstream,
		LogLevel:    strings.ToLower(partsCfg.LogLevel.String()),
		Machine:     machine(ctx, d.store, d.nc, stack),
		Progress:    os.Stderr,
		Logger:      logger,
	})
	stop()
	if serr := <-served; serr != nil && !errors.Is(serr, context.Canceled) {
		logger.Warn("bench: service parts stopped with an error", "err", serr)
	}
	if err != nil {
		return err
	}
	if err := bench.Write(*out, res); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	fmt.Println()
	bench.Markdown(os.Stdout, res)
	fmt.Printf("\nWrote %s, %s and %s in %s (%s in all).\n", bench.ResultJSON, bench.ResultMD, bench.ResultSVG, *out, time.Since(began).Round(time.Second))
	return nil
}

// drainBacklog commits n events to the outbox in one transaction — a
// backlog that appears at once, as after a relay outage — and returns how
// long the running relay takes to publish them all. The events belong to
// made-up orders and interleave like a real backlog: blocks of 50 orders
// with 7 events each, in version order per order. They are
// order.user_notified events, which no consumer but the bench's lag probe
// subscribes to.
func drainBacklog(ctx context.Context, store *db.Store, n int) (time.Duration, error) {
	const interleave, perOrder = 50, 7
	p := db.InsertOutboxEventsBulkParams{AggregateType: events.AggregateOrder, EventType: events.OrderUserNotified}
	now := time.Now().UTC().Truncate(time.Microsecond) // as the writers store it
	orders := map[int]string{}
	for g := range n {
		k := g/(interleave*perOrder)*interleave + g%interleave
		id, ok := orders[k]
		if !ok {
			id = uuid.NewString()
			orders[k] = id
		}
		payload, err := json.Marshal(events.OrderEvent{
			OrderID: id, Status: "accepted", CustomerID: "c_ada", RestaurantID: "r_pizza",
			NotificationKind: "bench_drain", OccurredAt: now,
		})
		if err != nil {
			return 0, err
		}
		p.EventIds = append(p.EventIds, uuid.New())
		p.AggregateIds = append(p.AggregateIds, id)
		p.Versions = append(p.Versions, int64((g/interleave)%perOrder+1))
		p.Payloads = append(p.Payloads, string(payload))
	}
	if _, err := store.InsertOutboxEventsBulk(ctx, p); err != nil {
		return 0, fmt.Errorf("fill the outbox: %w", err)
	}
	began := time.Now()
	deadline := began.Add(10 * time.Minute)
	for {
		left, err := store.CountUnpublishedOutboxEvents(ctx)
		if err != nil {
			return 0, err
		}
		if left == 0 {
			return time.Since(began), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%d of %d events still unpublished after 10 minutes", left, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// machine describes this machine and the versions that ran.
func machine(ctx context.Context, store *db.Store, nc *nats.Conn, stack *devstack.Stack) bench.Machine {
	m := bench.Machine{
		Cores:           runtime.NumCPU(),
		OS:              runtime.GOOS + "/" + runtime.GOARCH,
		Go:              runtime.Version(),
		Persistence:     persistenceDescription(stack),
		PostgresPrivate: stack.Postgres != nil,
		NATSConnection:  "tcp",
	}
	// An in-process connection is a net.Pipe, whose address is "pipe".
	if nc.ConnectedAddr() == "pipe" {
		m.NATSConnection = "in-process"
	}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			switch dep.Path {
			case "go.temporal.io/server":
				m.TemporalServer = dep.Version
			case "go.temporal.io/sdk":
				m.TemporalSDK = dep.Version
			case "github.com/nats-io/nats-server/v2":
				m.NATSServer = dep.Version
			}
		}
	}
	m.PostgreSQL, _ = store.ServerVersion(ctx)
	return m
}

// persistenceDescription says where the embedded Temporal server kept its
// state during the run, as the server itself reports it.
func persistenceDescription(stack *devstack.Stack) string {
	if stack.TemporalAddr == "" {
		return "external Temporal"
	}
	return stack.TemporalStore
}

package main

import (
	"context"
	"database/sql"
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
	pgStatements := fs.Bool("pg-statements", false, "count every PostgreSQL statement with pg_stat_statements (which the private PostgreSQL then preloads; an external one must already) and report each system's statements, execution time and WAL per order by database; it costs PostgreSQL some CPU of its own")
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil // the flag set printed the usage
	} else if err != nil {
		return &usageError{err: fmt.Errorf("bench: %w", err), printed: true}
	}
	switch {
	case fs.NArg() > 0:
		return usagef(fs, "takes flags only, not %q", fs.Arg(0))
	case *n < 1 || *c < 1 || *rounds < 1:
		return usagef(fs, "-n, -c and -rounds must be at least 1")
	case *warmup < 0 || *drain < 0:
		return usagef(fs, "-warmup and -drain must not be negative")
	}
	// The parts log every order at info (a notification each step sends,
	// for one): thousands of lines a round would bury the progress bar.
	partsCfg := cfg
	if err := partsCfg.LogLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return usagef(fs, "-log-level %q is not debug, info, warn or error", *logLevel)
	}
	// A mistake in the environment, once the flags are known good: before
	// anything is made, connected or started.
	if err := cfg.Valid(); err != nil {
		return err
	}
	// Where the results go is checked before minutes of measuring, not
	// after.
	if err := writableDir(*out); err != nil {
		return fmt.Errorf("-out %s: %w", *out, err)
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
	if *pgStatements {
		// A run keeps a few hundred distinct statements; the room for ten
		// thousand keeps any from being evicted between two readings.
		scfg.PGSettings = []string{"shared_preload_libraries=pg_stat_statements", "pg_stat_statements.track=all", "pg_stat_statements.max=10000"}
	}
	stack, err := devstack.Start(ctx, scfg)
	if err != nil {
		if *pgStatements && strings.Contains(err.Error(), `could not access file "pg_stat_statements"`) {
			return fmt.Errorf("%w (-pg-statements: the private PostgreSQL preloads pg_stat_statements, one of PostgreSQL's contrib modules, which Debian's postgresql package ships; without it, drop -pg-statements)", err)
		}
		return err
	}
	defer stack.Close()
	cfg.DatabaseURL, cfg.NATSURL, cfg.EmbeddedNATS = stack.DatabaseURL, stack.NATSURL, stack.EmbeddedNATS()
	if !cfg.TemporalExternal {
		cfg.Temporal.HostPort = stack.TemporalAddr
	}

	d, err := connect(ctx, cfg, partsLogger, dbMigrates, true, true)
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
	var statements func(context.Context) (bench.StatementCounts, error)
	if *pgStatements {
		track, err := enableStatementStats(ctx, d.store.DB)
		if err != nil {
			return fmt.Errorf("-pg-statements: %w", err)
		}
		if track != "all" {
			logger.Warn("bench: pg_stat_statements.track is not all: the statements run inside others (foreign-key checks) show as none", "track", track)
		}
		statements = func(ctx context.Context) (bench.StatementCounts, error) { return statementStats(ctx, d.store.DB) }
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
		if err == nil {
			if ctx.Err() != nil {
				return ctx.Err() // Ctrl-C before every part had started
			}
			return errors.New("service parts: stopped before they had all started")
		}
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
		Statements:  statements,
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

// enableStatementStats creates the pg_stat_statements view in orderflow's
// database and checks that the server counts statements; it returns the
// server's pg_stat_statements.track. It and statementStats are plain SQL,
// not sqlc queries: the view belongs to an extension that the schema sqlc
// checks queries against does not have.
func enableStatementStats(ctx context.Context, conn *sql.DB) (track string, err error) {
	if _, err := conn.ExecContext(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		return "", fmt.Errorf("create extension pg_stat_statements: %w (it takes a superuser: ask one to run CREATE EXTENSION pg_stat_statements in this database)", err)
	}
	// pg_stat_statements_info fails unless the server preloaded the module.
	if err := conn.QueryRowContext(ctx, "SELECT current_setting('pg_stat_statements.track') FROM pg_stat_statements_info").Scan(&track); err != nil {
		return "", fmt.Errorf("%w (the server must preload it: shared_preload_libraries = 'pg_stat_statements')", err)
	}
	return track, nil
}

// statementStats reads what pg_stat_statements has counted so far in every
// database of the server, but for its own readings.
func statementStats(ctx context.Context, conn *sql.DB) (bench.StatementCounts, error) {
	var counts bench.StatementCounts
	if err := conn.QueryRowContext(ctx, "SELECT dealloc FROM pg_stat_statements_info").Scan(&counts.Deallocations); err != nil {
		return counts, err
	}
	rows, err := conn.QueryContext(ctx, `
SELECT d.datname, s.queryid, s.toplevel, min(s.query), sum(s.calls)::bigint, sum(s.total_exec_time),
       sum(s.wal_records)::bigint, sum(s.wal_bytes)::float8
FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
WHERE s.query NOT LIKE '%pg_stat_statements%'
GROUP BY d.datname, s.queryid, s.toplevel`)
	if err != nil {
		return counts, err
	}
	defer rows.Close()
	for rows.Next() {
		var st bench.Statement
		var id sql.NullInt64
		if err := rows.Scan(&st.Database, &id, &st.TopLevel, &st.Query, &st.Calls, &st.ExecMs, &st.WALRecords, &st.WALBytes); err != nil {
			return counts, err
		}
		if !id.Valid {
			// Another role's statement, which this role may not see.
			return counts, fmt.Errorf("pg_stat_statements hides other roles' statements (%q) from this role: GRANT pg_read_all_stats TO it, or drop -pg-statements", st.Query)
		}
		st.QueryID = id.Int64
		counts.Statements = append(counts.Statements, st)
	}
	return counts, rows.Err()
}

// writableDir makes dir if need be and checks that a file can be written
// in it.
func writableDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".bench-write-check-")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}

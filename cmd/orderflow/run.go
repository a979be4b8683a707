package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.temporal.io/sdk/client"
	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/analytics"
	"github.com/orderflow/orderflow/api"
	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/devstack"
	"github.com/orderflow/orderflow/events/relay"
	"github.com/orderflow/orderflow/promotions"
	"github.com/orderflow/orderflow/temporal"
	"github.com/orderflow/orderflow/worker"
)

// deps are the connections every service part shares, made once.
type deps struct {
	store    *db.Store
	nc       *nats.Conn
	temporal client.Client
}

func (d *deps) Close() {
	if d.temporal != nil {
		d.temporal.Close()
	}
	if d.nc != nil {
		d.nc.Close()
	}
	if d.store != nil {
		d.store.Close()
	}
}

// dbUse is what a command needs of PostgreSQL.
type dbUse int

const (
	noDB dbUse = iota
	// dbMigrates: the command migrates the database itself (migrate, and
	// dev and bench on their private PostgreSQL).
	dbMigrates
	// dbMigrated: the command needs every migration applied already and
	// refuses to start otherwise (db.Store.CheckSchema).
	dbMigrated
)

// connect dials whichever of PostgreSQL, NATS and Temporal the caller needs.
func connect(ctx context.Context, cfg Config, logger *slog.Logger, useDB dbUse, needNATS, needTemporal bool) (*deps, error) {
	d := &deps{}
	var err error
	if useDB != noDB {
		if cfg.DatabaseURL == "" {
			return nil, errors.New("DATABASE_URL is not set (orderflow dev starts a private PostgreSQL; the other commands need one)")
		}
		if d.store, err = db.Open(ctx, cfg.DatabaseURL); err != nil {
			return nil, err
		}
		if useDB == dbMigrated {
			switch err := d.store.CheckSchema(ctx); {
			case errors.Is(err, db.ErrSchemaUnchecked):
				// A role kept to the application's tables: the check is
				// a help, not a gate.
				logger.Warn("could not check the database schema; going on", "err", err)
			case err != nil:
				d.Close()
				return nil, err
			}
		}
	}
	if needNATS {
		if cfg.NATSURL == "" {
			d.Close()
			return nil, errors.New("NATS_URL is not set (orderflow dev starts an embedded NATS; the other commands need one)")
		}
		// ReconnectBufSize(-1): a publish made while reconnecting fails
		// rather than waiting in a buffer that is flushed to the server on
		// reconnection, where it could overtake the relay's re-publish of
		// what a restarted server lost (events/relay).
		opts := []nats.Option{nats.Name("orderflow"), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
			nats.ReconnectBufSize(-1),
			// A lost server is otherwise silent: the relay and the
			// consumers only wait, and /readyz is all that shows it.
			nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
				if !nc.IsClosed() {
					logger.Warn("nats connection lost; reconnecting (events wait in the outbox meanwhile)", "err", err)
				}
			}),
			nats.ReconnectHandler(func(nc *nats.Conn) {
				logger.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
			})}
		if cfg.EmbeddedNATS != nil {
			opts = append(opts, nats.InProcessServer(cfg.EmbeddedNATS))
		}
		if d.nc, err = nats.Connect(cfg.NATSURL, opts...); err != nil {
			d.Close()
			if cfg.EmbeddedNATS != nil {
				return nil, fmt.Errorf("connect to the embedded nats in-process: %w", err)
			}
			return nil, fmt.Errorf("connect to nats at %s: %w", cfg.NATSURL, err)
		}
	}
	if needTemporal {
		if d.temporal, err = temporal.Dial(ctx, cfg.Temporal, logger); err != nil {
			d.Close()
			return nil, err
		}
	}
	return d, nil
}

// readiness lists the checks /readyz runs over the connections d holds.
func (d *deps) readiness() []api.Check {
	var checks []api.Check
	if d.temporal != nil {
		checks = append(checks, api.TemporalCheck(d.temporal))
	}
	if d.store != nil {
		checks = append(checks, api.PostgresCheck(d.store.DB))
	}
	if d.nc != nil {
		checks = append(checks, api.NATSCheck(d.nc))
	}
	return checks
}

func runDev(ctx context.Context, cfg Config, logger *slog.Logger, _ []string) error {
	began := time.Now()
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	logger.Info("starting orderflow dev", "data_dir", dataDir)
	// Claim the API port before anything starts, so a second `make run` on
	// the same machine fails at once instead of half-way.
	apiListener, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http api: %w (set ORDERFLOW_HTTP_ADDR to another address)", err)
	}
	defer apiListener.Close()
	stack, err := devstack.Start(ctx, devStackConfig(cfg, dataDir, logger))
	if err != nil {
		return err
	}
	defer stack.Close()
	cfg.DatabaseURL, cfg.NATSURL, cfg.EmbeddedNATS = stack.DatabaseURL, stack.NATSURL, stack.EmbeddedNATS()
	// A component of the stack that dies (the private PostgreSQL, killed)
	// stops dev with its error: the service would only wait, unready, for
	// a database that nobody starts again.
	ctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	failed := stack.Failed() // read here: stack.Close clears the stack's fields
	go func() {
		select {
		case err := <-failed:
			fail(err)
		case <-ctx.Done():
		}
	}()
	err = runDevParts(ctx, cfg, logger, apiListener, stack, began)
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// runDevParts runs dev's service parts on the started stack.
func runDevParts(ctx context.Context, cfg Config, logger *slog.Logger, apiListener net.Listener, stack *devstack.Stack, began time.Time) error {
	d, err := connect(ctx, cfg, logger, dbMigrates, true, true)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.store.Migrate(ctx, logger); err != nil {
		return err
	}
	if err := d.store.Seed(ctx); err != nil {
		return fmt.Errorf("seed demo data: %w", err)
	}
	if err := ensureStreams(ctx, cfg, d.nc); err != nil {
		return err
	}
	return serve(ctx, cfg, logger, d, parts{
		api: apiListener, worker: cfg.DevWorker, relay: true,
		promotions: true, analytics: true, inbound: true, courier: cfg.CourierDelay > 0,
	}, func() {
		printReady(cfg, stack, apiListener.Addr().String(), time.Since(began))
	})
}

// devStackConfig is the stack `orderflow dev` (and `orderflow bench`)
// starts: the embedded components the configuration does not replace.
func devStackConfig(cfg Config, dataDir string, logger *slog.Logger) devstack.Config {
	return devstack.Config{
		DataDir:     dataDir,
		DatabaseURL: cfg.DatabaseURL, PGAddr: cfg.PGAddr, PGDurable: true,
		NATSURL: cfg.NATSURL, NATSAddr: cfg.NATSAddr,
		NATSSyncAlways: cfg.NATSSyncAlways, NATSSyncInterval: cfg.NATSSyncInterval,
		TemporalExternal: cfg.TemporalExternal, TemporalAddr: cfg.TemporalAddr, UIAddr: cfg.UIAddr,
		TemporalLogLevel:    slog.LevelWarn,
		TemporalPersistence: cfg.TemporalPersistence, TemporalShards: cfg.TemporalShards,
		TemporalSQLiteJournal: cfg.TemporalSQLiteJournal, TemporalSQLiteSync: cfg.TemporalSQLiteSync,
		Logger: logger,
	}
}

// parts says which service parts a process runs.
type parts struct {
	api    net.Listener // nil: no API
	worker bool
	relay  bool
	// The event consumers of the bounded contexts (contexts.go).
	promotions, analytics, inbound, courier bool
}

// serve runs the service parts p asks for until ctx is done or one of them
// fails, then stops them in order; ready is called once they all started,
// and never when one fails first. Every part is built before any starts, so
// a part that cannot be built leaves nothing running.
func serve(ctx context.Context, cfg Config, logger *slog.Logger, d *deps, p parts, ready func()) error {
	var rl *relay.Relay
	var relayParts, workerParts, apiParts []part
	if p.relay {
		var err error
		if rl, err = newRelay(cfg, logger, d); err != nil {
			return err
		}
		relayParts = []part{{run: rl.Run, started: rl.Started()}}
	}
	if p.worker {
		acts := &activities.Activities{
			Store:    d.store,
			Payments: activities.NewSandboxGateway(d.store),
			Notifier: activities.NewDevNotifier(d.store, logger),
			Logger:   logger,
		}
		if rl != nil {
			// The relay in this process publishes right after each commit.
			acts.Committed = rl.Kick
		}
		polling := make(chan struct{})
		workerParts = []part{{
			run: func(ctx context.Context) error {
				return worker.Run(ctx, d.temporal, cfg.TaskQueue, acts, logger, func() { close(polling) })
			},
			started: polling,
		}}
	}
	consumerParts, err := newConsumers(cfg, logger, d, p)
	if err != nil {
		return err
	}
	if p.api != nil {
		srv := api.New(api.Config{
			Logger: logger, Readiness: d.readiness(),
			Store: d.store, Temporal: d.temporal, TaskQueue: cfg.TaskQueue,
			AcceptTimeout: cfg.AcceptTimeout, DeliverySLA: cfg.DeliverySLA,
			Promotions: promotions.New(d.store, logger), Analytics: analytics.New(d.store, logger),
		})
		// Started already: the listener is bound, so a client's connection
		// waits in its backlog for Serve, which accepts at once.
		bound := make(chan struct{})
		close(bound)
		apiParts = []part{{run: func(ctx context.Context) error { return srv.Serve(ctx, p.api) }, started: bound}}
	}
	// Each stage needs the ones before it until its own work is done, so
	// they stop last first:
	//   - the API's accept and delivered requests are Temporal Updates that
	//     wait for the worker to run the workflow; it stops taking requests
	//     and finishes those it has before anything else stops;
	//   - the consumers then finish the events they are handling (inbound's
	//     is the same delivered Update, waiting for the worker too);
	//   - the worker then finishes its tasks, committing outbox rows;
	//   - the relay, last, publishes what they committed.
	return runStages(ctx, logger, ready, relayParts, workerParts, consumerParts, apiParts)
}

// part is one service part: run runs until its context is done, finishes
// the work it has in hand, and returns an error only when it fails; started
// is closed once the part has started (the worker polls, the consumer is
// subscribed...), and never when run fails at its start. A part that has
// nothing to wait for (the API, whose listener is bound already) comes
// with it closed.
type part struct {
	run     func(ctx context.Context) error
	started <-chan struct{}
}

// runStages runs every part of every stage under one errgroup until ctx is
// done or a part fails, calling ready once they all started: never when a
// part fails at its start, nor when ctx is done first. Then it stops the
// stages one at a time, last first, each only once the stage after it has
// returned, and returns the first part's error. A part's context is not
// ctx but its stage's: it is cancelled only when the shutdown reaches it.
func runStages(ctx context.Context, logger *slog.Logger, ready func(), stages ...[]part) error {
	g, stopping := errgroup.WithContext(ctx)
	stops := make([]context.CancelFunc, len(stages))
	running := make([]sync.WaitGroup, len(stages))
	for i, stage := range stages {
		sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		stops[i] = stop
		for _, p := range stage {
			running[i].Add(1)
			g.Go(func() error {
				defer running[i].Done()
				return p.run(sctx)
			})
		}
	}
	g.Go(func() error {
		<-stopping.Done()
		logger.Info("shutting down")
		for i := len(stages) - 1; i >= 0; i-- {
			stops[i]()
			running[i].Wait()
		}
		logger.Info("service parts stopped")
		return nil
	})
	for _, stage := range stages {
		for _, p := range stage {
			select {
			case <-p.started:
			case <-stopping.Done(): // a part failed (at its start, say), or ctx is done
				return g.Wait()
			}
		}
	}
	if ready != nil && stopping.Err() == nil { // not if a part failed right after the last one started
		ready()
	}
	return g.Wait()
}

func printReady(cfg Config, stack *devstack.Stack, apiAddr string, took time.Duration) {
	fmt.Printf("\norderflow is ready (%s)\n", took.Round(100*time.Millisecond))
	fmt.Printf("  API          http://%s   (readiness: /readyz, OpenAPI: /openapi.yaml)\n", apiAddr)
	if stack.UIURL != "" {
		fmt.Printf("  Temporal UI  %s/namespaces/%s/workflows\n", stack.UIURL, cfg.Temporal.Namespace)
	}
	fmt.Printf("  Temporal     %s   (namespace %s)\n", cfg.Temporal.HostPort, cfg.Temporal.Namespace)
	if stack.TemporalStore != "" {
		fmt.Printf("               persisting to %s\n", stack.TemporalStore)
	}
	fmt.Printf("  NATS         %s\n", stack.NATSURL)
	fmt.Printf("  PostgreSQL   %s\n", stack.DatabaseURL)
	if !cfg.DevWorker {
		fmt.Printf("  Worker       none in this process (ORDERFLOW_DEV_WORKER=off): run one beside it, and stop or kill it at will, with\n")
		fmt.Printf("               %s\n", workerCommand(cfg, stack))
	}
	if cfg.CourierDelay > 0 {
		fmt.Printf("  Courier      simulated: delivers each accepted order %s after acceptance (ORDERFLOW_COURIER_DELAY)\n", cfg.CourierDelay)
	}
	if cfg.AcceptTimeout > 0 {
		fmt.Printf("  Accept timeout overridden to %s for every restaurant (ORDERFLOW_ACCEPT_TIMEOUT)\n", cfg.AcceptTimeout)
	}
	fmt.Printf("Press Ctrl-C to stop.\n\n")
}

// workerCommand is the command line that runs a worker for dev's stack,
// from this directory.
func workerCommand(cfg Config, stack *devstack.Stack) string {
	env := []string{"TEMPORAL_ADDRESS=" + cfg.Temporal.HostPort, "DATABASE_URL='" + stack.DatabaseURL + "'"}
	if cfg.Temporal.Namespace != client.DefaultNamespace {
		env = append(env, "TEMPORAL_NAMESPACE="+cfg.Temporal.Namespace)
	}
	if cfg.TaskQueue != temporal.DefaultTaskQueue {
		env = append(env, "ORDERFLOW_TASK_QUEUE="+cfg.TaskQueue)
	}
	bin := os.Args[0] // ./bin/orderflow under make run
	if wd, err := os.Getwd(); err == nil && filepath.IsAbs(bin) {
		if rel, err := filepath.Rel(wd, bin); err == nil && !strings.HasPrefix(rel, "..") {
			bin = "./" + rel
		}
	}
	return strings.Join(env, " ") + " " + bin + " worker"
}

func runAPI(ctx context.Context, cfg Config, logger *slog.Logger, _ []string) error {
	d, err := connect(ctx, cfg, logger, dbMigrated, true, true)
	if err != nil {
		return err
	}
	defer d.Close()
	l, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http api: %w", err)
	}
	logger.Info("serving API", "addr", l.Addr().String())
	return serve(ctx, cfg, logger, d, parts{api: l}, nil)
}

func runWorker(ctx context.Context, cfg Config, logger *slog.Logger, _ []string) error {
	d, err := connect(ctx, cfg, logger, dbMigrated, false, true)
	if err != nil {
		return err
	}
	defer d.Close()
	return serve(ctx, cfg, logger, d, parts{worker: true}, nil)
}

func runMigrate(ctx context.Context, cfg Config, logger *slog.Logger, _ []string) error {
	if cfg.DatabaseURL == "" {
		return errors.New("DATABASE_URL is not set (orderflow dev migrates its private PostgreSQL on start)")
	}
	d, err := connect(ctx, cfg, logger, dbMigrates, false, false)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.store.Migrate(ctx, logger)
}

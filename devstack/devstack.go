// Package devstack brings up the components orderflow runs on — Temporal
// (with its Web UI), PostgreSQL and NATS JetStream — embedded in this
// process or started from the machine's binaries, unless the configuration
// names an external one. `orderflow dev`, the benchmarks and the tests share
// it, so all of them run on the same real components.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/orderflow/orderflow/db/pgdev"
	"github.com/orderflow/orderflow/events/natsdev"
	"github.com/orderflow/orderflow/temporal/devserver"
)

// Config chooses, per component, the embedded default or an external one.
type Config struct {
	// DataDir holds everything the embedded components persist.
	DataDir string

	// DatabaseURL, when set, is used instead of a private PostgreSQL on PGAddr.
	DatabaseURL string
	PGAddr      string
	// PGDurable=false runs the private PostgreSQL without fsync (tests).
	PGDurable bool
	// PGSettings are more settings of the private PostgreSQL ("name=value").
	PGSettings []string

	// NATSURL, when set, is used instead of an embedded NATS on NATSAddr.
	NATSURL  string
	NATSAddr string
	// NATSSyncAlways and NATSSyncInterval set when the embedded NATS syncs
	// its file store to disk (natsdev.Config; zero: every
	// natsdev.DefaultSyncInterval).
	NATSSyncAlways   bool
	NATSSyncInterval time.Duration

	// TemporalExternal, when true, skips the embedded Temporal server
	// (TEMPORAL_ADDRESS is set); otherwise it listens on TemporalAddr with
	// its Web UI on UIAddr ("" for none).
	TemporalExternal bool
	TemporalAddr     string
	UIAddr           string
	// TemporalLogLevel filters the embedded server's own logs.
	TemporalLogLevel slog.Level
	// TemporalPersistence is where the embedded server keeps its state
	// ("": see devserver.ChoosePersistence). With devserver.Postgres it uses
	// the stack's PostgreSQL (the private one, started first, or
	// DatabaseURL's server), in databases of its own.
	TemporalPersistence devserver.Persistence
	// TemporalSQLiteJournal and TemporalSQLiteSync set the SQLite file's
	// journal mode and synchronous setting ("" for the defaults).
	TemporalSQLiteJournal string
	TemporalSQLiteSync    string
	// TemporalShards is the history shard count of a new store; 0 keeps an
	// existing store's (see devserver.Config.NumHistoryShards).
	TemporalShards int32

	Logger *slog.Logger
}

// Stack is the set of running components, with the addresses to reach them.
type Stack struct {
	DatabaseURL  string
	NATSURL      string
	TemporalAddr string // "" when Temporal is external
	UIURL        string // "" when there is no embedded Web UI
	// TemporalStore says where the embedded Temporal server persists; ""
	// when Temporal is external.
	TemporalStore string

	// Postgres is the private PostgreSQL, nil when DatabaseURL was given.
	Postgres *pgdev.Server
	nats     *natsdev.Server
	temporal *devserver.Server
	logger   *slog.Logger
	// lock holds the data dir while an embedded component uses it.
	lock *os.File
}

// Failed receives the error of an embedded component that stopped by
// itself: the private PostgreSQL, killed say. It never receives when there
// is none to watch.
func (s *Stack) Failed() <-chan error {
	if s.Postgres == nil {
		return nil
	}
	return s.Postgres.Died()
}

// Start starts every embedded component the configuration asks for, in
// parallel, and returns once all accept connections. On error it stops what
// it started.
func Start(ctx context.Context, cfg Config) (*Stack, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Stack{DatabaseURL: cfg.DatabaseURL, NATSURL: cfg.NATSURL, logger: cfg.Logger}
	// 0755: the private PostgreSQL runs as another user when we are root and
	// must be able to enter this directory to reach its own.
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if cfg.DatabaseURL == "" || cfg.NATSURL == "" || !cfg.TemporalExternal {
		lock, err := lockDataDir(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		s.lock = lock
	}
	began := time.Now()
	type result struct {
		name string
		err  error
	}
	results := make(chan result, 3)
	n := 0
	// pgDone is closed once the private PostgreSQL is up (s.DatabaseURL
	// set) or failed: Temporal on Postgres waits for it.
	pgDone := make(chan struct{})
	if cfg.DatabaseURL == "" {
		n++
		go func() {
			defer close(pgDone)
			pg, err := pgdev.Start(ctx, pgdev.Config{
				Dir: filepath.Join(cfg.DataDir, "postgres"), Addr: cfg.PGAddr, Durable: cfg.PGDurable, Settings: cfg.PGSettings,
				Logger: cfg.Logger.With("component", "postgres"),
			})
			if err == nil {
				s.Postgres, s.DatabaseURL = pg, pg.URL()
			}
			results <- result{"postgres", err}
		}()
	} else {
		close(pgDone)
	}
	if cfg.NATSURL == "" {
		n++
		go func() {
			ns, err := natsdev.Start(natsdev.Config{
				StoreDir: filepath.Join(cfg.DataDir, "nats"), Addr: cfg.NATSAddr, Logger: cfg.Logger,
				SyncAlways: cfg.NATSSyncAlways, SyncInterval: cfg.NATSSyncInterval,
			})
			if err == nil {
				s.nats, s.NATSURL = ns, ns.URL()
			}
			results <- result{"nats", err}
		}()
	}
	if !cfg.TemporalExternal {
		n++
		go func() {
			tcfg := devserver.Config{
				Persistence:   cfg.TemporalPersistence,
				DataDir:       filepath.Join(cfg.DataDir, "temporal"),
				SQLiteJournal: cfg.TemporalSQLiteJournal, SQLiteSync: cfg.TemporalSQLiteSync,
				NumHistoryShards: cfg.TemporalShards,
				FrontendAddr:     cfg.TemporalAddr, UIAddr: cfg.UIAddr,
				Logger: cfg.Logger, ServerLogLevel: cfg.TemporalLogLevel,
			}
			tcfg.Persistence = devserver.ChoosePersistence(tcfg.Persistence, tcfg.DataDir)
			if tcfg.Persistence == devserver.Postgres {
				<-pgDone
				if s.DatabaseURL == "" {
					results <- result{"temporal", errors.New("its persistence is postgres, and postgres did not start")}
					return
				}
				tcfg.PostgresURL = s.DatabaseURL
			}
			ts, err := devserver.Start(ctx, tcfg)
			if err == nil {
				s.temporal, s.TemporalAddr, s.UIURL, s.TemporalStore = ts, ts.FrontendAddr(), ts.UIURL(), ts.Store()
			}
			results <- result{"temporal", err}
		}()
	}
	var errs []error
	for range n {
		r := <-results
		if r.err != nil {
			errs = append(errs, fmt.Errorf("start %s: %w", r.name, r.err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		s.Close()
		return nil, err
	}
	cfg.Logger.Info("embedded components ready", "took", time.Since(began).Round(time.Millisecond))
	return s, nil
}

// EmbeddedNATS is the embedded NATS server, for connections of this
// process that skip the network (nats.InProcessServer); nil when NATS is
// external. Other processes reach the server at NATSURL.
func (s *Stack) EmbeddedNATS() nats.InProcessConnProvider {
	if s.nats == nil {
		return nil
	}
	return s.nats
}

// Close stops every embedded component. Callers stop the services that use
// them (worker, relay, API) first.
func (s *Stack) Close() {
	if s.temporal != nil {
		s.temporal.Stop()
		s.temporal = nil
		s.logger.Info("temporal stopped")
	}
	if s.nats != nil {
		s.nats.Stop()
		s.nats = nil
		s.logger.Info("nats stopped")
	}
	if s.Postgres != nil {
		if err := s.Postgres.Stop(); err != nil {
			s.logger.Warn("stop postgres", "err", err)
		}
		s.Postgres = nil
	}
	if s.lock != nil {
		_ = s.lock.Close() // releases the flock
		s.lock = nil
	}
}

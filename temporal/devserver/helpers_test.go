package devserver_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/orderflow/orderflow/db/pgdev"
	"github.com/orderflow/orderflow/devstack/freeport"
	"github.com/orderflow/orderflow/temporal"
	"github.com/orderflow/orderflow/temporal/devserver"
	"github.com/orderflow/orderflow/tests/stacktest"
)

// startServer starts an embedded server with cfg on a free loopback port
// (no Web UI), stopped when tb ends; callers may Stop it earlier.
func startServer(tb testing.TB, cfg devserver.Config) *devserver.Server {
	tb.Helper()
	srv, err := tryStart(tb, cfg)
	if err != nil {
		tb.Fatalf("start temporal (%s): %v", cfg.Persistence, err)
	}
	return srv
}

// tryStart is startServer returning the error of Start.
func tryStart(tb testing.TB, cfg devserver.Config) (*devserver.Server, error) {
	tb.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		tb.Fatal(err)
	}
	cfg.FrontendAddr = addr
	if cfg.Logger == nil {
		cfg.Logger = testLogger(tb)
	}
	if cfg.ServerLogLevel == 0 {
		cfg.ServerLogLevel = slog.LevelError
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := devserver.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	tb.Cleanup(srv.Stop)
	return srv, nil
}

// dial connects a client to srv, closed when tb ends.
func dial(tb testing.TB, srv *devserver.Server) client.Client {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := temporal.Dial(ctx, client.Options{HostPort: srv.FrontendAddr(), Namespace: srv.Namespace()}, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatalf("dial temporal: %v", err)
	}
	tb.Cleanup(c.Close)
	return c
}

// startPostgres starts a private PostgreSQL in a directory of its own,
// stopped when tb ends. durable keeps fsync on, as `orderflow dev` runs it.
func startPostgres(tb testing.TB, durable bool) *pgdev.Server {
	tb.Helper()
	if err := stacktest.Prerequisites(); err != nil {
		tb.Fatalf("%v", err)
	}
	addr, err := freeport.Addr()
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := pgdev.Start(ctx, pgdev.Config{
		Dir: filepath.Join(stacktest.TempDir(tb), "postgres"), Addr: addr, Durable: durable,
		Logger: testLogger(tb),
	})
	if err != nil {
		tb.Fatalf("start postgres: %v", err)
	}
	tb.Cleanup(func() { _ = pg.Stop() })
	return pg
}

// testLogger logs to stderr with -v and nowhere otherwise.
func testLogger(tb testing.TB) *slog.Logger {
	tb.Helper()
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.DiscardHandler)
}

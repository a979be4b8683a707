// Package dbtest gives tests a real PostgreSQL: one private cluster per test
// package, started from the machine's binaries by pgdev, and a fresh,
// migrated database per test, cloned from a template so each test starts
// clean. A machine without the binaries fails the test with how to get them.
package dbtest

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/db/pgdev"
	"github.com/orderflow/orderflow/devstack/freeport"
)

const template = "orderflow_template"

var (
	mu       sync.Mutex
	server   *pgdev.Server
	baseDir  string
	adminURL string
	ready    bool
	startErr error
	counter  atomic.Int64
)

// Main runs the package's tests and then stops the cluster, if one was
// started. Call it from TestMain: os.Exit(dbtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	if server != nil {
		_ = server.Stop()
	}
	if baseDir != "" {
		_ = os.RemoveAll(baseDir)
	}
	return code
}

// New returns a store on a fresh database holding every migration and
// nothing else. The database is dropped when the test ends.
func New(tb testing.TB) *db.Store {
	tb.Helper()
	root := start(tb)
	name := fmt.Sprintf("t%d_%d", os.Getpid(), counter.Add(1))
	admin := open(tb, root)
	defer admin.Close()
	if _, err := admin.Exec("CREATE DATABASE " + name + " TEMPLATE " + template); err != nil {
		tb.Fatalf("dbtest: create database: %v", err)
	}
	store, err := db.Open(context.Background(), withDatabase(root, name))
	if err != nil {
		tb.Fatalf("dbtest: %v", err)
	}
	tb.Cleanup(func() {
		store.Close()
		admin := open(tb, root)
		defer admin.Close()
		_, _ = admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
	})
	return store
}

// URL returns the connection string of a fresh database (see New), for
// code under test that opens its own pool.
func URL(tb testing.TB) string {
	tb.Helper()
	s := New(tb)
	var name string
	if err := s.DB.QueryRow("SELECT current_database()").Scan(&name); err != nil {
		tb.Fatalf("dbtest: %v", err)
	}
	return withDatabase(start(tb), name)
}

// start brings the cluster up once per package and builds the template.
func start(tb testing.TB) string {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if ready {
		return adminURL
	}
	if startErr != nil {
		tb.Fatalf("dbtest: %v", startErr)
	}
	startErr = boot()
	if startErr != nil {
		tb.Fatalf("dbtest: %v", startErr)
	}
	ready = true
	return adminURL
}

func boot() error {
	dir, err := os.MkdirTemp("", "orderflow-dbtest-")
	if err != nil {
		return err
	}
	baseDir = dir
	// The server may run as another user (we may be root): let it in.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	port, err := freeport.Port("127.0.0.1")
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	server, err = pgdev.Start(context.Background(), pgdev.Config{
		Dir: filepath.Join(dir, "pg"), Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Logger: logger,
	})
	if err != nil {
		return fmt.Errorf("%w\n(the tests need the PostgreSQL server binaries: apt-get install postgresql, or run ./scripts/install-prerequisites.sh)", err)
	}
	adminURL = withDatabase(server.URL(), "postgres")
	admin, err := sql.Open("pgx", adminURL)
	if err != nil {
		return err
	}
	defer admin.Close()
	if _, err := admin.Exec("CREATE DATABASE " + template); err != nil {
		return fmt.Errorf("create template: %w", err)
	}
	store, err := db.Open(context.Background(), withDatabase(adminURL, template))
	if err != nil {
		return err
	}
	defer store.Close()
	return store.Migrate(context.Background(), logger)
}

func open(tb testing.TB, url string) *sql.DB {
	tb.Helper()
	conn, err := sql.Open("pgx", url)
	if err != nil {
		tb.Fatalf("dbtest: %v", err)
	}
	return conn
}

func withDatabase(raw, name string) string {
	u, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	u.Path = "/" + name
	return u.String()
}

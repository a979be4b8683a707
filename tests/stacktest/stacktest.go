// Package stacktest gives integration and end-to-end tests the real stack
// orderflow runs on — the embedded Temporal server, a private PostgreSQL from
// the machine's binaries and the embedded NATS JetStream server — started
// through devstack exactly as `orderflow dev` starts it, but on a temporary
// data dir and free loopback ports.
//
// Starting the stack takes seconds, so a test package shares one: the first
// call to Start brings it up, later calls get the same Env, and Main tears it
// down after the last test:
//
//	func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		env := stacktest.Start(t)
//		...
//	}
//
// Tests that must stop and restart a stack themselves (persistence across
// restarts, the Web UI) start a stack of their own with StartStack.
//
// A machine without a prerequisite does not skip: every test that asks for
// the stack fails, saying what is missing and how to get it.
package stacktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.temporal.io/sdk/client"

	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/db/pgdev"
	"github.com/orderflow/orderflow/devstack"
	"github.com/orderflow/orderflow/devstack/freeport"
	"github.com/orderflow/orderflow/temporal"
	"github.com/orderflow/orderflow/temporal/devserver"
)

// startTimeout bounds one stack start-up; a cold start (initdb, Temporal's
// SQLite schema) takes a few seconds.
const startTimeout = 3 * time.Minute

// logTail is how much of a stack's log is kept for a failure report.
const logTail = 64 << 10

// Env is the package's shared stack and the connections to it.
type Env struct {
	// Stack is the running stack. Tests may stop and restart
	// Stack.Postgres, but must leave it running when they end.
	Stack *devstack.Stack
	// Store is a pool on the stack's database, with every migration applied.
	Store *db.Store
	// Temporal is a client of the embedded server, namespace "default".
	Temporal client.Client
	// NATS is a connection to the embedded NATS server (JetStream enabled).
	NATS *nats.Conn
	// DataDir holds everything the stack persists; Main removes it.
	DataDir string
	// Logger is the stack's logger: stderr with -v, otherwise a buffer that
	// Main prints when a test failed.
	Logger *slog.Logger
}

var (
	mu       sync.Mutex
	shared   *Env
	startErr error
	logs     *tailBuffer
)

// Main runs the package's tests, then closes the shared stack if a test
// started it and removes its data dir. When a test failed and -v was not
// given, it prints the end of the stack's log. Call it from TestMain:
// os.Exit(stacktest.Main(m)). m is a *testing.M, or a wrapper around one
// that runs its own teardown before the stack's (tests/apptest).
func Main(m interface{ Run() int }) int {
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	if shared != nil {
		shared.close()
		shared = nil
	}
	if code != 0 && logs != nil && logs.Len() > 0 {
		fmt.Fprintf(os.Stderr, "stacktest: end of the shared stack's log:\n%s\n", logs.Tail())
	}
	return code
}

// Start returns the package's shared stack, starting it on the first call.
// It fails tb when the stack cannot start (every later call fails with the
// same error), naming the missing prerequisite and how to get it.
func Start(tb testing.TB) *Env {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if shared != nil {
		return shared
	}
	if startErr != nil {
		tb.Fatalf("stacktest: %v", startErr)
	}
	began := time.Now()
	shared, startErr = boot()
	if startErr != nil {
		tb.Fatalf("stacktest: %v", startErr)
	}
	tb.Logf("stacktest: shared stack up in %s (data dir %s)", time.Since(began).Round(time.Millisecond), shared.DataDir)
	return shared
}

// boot starts the shared stack and connects to it; on error it undoes what
// it did.
func boot() (_ *Env, err error) {
	if err := Prerequisites(); err != nil {
		return nil, err
	}
	var logger *slog.Logger
	logger, logs = newLogger()
	dir, err := os.MkdirTemp("", "orderflow-stacktest-")
	if err != nil {
		return nil, err
	}
	env := &Env{DataDir: dir, Logger: logger}
	defer func() {
		if err != nil {
			env.close()
			if tail := logs.Tail(); tail != "" {
				err = fmt.Errorf("%w\nend of the stack's log:\n%s", err, tail)
			}
		}
	}()
	// The private PostgreSQL runs as user postgres when we are root: it must
	// be able to enter the data dir to reach its own directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		return env, err
	}
	cfg, err := stackConfig(dir, Options{}, logger)
	if err != nil {
		return env, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if env.Stack, err = devstack.Start(ctx, cfg); err != nil {
		return env, fmt.Errorf("start the embedded stack: %w", err)
	}
	if env.Store, err = db.Open(ctx, env.Stack.DatabaseURL); err != nil {
		return env, err
	}
	if err := env.Store.Migrate(ctx, logger); err != nil {
		return env, err
	}
	if env.Temporal, err = temporal.Dial(ctx, client.Options{HostPort: env.Stack.TemporalAddr}, logger); err != nil {
		return env, err
	}
	if env.NATS, err = nats.Connect(env.Stack.NATSURL, nats.Name("stacktest"), nats.MaxReconnects(-1)); err != nil {
		return env, fmt.Errorf("connect to nats at %s: %w", env.Stack.NATSURL, err)
	}
	return env, nil
}

// close stops the services before the components they use, then removes
// the data dir.
func (e *Env) close() {
	if e.NATS != nil {
		e.NATS.Close()
	}
	if e.Temporal != nil {
		e.Temporal.Close()
	}
	if e.Store != nil {
		_ = e.Store.Close()
	}
	if e.Stack != nil {
		e.Stack.Close()
	}
	if e.DataDir != "" {
		_ = os.RemoveAll(e.DataDir)
	}
}

// StartStack starts a stack of its own on dataDir, with fresh free ports,
// and closes it when tb ends, for a test that stops and restarts a stack
// itself: calling Close on the returned stack and then StartStack again on
// the same dataDir is how a test restarts it (the ports differ; the data
// stays). With ui the Temporal Web UI is served too, at Stack.UIURL.
//
// dataDir must be enterable by other users when we are root (the private
// PostgreSQL runs as user postgres): TempDir makes such a dir; t.TempDir
// does not. Nothing is migrated or dialled: the test does what it needs.
func StartStack(tb testing.TB, dataDir string, ui bool) *devstack.Stack {
	tb.Helper()
	return StartStackWith(tb, dataDir, Options{UI: ui})
}

// Options are the settings of a stack StartStackWith starts.
type Options struct {
	// UI serves the Temporal Web UI too, at Stack.UIURL.
	UI bool
	// TemporalPersistence is where the embedded Temporal server keeps its
	// state; "" is the default, as `orderflow dev` runs it.
	TemporalPersistence devserver.Persistence
}

// StartStackWith is StartStack with opts.
func StartStackWith(tb testing.TB, dataDir string, opts Options) *devstack.Stack {
	tb.Helper()
	if err := Prerequisites(); err != nil {
		tb.Fatalf("stacktest: %v", err)
	}
	logger, buf := newLogger()
	tb.Cleanup(func() {
		if tb.Failed() && buf.Len() > 0 {
			tb.Logf("stacktest: end of the log of the stack on %s:\n%s", dataDir, buf.Tail())
		}
	})
	cfg, err := stackConfig(dataDir, opts, logger)
	if err != nil {
		tb.Fatalf("stacktest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	stack, err := devstack.Start(ctx, cfg)
	if err != nil {
		tb.Fatalf("stacktest: start a stack on %s: %v", dataDir, err)
	}
	// Close is idempotent, so a test may close the stack itself first.
	tb.Cleanup(stack.Close)
	return stack
}

// TempDir returns a new directory that the private PostgreSQL can enter
// when it runs as another user, removed when tb ends (after the stacks
// started on it, whose Cleanups run first).
func TempDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "orderflow-stacktest-")
	if err != nil {
		tb.Fatalf("stacktest: %v", err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatalf("stacktest: %v", err)
	}
	return dir
}

// Prerequisites reports what the machine lacks to run the stack, and how
// to get it. Go itself is the only other one, and it is running this.
func Prerequisites() error {
	const hint = "run ./scripts/install-prerequisites.sh, or install them with the package manager " +
		"(Debian/Ubuntu: apt-get install postgresql)"
	if _, err := pgdev.FindBinaries(); err != nil {
		return fmt.Errorf("the tests need the PostgreSQL server binaries (initdb, postgres): %s", hint)
	}
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root; pgdev runs it as one of these.
		for _, name := range []string{"postgres", "nobody"} {
			if _, err := user.Lookup(name); err == nil {
				return nil
			}
		}
		return errors.New("running as root, the tests run PostgreSQL as user postgres, which does not exist: " + hint)
	}
	return nil
}

// stackConfig is the test configuration: loopback ports nobody else holds,
// a fast (not crash-safe) PostgreSQL, and Temporal's own logs errors only.
func stackConfig(dataDir string, opts Options, logger *slog.Logger) (devstack.Config, error) {
	var addrs [3]string
	for i := range addrs {
		addr, err := freeport.Addr()
		if err != nil {
			return devstack.Config{}, err
		}
		addrs[i] = addr
	}
	cfg := devstack.Config{
		DataDir:          dataDir,
		PGAddr:           addrs[0],
		PGDurable:        false,
		NATSAddr:         "127.0.0.1:0",
		TemporalAddr:     addrs[1],
		TemporalLogLevel: slog.LevelError,
		Logger:           logger,

		TemporalPersistence: opts.TemporalPersistence,
	}
	if opts.UI {
		cfg.UIAddr = addrs[2]
	}
	return cfg, nil
}

// newLogger logs to stderr with -v; otherwise into a buffer whose end a
// failure report shows.
func newLogger() (*slog.Logger, *tailBuffer) {
	buf := &tailBuffer{}
	var w io.Writer = buf
	if testing.Verbose() {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})), buf
}

// tailBuffer keeps the last logTail bytes written to it; the components log
// from their own goroutines, so it locks.
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - logTail; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

// Len is the number of bytes kept.
func (b *tailBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// Tail returns what is kept, from the first whole line on.
func (b *tailBuffer) Tail() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if b.buf.Len() >= logTail {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	return s
}

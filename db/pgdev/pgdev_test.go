package pgdev_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orderflow/orderflow/db/pgdev"
	"github.com/orderflow/orderflow/devstack/freeport"
)

// childArg, first on the command line, makes the test binary a process
// that starts a server (in the directory and on the address after it),
// says "ready" and waits to be killed: see startChild.
const childArg = "pgdev-test-child"

func TestMain(m *testing.M) {
	if len(os.Args) == 4 && os.Args[1] == childArg {
		srv, err := pgdev.Start(context.Background(), pgdev.Config{
			Dir: os.Args[2], Addr: os.Args[3], Durable: true, // as orderflow dev runs it
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			fmt.Println("start:", err)
			os.Exit(1)
		}
		fmt.Println("ready", srv.PID())
		select {}
	}
	os.Exit(m.Run())
}

func config(tb testing.TB, settings ...string) pgdev.Config {
	tb.Helper()
	if _, err := pgdev.FindBinaries(); err != nil {
		tb.Fatalf("%v (the tests need the PostgreSQL server binaries: apt-get install postgresql, or run ./scripts/install-prerequisites.sh)", err)
	}
	dir, err := os.MkdirTemp("", "orderflow-pgdev-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // the server may run as another user
		tb.Fatal(err)
	}
	addr, err := freeport.Addr()
	if err != nil {
		tb.Fatal(err)
	}
	return pgdev.Config{
		Dir: filepath.Join(dir, "pg"), Addr: addr, Settings: settings,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// TestSettingsReachTheServer: Config.Settings are the server's settings,
// at the first start and after a restart.
func TestSettingsReachTheServer(t *testing.T) {
	ctx := context.Background()
	srv, err := pgdev.Start(ctx, config(t, "work_mem=7MB"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	check := func() {
		t.Helper()
		conn, err := sql.Open("pgx", srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var workMem string
		if err := conn.QueryRowContext(ctx, "SHOW work_mem").Scan(&workMem); err != nil {
			t.Fatal(err)
		}
		if workMem != "7MB" {
			t.Errorf("work_mem %q, want 7MB", workMem)
		}
	}
	check()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	check()
}

// TestStartFailureSaysWhy: a server that stops during start-up is
// reported with the end of what that start logged, which says why, since
// the caller may remove the log with the data dir; a second failure on the
// same cluster gives its own reason, not the first one's.
func TestStartFailureSaysWhy(t *testing.T) {
	cfg := config(t, "shared_preload_libraries=no_such_library")
	_, err := pgdev.Start(context.Background(), cfg)
	if err == nil {
		t.Fatal("the server started with a library that does not exist")
	}
	if !strings.Contains(err.Error(), `could not access file "no_such_library"`) {
		t.Errorf("error %q does not say why the server stopped", err)
	}
	cfg.Settings = []string{"shared_preload_libraries=another_missing_library"}
	_, err = pgdev.Start(context.Background(), cfg)
	if err == nil {
		t.Fatal("the server started with a library that does not exist")
	}
	if !strings.Contains(err.Error(), `could not access file "another_missing_library"`) || strings.Contains(err.Error(), "no_such_library") {
		t.Errorf("error %q does not give the second start's reason alone", err)
	}
}

// TestPortInUseSaysSo: a port another process listens on is named as the
// cause (the FATAL line alone says only "could not create any TCP/IP
// sockets"), with the variable that moves it.
func TestPortInUseSaysSo(t *testing.T) {
	cfg := config(t)
	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	_, err = pgdev.Start(context.Background(), cfg)
	if err == nil {
		t.Fatal("the server started on a port in use")
	}
	for _, want := range []string{"could not bind", "Address already in use", "ORDERFLOW_PG_ADDR"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestDiedReportsAKilledServer: a server that exits without Stop (killed)
// is reported on Died with why; one ended by Stop is not, and a Stop after
// the death is a no-op.
func TestDiedReportsAKilledServer(t *testing.T) {
	ctx := context.Background()
	srv, err := pgdev.Start(ctx, config(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-srv.Died():
		t.Fatalf("Died after a Stop: %v", err)
	default:
	}
	if err := syscall.Kill(srv.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-srv.Died():
		if !strings.Contains(err.Error(), "exited unexpectedly") || !strings.Contains(err.Error(), "killed") {
			t.Errorf("Died = %v; want it to say the server exited unexpectedly, killed", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("nothing on Died 30s after the server was killed")
	}
	if err := srv.Stop(); err != nil {
		t.Errorf("Stop after the death = %v", err)
	}
	// The killed server's backends go on until they notice, holding its
	// shared memory meanwhile; they hold the cluster's lock too, so
	// Restart waits for them instead of being refused for it.
	if err := srv.Restart(ctx); err != nil {
		t.Fatalf("Restart after the death: %v", err)
	}
}

// TestABindLogLineIsNotTheCause: a server with two listen addresses, one
// of them taken (as localhost:PORT is, where localhost names both ::1 and
// 127.0.0.1), logs "could not bind" for it and goes on with the other. A
// start that then fails for another reason (here its WAL is gone) is not
// blamed on the port.
func TestABindLogLineIsNotTheCause(t *testing.T) {
	// A second loopback address: Linux routes all of 127/8 to lo.
	cfg := config(t, "listen_addresses=127.0.0.1,127.0.0.2")
	_, port, _ := net.SplitHostPort(cfg.Addr)
	srv, err := pgdev.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	wal, _ := filepath.Glob(filepath.Join(cfg.Dir, "pg_wal", "0*"))
	for _, f := range wal {
		_ = os.Remove(f)
	}
	l, err := net.Listen("tcp", "127.0.0.2:"+port)
	if err != nil {
		t.Fatalf("take 127.0.0.2:%s: %v (the test needs the loopback addresses of 127/8, as Linux has)", port, err)
	}
	t.Cleanup(func() { _ = l.Close() })
	srv, err = pgdev.Start(context.Background(), cfg)
	if err == nil {
		_ = srv.Stop()
		t.Fatal("started without its WAL")
	}
	if strings.Contains(err.Error(), "ORDERFLOW_PG_ADDR") || !strings.Contains(err.Error(), "checkpoint") {
		t.Errorf("error %q blames the port, or does not give the real cause (no checkpoint record)", err)
	}
}

// TestAnInterruptedFirstStartLeavesNoBrokenCluster: a first start stopped
// while initdb runs (a Ctrl-C) leaves nothing that the next start takes
// for a cluster. It left initdb's half-made one, in which the server then
// started without a postgres database: every later start waited 60 s and
// failed until the data dir was removed by hand.
func TestAnInterruptedFirstStartLeavesNoBrokenCluster(t *testing.T) {
	cfg := config(t)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once initdb has begun writing the cluster, wherever it does.
		for ctx.Err() == nil {
			for _, dir := range []string{cfg.Dir, cfg.Dir + ".initdb"} {
				if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err == nil {
					cancel()
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	if srv, err := pgdev.Start(ctx, cfg); err == nil {
		_ = srv.Stop()
		t.Fatal("the start cancelled during initdb succeeded; the test did not interrupt it")
	}
	cancel()

	start := time.Now()
	srv, err := pgdev.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("the start after an interrupted first one failed after %s: %v", time.Since(start).Round(time.Second), err)
	}
	defer func() { _ = srv.Stop() }()
	db, err := sql.Open("pgx", srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Ping(); err != nil {
		t.Fatalf("the new cluster does not answer: %v", err)
	}
}

// TestAStartRightAfterAKilledOneSucceeds: orderflow killed (kill -9) while
// its first start runs initdb, while the server starts, or once it is up,
// and started again at once on the same directory, starts. Killing it does
// not end its children at once: initdb went on in the directory the next
// initdb cleared and wrote in ("directory not empty", or initdb's own
// errors), and the server, which its parent-death signal has just asked to
// stop, was still shutting down, its postmaster.pid making the new server
// refuse to start ("lock file "postmaster.pid" already exists").
func TestAStartRightAfterAKilledOneSucceeds(t *testing.T) {
	exists := func(path string) func() bool {
		return func() bool { _, err := os.Stat(path); return err == nil }
	}
	for _, tc := range []struct {
		name string
		// made starts and stops the cluster first: not a first start.
		made bool
		// when says when to kill, given the cluster's directory; nil: once
		// the server is ready.
		when func(dir string) func() bool
	}{
		{name: "during initdb", when: func(dir string) func() bool { return exists(filepath.Join(dir+".initdb", "PG_VERSION")) }},
		{name: "while the server starts", when: func(dir string) func() bool { return exists(filepath.Join(dir, "postmaster.pid")) }},
		{name: "once ready"},
		{name: "once ready, not the first start", made: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(t)
			if tc.made {
				srv, err := pgdev.Start(context.Background(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				if err := srv.Stop(); err != nil {
					t.Fatal(err)
				}
			}
			var when func() bool
			if tc.when != nil {
				when = tc.when(cfg.Dir)
			}
			startChild(t, cfg, when)

			ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
			defer cancel()
			began := time.Now()
			srv, err := pgdev.Start(ctx, cfg)
			if err != nil {
				t.Fatalf("the start right after the killed one failed after %s: %v", time.Since(began).Round(time.Millisecond), err)
			}
			defer func() { _ = srv.Stop() }()
			db, err := sql.Open("pgx", srv.URL())
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.PingContext(ctx); err != nil {
				t.Fatalf("the server does not answer: %v", err)
			}
		})
	}
}

// startChild starts a server in a child process, as orderflow dev does, and
// kills the child (SIGKILL) once when reports true, or, when is nil, once
// the server is ready.
func startChild(tb testing.TB, cfg pgdev.Config, when func() bool) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], childArg, cfg.Dir, cfg.Addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		lines <- strings.TrimSpace(line)
	}()
	kill := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	deadline := time.After(30 * time.Second)
	for {
		if when != nil && when() {
			kill()
			return
		}
		select {
		case line := <-lines:
			if when != nil || !strings.HasPrefix(line, "ready") {
				kill()
				tb.Fatalf("the child said %q before it was to be killed", line)
			}
			kill()
			return
		case <-deadline:
			kill()
			tb.Fatal("the moment to kill the child did not come in 30s")
		case <-time.After(time.Millisecond):
		}
	}
}

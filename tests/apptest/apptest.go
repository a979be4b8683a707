// Package apptest runs the real orderflow binary, `orderflow dev`, against a
// test package's shared stack (tests/stacktest), so end-to-end tests drive
// exactly what a user runs: the same wiring, the same configuration read
// from the environment, the same HTTP API. The binary is built once per test
// package and uses the stack as external components (TEMPORAL_ADDRESS,
// DATABASE_URL, NATS_URL), the way the README says `orderflow dev` can.
// StartDev runs it instead on its embedded defaults, as `make run` does.
//
//	func TestMain(m *testing.M) { os.Exit(apptest.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		app := apptest.Start(t)
//		resp := app.Do(t, "POST", "/v1/orders", body, header)
//		...
//	}
package apptest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orderflow/orderflow/devstack/freeport"
	"github.com/orderflow/orderflow/tests/stacktest"
)

// TaskQueue is the task queue the app's worker polls; it is the app's own,
// so that no other test's workflows reach it.
const TaskQueue = "orderflow-e2e"

// App is a running `orderflow dev` (or, from StartAPI, `orderflow api`)
// process.
type App struct {
	// BaseURL is the HTTP API, e.g. http://127.0.0.1:40123.
	BaseURL string
	// Env is the stack the app runs on; nil for StartDev's, which runs its
	// own.
	Env *stacktest.Env

	command string // dev, api or worker
	cmd     *exec.Cmd
	logs    *syncBuffer
	done    chan error
	stopped bool
}

var (
	mu       sync.Mutex
	shared   *App
	startErr error

	binMu  sync.Mutex
	binDir string // where Binary built it, removed by Main
	bin    string
	binErr error
)

// Main runs the package's tests, stops the app if a test started it (a
// test fails the package if it does not stop cleanly), then tears down the
// shared stack.
func Main(m *testing.M) int {
	return stacktest.Main(&wrapped{m})
}

type wrapped struct{ m *testing.M }

func (w *wrapped) Run() int {
	code := w.m.Run()
	mu.Lock()
	defer mu.Unlock()
	if shared != nil {
		if err := shared.stop(syscall.SIGTERM); err != nil {
			fmt.Fprintf(os.Stderr, "apptest: %v\nend of the app's log:\n%s\n", err, shared.logs.Tail(32<<10))
			code = 1
		} else if code != 0 {
			fmt.Fprintf(os.Stderr, "apptest: end of the app's log:\n%s\n", shared.logs.Tail(32<<10))
		}
		shared = nil
	}
	binMu.Lock()
	defer binMu.Unlock()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	return code
}

// Start returns the package's app, building and starting it on the first
// call, with extra environment settings (e.g. ORDERFLOW_COURIER_DELAY).
// Every call must pass the same settings: there is one app per package.
func Start(tb testing.TB, extraEnv ...string) *App {
	tb.Helper()
	env := stacktest.Start(tb)
	mu.Lock()
	defer mu.Unlock()
	if shared != nil {
		return shared
	}
	if startErr != nil {
		tb.Fatalf("apptest: %v", startErr)
	}
	began := time.Now()
	shared, startErr = start(env, extraEnv)
	if startErr != nil {
		tb.Fatalf("apptest: %v", startErr)
	}
	tb.Logf("apptest: orderflow dev up in %s at %s", time.Since(began).Round(time.Millisecond), shared.BaseURL)
	return shared
}

// Binary builds cmd/orderflow once per test package and returns its path
// (or the build's error, every time).
func Binary() (string, error) {
	binMu.Lock()
	defer binMu.Unlock()
	if bin == "" && binErr == nil {
		bin, binErr = build() // build returns "" with its error
	}
	return bin, binErr
}

func build() (string, error) {
	dir, err := os.MkdirTemp("", "orderflow-apptest-bin-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "orderflow")
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	// go test puts its own Go first on the PATH of what the tests run.
	build := exec.Command("go", "build", "-o", bin, "./cmd/orderflow")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/orderflow: %w\n%s", err, out)
	}
	return bin, nil
}

func start(env *stacktest.Env, extraEnv []string) (*App, error) {
	httpAddr, err := freeport.Addr()
	if err != nil {
		return nil, err
	}
	dataDir, err := os.MkdirTemp(env.DataDir, "app-")
	if err != nil {
		return nil, err
	}
	environ := append(stackEnviron(env, httpAddr, TaskQueue), "ORDERFLOW_DATA_DIR="+dataDir)
	a, err := launch("dev", httpAddr, append(environ, extraEnv...))
	if a != nil {
		a.Env = env
	}
	return a, err
}

// stackEnviron is the environment of an orderflow process on env's stack
// (its components as external ones), serving on httpAddr, its workflows on
// taskQueue.
func stackEnviron(env *stacktest.Env, httpAddr, taskQueue string) []string {
	return append(Environ(),
		"ORDERFLOW_HTTP_ADDR="+httpAddr,
		"ORDERFLOW_TASK_QUEUE="+taskQueue,
		"ORDERFLOW_LOG_LEVEL=info",
		"TEMPORAL_ADDRESS="+env.Stack.TemporalAddr,
		"TEMPORAL_NAMESPACE=default",
		"DATABASE_URL="+env.Stack.DatabaseURL,
		"NATS_URL="+env.Stack.NATSURL,
	)
}

// StartAPI runs `orderflow api` alone against the package's shared stack,
// starting its workflows on taskQueue, with extra environment settings. No
// worker of the shared app polls taskQueue: the test runs the worker
// itself, so that it can stop and start it (a crash, a deploy) while the
// API goes on answering. The API is stopped (SIGTERM) at the end of the
// test.
func StartAPI(tb testing.TB, taskQueue string, extraEnv ...string) *App {
	tb.Helper()
	env := stacktest.Start(tb)
	httpAddr, err := freeport.Addr()
	if err != nil {
		tb.Fatal(err)
	}
	a, err := launch("api", httpAddr, append(stackEnviron(env, httpAddr, taskQueue), extraEnv...))
	if err != nil {
		tb.Fatalf("apptest: %v", err)
	}
	a.Env = env
	tb.Cleanup(func() {
		if err := a.stop(syscall.SIGTERM); err != nil {
			tb.Errorf("apptest: %v\nend of the API's log:\n%s", err, a.Logs())
		}
	})
	return a
}

// Environ is the test process's environment without any orderflow or
// Temporal setting (ORDERFLOW_*, TEMPORAL_*, DATABASE_URL, NATS_URL), the
// base of every orderflow process a test starts: a developer's
// ORDERFLOW_ACCEPT_TIMEOUT or DATABASE_URL, say, must not change what a
// test runs or where it writes.
func Environ() []string {
	var environ []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "ORDERFLOW_") && !strings.HasPrefix(name, "TEMPORAL_") &&
			name != "DATABASE_URL" && name != "NATS_URL" {
			environ = append(environ, kv)
		}
	}
	return environ
}

// Dev is where a StartDev app keeps its data and listens.
type Dev struct {
	// DataDir is ORDERFLOW_DATA_DIR, where the embedded components keep
	// their data.
	DataDir string
	// The API's address and the embedded components': Temporal's frontend,
	// its Web UI, PostgreSQL and NATS.
	HTTPAddr, TemporalAddr, UIAddr, PGAddr, NATSAddr string
	// Env is more environment for the app (e.g. ORDERFLOW_COURIER_DELAY),
	// after the settings above.
	Env []string
}

// NewDev picks a data dir and free addresses for a StartDev app.
func NewDev(tb testing.TB) Dev {
	tb.Helper()
	d := Dev{DataDir: stacktest.TempDir(tb)}
	d.PickAddrs(tb)
	return d
}

// PickAddrs picks free addresses for d again, keeping its data dir, for a
// restart on whatever ports are free then.
func (d *Dev) PickAddrs(tb testing.TB) {
	tb.Helper()
	for _, a := range []*string{&d.HTTPAddr, &d.TemporalAddr, &d.UIAddr, &d.PGAddr, &d.NATSAddr} {
		var err error
		if *a, err = freeport.Addr(); err != nil {
			tb.Fatal(err)
		}
	}
}

// StartDev runs `orderflow dev` the way `make run` does, on nothing but
// its embedded defaults: its own Temporal server and Web UI, a private
// PostgreSQL, an embedded NATS, in d's data dir and on d's addresses (so
// that it runs next to the shared stack and a developer's `make run`).
// None of the caller's orderflow or Temporal settings reach it. The app
// is stopped at the end of the test unless the test stopped it. Unlike
// Start's, its Env is nil: it has no shared stack.
func StartDev(tb testing.TB, d Dev) *App {
	tb.Helper()
	if err := stacktest.Prerequisites(); err != nil {
		tb.Fatal(err)
	}
	environ := append(Environ(),
		"ORDERFLOW_DATA_DIR="+d.DataDir,
		"ORDERFLOW_HTTP_ADDR="+d.HTTPAddr,
		"ORDERFLOW_TEMPORAL_ADDR="+d.TemporalAddr,
		"ORDERFLOW_UI_ADDR="+d.UIAddr,
		"ORDERFLOW_PG_ADDR="+d.PGAddr,
		"ORDERFLOW_NATS_ADDR="+d.NATSAddr,
		"ORDERFLOW_LOG_LEVEL=info",
		"ORDERFLOW_LOG_FORMAT=text", // what ErrorLines reads
	)
	environ = append(environ, d.Env...)
	began := time.Now()
	a, err := launch("dev", d.HTTPAddr, environ)
	if err != nil {
		tb.Fatalf("apptest: %v", err)
	}
	tb.Logf("apptest: orderflow dev on its embedded defaults up in %s at %s", time.Since(began).Round(time.Millisecond), a.BaseURL)
	tb.Cleanup(func() {
		if err := a.Stop(); err != nil {
			tb.Errorf("apptest: %v\nend of the app's log:\n%s", err, a.Logs())
		}
	})
	return a
}

// readyBanner opens what dev prints once every part has started.
const readyBanner = "orderflow is ready"

// launch starts `orderflow <command>` (dev or api) with environ and waits
// until its /readyz, on httpAddr, says ready, and dev has printed its ready
// banner: /readyz answers as soon as the API serves, a moment before the
// worker polls and the consumers are subscribed.
func launch(command, httpAddr string, environ []string) (*App, error) {
	return launchUntil(command, "http://"+httpAddr, environ, func(a *App) bool {
		if command == "dev" && !a.logs.Contains(readyBanner) {
			return false
		}
		resp, err := http.Get(a.BaseURL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// launchUntil starts orderflow command and waits for ready to report it
// ready.
func launchUntil(command, baseURL string, environ []string, ready func(*App) bool) (*App, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, command)
	cmd.Env = environ
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	// The app dies with the test binary, even when it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start orderflow %s: %w", command, err)
	}
	a := &App{BaseURL: baseURL, command: command, cmd: cmd, logs: logs, done: make(chan error, 1)}
	go func() { a.done <- cmd.Wait() }()

	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case err := <-a.done:
			return nil, fmt.Errorf("orderflow %s exited before it was ready (%v):\n%s", command, err, logs.Tail(16<<10))
		default:
		}
		if ready(a) {
			return a, nil
		}
		if time.Now().After(deadline) {
			a.kill()
			return nil, fmt.Errorf("orderflow %s not ready after 2 minutes:\n%s", command, logs.Tail(16<<10))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// StartWorker runs `orderflow worker` with the environment that
// workerCommand gives, the command line a StartDev app with
// ORDERFLOW_DEV_WORKER=off prints in its ready banner (its environment
// assignments, then the binary and "worker"), and returns once the worker
// polls. The worker is stopped (SIGTERM) at the end of the test unless
// the test killed or stopped it (Kill, Stop).
func StartWorker(tb testing.TB, workerCommand string) *App {
	tb.Helper()
	fields := strings.Fields(workerCommand)
	if len(fields) < 2 || fields[len(fields)-1] != "worker" {
		tb.Fatalf("apptest: %q is not a command line that runs orderflow worker", workerCommand)
	}
	environ := append(Environ(), "ORDERFLOW_LOG_LEVEL=info", "ORDERFLOW_LOG_FORMAT=text")
	for _, f := range fields[:len(fields)-2] {
		name, value, ok := strings.Cut(f, "=")
		if !ok {
			tb.Fatalf("apptest: %q in %q is not an environment assignment", f, workerCommand)
		}
		environ = append(environ, name+"="+strings.Trim(value, "'"))
	}
	a, err := launchUntil("worker", "", environ, func(a *App) bool {
		return a.logs.Contains("worker polling")
	})
	if err != nil {
		tb.Fatalf("apptest: %v", err)
	}
	tb.Cleanup(func() {
		if err := a.stop(syscall.SIGTERM); err != nil {
			tb.Errorf("apptest: %v\nend of the worker's log:\n%s", err, a.Logs())
		}
	})
	return a
}

// Stop stops a StartDev app as Ctrl-C would (SIGINT) and expects a clean
// exit within 30 seconds; called again, it returns nil. The shared app is
// Main's to stop.
func (a *App) Stop() error {
	if a.Env != nil {
		return errors.New("apptest: Stop is for StartDev's apps; Main stops the shared one")
	}
	return a.stop(os.Interrupt)
}

// stop sends sig and expects a clean exit within 30 seconds.
func (a *App) stop(sig os.Signal) error {
	if a.stopped {
		return nil
	}
	a.stopped = true
	_ = a.cmd.Process.Signal(sig)
	select {
	case err := <-a.done:
		if err != nil {
			return fmt.Errorf("orderflow %s did not exit cleanly on %v: %w", a.command, sig, err)
		}
		return nil
	case <-time.After(30 * time.Second):
		a.kill()
		return fmt.Errorf("orderflow %s still running 30s after %v", a.command, sig)
	}
}

// Kill kills a StartDev app (SIGKILL), as a crash would, and waits for it
// to go.
func (a *App) Kill() {
	a.stopped = true
	a.kill()
}

// Exited waits up to timeout for a StartDev app to exit by itself and
// reports whether it did and how (cmd.Wait's error).
func (a *App) Exited(timeout time.Duration) (bool, error) {
	select {
	case err := <-a.done:
		a.stopped = true
		return true, err
	case <-time.After(timeout):
		return false, nil
	}
}

// kill kills the app and waits a little for it to go, so that its data
// dir is not removed under it.
func (a *App) kill() {
	_ = a.cmd.Process.Kill()
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
	}
}

// Logs returns the end of the app's log, for failure messages.
func (a *App) Logs() string { return a.logs.Tail(16 << 10) }

// ErrorLines returns the lines of the app's whole log at level ERROR.
func (a *App) ErrorLines() []string {
	var lines []string
	for line := range strings.Lines(a.logs.Tail(math.MaxInt)) {
		if strings.Contains(line, "level=ERROR") {
			lines = append(lines, strings.TrimRight(line, "\n"))
		}
	}
	return lines
}

// Response is one HTTP answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v, failing tb when it is not JSON.
func (r Response) JSON(tb testing.TB, v any) {
	tb.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		tb.Fatalf("decode %d response %q: %v", r.Status, r.Body, err)
	}
}

// Do sends one request to the app and fails tb when it cannot. body may
// be a string, []byte, nil or any value to encode as JSON; header lines
// come as "Name: value". Call it from the test's goroutine only; other
// goroutines use Request.
func (a *App) Do(tb testing.TB, method, path string, body any, header ...string) Response {
	tb.Helper()
	resp, err := a.Request(method, path, body, header...)
	if err != nil {
		tb.Fatal(err)
	}
	return resp
}

// Request is Do for any goroutine: it returns the error instead.
func (a *App) Request(method, path string, body any, header ...string) (Response, error) {
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return Response{}, fmt.Errorf("encode request: %w", err)
		}
		r = bytes.NewReader(data)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, a.BaseURL+path, r)
	if err != nil {
		return Response{}, fmt.Errorf("new request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range header {
		name, value, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// syncBuffer is the app's log: written by the process, read by tests.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Contains reports whether s was written.
func (b *syncBuffer) Contains(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Contains(b.buf.Bytes(), []byte(s))
}

// Tail returns the last n bytes written.
func (b *syncBuffer) Tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	data := b.buf.Bytes()
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data)
}

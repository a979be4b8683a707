package tests_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/orderflow/orderflow/api"
	"github.com/orderflow/orderflow/devstack"
	"github.com/orderflow/orderflow/temporal"
	"github.com/orderflow/orderflow/temporal/devserver"
	"github.com/orderflow/orderflow/tests/apptest"
	"github.com/orderflow/orderflow/tests/stacktest"
)

func TestMain(m *testing.M) { os.Exit(apptest.Main(m)) }

// No test here uses t.Parallel: TestReadyzFollowsPostgres and
// TestDialWaitsOutAStoreRestart stop the shared stack's PostgreSQL for a
// moment. Their Cleanup (restorePostgres) restarts it, drops the pool's
// dead connections and waits until the embedded Temporal server, which
// persists to the same PostgreSQL, answers from its store again, so the
// tests after them find the stack as they would otherwise.

// greetWorkflow is the smallest workflow that still leaves every kind of
// history event a real one does: it schedules one activity and completes
// with its result.
func greetWorkflow(ctx workflow.Context, name string) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
	var greeting string
	err := workflow.ExecuteActivity(ctx, composeGreeting, name).Get(ctx, &greeting)
	return greeting, err
}

func composeGreeting(_ context.Context, name string) (string, error) {
	return "Hello, " + name + "!", nil
}

// TestWorkflowAndHistorySurviveRestart runs a workflow to completion, stops
// the whole stack, starts it again on the same data dir and finds the
// workflow, its history and its result in Temporal's store: its databases
// on the stack's PostgreSQL, or its SQLite file.
func TestWorkflowAndHistorySurviveRestart(t *testing.T) {
	for _, p := range []devserver.Persistence{devserver.Postgres, devserver.SQLite} {
		t.Run(string(p), func(t *testing.T) { testWorkflowAndHistorySurviveRestart(t, p) })
	}
}

func testWorkflowAndHistorySurviveRestart(t *testing.T, persistence devserver.Persistence) {
	const (
		workflowID = "platform-restart-greet"
		taskQueue  = "platform-restart"
		want       = "Hello, Ada!"
	)
	dir := stacktest.TempDir(t)

	opts := stacktest.Options{TemporalPersistence: persistence}
	runID := func() string {
		stack := stacktest.StartStackWith(t, dir, opts)
		defer stack.Close()
		c := dial(t, stack)
		defer c.Close()
		w := worker.New(c, taskQueue, worker.Options{})
		w.RegisterWorkflow(greetWorkflow)
		w.RegisterActivity(composeGreeting)
		if err := w.Start(); err != nil {
			t.Fatalf("start worker: %v", err)
		}
		defer w.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflowID, TaskQueue: taskQueue}, greetWorkflow, "Ada")
		if err != nil {
			t.Fatalf("start workflow: %v", err)
		}
		var got string
		if err := run.Get(ctx, &got); err != nil {
			t.Fatalf("workflow result: %v", err)
		}
		if got != want {
			t.Fatalf("workflow result = %q; want %q", got, want)
		}
		return run.GetRunID()
	}()

	_, err := os.Stat(filepath.Join(dir, "temporal", devserver.DatabaseFile))
	switch {
	case persistence == devserver.SQLite && err != nil:
		t.Fatalf("temporal's sqlite file after stop: %v", err)
	case persistence == devserver.Postgres && err == nil:
		t.Fatalf("temporal persisting to postgres made a sqlite file")
	}

	// Started again: new ports, same data dir, no worker.
	stack := stacktest.StartStackWith(t, dir, opts)
	c := dial(t, stack)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	desc, err := c.DescribeWorkflowExecution(ctx, workflowID, "")
	if err != nil {
		t.Fatalf("describe %s after restart: %v", workflowID, err)
	}
	info := desc.GetWorkflowExecutionInfo()
	if got := info.GetStatus(); got != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		t.Errorf("status after restart = %v; want COMPLETED", got)
	}
	if got := info.GetExecution().GetRunId(); got != runID {
		t.Errorf("run id after restart = %s; want %s", got, runID)
	}

	var types []enumspb.EventType
	var result string
	iter := c.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatalf("read history after restart: %v", err)
		}
		types = append(types, ev.GetEventType())
		if attrs := ev.GetWorkflowExecutionCompletedEventAttributes(); attrs != nil {
			if err := converter.GetDefaultDataConverter().FromPayloads(attrs.GetResult(), &result); err != nil {
				t.Fatalf("decode workflow result: %v", err)
			}
		}
	}
	for _, want := range []enumspb.EventType{
		enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
		enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
		enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
	} {
		if !slices.Contains(types, want) {
			t.Errorf("history after restart lacks %v; has %v", want, types)
		}
	}
	if result != want {
		t.Errorf("result in history after restart = %q; want %q", result, want)
	}

	// The Web UI lists workflows through visibility, which is persisted
	// (and, for the close record, written) apart from the history.
	query := "WorkflowId = '" + workflowID + "'"
	wantListed := []string{runID + " " + enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED.String()}
	var listed []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query})
		if err != nil {
			t.Fatalf("list workflows after restart: %v", err)
		}
		listed = listed[:0]
		for _, e := range resp.GetExecutions() {
			listed = append(listed, e.GetExecution().GetRunId()+" "+e.GetStatus().String())
		}
		if slices.Equal(listed, wantListed) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !slices.Equal(listed, wantListed) {
		t.Errorf("visibility after restart lists %q for %s; want %q", listed, query, wantListed)
	}
}

// TestWebUIServesTemporalUI checks that the embedded Web UI serves the
// Temporal UI application and reaches the embedded server, whichever store
// that server persists to.
func TestWebUIServesTemporalUI(t *testing.T) {
	for _, p := range []devserver.Persistence{devserver.Postgres, devserver.SQLite} {
		t.Run(string(p), func(t *testing.T) { testWebUIServesTemporalUI(t, p) })
	}
}

func testWebUIServesTemporalUI(t *testing.T, persistence devserver.Persistence) {
	stack := stacktest.StartStackWith(t, stacktest.TempDir(t), stacktest.Options{UI: true, TemporalPersistence: persistence})
	if stack.UIURL == "" {
		t.Fatal("stack started with ui=true has no UIURL")
	}
	checkWebUI(t, stack.UIURL)
}

// checkWebUI checks that the Temporal Web UI at base serves the UI
// application and that its API reaches the Temporal server, namespace
// "default" and its workflow list included.
func checkWebUI(t *testing.T, base string) {
	t.Helper()
	code, header, body := get(t, base+"/")
	if code != http.StatusOK {
		t.Fatalf("GET / = %d; want 200; body: %.300s", code, body)
	}
	if ct := header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("GET / Content-Type = %q; want text/html", ct)
	}
	// The page is the UI's SvelteKit shell: it loads the app from
	// /_app/immutable/entry/start.<hash>.js.
	script := regexp.MustCompile(`/_app/immutable/entry/start\.[^"]+\.js`).FindString(body)
	if script == "" {
		t.Fatalf("GET / does not look like the Temporal UI (no app entry script): %.500s", body)
	}
	if code, header, _ := get(t, base+script); code != http.StatusOK || !strings.Contains(header.Get("Content-Type"), "javascript") {
		t.Errorf("GET %s = %d %q; want 200 javascript", script, code, header.Get("Content-Type"))
	}

	// The UI's API is a gateway to the Temporal frontend it points at.
	code, _, body = get(t, base+"/api/v1/namespaces/default")
	if code != http.StatusOK {
		t.Fatalf("GET /api/v1/namespaces/default = %d; want 200; body: %.300s", code, body)
	}
	var ns struct {
		NamespaceInfo struct{ Name string } `json:"namespaceInfo"`
	}
	if err := json.Unmarshal([]byte(body), &ns); err != nil || ns.NamespaceInfo.Name != "default" {
		t.Errorf("GET /api/v1/namespaces/default: namespace %q (%v); want default; body: %.300s", ns.NamespaceInfo.Name, err, body)
	}
	// Its workflow list is a query on the visibility store, which differs
	// with the persistence.
	code, _, body = get(t, base+"/api/v1/namespaces/default/workflows?query="+url.QueryEscape("ExecutionStatus = 'Running'"))
	if code != http.StatusOK {
		t.Fatalf("GET /api/v1/namespaces/default/workflows = %d; want 200; body: %.300s", code, body)
	}
	var list struct {
		Executions []json.RawMessage `json:"executions"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Errorf("GET /api/v1/namespaces/default/workflows: %v; body: %.300s", err, body)
	}
}

// TestReadyzFollowsPostgres stops the shared PostgreSQL under a running API
// and starts it again: /readyz must say 503 naming postgres, then 200 once
// the pool reconnects; /healthz stays 200 throughout. It restarts
// PostgreSQL even when it fails, so other tests are not affected.
func TestReadyzFollowsPostgres(t *testing.T) {
	env := stacktest.Start(t)
	srv := api.New(api.Config{Logger: env.Logger, Readiness: []api.Check{
		api.TemporalCheck(env.Temporal),
		api.PostgresCheck(env.Store.DB),
		api.NATSCheck(env.NATS),
	}})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	pg := env.Stack.Postgres
	restorePostgres(t, env)

	expectReady(t, ts.URL, http.StatusOK, "")
	expectHealthy(t, ts.URL)
	// Leave several connections idle in the pool: the stop kills them all,
	// and the pool must not keep handing them to the check.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if _, err := env.Store.DB.ExecContext(ctx, "SELECT pg_sleep(0.05)"); err != nil {
				t.Errorf("fill the pool: %v", err)
			}
		})
	}
	wg.Wait()

	if err := pg.Stop(); err != nil {
		t.Fatalf("stop postgres: %v", err)
	}
	expectReady(t, ts.URL, http.StatusServiceUnavailable, "postgres")
	expectHealthy(t, ts.URL)

	restarted := time.Now()
	if err := pg.Restart(ctx); err != nil {
		t.Fatalf("restart postgres: %v", err)
	}
	var code int
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, _, body = get(t, ts.URL+"/readyz")
		if code == http.StatusOK || time.Now().After(deadline) {
			break
		}
	}
	if code != http.StatusOK {
		t.Fatalf("/readyz 10s after postgres restarted = %d; want 200; body: %s", code, body)
	}
	t.Logf("/readyz 200 again %s after postgres restarted", time.Since(restarted).Round(time.Millisecond))
	expectReady(t, ts.URL, http.StatusOK, "")
	expectHealthy(t, ts.URL)
}

// restorePostgres registers a Cleanup that leaves the shared stack as the
// next test expects it after t stopped its PostgreSQL: running, the pool
// rid of the connections the stop killed, and the Temporal server (which
// persists to it and reconnects at most once a second, answering
// Unavailable meanwhile) answering from its store again.
func restorePostgres(t *testing.T, env *stacktest.Env) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// Restart is a no-op when PostgreSQL runs.
		if err := env.Stack.Postgres.Restart(ctx); err != nil {
			t.Errorf("restart postgres for the next tests: %v", err)
			return
		}
		dropDeadConns(ctx, env.Store.DB)
		if _, err := env.Store.ListCustomers(ctx); err != nil {
			t.Errorf("query after postgres restarted: %v", err)
		}
		var err error
		for ctx.Err() == nil {
			if _, err = env.Temporal.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: client.DefaultNamespace}); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("temporal's store a minute after postgres restarted: %v", err)
	})
}

// dropDeadConns closes the pool's idle connections that a PostgreSQL
// restart killed. The pool finds them itself (pgx pings a connection idle
// for over a second before reusing it), but one used just before the
// restart would fail the next test's first query.
func dropDeadConns(ctx context.Context, pool *sql.DB) {
	var held []*sql.Conn
	for range pool.Stats().Idle {
		c, err := pool.Conn(ctx)
		if err != nil {
			break
		}
		held = append(held, c)
	}
	for _, c := range held {
		_ = c.PingContext(ctx) // a failed ping marks the connection bad
		_ = c.Close()          // and releasing it then discards it
	}
}

// expectReady checks one /readyz answer: its code, and when failing names
// the one check that must fail.
func expectReady(t *testing.T, base string, wantCode int, failing string) {
	t.Helper()
	code, _, body := get(t, base+"/readyz")
	if code != wantCode {
		t.Fatalf("/readyz = %d; want %d; body: %s", code, wantCode, body)
	}
	var ready struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal([]byte(body), &ready); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	for _, name := range []string{"temporal", "postgres", "nats"} {
		state, ok := ready.Checks[name]
		switch {
		case !ok:
			t.Errorf("/readyz does not report %s: %s", name, body)
		case name == failing && state == "ok":
			t.Errorf("/readyz reports %s ok; want its error: %s", name, body)
		case name != failing && state != "ok":
			t.Errorf("/readyz reports %s %q; want ok", name, state)
		}
	}
}

func expectHealthy(t *testing.T, base string) {
	t.Helper()
	if code, _, body := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d; want 200; body: %s", code, body)
	}
}

// dial connects a Temporal client to stack, logging nowhere: the test
// reports what matters.
func dial(t *testing.T, stack *devstack.Stack) client.Client {
	t.Helper()
	return dialAddr(t, stack.TemporalAddr)
}

// dialAddr dials the Temporal frontend at addr, namespace default.
func dialAddr(t *testing.T, addr string) client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := temporal.Dial(ctx, client.Options{HostPort: addr}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("dial temporal at %s: %v", addr, err)
	}
	return c
}

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

// TestDialRefusesAMissingNamespace: a client for a namespace the server
// does not have fails at connect, naming it and how to create it. It
// connected, and `orderflow api` then reported ready and answered every
// order with a 500 (NamespaceNotFound).
func TestDialRefusesAMissingNamespace(t *testing.T) {
	env := stacktest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := temporal.Dial(ctx, client.Options{HostPort: env.Stack.TemporalAddr, Namespace: "no-such-namespace"}, slog.New(slog.DiscardHandler))
	if err == nil {
		c.Close()
		t.Fatal("dialled a namespace that does not exist")
	}
	if !strings.Contains(err.Error(), `has no namespace "no-such-namespace"`) || !strings.Contains(err.Error(), "TEMPORAL_NAMESPACE") {
		t.Errorf("error %q does not name the namespace and how to fix it", err)
	}
}

// TestDialWaitsOutAStoreRestart dials while the Temporal server's store
// (the stack's PostgreSQL) restarts: the frontend answers health checks but
// the namespace look-up says Unavailable. Dial must ask again and still
// refuse the missing namespace. It let the client through, and a CI run
// whose previous test had just restarted PostgreSQL failed on exactly that.
func TestDialWaitsOutAStoreRestart(t *testing.T) {
	env := stacktest.Start(t)
	restorePostgres(t, env)
	if err := env.Stack.Postgres.Stop(); err != nil {
		t.Fatalf("stop postgres: %v", err)
	}
	// The server finds the store gone on its next look-up.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := env.Temporal.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "no-such-namespace"})
	if u := (*serviceerror.Unavailable)(nil); !errors.As(err, &u) {
		t.Fatalf("namespace look-up with postgres stopped: %v; want Unavailable (the case this test is about)", err)
	}
	restarted := make(chan error, 1)
	go func() {
		// Dial's first look-up comes within milliseconds: it finds the
		// store down.
		time.Sleep(300 * time.Millisecond)
		restarted <- env.Stack.Postgres.Restart(ctx)
	}()
	began := time.Now()
	c, err := temporal.Dial(ctx, client.Options{HostPort: env.Stack.TemporalAddr, Namespace: "no-such-namespace"}, slog.New(slog.DiscardHandler))
	if rerr := <-restarted; rerr != nil {
		t.Fatalf("restart postgres: %v", rerr)
	}
	if err == nil {
		c.Close()
		t.Fatalf("dialled a namespace that does not exist while the store restarted (Dial returned after %s)", time.Since(began).Round(time.Millisecond))
	}
	if !strings.Contains(err.Error(), `has no namespace "no-such-namespace"`) {
		t.Errorf("error %q does not name the missing namespace", err)
	}
}

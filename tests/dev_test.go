package tests_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/analytics"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/promotions"
	"github.com/orderflow/orderflow/tests/apptest"
)

// TestDevOnEmbeddedDefaults is `make run` as a new user meets it: `orderflow
// dev` with no external component, so that it starts its own Temporal
// server and Web UI, PostgreSQL and NATS. An order goes through the API to
// completed. Another client (this test) reads its events from the embedded
// NATS over TCP, as the other contexts' processes would, and finds its
// workflow completed on the Temporal server and listed by the Web UI; the
// promotions and analytics contexts in the process take its events, each
// exactly once. Ctrl-C stops it with no error logged by orderflow's parts,
// and started again on the same data dir it has the order, its workflow
// and the very events the stream stored the first time, and logs no error
// of its own either.
func TestDevOnEmbeddedDefaults(t *testing.T) {
	dev := apptest.NewDev(t)
	app := apptest.StartDev(t, dev)
	uiURL := "http://" + dev.UIAddr
	checkWebUI(t, uiURL)

	p := place(t, app, orderRequest(pizzeria, margherita, 1, "tok_visa"))
	waitStatus(t, app, p.ID, "awaiting_acceptance")
	mustDecide(t, app, p.ID, "accept", nil, "accepted")
	mustDecide(t, app, p.ID, "delivered", nil, "completed")
	wid := orderflow.OrderWorkflowID(p.ID)
	func() {
		c := dialAddr(t, dev.TemporalAddr)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
		defer cancel()
		if err := c.GetWorkflow(ctx, wid, "").Get(ctx, nil); err != nil {
			t.Fatalf("order workflow on the embedded Temporal server: %v\napp log:\n%s", err, app.Logs())
		}
	}()
	waitListedByUI(t, uiURL, wid)
	o := getOrder(t, app, p.ID)
	nc, js := natsOverTCP(t, dev.NATSAddr)
	stored := checkBus(t, app, js, p.ID)
	nc.Close()

	// A fresh data dir: the demo data has no orders, so each context must
	// have counted this one exactly once.
	if v := waitVouchers(t, app, customer, p.ID); len(v) != 1 || v[p.ID] != 1 {
		t.Errorf("promotions issued vouchers %v; want one, for order %s", v, p.ID)
	}
	if got := waitStats(t, app, pizzeria, stats{Placed: 1, Accepted: 1}); got != (stats{Placed: 1, Accepted: 1}) {
		t.Errorf("analytics counted %+v for the restaurant; want the one order placed and accepted", got)
	}

	if err := app.Stop(); err != nil {
		t.Fatalf("%v\napp log:\n%s", err, app.Logs())
	}
	checkNoErrors(t, app, "")

	// Started again on the same data dir, as the next `make run` is (on
	// whatever ports are free then, which must not matter).
	dev.PickAddrs(t)
	app = apptest.StartDev(t, dev)
	if again := getOrder(t, app, p.ID); again.Status != "completed" ||
		!slices.Equal(timelineTypes(again), timelineTypes(o)) {
		t.Errorf("after restart: order %q with timeline %v; want completed with %v", again.Status, timelineTypes(again), timelineTypes(o))
	}
	func() {
		c := dialAddr(t, dev.TemporalAddr)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		desc, err := c.DescribeWorkflowExecution(ctx, wid, "")
		if err != nil {
			t.Fatalf("after restart: describe the order's workflow: %v", err)
		}
		if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
			t.Errorf("after restart: the order's workflow is %s; want completed", st)
		}
	}()
	// The same messages, not copies the relay published again into a
	// stream that had lost them.
	_, js = natsOverTCP(t, dev.NATSAddr)
	again := checkBus(t, app, js, p.ID)
	if len(again) != len(stored) {
		t.Fatalf("after restart: %d events on the bus; there were %d", len(again), len(stored))
	}
	for i, ev := range again {
		if was := stored[i]; ev.Stream.Stream != was.Stream.Stream || !ev.Stored.Equal(was.Stored) {
			t.Errorf("after restart: event %s is message %d stored at %s; it was message %d stored at %s",
				ev.ID, ev.Stream.Stream, ev.Stored, was.Stream.Stream, was.Stored)
		}
	}
	// Whatever the stream redelivered after the restart, the contexts
	// counted the order once: checked once their consumers have nothing
	// pending or unacknowledged. (The analytics counters are what a
	// second application would change; a voucher is unique per order in
	// its table, so its count shows that it is still there.)
	waitCaughtUp(t, js, analytics.ConsumerName, promotions.ConsumerName)
	if v := waitVouchers(t, app, customer, p.ID); len(v) != 1 || v[p.ID] != 1 {
		t.Errorf("after restart: promotions issued vouchers %v; want one, for order %s", v, p.ID)
	}
	if got := restaurantStats(t, app, pizzeria); got != (stats{Placed: 1, Accepted: 1}) {
		t.Errorf("after restart: analytics counted %+v for the restaurant; want the one order placed and accepted", got)
	}
	if err := app.Stop(); err != nil {
		t.Fatalf("%v\napp log:\n%s", err, app.Logs())
	}
	checkNoErrors(t, app, ", restarted,")
}

// waitCaughtUp waits until each named durable consumer of the order
// stream has no message pending and none awaiting its ack.
func waitCaughtUp(t *testing.T, js jetstream.JetStream, names ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, name := range names {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			info, err := js.Consumer(ctx, events.OrderStream, name)
			if err == nil {
				var ci *jetstream.ConsumerInfo
				if ci, err = info.Info(ctx); err == nil && ci.NumPending == 0 && ci.NumAckPending == 0 {
					cancel()
					break
				}
			}
			cancel()
			if time.Now().After(deadline) {
				t.Fatalf("consumer %s has not caught up with %s after 30s (last error: %v)", name, events.OrderStream, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// checkNoErrors fails the test when orderflow's own parts logged an error.
// The embedded Temporal server's errors (component=temporal) are only
// shown: on a restart it may log transient ones while it takes its
// history shards back ("Queue reader unable to retrieve tasks ... shard
// status unknown"), which are its own and which it retries.
func checkNoErrors(t *testing.T, app *apptest.App, when string) {
	t.Helper()
	var ours, temporal []string
	for _, line := range app.ErrorLines() {
		if strings.Contains(line, " component=temporal ") || strings.HasSuffix(line, " component=temporal") {
			temporal = append(temporal, line)
		} else {
			ours = append(ours, line)
		}
	}
	if len(temporal) > 0 {
		t.Logf("the embedded Temporal server%s logged errors:\n%s", when, strings.Join(temporal, "\n"))
	}
	if len(ours) > 0 {
		t.Errorf("orderflow dev%s logged errors:\n%s\nend of its log:\n%s", when, strings.Join(ours, "\n"), app.Logs())
	}
}

// waitListedByUI waits until the Web UI at base lists the workflow among
// the completed ones (its list is the visibility store's, which follows
// the workflow's close by a moment).
func waitListedByUI(t *testing.T, base, workflowID string) {
	t.Helper()
	query := url.QueryEscape("WorkflowId = '" + workflowID + "' AND ExecutionStatus = 'Completed'")
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _, body := get(t, base+"/api/v1/namespaces/default/workflows?query="+query)
		var list struct {
			Executions []json.RawMessage `json:"executions"`
		}
		if code == http.StatusOK && json.Unmarshal([]byte(body), &list) == nil && len(list.Executions) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Web UI does not list workflow %s as completed: GET workflows = %d %.300s", workflowID, code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// natsOverTCP connects to a NATS server's TCP port, as a process of another
// bounded context would; the connection is closed at the end of the test
// at the latest.
func natsOverTCP(t *testing.T, addr string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect("nats://" + addr)
	if err != nil {
		t.Fatalf("connect to nats over tcp at %s: %v", addr, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// TestDevCourierThenPostgresDies: with ORDERFLOW_COURIER_DELAY, `orderflow
// dev` runs the simulated courier, and an accepted order completes with
// nobody calling /delivered. Then its private PostgreSQL is killed:
// orderflow dev says why and exits with status 1 instead of staying up,
// unready, for ever.
func TestDevCourierThenPostgresDies(t *testing.T) {
	dev := apptest.NewDev(t)
	dev.Env = []string{"ORDERFLOW_COURIER_DELAY=1s"}
	app := apptest.StartDev(t, dev)
	p := place(t, app, orderRequest(pizzeria, margherita, 1, "tok_visa"))
	waitStatus(t, app, p.ID, "awaiting_acceptance")
	mustDecide(t, app, p.ID, "accept", nil, "accepted")
	waitStatus(t, app, p.ID, "completed")

	pid := postgresPID(t, dev.DataDir)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill postgres %d: %v", pid, err)
	}
	exited, err := app.Exited(time.Minute)
	if !exited {
		t.Fatalf("orderflow dev still running a minute after its postgres was killed:\n%s", app.Logs())
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("orderflow dev exited with %v; want exit status 1", err)
	}
	if logs := app.Logs(); !strings.Contains(logs, "postgres exited unexpectedly") {
		t.Errorf("orderflow dev did not say its postgres died:\n%s", logs)
	}
}

// TestDevKilledLeavesNoPostgres: `orderflow dev` killed with SIGKILL,
// which it cannot catch, leaves no postgres behind: its child dies with it.
func TestDevKilledLeavesNoPostgres(t *testing.T) {
	dev := apptest.NewDev(t)
	app := apptest.StartDev(t, dev)
	pid := postgresPID(t, dev.DataDir)
	app.Kill()
	deadline := time.Now().Add(30 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("postgres %d still running 30s after orderflow dev was killed", pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// postgresPID reads the private PostgreSQL's postmaster PID from its data
// directory.
func postgresPID(t *testing.T, dataDir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "postgres", "postmaster.pid"))
	if err != nil {
		t.Fatalf("read postmaster.pid: %v", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		t.Fatalf("postmaster.pid starts with %q: %v", first, err)
	}
	return pid
}

// processAlive reports whether pid is a live process (not gone, not a
// zombie waiting for whoever inherited it to reap it).
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// TestDevWithItsWorkerOutside is the durability demo the README gives:
// with ORDERFLOW_DEV_WORKER=off, orderflow dev runs no worker, and its
// ready banner gives the command that runs one. An order placed before any
// worker runs waits for one; a worker killed (kill -9) while the order
// waits for the restaurant, and started again, carries it on: the accept
// sent while no worker runs is taken, the payment captured once, every
// step recorded once.
func TestDevWithItsWorkerOutside(t *testing.T) {
	dev := apptest.NewDev(t)
	dev.Env = []string{"ORDERFLOW_DEV_WORKER=off"}
	app := apptest.StartDev(t, dev)
	command := bannerWorkerCommand(t, app)

	p := place(t, app, orderRequest(pizzeria, margherita, 2, "tok_visa"))
	// Nothing runs the workflow: it has not recorded the order (an
	// in-process worker takes it within milliseconds).
	time.Sleep(2 * time.Second)
	if o := getOrder(t, app, p.ID); o.Status != "placed" || len(o.Timeline) != 0 {
		t.Fatalf("with no worker, the order is %q with timeline %v; want placed and unrecorded", o.Status, timelineTypes(o))
	}
	worker := apptest.StartWorker(t, command)
	// Killed once the workflow itself says it awaits the restaurant: its
	// first task (record, authorize, notify) completed. The row says so a
	// moment earlier, and a kill in that moment would leave the accept
	// below to a task that has not notified the restaurant yet (not_yet).
	waitStatus(t, app, p.ID, "awaiting_acceptance")
	for deadline := time.Now().Add(statusTimeout); ; time.Sleep(50 * time.Millisecond) {
		if o := getOrder(t, app, p.ID); o.Source == "workflow" && o.Status == "awaiting_acceptance" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the workflow never answered its status query as awaiting_acceptance\n%s", worker.Logs())
		}
	}
	worker.Kill()

	// The restaurant accepts while no worker runs; the Update waits for
	// the next one.
	accepted := make(chan string, 1)
	go func() {
		resp, err := app.Request(http.MethodPost, "/v1/orders/"+p.ID+"/accept", nil)
		switch {
		case err != nil:
			accepted <- err.Error()
		default:
			accepted <- fmt.Sprintf("%d %s", resp.Status, resp.Body)
		}
	}()
	time.Sleep(time.Second)
	apptest.StartWorker(t, command)
	if got := <-accepted; !strings.HasPrefix(got, "200 ") || !strings.Contains(got, `"accepted"`) {
		t.Fatalf("accept sent while no worker ran = %s; want 200 accepted", got)
	}
	mustDecide(t, app, p.ID, "delivered", nil, "completed")
	wantDelivered(t, getOrder(t, app, p.ID))
}

// bannerWorkerCommand is the worker command line in dev's ready banner.
func bannerWorkerCommand(t *testing.T, app *apptest.App) string {
	t.Helper()
	lines := strings.Split(app.Logs(), "\n")
	for i, line := range lines {
		if strings.Contains(line, "Worker       none in this process") && i+1 < len(lines) {
			return strings.TrimSpace(lines[i+1])
		}
	}
	t.Fatalf("dev's ready banner has no worker command:\n%s", app.Logs())
	return ""
}

package tests_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/tests/apptest"
)

// TestDevOnEmbeddedDefaults is `make run` as a new user meets it: `orderflow
// dev` with no external component, so that it starts its own Temporal
// server and Web UI, PostgreSQL and NATS, and reaches its NATS in-process.
// An order goes through the API to completed; another process (this test)
// reads its events from the embedded NATS over TCP, as the other contexts
// would, and finds the Temporal workflow and the Web UI; the choreography
// in the process (promotions, analytics) takes the order's events. Ctrl-C
// stops it cleanly, and started again on the same data dir it still has
// the order, its workflow and its events.
func TestDevOnEmbeddedDefaults(t *testing.T) {
	dev := apptest.NewDev(t)
	app := apptest.StartDev(t, dev)

	if code, header, body := get(t, "http://"+dev.UIAddr+"/"); code != http.StatusOK ||
		!strings.HasPrefix(header.Get("Content-Type"), "text/html") ||
		!regexp.MustCompile(`/_app/immutable/entry/start\.[^"]+\.js`).MatchString(body) {
		t.Errorf("Temporal Web UI at %s: GET / = %d %q; want the UI's page", dev.UIAddr, code, header.Get("Content-Type"))
	}

	statsBefore := restaurantStats(t, app, pizzeria)
	p := place(t, app, orderRequest(pizzeria, margherita, 1, "tok_visa"))
	waitStatus(t, app, p.ID, "awaiting_acceptance")
	mustDecide(t, app, p.ID, "accept", nil, "accepted")
	mustDecide(t, app, p.ID, "delivered", nil, "completed")

	c := dialAddr(t, dev.TemporalAddr)
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	run := c.GetWorkflow(ctx, orderflow.OrderWorkflowID(p.ID), "")
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("order workflow on the embedded Temporal server: %v\napp log:\n%s", err, app.Logs())
	}
	c.Close()
	checkBus(t, app, natsOverTCP(t, dev.NATSAddr), p.ID)

	if v := waitVouchers(t, app, customer, p.ID); v[p.ID] != 1 {
		t.Errorf("promotions issued %d vouchers for the order; want 1", v[p.ID])
	}
	deadline := time.Now().Add(20 * time.Second)
	for after := restaurantStats(t, app, pizzeria); after.Accepted < statsBefore.Accepted+1; after = restaurantStats(t, app, pizzeria) {
		if time.Now().After(deadline) {
			t.Fatalf("analytics did not count the accepted order: before %+v, after %+v", statsBefore, after)
		}
		time.Sleep(100 * time.Millisecond)
	}

	if err := app.Stop(); err != nil {
		t.Fatalf("%v\napp log:\n%s", err, app.Logs())
	}
	if lines := app.ErrorLines(); len(lines) > 0 {
		t.Errorf("orderflow dev logged errors on a clean run:\n%s", strings.Join(lines, "\n"))
	}

	// Started again on the same data dir, as a second `make run` would be
	// (on other ports, which must not matter).
	dev.PickAddrs(t)
	app = apptest.StartDev(t, dev)
	if o := getOrder(t, app, p.ID); o.Status != "completed" || len(o.Timeline) != 7 {
		t.Errorf("after restart: order %q with %d timeline entries; want completed with 7", o.Status, len(o.Timeline))
	}
	c = dialAddr(t, dev.TemporalAddr)
	defer c.Close()
	desc, err := c.DescribeWorkflowExecution(ctx, orderflow.OrderWorkflowID(p.ID), "")
	if err != nil {
		t.Fatalf("after restart: describe the order's workflow: %v", err)
	}
	if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		t.Errorf("after restart: the order's workflow is %s; want completed", st)
	}
	checkBus(t, app, natsOverTCP(t, dev.NATSAddr), p.ID)
}

// natsOverTCP connects to a NATS server's TCP port, as a process of another
// bounded context would, for the rest of the test.
func natsOverTCP(t *testing.T, addr string) jetstream.JetStream {
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
	return js
}

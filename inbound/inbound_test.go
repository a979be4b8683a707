package inbound_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/courier"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/events/consumer"
	"github.com/orderflow/orderflow/inbound"
	"github.com/orderflow/orderflow/tests/stacktest"
	"github.com/orderflow/orderflow/worker"
	"github.com/orderflow/orderflow/workflows"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

const taskQueue = "inbound-test"

// harness is the shared stack with a worker on its own task queue and the
// inbound deliveries consumer running.
type harness struct {
	env *stacktest.Env
	js  jetstream.JetStream

	mu       sync.Mutex
	outcomes map[string][]consumer.Outcome // by order ID
}

var (
	once   sync.Once
	shared *harness
)

func start(tb testing.TB) *harness {
	tb.Helper()
	env := stacktest.Start(tb)
	once.Do(func() {
		ctx := context.Background()
		if err := env.Store.Seed(ctx); err != nil {
			tb.Fatalf("seed: %v", err)
		}
		js, err := jetstream.New(env.NATS)
		if err != nil {
			tb.Fatal(err)
		}
		if err := events.EnsureStreams(ctx, js, events.StreamConfig{}); err != nil {
			tb.Fatal(err)
		}
		h := &harness{env: env, js: js, outcomes: map[string][]consumer.Outcome{}}
		acts := &activities.Activities{
			Store: env.Store, Payments: activities.NewSandboxGateway(env.Store),
			Notifier: activities.NewDevNotifier(env.Store, env.Logger), Logger: env.Logger,
		}
		// The worker and the consumer live as long as the stack: Main
		// closes the stack after the last test.
		go func() {
			stopped("the worker", worker.Run(context.Background(), env.Temporal, taskQueue, acts, env.Logger, nil))
		}()
		cfg := inbound.NewDeliveries(env.Store, env.Temporal, env.Logger).ConsumerConfig(js)
		cfg.Backoff, cfg.MaxDeliver = []time.Duration{100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond}, 40
		cfg.Observe = func(o consumer.Outcome) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.outcomes[o.Env.Subject] = append(h.outcomes[o.Env.Subject], o)
		}
		c, err := consumer.New(cfg)
		if err != nil {
			tb.Fatal(err)
		}
		go func() { stopped("the consumer", c.Run(context.Background())) }()
		shared = h
	})
	if shared == nil {
		tb.Fatal("inbound harness failed to start in an earlier test")
	}
	return shared
}

// results returns the consumer's outcomes for an order.
func (h *harness) results(orderID string) []consumer.Result {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []consumer.Result
	for _, o := range h.outcomes[orderID] {
		out = append(out, o.Result)
	}
	return out
}

func (h *harness) waitFor(tb testing.TB, orderID string, r consumer.Result, n int) {
	tb.Helper()
	eventually(tb, string(r), func() bool {
		c := 0
		for _, got := range h.results(orderID) {
			if got == r {
				c++
			}
		}
		return c >= n
	})
}

// placeOrder starts an order workflow as the API does, and waits until the
// restaurant can decide.
func (h *harness) placeOrder(tb testing.TB) uuid.UUID {
	tb.Helper()
	id := uuid.New()
	now := time.Now().UTC()
	in := workflows.OrderInput{
		Order: activities.NewOrder{
			OrderID: id.String(), CustomerID: "c_ada", RestaurantID: "r_pizza", DeliveryAddress: "1 Main St",
			Items:      []events.OrderItem{{MenuItemID: "m_margherita", Name: "Margherita", UnitPriceCents: 1150, Quantity: 1}},
			TotalCents: 1150, PlacedAt: now, AcceptBy: now.Add(10 * time.Minute),
		},
		PaymentToken: activities.SandboxTokenVisa, AcceptTimeout: 10 * time.Minute, DeliverySLA: time.Hour,
	}
	_, err := h.env.Temporal.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID: orderflow.OrderWorkflowID(id.String()), TaskQueue: taskQueue,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
	}, workflows.OrderWorkflowName, in)
	if err != nil {
		tb.Fatalf("start order: %v", err)
	}
	h.waitStatus(tb, id, orderflow.StatusAwaitingAcceptance)
	return id
}

// decide sends a restaurant decision.
func (h *harness) decide(tb testing.TB, id uuid.UUID, update string, args ...any) {
	tb.Helper()
	u, err := h.env.Temporal.UpdateWorkflow(context.Background(), client.UpdateWorkflowOptions{
		WorkflowID: orderflow.OrderWorkflowID(id.String()), UpdateName: update, Args: args,
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = u.Get(context.Background(), nil)
	}
	if err != nil {
		tb.Fatalf("%s: %v", update, err)
	}
}

func (h *harness) waitStatus(tb testing.TB, id uuid.UUID, want orderflow.OrderStatus) {
	tb.Helper()
	eventually(tb, "order "+string(want), func() bool {
		o, err := h.env.Store.GetOrder(context.Background(), id)
		return err == nil && o.Status == string(want)
	})
}

// deliver publishes delivery.completed for the order, as the delivery
// context does; copy publishes the same event again under another message
// ID (a redelivery the stream cannot drop).
func (h *harness) deliver(tb testing.TB, id uuid.UUID, copy string) events.Envelope {
	tb.Helper()
	env, err := courier.Delivered(id, "courier-test", time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	m := env.Msg()
	if copy != "" {
		m.Header.Set(nats.MsgIdHdr, copy+"-"+env.ID)
	}
	if _, err := h.js.PublishMsg(context.Background(), m); err != nil {
		tb.Fatalf("publish: %v", err)
	}
	return env
}

// completions counts the order's order.completed events: one per delivery
// the workflow took.
func (h *harness) completions(tb testing.TB, id uuid.UUID) int {
	tb.Helper()
	tl, err := h.env.Store.ListOrderTimeline(context.Background(), id)
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for _, e := range tl {
		if e.EventType == events.OrderCompleted {
			n++
		}
	}
	return n
}

// TestDeliveredIsIdempotent: delivery.completed completes the order through
// the delivered Update once, however often it arrives: reported before the
// acceptance it is retried until the order is accepted; redelivered, it is
// a no-op.
func TestDeliveredIsIdempotent(t *testing.T) {
	h := start(t)
	id := h.placeOrder(t)
	h.deliver(t, id, "")
	h.waitFor(t, id.String(), consumer.Retried, 1) // not accepted yet

	h.decide(t, id, workflows.UpdateAccept)
	h.waitFor(t, id.String(), consumer.Applied, 1)
	h.waitStatus(t, id, orderflow.StatusCompleted)

	h.deliver(t, id, "again") // the same event: the inbox drops it
	h.waitFor(t, id.String(), consumer.Duplicate, 1)
	// A second report of the delivery, another event: the workflow has
	// completed, so it is acknowledged without effect.
	second, _ := courier.Delivered(id, "courier-other", time.Now())
	second.ID = uuid.NewString()
	if _, err := h.js.PublishMsg(context.Background(), second.Msg()); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, id.String(), consumer.Applied, 2)
	if n := h.completions(t, id); n != 1 {
		t.Fatalf("order completed %d times, want once", n)
	}
	for _, r := range h.results(id.String()) {
		if r == consumer.Terminated {
			t.Fatalf("outcomes %v: a delivery was dead-lettered", h.results(id.String()))
		}
	}
}

// TestDeliveredBeforeTheWorkflowTakesTheAcceptance: the acceptance is in
// the database, but the workflow has not taken it in yet (its worker
// restarted between the two, say), so its validator refuses the delivery
// as one that comes before an acceptance. The delivery is retried until
// the workflow has the acceptance, not acknowledged as a copy of one it
// took: that would leave the order waiting for a delivery forever.
func TestDeliveredBeforeTheWorkflowTakesTheAcceptance(t *testing.T) {
	h := start(t)
	id := h.placeOrder(t)
	if _, err := h.env.Store.DB.ExecContext(context.Background(), `UPDATE orders SET status = 'accepted' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	h.deliver(t, id, "")
	eventually(t, "the delivery's first outcome", func() bool { return len(h.results(id.String())) > 0 })
	if got := h.results(id.String()); got[0] != consumer.Retried {
		t.Fatalf("outcomes %v, want the first retried: the workflow has not taken the acceptance in", got)
	}
	h.decide(t, id, workflows.UpdateAccept)
	h.waitStatus(t, id, orderflow.StatusCompleted)
	if n := h.completions(t, id); n != 1 {
		t.Fatalf("order completed %d times, want once", n)
	}
}

// TestDeliveredForEndedOrUnknownOrder: a delivery of a rejected order is
// acknowledged with nothing to do; one of an order that does not exist is
// poison.
func TestDeliveredForEndedOrUnknownOrder(t *testing.T) {
	h := start(t)
	rejected := h.placeOrder(t)
	h.decide(t, rejected, workflows.UpdateReject, workflows.RejectInput{Reason: "closed"})
	h.waitStatus(t, rejected, orderflow.StatusRejected)
	h.deliver(t, rejected, "")
	h.waitFor(t, rejected.String(), consumer.Applied, 1)

	unknown := uuid.New()
	h.deliver(t, unknown, "")
	h.waitFor(t, unknown.String(), consumer.Terminated, 1)
}

// harnessStop is why the harness's worker or consumer stopped, if one
// did: they run for the whole package, so any return is a failure.
var harnessStop struct {
	sync.Mutex
	err error
}

func stopped(what string, err error) {
	harnessStop.Lock()
	defer harnessStop.Unlock()
	if harnessStop.err == nil {
		harnessStop.err = fmt.Errorf("%s stopped: %v", what, err)
	}
}

// eventually polls cond until it holds; it fails at once if the harness
// stopped, and after a deadline that bounds a hang.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		harnessStop.Lock()
		err := harnessStop.err
		harnessStop.Unlock()
		if err != nil {
			tb.Fatalf("waiting for %s: the inbound harness failed: %v", what, err)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

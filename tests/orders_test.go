package tests_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/temporalproto"
	updatepb "go.temporal.io/api/update/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/tests/apptest"
	"github.com/orderflow/orderflow/worker"
	"github.com/orderflow/orderflow/workflows"
)

// record adds to the histories the replay tests replay: `make histories`.
var record = flag.Bool("record", false, "add each order path's workflow history to testdata/histories when its shape is new")

// historyDir holds the recorded histories: for each order path, one per
// shape (sequence of commands) the workflow has had. They are fixtures of
// what ran, never re-recorded: a recording whose shape is on file already
// is dropped, and one with a new shape is added next to the old ones (as
// <path>.<shape>.json), so that the replay tests keep replaying the
// histories of orders started by earlier code.
const historyDir = "testdata/histories"

// Seeded data the tests order from (db/seed.go).
const (
	customer   = "c_ada"
	pizzeria   = "r_pizza"
	margherita = "m_margherita" // 1150
	diavola    = "m_diavola"    // 1350
	sushiBar   = "r_sushi"
	misoSoup   = "m_miso_soup"
	// quick is a restaurant of the tests' own whose accept window is short,
	// so that the timeout path runs in seconds.
	quick         = "r_e2e_quick"
	quickDish     = "m_e2e_quick_dish"
	quickTimeout  = 3 * time.Second
	statusTimeout = 45 * time.Second
)

// keys makes Idempotency-Keys unique to this test process, so that a rerun
// on a kept stack never meets an earlier run's orders.
var (
	keyRun = uuid.NewString()[:8]
	keySeq atomic.Int64
)

func newKey(name string) string {
	return fmt.Sprintf("e2e-%s-%s-%d", keyRun, name, keySeq.Add(1))
}

// order is the part of GET /v1/orders/{id} the tests read.
type order struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	Reason     string `json:"reason"`
	TotalCents int64  `json:"total_cents"`
	Payment    struct {
		Status          string `json:"status"`
		AuthorizationID string `json:"authorization_id"`
	} `json:"payment"`
	AcceptBy time.Time `json:"accept_by"`
	Timeline []struct {
		Version   int64  `json:"version"`
		EventType string `json:"event_type"`
		Status    string `json:"status"`
	} `json:"timeline"`
	Notifications []struct {
		Recipient string `json:"recipient"`
		Kind      string `json:"kind"`
	} `json:"notifications"`
	Source string `json:"source"`
}

type placed struct {
	ID         string    `json:"id"`
	Status     string    `json:"status"`
	TotalCents int64     `json:"total_cents"`
	AcceptBy   time.Time `json:"accept_by"`
}

type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Field  string `json:"field"`
	Code   string `json:"code"`
}

func orderRequest(restaurant, item string, qty int, token string) map[string]any {
	return map[string]any{
		"customer_id":      customer,
		"restaurant_id":    restaurant,
		"items":            []map[string]any{{"menu_item_id": item, "quantity": qty}},
		"delivery_address": "1 Test Street",
		"payment_token":    token,
	}
}

// place posts an order and expects 201.
func place(t *testing.T, app *apptest.App, body map[string]any) placed {
	t.Helper()
	resp := app.Do(t, http.MethodPost, "/v1/orders", body, "Idempotency-Key: "+newKey(t.Name()))
	if resp.Status != http.StatusCreated {
		t.Fatalf("POST /v1/orders = %d %s; want 201", resp.Status, resp.Body)
	}
	var p placed
	resp.JSON(t, &p)
	return p
}

func getOrder(t *testing.T, app *apptest.App, id string) order {
	t.Helper()
	resp := app.Do(t, http.MethodGet, "/v1/orders/"+id, nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("GET /v1/orders/%s = %d %s", id, resp.Status, resp.Body)
	}
	var o order
	resp.JSON(t, &o)
	return o
}

// waitStatus polls the order until it has status want, and returns it.
func waitStatus(t *testing.T, app *apptest.App, id, want string) order {
	t.Helper()
	deadline := time.Now().Add(statusTimeout)
	var o order
	for time.Now().Before(deadline) {
		o = getOrder(t, app, id)
		if o.Status == want {
			return o
		}
		if orderflow.OrderStatus(o.Status).Final() {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("order %s is %q (reason %q); want %q\napp log:\n%s", id, o.Status, o.Reason, want, app.Logs())
	return o
}

// decide posts a decision and returns the answer.
func decide(t *testing.T, app *apptest.App, id, decision string, body any) (int, string) {
	t.Helper()
	resp := app.Do(t, http.MethodPost, "/v1/orders/"+id+"/"+decision, body)
	if resp.Status == http.StatusOK {
		var v struct {
			Status string `json:"status"`
		}
		resp.JSON(t, &v)
		return resp.Status, v.Status
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s answered %d with Content-Type %q; want application/problem+json", decision, resp.Status, ct)
	}
	var p problem
	resp.JSON(t, &p)
	return resp.Status, p.Detail
}

func mustDecide(t *testing.T, app *apptest.App, id, decision string, body any, want string) {
	t.Helper()
	code, got := decide(t, app, id, decision, body)
	if code != http.StatusOK || got != want {
		t.Fatalf("POST %s = %d %q; want 200 %q", decision, code, got, want)
	}
}

// netCharged is what the sandbox gateway's ledger says the customer paid
// for the order: captures less refunds.
func netCharged(t *testing.T, app *apptest.App, id string) int64 {
	t.Helper()
	n, err := app.Env.Store.SandboxNetCharged(context.Background(), id)
	if err != nil {
		t.Fatalf("sandbox ledger: %v", err)
	}
	return n
}

// wantDelivered checks an order accepted and delivered: completed, its
// payment captured, each step of the happy path once, the restaurant and
// the customer told once each.
func wantDelivered(t *testing.T, o order) {
	t.Helper()
	if o.Status != "completed" || o.Payment.Status != "captured" {
		t.Errorf("order %q payment %q; want completed, captured", o.Status, o.Payment.Status)
	}
	wantList(t, "timeline", timelineTypes(o),
		"order.placed", "order.payment_authorized", "order.restaurant_notified", "order.accepted",
		"order.payment_captured", "order.user_notified", "order.completed")
	wantList(t, "notifications", notified(o), "restaurant:new_order", "customer:accepted")
}

func timelineTypes(o order) []string {
	var types []string
	for i, e := range o.Timeline {
		if e.Version != int64(i+1) {
			return append(types, fmt.Sprintf("version %d at %d", e.Version, i))
		}
		types = append(types, e.EventType)
	}
	return types
}

func notified(o order) []string {
	var kinds []string
	for _, n := range o.Notifications {
		kinds = append(kinds, n.Recipient+":"+n.Kind)
	}
	return kinds
}

func wantList(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got %v\nwant %v", what, got, want)
	}
}

// startWithSDK starts order id's workflow as the API would (one Margherita
// for the seeded customer, paid with tok_visa), with the SDK, so that a test
// picks the ID and the delivery SLA (0: the workflow's default).
func startWithSDK(t *testing.T, app *apptest.App, id string, sla time.Duration, change ...func(*workflows.OrderInput)) {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Millisecond)
	in := workflows.OrderInput{
		Order: activities.NewOrder{
			OrderID: id, CustomerID: customer, RestaurantID: pizzeria, DeliveryAddress: "1 Test Street",
			Items:      []events.OrderItem{{MenuItemID: margherita, Name: "Margherita", UnitPriceCents: 1150, Quantity: 1}},
			TotalCents: 1150, PlacedAt: now, AcceptBy: now.Add(10 * time.Minute),
		},
		PaymentToken: "tok_visa", AcceptTimeout: 10 * time.Minute, DeliverySLA: sla,
	}
	for _, c := range change {
		c(&in)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := app.Env.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: orderflow.OrderWorkflowID(id), TaskQueue: apptest.TaskQueue,
	}, workflows.OrderWorkflowName, in); err != nil {
		t.Fatalf("start: %v", err)
	}
}

// finish waits for the order's workflow to close — compensations run
// after the final status is recorded, so only then is everything settled —
// and, with -record, writes its history for the replay tests. It returns
// the settled order.
func finish(t *testing.T, app *apptest.App, id, path string) order {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	wid := orderflow.OrderWorkflowID(id)
	run := app.Env.Temporal.GetWorkflow(ctx, wid, "")
	if err := run.Get(ctx, nil); err != nil && !temporal.IsCanceledError(err) {
		t.Fatalf("workflow %s: %v", wid, err)
	}
	o := getOrder(t, app, id)
	checkBus(t, app, jetStream(t, app), id)
	if !*record || path == "" {
		return o
	}
	hist := &historypb.History{}
	iter := app.Env.Temporal.GetWorkflowHistory(ctx, wid, run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatalf("history of %s: %v", wid, err)
		}
		hist.Events = append(hist.Events, ev)
	}
	data, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(hist)
	if err != nil {
		t.Fatalf("encode history: %v", err)
	}
	if err := os.MkdirAll(historyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	shape := historyShape(hist)
	files, err := filepath.Glob(filepath.Join(historyDir, path+".*json"))
	if err != nil {
		t.Fatal(err)
	}
	onFile := 0
	for _, f := range files {
		if historyPath(f) != path {
			continue
		}
		onFile++
		if historyShape(readHistory(t, f)) == shape {
			t.Logf("history of path %s: its shape is on file (%s)", path, f)
			return o
		}
	}
	file := filepath.Join(historyDir, path+".json")
	if onFile > 0 {
		file = filepath.Join(historyDir, path+"."+shape+".json")
	}
	if err := os.WriteFile(file, append(data, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded %s (%d events), a new shape", file, len(hist.Events))
	return o
}

// historyPath is the order path a history file is of.
func historyPath(file string) string {
	name, _, _ := strings.Cut(filepath.Base(file), ".")
	return name
}

// historyShape fingerprints what replay compares in a history: the events
// its commands made, in order (activities scheduled, timers started and
// cancelled, markers with their local activity's type or their version
// change, search attribute upserts, Updates accepted and completed, the
// close), with the names they carry. Workflow task events, the events of
// things the server did (an activity started or completed, a timer fired,
// a cancellation requested), timings, IDs and payloads are left out, so
// that two runs of the same code give the same shape.
func historyShape(hist *historypb.History) string {
	h := sha256.New()
	for _, ev := range hist.GetEvents() {
		if !commandEvents[ev.GetEventType()] {
			continue
		}
		fmt.Fprint(h, ev.GetEventType().String())
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			fmt.Fprint(h, " ", a.GetActivityType().GetName())
		}
		if m := ev.GetMarkerRecordedEventAttributes(); m != nil {
			fmt.Fprint(h, " ", m.GetMarkerName())
			details := m.GetDetails()
			if data := details["data"].GetPayloads(); len(data) > 0 {
				var la struct{ ActivityType string }
				if json.Unmarshal(data[0].GetData(), &la) == nil && la.ActivityType != "" {
					fmt.Fprint(h, " ", la.ActivityType)
				}
			}
			for _, k := range []string{"change-id", "version"} {
				for _, p := range details[k].GetPayloads() {
					fmt.Fprintf(h, " %s", p.GetData())
				}
			}
		}
		if u := ev.GetWorkflowExecutionUpdateAcceptedEventAttributes(); u != nil {
			fmt.Fprint(h, " ", u.GetAcceptedRequest().GetInput().GetName())
		}
		fmt.Fprintln(h)
	}
	return hex.EncodeToString(h.Sum(nil))[:8]
}

// commandEvents are the event types a workflow's commands (and Update
// protocol messages) make: what replay checks against the code.
var commandEvents = map[enumspb.EventType]bool{
	enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:                              true,
	enumspb.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED:                       true,
	enumspb.EVENT_TYPE_TIMER_STARTED:                                        true,
	enumspb.EVENT_TYPE_TIMER_CANCELED:                                       true,
	enumspb.EVENT_TYPE_MARKER_RECORDED:                                      true,
	enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:                    true,
	enumspb.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED:                         true,
	enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:             true,
	enumspb.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:         true,
	enumspb.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: true,
	enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:                   true,
	enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:                  true,
	enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:                         true,
	enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:                            true,
	enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:                          true,
	enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:                  true,
}

// readHistory reads a recorded history file.
func readHistory(t *testing.T, file string) *historypb.History {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	hist := &historypb.History{}
	if err := (temporalproto.CustomJSONUnmarshalOptions{}).Unmarshal(data, hist); err != nil {
		t.Fatalf("decode %s: %v", file, err)
	}
	return hist
}

// addQuickRestaurant gives the tests a restaurant whose accept window is a
// few seconds (the seeded ones keep the default 10 minutes).
func addQuickRestaurant(t *testing.T, store *db.Store) {
	t.Helper()
	ctx := context.Background()
	if err := store.UpsertRestaurant(ctx, db.UpsertRestaurantParams{
		ID: quick, Name: "E2E Quick Kitchen", AcceptTimeoutSeconds: int32(quickTimeout / time.Second),
	}); err != nil {
		t.Fatal(err)
	}
	if err := store.UpsertMenuItem(ctx, db.UpsertMenuItemParams{
		ID: quickDish, RestaurantID: quick, Name: "Quick Dish", PriceCents: 700, Available: true,
	}); err != nil {
		t.Fatal(err)
	}
}

// TestOrderPaths drives one order down each path of the order process over
// the HTTP API of a real `orderflow dev`, and checks what the customer, the
// restaurant and the payment ledger end up with.
func TestOrderPaths(t *testing.T) {
	app := apptest.Start(t)
	addQuickRestaurant(t, app.Env.Store)

	t.Run("accepted_delivered", func(t *testing.T) {
		p := place(t, app, orderRequest(pizzeria, margherita, 2, "tok_visa"))
		if p.Status != "placed" || p.TotalCents != 2300 {
			t.Errorf("placed = %+v; want status placed, total 2300 (2 x 1150, priced by the server)", p)
		}
		if got := time.Until(p.AcceptBy); got < 9*time.Minute || got > 10*time.Minute {
			t.Errorf("accept_by is %s from now; want the restaurant's 10 minutes", got)
		}
		waitStatus(t, app, p.ID, "awaiting_acceptance")
		mustDecide(t, app, p.ID, "accept", nil, "accepted")
		// A restaurant whose answer was lost retries: it gets the same
		// answer, not a conflict with its own decision.
		mustDecide(t, app, p.ID, "accept", nil, "accepted")
		if code, _ := decide(t, app, p.ID, "cancel", nil); code != http.StatusConflict {
			t.Errorf("cancel after accept = %d; want 409", code)
		}
		mustDecide(t, app, p.ID, "delivered", nil, "completed")
		wantDelivered(t, finish(t, app, p.ID, "accepted_delivered"))
		if got := netCharged(t, app, p.ID); got != 2300 {
			t.Errorf("customer paid %d; want 2300", got)
		}
		// Marking it delivered again is a retry of the same decision: the
		// same answer. Any other decision on the closed order is a 409.
		if code, status := decide(t, app, p.ID, "delivered", nil); code != http.StatusOK || status != "completed" {
			t.Errorf("delivered again on a completed order = %d %q; want the first answer, 200 completed", code, status)
		}
		if code, _ := decide(t, app, p.ID, "reject", nil); code != http.StatusConflict {
			t.Errorf("reject on a completed order = %d; want 409", code)
		}
	})

	t.Run("rejected", func(t *testing.T) {
		p := place(t, app, orderRequest(sushiBar, misoSoup, 1, "tok_visa"))
		waitStatus(t, app, p.ID, "awaiting_acceptance")
		mustDecide(t, app, p.ID, "reject", map[string]string{"reason": "out of miso"}, "rejected")
		o := finish(t, app, p.ID, "rejected")
		if o.Reason != "out of miso" || o.Payment.Status != "voided" {
			t.Errorf("rejected order: reason %q, payment %q; want the restaurant's reason and voided", o.Reason, o.Payment.Status)
		}
		wantList(t, "timeline", timelineTypes(o),
			"order.placed", "order.payment_authorized", "order.restaurant_notified", "order.rejected",
			"order.payment_voided", "order.user_notified")
		wantList(t, "notifications", notified(o), "restaurant:new_order", "customer:rejected")
		if got := netCharged(t, app, p.ID); got != 0 {
			t.Errorf("customer paid %d for a rejected order; want 0", got)
		}
		if code, _ := decide(t, app, p.ID, "accept", nil); code != http.StatusConflict {
			t.Errorf("accept after reject = %d; want 409", code)
		}
		// The same reject again is a retry: the same answer. Another
		// reason cannot be recorded any more: a 409 with the first one.
		mustDecide(t, app, p.ID, "reject", map[string]string{"reason": "out of miso"}, "rejected")
		if code, detail := decide(t, app, p.ID, "reject", map[string]string{"reason": "closing early"}); code != http.StatusConflict || !strings.Contains(detail, `"out of miso"`) {
			t.Errorf("reject again with another reason = %d %q; want 409 naming the recorded reason", code, detail)
		}
	})

	t.Run("timed_out", func(t *testing.T) {
		p := place(t, app, orderRequest(quick, quickDish, 1, "tok_visa"))
		waitStatus(t, app, p.ID, "timed_out")
		o := finish(t, app, p.ID, "timed_out")
		if o.Payment.Status != "voided" {
			t.Errorf("payment = %q; want voided", o.Payment.Status)
		}
		wantList(t, "notifications", notified(o), "restaurant:new_order", "customer:timed_out", "restaurant:timed_out")
		if got := netCharged(t, app, p.ID); got != 0 {
			t.Errorf("customer paid %d for a timed-out order; want 0", got)
		}
		code, detail := decide(t, app, p.ID, "accept", nil)
		if code != http.StatusConflict || !strings.Contains(detail, "timed_out") {
			t.Errorf("accept after the timeout = %d %q; want 409 naming timed_out", code, detail)
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		p := place(t, app, orderRequest(pizzeria, diavola, 1, "tok_visa"))
		waitStatus(t, app, p.ID, "awaiting_acceptance")
		mustDecide(t, app, p.ID, "cancel", map[string]string{"reason": "changed my mind"}, "cancelled")
		o := finish(t, app, p.ID, "cancelled")
		if o.Payment.Status != "voided" || o.Reason != "changed my mind" {
			t.Errorf("cancelled order: payment %q reason %q; want voided and the customer's reason", o.Payment.Status, o.Reason)
		}
		wantList(t, "notifications", notified(o), "restaurant:new_order", "customer:cancelled", "restaurant:cancelled")
		if got := netCharged(t, app, p.ID); got != 0 {
			t.Errorf("customer paid %d for a cancelled order; want 0", got)
		}
	})

	t.Run("payment_declined", func(t *testing.T) {
		p := place(t, app, orderRequest(pizzeria, margherita, 1, "tok_declined"))
		o := finish(t, app, p.ID, "payment_declined")
		if o.Status != "rejected" || o.Payment.Status != "declined" || !strings.Contains(o.Reason, "declined") {
			t.Errorf("declined order: payment %q reason %q; want declined with the gateway's reason", o.Payment.Status, o.Reason)
		}
		wantList(t, "notifications", notified(o), "customer:payment_declined")
		if got := netCharged(t, app, p.ID); got != 0 {
			t.Errorf("customer paid %d for a declined order; want 0", got)
		}
	})

	t.Run("workflow_cancelled_after_acceptance", func(t *testing.T) {
		// An operator cancels the order's workflow (Web UI, CLI) after the
		// capture: the compensations still run and refund the customer.
		p := place(t, app, orderRequest(pizzeria, margherita, 1, "tok_visa"))
		waitStatus(t, app, p.ID, "awaiting_acceptance")
		mustDecide(t, app, p.ID, "accept", nil, "accepted")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := app.Env.Temporal.CancelWorkflow(ctx, orderflow.OrderWorkflowID(p.ID), ""); err != nil {
			t.Fatalf("cancel workflow: %v", err)
		}
		o := finish(t, app, p.ID, "workflow_cancelled")
		if o.Status != "cancelled" || o.Payment.Status != "refunded" {
			t.Errorf("order %q payment %q; want cancelled, refunded", o.Status, o.Payment.Status)
		}
		// The kitchen, told of the acceptance, is told the order is off.
		wantList(t, "notifications", notified(o), "restaurant:new_order", "customer:accepted", "customer:cancelled", "restaurant:cancelled")
		if got := netCharged(t, app, p.ID); got != 0 {
			t.Errorf("customer paid %d for a cancelled order; want 0", got)
		}
	})

	t.Run("delivery_escalated", func(t *testing.T) {
		// The delivery SLA is the same for every order of an app, so this
		// order is started with the SDK, as the API would start it, with
		// a 2-second SLA; it runs on the app's worker like any other.
		id := uuid.NewString()
		startWithSDK(t, app, id, 2*time.Second)
		waitStatus(t, app, id, "awaiting_acceptance")
		mustDecide(t, app, id, "accept", nil, "accepted")
		deadline := time.Now().Add(statusTimeout)
		for !slices.Contains(timelineTypes(getOrder(t, app, id)), "order.delivery_escalated") {
			if time.Now().After(deadline) {
				t.Fatalf("no order.delivery_escalated on the timeline %v", timelineTypes(getOrder(t, app, id)))
			}
			time.Sleep(100 * time.Millisecond)
		}
		mustDecide(t, app, id, "delivered", nil, "completed")
		o := finish(t, app, id, "delivery_escalated")
		wantList(t, "notifications", notified(o), "restaurant:new_order", "customer:accepted", "customer:delivery_late")
	})

	t.Run("failed", func(t *testing.T) {
		// A forward step fails for good: the gateway already holds another
		// amount under the order's key (an integration bug), so it refuses
		// the authorization as non-retryable. The order ends failed, the
		// hold the key has is voided, and the customer is told. Started
		// with the SDK, as the API would, so that the test picks the ID.
		id := uuid.NewString()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := activities.NewSandboxGateway(app.Env.Store).Authorize(ctx, id, activities.SandboxTokenVisa, 1); err != nil {
			t.Fatalf("seed the conflicting hold: %v", err)
		}
		startWithSDK(t, app, id, 0)
		o := finish(t, app, id, "failed")
		if o.Status != "failed" || o.Reason != "payment authorization failed" || o.Payment.Status != "voided" {
			t.Errorf("order %q reason %q payment %q; want failed, \"payment authorization failed\", voided", o.Status, o.Reason, o.Payment.Status)
		}
		wantList(t, "timeline", timelineTypes(o),
			"order.placed", "order.failed", "order.payment_voided", "order.user_notified")
		wantList(t, "notifications", notified(o), "customer:failed")
		if got := netCharged(t, app, id); got != 0 {
			t.Errorf("customer paid %d for a failed order; want 0", got)
		}
	})

	t.Run("authorized_past_accept_by", func(t *testing.T) {
		// The payment is authorized only after accept_by (here: the
		// order reached the workflow that late, as after an outage): the
		// order times out, voided, without being sent to the restaurant.
		id := uuid.NewString()
		startWithSDK(t, app, id, 0, func(in *workflows.OrderInput) {
			in.Order.PlacedAt = in.Order.PlacedAt.Add(-11 * time.Minute)
			in.Order.AcceptBy = in.Order.PlacedAt.Add(10 * time.Minute)
		})
		o := finish(t, app, id, "authorized_past_accept_by")
		if o.Status != "timed_out" || o.Payment.Status != "voided" {
			t.Errorf("order %q payment %q; want timed_out, voided", o.Status, o.Payment.Status)
		}
		wantList(t, "timeline", timelineTypes(o),
			"order.placed", "order.payment_authorized", "order.timed_out", "order.payment_voided", "order.user_notified")
		wantList(t, "notifications", notified(o), "customer:timed_out")
	})

	t.Run("transient_payment_failures", func(t *testing.T) {
		p := place(t, app, orderRequest(pizzeria, margherita, 1, "tok_transient"))
		o := waitStatus(t, app, p.ID, "awaiting_acceptance")
		if o.Payment.Status != "authorized" {
			t.Errorf("payment after two transient failures = %q; want authorized", o.Payment.Status)
		}
		mustDecide(t, app, p.ID, "accept", nil, "accepted")
		mustDecide(t, app, p.ID, "delivered", nil, "completed")
		finish(t, app, p.ID, "transient_payment")
		if got := netCharged(t, app, p.ID); got != 1150 {
			t.Errorf("customer paid %d; want 1150, once", got)
		}
	})
}

// TestPlaceOrderIsIdempotent retries POST /v1/orders the way a client
// whose connection dropped would.
func TestPlaceOrderIsIdempotent(t *testing.T) {
	app := apptest.Start(t)
	key := newKey("idem")
	body := orderRequest(pizzeria, margherita, 1, "tok_visa")
	first := app.Do(t, http.MethodPost, "/v1/orders", body, "Idempotency-Key: "+key)
	if first.Status != http.StatusCreated {
		t.Fatalf("first POST = %d %s", first.Status, first.Body)
	}
	var a, b placed
	first.JSON(t, &a)
	again := app.Do(t, http.MethodPost, "/v1/orders", body, "Idempotency-Key: "+key)
	if again.Status != http.StatusOK {
		t.Fatalf("retried POST = %d %s; want 200", again.Status, again.Body)
	}
	again.JSON(t, &b)
	if a.ID != b.ID || a.TotalCents != b.TotalCents || !a.AcceptBy.Equal(b.AcceptBy) {
		t.Errorf("retry answered %+v; want the first order %+v", b, a)
	}
	other := orderRequest(pizzeria, margherita, 2, "tok_visa")
	diff := app.Do(t, http.MethodPost, "/v1/orders", other, "Idempotency-Key: "+key)
	if diff.Status != http.StatusUnprocessableEntity {
		t.Fatalf("same key, other body = %d %s; want 422", diff.Status, diff.Body)
	}
	var p problem
	diff.JSON(t, &p)
	if p.Field != "Idempotency-Key" {
		t.Errorf("422 names field %q; want Idempotency-Key", p.Field)
	}
	// Leave nothing running.
	waitStatus(t, app, a.ID, "awaiting_acceptance")
	mustDecide(t, app, a.ID, "cancel", nil, "cancelled")
}

// TestAcceptanceLostInACrashStands: a workflow task that accepted an
// order ran the acceptance's local activities (recorded it, captured the
// payment, told the customer) and was lost in a crash before Temporal
// stored it, so the workflow, replayed, still awaits a decision. The test
// plays that task's part with the same activities on the same database.
// A cancel that comes next must not undo the acceptance the customer was
// told of: it is answered 409, the workflow carries the acceptance
// through, the restaurant's retried accept is answered 200, and the order
// completes on delivery, charged once, with no refund and no "cancelled"
// notice.
func TestAcceptanceLostInACrashStands(t *testing.T) {
	app := apptest.Start(t)
	p := place(t, app, orderRequest(pizzeria, margherita, 1, "tok_visa"))
	waitStatus(t, app, p.ID, "awaiting_acceptance")
	ctx := context.Background()
	store := app.Env.Store
	logger := slog.New(slog.DiscardHandler)
	lost := &activities.Activities{Store: store, Payments: activities.NewSandboxGateway(store),
		Notifier: activities.NewDevNotifier(store, logger), Logger: logger}
	id := uuid.MustParse(p.ID)
	pay, err := store.GetPayment(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := lost.Transition(ctx, activities.TransitionInput{OrderID: p.ID, Status: "accepted", EventType: events.OrderAccepted}); err != nil {
		t.Fatalf("record the acceptance: %v", err)
	}
	if err := lost.CapturePayment(ctx, activities.PaymentInput{OrderID: p.ID, AuthorizationID: pay.AuthorizationID}); err != nil {
		t.Fatalf("capture: %v", err)
	}
	if err := lost.NotifyCustomer(ctx, activities.CustomerNotice{OrderID: p.ID, Kind: "accepted", Message: "Your order was accepted and is being prepared."}); err != nil {
		t.Fatalf("tell the customer: %v", err)
	}

	if code, got := decide(t, app, p.ID, "cancel", nil); code != http.StatusConflict {
		t.Fatalf("cancel after the lost acceptance = %d %q; want 409", code, got)
	}
	// The restaurant, whose accept's answer the crash lost, retries: it is
	// told the acceptance took, before and after the delivery.
	mustDecide(t, app, p.ID, "accept", nil, "accepted")
	mustDecide(t, app, p.ID, "delivered", nil, "completed")
	mustDecide(t, app, p.ID, "accept", nil, "accepted")
	if got := netCharged(t, app, p.ID); got != p.TotalCents {
		t.Errorf("charged %d; want %d, once", got, p.TotalCents)
	}
	notices, err := store.ListOrderNotifications(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, n := range notices {
		kinds = append(kinds, n.Kind)
	}
	if slices.Contains(kinds, "cancelled") || !slices.Contains(kinds, "accepted") {
		t.Errorf("notices %v; want the acceptance's, and no cancellation", kinds)
	}
	o := getOrder(t, app, p.ID)
	if types := timelineTypes(o); slices.Contains(types, events.OrderCancelled) || slices.Contains(types, events.OrderPaymentRefunded) {
		t.Errorf("timeline %v; want no cancellation and no refund", types)
	}
}

// TestAcceptAfterTheDeadlineIsLate: the restaurant's deadline passes while
// no worker runs (a crash, a deploy), so the firing of its timer waits in
// the server for the workflow's next task, and an accept sent meanwhile
// reaches the workflow in that same task, before the workflow has seen the
// deadline. It came after accept_by and is late, as README promises: it is
// answered 409 and the order times out (the hold voided, the customer
// told), as it would have with a worker up.
func TestAcceptAfterTheDeadlineIsLate(t *testing.T) {
	const window = 10 * time.Second
	queue := "orderflow-e2e-deadline"
	apptest.Start(t) // the seeded menu, and the relay that publishes the events
	api := apptest.StartAPI(t, queue, fmt.Sprintf("ORDERFLOW_ACCEPT_TIMEOUT=%s", window))
	store := api.Env.Store
	logger := slog.New(slog.DiscardHandler)
	acts := &activities.Activities{Store: store, Payments: activities.NewSandboxGateway(store),
		Notifier: activities.NewDevNotifier(store, logger), Logger: logger}
	startWorker := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- worker.Run(ctx, api.Env.Temporal, queue, acts, logger, nil) }()
		var once sync.Once
		stop = func() {
			once.Do(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("worker: %v", err)
				}
			})
		}
		t.Cleanup(stop)
		return stop
	}

	stopWorker := startWorker()
	p := place(t, api, orderRequest(pizzeria, margherita, 1, "tok_visa"))
	waitStatus(t, api, p.ID, "awaiting_acceptance")
	stopWorker()
	if time.Now().After(p.AcceptBy) {
		t.Fatalf("the order reached awaiting_acceptance after its accept_by (%s): this machine took longer than the %s window to authorize and notify", p.AcceptBy, window)
	}
	// The timer fires in the server; its workflow task waits for a worker.
	time.Sleep(time.Until(p.AcceptBy) + time.Second)

	type answer struct {
		resp apptest.Response
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := api.Request(http.MethodPost, "/v1/orders/"+p.ID+"/accept", nil)
		answered <- answer{resp, err}
	}()
	// The accept reaches the server and waits there, admitted, for the
	// workflow's next task, which the worker started then takes together
	// with the timer's firing.
	for deadline := time.Now().Add(statusTimeout); !updateAdmitted(t, api, p.ID, workflows.UpdateAccept); {
		if time.Now().After(deadline) {
			t.Fatalf("the accept sent at %s did not reach Temporal in %s", p.AcceptBy, statusTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	startWorker()
	a := <-answered
	if a.err != nil {
		t.Fatalf("accept: %v", a.err)
	}
	if a.resp.Status != http.StatusConflict || !strings.Contains(string(a.resp.Body), "accept_by") {
		t.Errorf("accept after accept_by = %d %s; want 409 saying the deadline passed", a.resp.Status, a.resp.Body)
	}
	waitStatus(t, api, p.ID, "timed_out")
	o := finish(t, api, p.ID, "")
	if o.Payment.Status != "voided" {
		t.Errorf("payment = %q; want voided", o.Payment.Status)
	}
	wantList(t, "notifications", notified(o), "restaurant:new_order", "customer:timed_out", "restaurant:timed_out")
	if got := netCharged(t, api, p.ID); got != 0 {
		t.Errorf("customer paid %d for a late accept; want 0", got)
	}
}

// updateAdmitted tells whether the order's workflow has the update with the
// given ID (the API's decisions use their names), admitted or further.
func updateAdmitted(t *testing.T, app *apptest.App, orderID, updateID string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := app.Env.Temporal.WorkflowService().PollWorkflowExecutionUpdate(ctx, &workflowservice.PollWorkflowExecutionUpdateRequest{
		Namespace: "default",
		UpdateRef: &updatepb.UpdateRef{
			WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: orderflow.OrderWorkflowID(orderID)},
			UpdateId:          updateID,
		},
	})
	var nf *serviceerror.NotFound
	if err != nil && !errors.As(err, &nf) {
		t.Fatalf("poll update %s of order %s: %v", updateID, orderID, err)
	}
	return err == nil
}

// TestPlaceOrderRetriedConcurrently: the same POST sent eight times at
// once, as an impatient client's retries might be. At most one is
// answered 201 Created and the others 200 with the same order, whichever
// of them reached Temporal first (the losers of a start race are answered
// as retries): one order, one workflow. A 503 (the start not answered in
// time on a loaded machine) is retried with the key, as the API asks; its
// retry may then be the 200 of the order it started, so no request may
// have seen the 201.
func TestPlaceOrderRetriedConcurrently(t *testing.T) {
	app := apptest.Start(t)
	key := newKey("concurrent")
	body := orderRequest(pizzeria, margherita, 1, "tok_visa")
	const n = 8
	resps := make([]apptest.Response, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			for attempt := 1; ; attempt++ {
				resps[i], errs[i] = app.Request(http.MethodPost, "/v1/orders", body, "Idempotency-Key: "+key)
				if errs[i] != nil || resps[i].Status != http.StatusServiceUnavailable || attempt == 5 {
					return
				}
				time.Sleep(time.Second)
			}
		})
	}
	wg.Wait()
	created, ids := 0, map[string]bool{}
	for i, r := range resps {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		switch r.Status {
		case http.StatusCreated:
			created++
		case http.StatusOK:
		default:
			t.Fatalf("POST %d = %d %s; want 201 or 200", i, r.Status, r.Body)
		}
		var p placed
		r.JSON(t, &p)
		ids[p.ID] = true
	}
	if created > 1 || len(ids) != 1 {
		t.Fatalf("%d answered 201, orders %v; want at most one 201 and one order", created, ids)
	}
	for id := range ids {
		// The workflow records the order: once it waits for the
		// restaurant, its row and its one placed event are there.
		waitStatus(t, app, id, "awaiting_acceptance")
		var rows, placedEvents int
		if err := app.Env.Store.DB.QueryRow(`SELECT (SELECT count(*) FROM orders WHERE id = $1),
			(SELECT count(*) FROM outbox_events WHERE aggregate_id = $1::text AND event_type = 'order.placed')`, id).Scan(&rows, &placedEvents); err != nil || rows != 1 || placedEvents != 1 {
			t.Errorf("order %s: %d rows and %d order.placed events (%v); want 1 and 1", id, rows, placedEvents, err)
		}
		mustDecide(t, app, id, "cancel", nil, "cancelled")
	}
}

// TestPlaceOrderRetryAfterMenuChange: an order is placed, then its dish
// sells out. A retry of the same POST is answered with the order it
// started, not refused for the dish; a new order for it is refused, naming
// the item.
func TestPlaceOrderRetryAfterMenuChange(t *testing.T) {
	app := apptest.Start(t)
	dish := "m_special_" + strings.ReplaceAll(newKey("dish"), "-", "_")
	if _, err := app.Env.Store.DB.Exec(`INSERT INTO menu_items (id, restaurant_id, name, price_cents) VALUES ($1, $2, 'Special of the day', 990)`,
		dish, pizzeria); err != nil {
		t.Fatal(err)
	}
	key := newKey("menu-change")
	body := orderRequest(pizzeria, dish, 1, "tok_visa")
	first := app.Do(t, http.MethodPost, "/v1/orders", body, "Idempotency-Key: "+key)
	if first.Status != http.StatusCreated {
		t.Fatalf("first POST = %d %s", first.Status, first.Body)
	}
	var a, b placed
	first.JSON(t, &a)
	if _, err := app.Env.Store.DB.Exec(`UPDATE menu_items SET available = false WHERE id = $1`, dish); err != nil {
		t.Fatal(err)
	}
	again := app.Do(t, http.MethodPost, "/v1/orders", body, "Idempotency-Key: "+key)
	if again.Status != http.StatusOK {
		t.Fatalf("retry after the dish sold out = %d %s; want 200 with the order", again.Status, again.Body)
	}
	again.JSON(t, &b)
	if a.ID != b.ID || a.TotalCents != b.TotalCents {
		t.Errorf("retry answered %+v; want the first order %+v", b, a)
	}
	fresh := app.Do(t, http.MethodPost, "/v1/orders", body, "Idempotency-Key: "+newKey("menu-change-new"))
	var p problem
	if fresh.Status != http.StatusBadRequest {
		t.Fatalf("new order for the sold-out dish = %d %s; want 400", fresh.Status, fresh.Body)
	}
	fresh.JSON(t, &p)
	if !strings.HasPrefix(p.Field, "items") {
		t.Errorf("400 names field %q; want the item", p.Field)
	}
	waitStatus(t, app, a.ID, "awaiting_acceptance")
	mustDecide(t, app, a.ID, "cancel", nil, "cancelled")
}

// TestBadInputIsRefusedAndStartsNothing sends every kind of bad order the
// issue lists. Each gets a 4xx problem+json naming the field; none starts a
// workflow, which the final good request with the same key proves: it is
// answered 201 Created, not as a retry of an earlier order.
func TestBadInputIsRefusedAndStartsNothing(t *testing.T) {
	app := apptest.Start(t)
	key := newKey("bad")
	good := `{"customer_id":"c_ada","restaurant_id":"r_pizza","items":[{"menu_item_id":"m_margherita","quantity":1}],"delivery_address":"1 Test Street","payment_token":"tok_visa"}`
	tests := []struct {
		name   string
		body   string
		header []string
		status int
		field  string
	}{
		{"malformed JSON", `{"customer_id":`, nil, 400, "body"},
		{"not an object", `[1,2]`, nil, 400, "body"},
		{"unknown field", strings.Replace(good, `"customer_id"`, `"price_cents":1,"customer_id"`, 1), nil, 400, "price_cents"},
		{"wrong type", strings.Replace(good, `"quantity":1`, `"quantity":"one"`, 1), nil, 400, "items[0].quantity"},
		{"no items", strings.Replace(good, `[{"menu_item_id":"m_margherita","quantity":1}]`, `[]`, 1), nil, 400, "items"},
		{"quantity zero", strings.Replace(good, `"quantity":1`, `"quantity":0`, 1), nil, 400, "items[0].quantity"},
		{"quantity over 100", strings.Replace(good, `"quantity":1`, `"quantity":101`, 1), nil, 400, "items[0].quantity"},
		{"unknown restaurant", strings.Replace(good, `"r_pizza"`, `"r_nowhere"`, 1), nil, 400, "restaurant_id"},
		{"unknown menu item", strings.Replace(good, `"m_margherita"`, `"m_nothing"`, 1), nil, 400, "items[0].menu_item_id"},
		{"item of another restaurant", strings.Replace(good, `"m_margherita"`, `"m_miso_soup"`, 1), nil, 400, "items[0].menu_item_id"},
		{"unknown customer", strings.Replace(good, `"c_ada"`, `"c_nobody"`, 1), nil, 400, "customer_id"},
		{"no payment token", strings.Replace(good, `"tok_visa"`, `""`, 1), nil, 400, "payment_token"},
		{"body over 64 KiB", strings.Replace(good, `"1 Test Street"`, `"`+strings.Repeat("x", 70<<10)+`"`, 1), nil, 413, "body"},
		{"missing Idempotency-Key", good, []string{"Idempotency-Key: "}, 400, "Idempotency-Key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			header := tc.header
			if header == nil {
				header = []string{"Idempotency-Key: " + key}
			}
			resp := app.Do(t, http.MethodPost, "/v1/orders", tc.body, header...)
			if resp.Status != tc.status {
				t.Fatalf("status = %d %s; want %d", resp.Status, resp.Body, tc.status)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type = %q; want application/problem+json", ct)
			}
			var p problem
			resp.JSON(t, &p)
			if p.Field != tc.field || p.Status != tc.status || p.Detail == "" {
				t.Errorf("problem = %+v; want status %d naming field %q with a detail", p, tc.status, tc.field)
			}
		})
	}
	resp := app.Do(t, http.MethodPost, "/v1/orders", good, "Idempotency-Key: "+key)
	if resp.Status != http.StatusCreated {
		t.Fatalf("good request after the bad ones = %d %s; want 201: a bad request started an order", resp.Status, resp.Body)
	}
	var p placed
	resp.JSON(t, &p)
	waitStatus(t, app, p.ID, "awaiting_acceptance")
	mustDecide(t, app, p.ID, "cancel", nil, "cancelled")
}

// TestDecisionsOnUnknownOrders: 404 for an order that does not exist.
func TestDecisionsOnUnknownOrders(t *testing.T) {
	app := apptest.Start(t)
	id := uuid.NewString()
	for _, d := range []string{"accept", "reject", "cancel", "delivered"} {
		if code, _ := decide(t, app, id, d, nil); code != http.StatusNotFound {
			t.Errorf("%s on an unknown order = %d; want 404", d, code)
		}
	}
	if resp := app.Do(t, http.MethodGet, "/v1/orders/"+id, nil); resp.Status != http.StatusNotFound {
		t.Errorf("GET unknown order = %d; want 404", resp.Status)
	}
}

package activities_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/events"
)

func TestNotifyRestaurant(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	in := f.place(t)
	f.authorize(t, in, activities.SandboxTokenVisa)
	for range 2 {
		if err := f.acts.NotifyRestaurant(t.Context(), in.OrderID); err != nil {
			t.Fatal(err)
		}
	}
	ns := f.notifications(t, in.OrderID)
	if len(ns) != 1 {
		t.Fatalf("%d notifications, want 1", len(ns))
	}
	n := ns[0]
	if n.IdempotencyKey != in.OrderID+"/restaurant/new_order" || n.Recipient != "restaurant" ||
		n.RecipientID != "r_pizza" || n.Kind != "new_order" ||
		!strings.Contains(n.Message, "2x Margherita, 1x Marinara") || !strings.Contains(n.Message, "32.50") {
		t.Errorf("notification %+v", n)
	}
	s := f.snapshot(t, in.OrderID)
	if s.Status != "awaiting_acceptance" || s.Version != 3 || s.Outbox != 3 {
		t.Errorf("after notifying the restaurant twice: %+v, want awaiting_acceptance at version 3", s)
	}
}

// TestNotifyRestaurantOfEnd: the restaurant hears of an order's end only
// when it was sent the order, once however often the activity runs, with
// the end as the notice's kind, and the order itself does not change.
func TestNotifyRestaurantOfEnd(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cancel := func(orderID string) {
		t.Helper()
		if err := f.acts.Transition(t.Context(), activities.TransitionInput{
			OrderID: orderID, Status: "cancelled", EventType: events.OrderCancelled, Reason: "changed my mind",
		}); err != nil {
			t.Fatal(err)
		}
	}
	end := func(orderID string) {
		t.Helper()
		for range 2 {
			if err := f.acts.NotifyRestaurantOfEnd(t.Context(), activities.RestaurantNotice{OrderID: orderID}); err != nil {
				t.Fatal(err)
			}
		}
	}

	unsent := f.place(t)
	f.authorize(t, unsent, activities.SandboxTokenVisa)
	cancel(unsent.OrderID)
	end(unsent.OrderID)
	if ns := f.notifications(t, unsent.OrderID); len(ns) != 0 {
		t.Errorf("the restaurant was told of the end of an order it was never sent: %+v", ns)
	}

	sent := f.place(t)
	f.authorize(t, sent, activities.SandboxTokenVisa)
	if err := f.acts.NotifyRestaurant(t.Context(), sent.OrderID); err != nil {
		t.Fatal(err)
	}
	cancel(sent.OrderID)
	before := f.snapshot(t, sent.OrderID)
	end(sent.OrderID)
	ns := f.notifications(t, sent.OrderID)
	if len(ns) != 2 {
		t.Fatalf("%d notifications, want the new order's and the end's", len(ns))
	}
	n := ns[1]
	if n.IdempotencyKey != sent.OrderID+"/restaurant/cancelled" || n.Recipient != "restaurant" ||
		n.RecipientID != "r_pizza" || n.Kind != "cancelled" ||
		!strings.Contains(n.Message, "changed my mind") || !strings.Contains(n.Message, "Do not prepare it") {
		t.Errorf("notification %+v", n)
	}
	before.Notifications++
	if after := f.snapshot(t, sent.OrderID); after != before {
		t.Errorf("after the notice the order is %+v; want %+v, one notification more", after, before)
	}
}

// endingNotifier ends the order as the restaurant is sent it: the
// workflow, cancelled meanwhile, stopped waiting for the send and ended
// the order.
type endingNotifier struct {
	activities.Notifier
	end func(orderID string)
}

func (n endingNotifier) Notify(ctx context.Context, x activities.Notification) error {
	if err := n.Notifier.Notify(ctx, x); err != nil {
		return err
	}
	if x.Kind == "new_order" {
		n.end(x.OrderID)
	}
	return nil
}

// TestOrderEndedWhileSentIsCalledOff: an order that ends while the
// restaurant is being sent it has no order.restaurant_notified on its
// timeline, so the end's own notice passes it by; the restaurant, which
// has the order, is told it is off by the send itself.
func TestOrderEndedWhileSentIsCalledOff(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	in := f.place(t)
	f.authorize(t, in, activities.SandboxTokenVisa)
	acts := *f.acts
	acts.Notifier = endingNotifier{Notifier: f.acts.Notifier, end: func(orderID string) {
		if err := f.acts.Transition(t.Context(), activities.TransitionInput{
			OrderID: orderID, Status: "cancelled", EventType: events.OrderCancelled, Reason: "order workflow cancelled",
		}); err != nil {
			t.Errorf("cancel: %v", err)
		}
	}}
	requireEnded(t, acts.NotifyRestaurant(t.Context(), in.OrderID), "cancelled")
	f.wantCalledOff(t, in.OrderID)
}

// TestNotifyRestaurantPastAcceptBy: past the order's accept_by the
// restaurant is not sent the order (a non-retryable TooLate error, nothing
// written), unless it was sent already: its step is on the timeline (a
// workflow task lost in a crash ran it, and the replayed workflow runs it
// again), or the notifier's log has it (the worker died between the send
// and the step).
func TestNotifyRestaurantPastAcceptBy(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	late := *f.acts
	late.Now = func() time.Time { return placedAt.Add(10 * time.Minute) } // accept_by itself
	unsent := f.place(t)
	f.authorize(t, unsent, activities.SandboxTokenVisa)
	before := f.snapshot(t, unsent.OrderID)
	requireAppError(t, late.NotifyRestaurant(t.Context(), unsent.OrderID), activities.ErrTypeTooLate)
	if after := f.snapshot(t, unsent.OrderID); after != before {
		t.Errorf("a refused send changed %+v to %+v", before, after)
	}

	sent := f.place(t)
	f.authorize(t, sent, activities.SandboxTokenVisa)
	if err := f.acts.NotifyRestaurant(t.Context(), sent.OrderID); err != nil {
		t.Fatal(err)
	}
	before = f.snapshot(t, sent.OrderID)
	if err := late.NotifyRestaurant(t.Context(), sent.OrderID); err != nil {
		t.Fatalf("the step run again past accept_by: %v; want it done already", err)
	}
	if after := f.snapshot(t, sent.OrderID); after != before {
		t.Errorf("the step run again changed %+v to %+v", before, after)
	}

	halfSent := f.sentByADyingWorker(t)
	if err := late.NotifyRestaurant(t.Context(), halfSent.OrderID); err != nil {
		t.Fatalf("the step run again past accept_by after its send: %v; want it recorded", err)
	}
	if o := f.order(t, halfSent.OrderID); o.Status != "awaiting_acceptance" {
		t.Errorf("status %s after the step run again; want awaiting_acceptance", o.Status)
	}
	if n := f.notifications(t, halfSent.OrderID); len(n) != 1 || n[0].Kind != "new_order" {
		t.Errorf("notifications %+v; want the one new order", n)
	}
}

// TestNotifyRestaurantRetriedPastAcceptBy: a retry of the send that runs
// past accept_by, after a first attempt that failed, goes on (records the
// step) when the order may have been sent, and is refused when it was
// not. A notifier with a send log tells which; with one that keeps no log,
// the retry takes it as sent, since its first attempt may have sent it.
// The step runs as the workflow runs it, a local activity, in the SDK's
// test environment, which retries it as a worker would.
func TestNotifyRestaurantRetriedPastAcceptBy(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	sends := f.acts.Notifier.(activities.SendLog)
	tests := []struct {
		name      string
		sendFirst bool // the first attempt sends, then fails
		logged    bool // the notifier has a send log
		wantErr   string
	}{
		{name: "no send log, the first attempt sent", sendFirst: true},
		{name: "no send log, the first attempt sent nothing", sendFirst: false},
		{name: "send log, the first attempt sent", sendFirst: true, logged: true},
		{name: "send log, the first attempt sent nothing", sendFirst: false, logged: true, wantErr: activities.ErrTypeTooLate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := f.place(t)
			f.authorize(t, in, activities.SandboxTokenVisa)
			before := f.snapshot(t, in.OrderID)
			var failed atomic.Bool
			acts := *f.acts
			once := failsOnce{Notifier: f.acts.Notifier, sendFirst: tt.sendFirst, failed: &failed}
			acts.Notifier = once
			if tt.logged {
				acts.Notifier = loggedFailsOnce{once, sends}
			}
			acts.Now = func() time.Time {
				if failed.Load() {
					return placedAt.Add(10 * time.Minute) // accept_by itself
				}
				return clockAt
			}
			var suite testsuite.WorkflowTestSuite
			suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
			env := suite.NewTestWorkflowEnvironment()
			env.RegisterActivity(&acts)
			env.ExecuteWorkflow(func(ctx workflow.Context, orderID string) error {
				ctx = workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
					StartToCloseTimeout: time.Minute,
					RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 2},
				})
				return workflow.ExecuteLocalActivity(ctx, acts.NotifyRestaurant, orderID).Get(ctx, nil)
			}, in.OrderID)
			if !failed.Load() {
				t.Fatal("the first attempt did not fail")
			}
			err := env.GetWorkflowError()
			if tt.wantErr != "" {
				var appErr *temporal.ApplicationError
				if !errors.As(err, &appErr) || appErr.Type() != tt.wantErr {
					t.Fatalf("the retry past accept_by: %v; want %s", err, tt.wantErr)
				}
				if after := f.snapshot(t, in.OrderID); after != before {
					t.Errorf("the refused retry changed %+v to %+v", before, after)
				}
				return
			}
			if err != nil {
				t.Fatalf("the retry past accept_by: %v; want the step recorded", err)
			}
			if o := f.order(t, in.OrderID); o.Status != "awaiting_acceptance" {
				t.Errorf("status %s after the retry; want awaiting_acceptance", o.Status)
			}
			if n := f.notifications(t, in.OrderID); len(n) != 1 || n[0].Kind != "new_order" {
				t.Errorf("notifications %+v; want the one new order", n)
			}
		})
	}
}

// failsOnce fails its first send, after sending it when sendFirst. It
// hides the notifier's SendLog; loggedFailsOnce shows it.
type failsOnce struct {
	activities.Notifier
	sendFirst bool
	failed    *atomic.Bool
}

func (f failsOnce) Notify(ctx context.Context, n activities.Notification) error {
	if f.failed.Load() || f.sendFirst {
		if err := f.Notifier.Notify(ctx, n); err != nil {
			return err
		}
	}
	if f.failed.CompareAndSwap(false, true) {
		return errors.New("connection reset")
	}
	return nil
}

type loggedFailsOnce struct {
	failsOnce
	activities.SendLog
}

// TestOrderSentByADyingWorkerIsCalledOff: an order sent by a worker that
// died before it recorded the step, and that then ends without the step
// run again (cancelled meanwhile), is called off at the restaurant: the
// notifier's log says it was sent.
func TestOrderSentByADyingWorkerIsCalledOff(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	in := f.sentByADyingWorker(t)
	if err := f.acts.Transition(t.Context(), activities.TransitionInput{
		OrderID: in.OrderID, Status: "cancelled", EventType: events.OrderCancelled, Reason: "customer cancelled",
	}); err != nil {
		t.Fatal(err)
	}
	f.wantCalledOff(t, in.OrderID)
}

// sentByADyingWorker places and authorizes an order, then sends it to the
// restaurant from a worker that dies before it records the step.
func (f *fixture) sentByADyingWorker(t *testing.T) activities.NewOrder {
	t.Helper()
	in := f.place(t)
	f.authorize(t, in, activities.SandboxTokenVisa)
	dying := *f.acts
	// It sends, then fails as a worker that died before the step was
	// recorded would.
	dying.Notifier = failsOnce{Notifier: f.acts.Notifier, sendFirst: true, failed: new(atomic.Bool)}
	if err := dying.NotifyRestaurant(t.Context(), in.OrderID); err == nil {
		t.Fatal("the send whose worker died returned no error")
	}
	return in
}

type failingNotifier struct{}

func (failingNotifier) Notify(context.Context, activities.Notification) error {
	return errors.New("smtp: connection refused")
}

// TestNotifyFailureEmitsNothing: a notification that did not go out is not
// recorded as sent, and the error is one Temporal retries.
func TestNotifyFailureEmitsNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	in := f.place(t)
	f.acts.Notifier = failingNotifier{}
	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"restaurant", func(ctx context.Context) error { return f.acts.NotifyRestaurant(ctx, in.OrderID) }},
		{"customer", func(ctx context.Context) error {
			return f.acts.NotifyCustomer(ctx, activities.CustomerNotice{OrderID: in.OrderID, Kind: "cancelled", Message: "x"})
		}},
	}
	before := f.snapshot(t, in.OrderID)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requireRetryable(t, tt.call(t.Context()))
			if after := f.snapshot(t, in.OrderID); after != before {
				t.Errorf("failed notification changed %+v to %+v", before, after)
			}
		})
	}
}

func TestNotifyCustomer(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tests := []struct {
		name       string
		kinds      []string // one call each
		concurrent bool
		wantKinds  []string
	}{
		{"one kind", []string{"accepted"}, false, []string{"accepted"}},
		{"same kind twice", []string{"accepted", "accepted"}, false, []string{"accepted"}},
		{"two kinds", []string{"accepted", "delivery_late", "accepted"}, false, []string{"accepted", "delivery_late"}},
		{"same kind concurrently", []string{"cancelled", "cancelled", "cancelled", "cancelled"}, true, []string{"cancelled"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := f.place(t)
			notify := func(kind string) error {
				return f.acts.NotifyCustomer(t.Context(), activities.CustomerNotice{OrderID: in.OrderID, Kind: kind, Message: "about " + kind})
			}
			errs := make([]error, len(tt.kinds))
			var wg sync.WaitGroup
			for i, kind := range tt.kinds {
				if tt.concurrent {
					wg.Go(func() { errs[i] = notify(kind) })
				} else {
					errs[i] = notify(kind)
				}
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}

			var gotKinds []string
			for _, n := range f.notifications(t, in.OrderID) {
				if n.Recipient != "customer" || n.RecipientID != "c_ada" || n.IdempotencyKey != in.OrderID+"/customer/"+n.Kind || n.Message != "about "+n.Kind {
					t.Errorf("notification %+v", n)
				}
				gotKinds = append(gotKinds, n.Kind)
			}
			if !slices.Equal(gotKinds, tt.wantKinds) {
				t.Errorf("notifications %v, want %v", gotKinds, tt.wantKinds)
			}

			var eventKinds []string
			for _, row := range f.outbox(t, in.OrderID) {
				if row.EventType != events.OrderUserNotified {
					continue
				}
				ev := decode(t, row)
				if row.EventID != events.EventID(in.OrderID, events.OrderUserNotified, ev.NotificationKind) || ev.Status != "placed" {
					t.Errorf("user_notified %s: %+v", row.EventID, ev)
				}
				eventKinds = append(eventKinds, ev.NotificationKind)
			}
			if !slices.Equal(eventKinds, tt.wantKinds) {
				t.Errorf("user_notified events %v, want %v", eventKinds, tt.wantKinds)
			}
			if v := f.order(t, in.OrderID).Version; v != int64(1+len(tt.wantKinds)) {
				t.Errorf("version %d, want %d", v, 1+len(tt.wantKinds))
			}
		})
	}
	t.Run("no kind", func(t *testing.T) {
		in := f.place(t)
		requireAppError(t, f.acts.NotifyCustomer(t.Context(), activities.CustomerNotice{OrderID: in.OrderID, Message: "x"}), activities.ErrTypeInvalid)
	})
}

func TestDevNotifierRecordsAndLogsOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var logs bytes.Buffer
	dev := activities.NewDevNotifier(f.store, slog.New(slog.NewTextHandler(&logs, nil)))
	orderID := uuid.NewString()
	n := activities.Notification{
		Key: orderID + "/customer/accepted", OrderID: orderID, Recipient: "customer",
		RecipientID: "c_alan", Kind: "accepted", Message: "Accepted.",
	}
	for range 3 {
		if err := dev.Notify(t.Context(), n); err != nil {
			t.Fatal(err)
		}
	}
	if ns := f.notifications(t, orderID); len(ns) != 1 {
		t.Errorf("%d notifications, want 1", len(ns))
	}
	if lines := strings.Count(logs.String(), "notification sent"); lines != 1 || !strings.Contains(logs.String(), n.Key) {
		t.Errorf("logged %d lines, want 1 naming the key:\n%s", lines, logs.String())
	}

	tests := []struct {
		name   string
		change func(*activities.Notification)
	}{
		{"malformed order id", func(n *activities.Notification) { n.OrderID = "42" }},
		{"no key", func(n *activities.Notification) { n.Key = "" }},
		{"unknown recipient", func(n *activities.Notification) { n.Key += "/courier"; n.Recipient = "courier" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := n
			tt.change(&bad)
			requireAppError(t, dev.Notify(t.Context(), bad), activities.ErrTypeInvalid)
		})
	}
}

// wantCalledOff runs the end's notice of order id, cancelled, and checks
// that the restaurant was sent the order, then told it is off.
func (f *fixture) wantCalledOff(t *testing.T, id string) {
	t.Helper()
	if err := f.acts.NotifyRestaurantOfEnd(t.Context(), activities.RestaurantNotice{OrderID: id}); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, n := range f.notifications(t, id) {
		kinds = append(kinds, n.Recipient+":"+n.Kind)
	}
	if !slices.Equal(kinds, []string{"restaurant:new_order", "restaurant:cancelled"}) {
		t.Errorf("notifications %v; want the new order's, then the end's", kinds)
	}
}

// TestNotifyCustomerAfterTheEnd: once the order has ended, a notice of
// progress that has not gone is refused as a forward step is
// (ErrTypeOrderEnded), sending nothing: an attempt begun after the end
// reached the customer after the cancellation's notice. A retry of one
// that went before the end succeeds, sending nothing more; the end's own
// notice goes.
func TestNotifyCustomerAfterTheEnd(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	in, other := f.place(t), f.place(t)
	// other's acceptance notice goes before its end.
	early := activities.CustomerNotice{OrderID: other.OrderID, Kind: activities.NoticeAccepted, Message: "about accepted"}
	if err := f.acts.NotifyCustomer(t.Context(), early); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{in.OrderID, other.OrderID} {
		if err := f.acts.Transition(t.Context(), activities.TransitionInput{
			OrderID: id, Status: "cancelled", EventType: events.OrderCancelled, Reason: "cancelled by customer",
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.acts.NotifyCustomer(t.Context(), early); err != nil {
		t.Errorf("a retry of a notice sent before the end: %v; want nil", err)
	}
	if n := len(f.notifications(t, other.OrderID)); n != 1 {
		t.Errorf("%d notifications after the retry; want the one sent before the end", n)
	}
	for _, kind := range []string{activities.NoticeAccepted, activities.NoticeDeliveryLate} {
		err := f.acts.NotifyCustomer(t.Context(), activities.CustomerNotice{OrderID: in.OrderID, Kind: kind, Message: "about " + kind})
		requireAppError(t, err, activities.ErrTypeOrderEnded)
	}
	if err := f.acts.NotifyCustomer(t.Context(), activities.CustomerNotice{OrderID: in.OrderID, Kind: "cancelled", Message: "Your order was cancelled."}); err != nil {
		t.Fatalf("the end's notice: %v", err)
	}
	var kinds []string
	for _, n := range f.notifications(t, in.OrderID) {
		kinds = append(kinds, n.Kind)
	}
	if !slices.Equal(kinds, []string{"cancelled"}) {
		t.Errorf("notifications %v; want only the cancellation's", kinds)
	}
}

package workflows_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/workflows"
)

// start is the workflow clock's origin. It lies in the future on purpose:
// the SDK's test environment schedules a local activity's retry on the
// mocked clock but checks its deadline against the real one, so with a
// past start every retried local activity "times out" at once.
var start = time.Date(2099, 11, 22, 12, 0, 0, 0, time.UTC)

// harness runs the order workflow in the SDK's test environment with every
// activity mocked; it records the activity calls in order, with the
// workflow time of each.
type harness struct {
	t     *testing.T
	env   *testsuite.TestWorkflowEnvironment
	mu    sync.Mutex
	calls []string
	times []time.Time
	// authorize replaces the default (approving) payment authorization.
	authorize func(activities.AuthorizeInput) (activities.Authorization, error)
	// after delays the named activity's completion by workflow time.
	after map[string]time.Duration
	// transition, when set, answers Transition instead of success.
	transition func(activities.TransitionInput) error
	// recordPlaced, when set, answers RecordPlaced first: an error fails
	// the attempt, which is then not among the calls.
	recordPlaced func(ctx context.Context) error
	// captureErr is CapturePayment's answer, notifyErr NotifyRestaurant's.
	captureErr, notifyErr error
	// released, when set, is what ReleasePayment finds at the gateway.
	released string
	// notifyCustomer, when set, answers NotifyCustomer instead of success.
	notifyCustomer func(activities.CustomerNotice) error
	// log holds what the workflow logged, at info and above.
	log syncBuffer
}

// syncBuffer is a bytes.Buffer safe for the test environment's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	h := &harness{t: t, after: map[string]time.Duration{}}
	suite.SetLogger(sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(&h.log, &slog.HandlerOptions{Level: slog.LevelInfo}))))
	env := suite.NewTestWorkflowEnvironment()
	env.SetStartTime(start)
	env.RegisterWorkflowWithOptions(workflows.Order, workflow.RegisterOptions{Name: workflows.OrderWorkflowName})
	env.RegisterActivity(&activities.Activities{})
	h.env = env
	h.authorize = func(activities.AuthorizeInput) (activities.Authorization, error) {
		return activities.Authorization{AuthorizationID: "auth_1"}, nil
	}
	return h
}

// mock registers every activity's mock; run calls it so that tests can set
// authorize and after first.
func (h *harness) mock() {
	acts := &activities.Activities{}
	on := func(name string, fn, impl any) {
		h.env.OnActivity(fn, mock.Anything, mock.Anything).After(h.after[name]).Return(impl).Maybe()
	}
	on("RecordPlaced", acts.RecordPlaced, func(ctx context.Context, in activities.NewOrder) error {
		if h.recordPlaced != nil {
			if err := h.recordPlaced(ctx); err != nil {
				return err
			}
		}
		h.record("RecordPlaced")
		return nil
	})
	on("AuthorizePayment", acts.AuthorizePayment, func(_ context.Context, in activities.AuthorizeInput) (activities.Authorization, error) {
		h.record("AuthorizePayment")
		return h.authorize(in)
	})
	on("NotifyRestaurant", acts.NotifyRestaurant, func(_ context.Context, id string) error {
		h.record("NotifyRestaurant")
		return h.notifyErr
	})
	on("Transition", acts.Transition, func(_ context.Context, in activities.TransitionInput) error {
		h.record("Transition:" + in.EventType)
		if h.transition != nil {
			return h.transition(in)
		}
		return nil
	})
	on("CapturePayment", acts.CapturePayment, func(_ context.Context, in activities.PaymentInput) error {
		if in.AuthorizationID != "auth_1" {
			h.t.Errorf("CapturePayment got authorization %q, want auth_1", in.AuthorizationID)
		}
		h.record("CapturePayment")
		return h.captureErr
	})
	// The gateway's answer: a capture is refunded, a hold voided.
	on("ReleasePayment", acts.ReleasePayment, func(_ context.Context, in activities.PaymentInput) (string, error) {
		h.record("ReleasePayment")
		if h.released != "" {
			return h.released, nil
		}
		if slices.Contains(h.calls, "CapturePayment") {
			return "refunded", nil
		}
		return "voided", nil
	})
	on("NotifyCustomer", acts.NotifyCustomer, func(_ context.Context, in activities.CustomerNotice) error {
		h.record("NotifyCustomer:" + in.Kind)
		if h.notifyCustomer != nil {
			return h.notifyCustomer(in)
		}
		return nil
	})
	on("NotifyRestaurantOfEnd", acts.NotifyRestaurantOfEnd, func(_ context.Context, in activities.RestaurantNotice) error {
		h.record("NotifyRestaurantOfEnd")
		return nil
	})
}

func (h *harness) record(call string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, call)
	h.times = append(h.times, h.env.Now())
}

// at returns the workflow time of the first call named call.
func (h *harness) at(call string) time.Time {
	for i, c := range h.calls {
		if c == call {
			return h.times[i]
		}
	}
	h.t.Fatalf("no call %s in %v", call, h.calls)
	return time.Time{}
}

func input() workflows.OrderInput {
	return workflows.OrderInput{
		Order: activities.NewOrder{
			OrderID: "0b7c6a52-6f5e-4c8e-9a61-8c1f2d3e4f50", CustomerID: "c_ada", RestaurantID: "r_pizza",
			DeliveryAddress: "1 Main St", TotalCents: 2450, PlacedAt: start, AcceptBy: start.Add(10 * time.Minute),
			Items: []events.OrderItem{{MenuItemID: "m_margherita", Name: "Margherita", UnitPriceCents: 1225, Quantity: 2}},
		},
		PaymentToken:  "tok_visa",
		AcceptTimeout: 10 * time.Minute,
		DeliverySLA:   45 * time.Minute,
	}
}

// update sends an update at virtual time `at` and records its outcome.
type outcome struct {
	rejected error
	status   string
	reason   string
	err      error
	done     bool
}

func (h *harness) update(at time.Duration, name string, args ...any) *outcome {
	o := &outcome{}
	h.env.RegisterDelayedCallback(func() {
		h.env.UpdateWorkflow(name, name+"@"+at.String(), &testsuite.TestUpdateCallback{
			OnAccept: func() {},
			OnReject: func(err error) { o.rejected, o.done = err, true },
			OnComplete: func(v any, err error) {
				o.done, o.err = true, err
				if r, ok := v.(workflows.DecisionResult); ok {
					o.status, o.reason = r.Status, r.Reason
				}
			},
		}, args...)
	}, at)
	return o
}

func (h *harness) run() workflows.OrderResult {
	h.t.Helper()
	h.mock()
	h.env.ExecuteWorkflow(workflows.OrderWorkflowName, input())
	if !h.env.IsWorkflowCompleted() {
		h.t.Fatal("workflow did not complete")
	}
	var res workflows.OrderResult
	if err := h.env.GetWorkflowError(); err == nil {
		if err := h.env.GetWorkflowResult(&res); err != nil {
			h.t.Fatalf("result: %v", err)
		}
	}
	return res
}

func (h *harness) wantCalls(want ...string) {
	h.t.Helper()
	if strings.Join(h.calls, " ") != strings.Join(want, " ") {
		h.t.Errorf("activity calls:\n got %v\nwant %v", h.calls, want)
	}
}

func TestOrderAcceptedDeliveredCompletes(t *testing.T) {
	h := newHarness(t)
	accept := h.update(time.Minute, workflows.UpdateAccept)
	delivered := h.update(30*time.Minute, workflows.UpdateDelivered)
	res := h.run()

	if res.Status != "completed" || res.PaymentStatus != "captured" {
		t.Errorf("result = %+v, want completed with payment captured", res)
	}
	if accept.status != "accepted" || accept.err != nil || accept.rejected != nil {
		t.Errorf("accept update = %+v, want status accepted", accept)
	}
	if delivered.status != "completed" || delivered.err != nil || delivered.rejected != nil {
		t.Errorf("delivered update = %+v, want status completed", delivered)
	}
	h.wantCalls("RecordPlaced", "AuthorizePayment", "NotifyRestaurant", "Transition:order.accepted",
		"CapturePayment", "NotifyCustomer:accepted", "Transition:order.completed")
}

func TestOrderCompensations(t *testing.T) {
	declined := func(activities.AuthorizeInput) (activities.Authorization, error) {
		return activities.Authorization{}, temporal.NewNonRetryableApplicationError("card declined", activities.ErrTypePaymentDeclined, nil)
	}
	tests := []struct {
		name        string
		setup       func(h *harness)
		wantStatus  string
		wantPayment string
		wantReason  string
		wantCalls   []string
	}{
		{
			name: "restaurant rejects",
			setup: func(h *harness) {
				h.update(2*time.Minute, workflows.UpdateReject, workflows.RejectInput{Reason: "out of dough"})
			},
			wantStatus: "rejected", wantPayment: "voided", wantReason: "out of dough",
			wantCalls: []string{"RecordPlaced", "AuthorizePayment", "NotifyRestaurant", "Transition:order.rejected", "ReleasePayment", "NotifyCustomer:rejected"},
		},
		{
			name:       "restaurant does not answer within 10 minutes",
			setup:      func(h *harness) {},
			wantStatus: "timed_out", wantPayment: "voided", wantReason: "restaurant did not answer within 10m0s",
			wantCalls: []string{"RecordPlaced", "AuthorizePayment", "NotifyRestaurant", "Transition:order.timed_out", "ReleasePayment", "NotifyCustomer:timed_out",
				"NotifyRestaurantOfEnd"},
		},
		{
			name:       "customer cancels before acceptance",
			setup:      func(h *harness) { h.update(3*time.Minute, workflows.UpdateCancel, workflows.CancelInput{}) },
			wantStatus: "cancelled", wantPayment: "voided", wantReason: "cancelled by customer",
			wantCalls: []string{"RecordPlaced", "AuthorizePayment", "NotifyRestaurant", "Transition:order.cancelled", "ReleasePayment", "NotifyCustomer:cancelled",
				"NotifyRestaurantOfEnd"},
		},
		{
			// The kitchen was told the order was accepted and may be
			// cooking it: it is told the order is off.
			name: "capture fails after acceptance",
			setup: func(h *harness) {
				h.update(2*time.Minute, workflows.UpdateAccept)
				h.captureErr = temporal.NewNonRetryableApplicationError("card expired", activities.ErrTypeInvalid, nil)
			},
			wantStatus: "failed", wantPayment: "refunded", wantReason: "payment capture failed",
			wantCalls: []string{"RecordPlaced", "AuthorizePayment", "NotifyRestaurant", "Transition:order.accepted", "CapturePayment",
				"Transition:order.failed", "ReleasePayment", "NotifyCustomer:failed", "NotifyRestaurantOfEnd"},
		},
		{
			name:       "payment declined",
			setup:      func(h *harness) { h.authorize = declined },
			wantStatus: "rejected", wantPayment: "declined", wantReason: "payment declined: card declined",
			wantCalls: []string{"RecordPlaced", "AuthorizePayment", "Transition:order.rejected", "NotifyCustomer:payment_declined"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			tt.setup(h)
			res := h.run()
			if err := h.env.GetWorkflowError(); err != nil {
				t.Fatalf("workflow error: %v", err)
			}
			if res.Status != tt.wantStatus || res.PaymentStatus != tt.wantPayment || res.Reason != tt.wantReason {
				t.Errorf("result = %+v, want status %s, payment %s, reason %q", res, tt.wantStatus, tt.wantPayment, tt.wantReason)
			}
			h.wantCalls(tt.wantCalls...)
		})
	}
}

func TestAcceptTimerFiresAtTenMinutesWithoutWaitingTenMinutes(t *testing.T) {
	h := newHarness(t)
	began := time.Now()
	res := h.run()
	if res.Status != "timed_out" {
		t.Fatalf("status = %s, want timed_out", res.Status)
	}
	if got := h.at("Transition:order.timed_out").Sub(start); got != 10*time.Minute {
		t.Errorf("timed out after %s of workflow time, want exactly 10m0s (the accept deadline)", got)
	}
	if wall := time.Since(began); wall > time.Minute {
		t.Errorf("test took %s of wall time: the timer was not skipped", wall)
	}
}

func TestTransientPaymentFailuresAreRetried(t *testing.T) {
	h := newHarness(t)
	attempts := 0
	h.authorize = func(activities.AuthorizeInput) (activities.Authorization, error) {
		attempts++
		if attempts <= 2 {
			return activities.Authorization{}, errors.New("gateway timeout")
		}
		return activities.Authorization{AuthorizationID: "auth_1"}, nil
	}
	h.update(time.Minute, workflows.UpdateAccept)
	h.update(10*time.Minute, workflows.UpdateDelivered)
	res := h.run()
	if res.Status != "completed" || res.PaymentStatus != "captured" {
		t.Errorf("result = %+v, want completed and captured", res)
	}
	if attempts != 3 {
		t.Errorf("authorize attempts = %d, want 3 (two transient failures, then success)", attempts)
	}
}

func TestUpdateValidatorsRejectImpossibleTransitions(t *testing.T) {
	tests := []struct {
		name string
		// send issues the update under test (and whatever must precede it).
		send func(h *harness) *outcome
		// after delays activities, to hold the workflow in a state.
		after      map[string]time.Duration
		wantReject string
		// wantType is the refusal's ApplicationError type, when the
		// caller tells refusals apart by it.
		wantType string
	}{
		{
			name: "second delivered while the first completes the order",
			// Slow transitions keep the order accepted, its first
			// delivered waiting for the completion.
			after: map[string]time.Duration{"Transition": 5 * time.Minute},
			send: func(h *harness) *outcome {
				h.update(time.Minute, workflows.UpdateAccept)
				h.update(7*time.Minute, workflows.UpdateDelivered)
				return h.update(8*time.Minute, workflows.UpdateDelivered)
			},
			wantReject: "already marked delivered",
			wantType:   workflows.ErrTypeAlreadyDelivered,
		},
		{
			name:       "accept before the restaurant is notified",
			after:      map[string]time.Duration{"RecordPlaced": 2 * time.Minute},
			send:       func(h *harness) *outcome { return h.update(time.Minute, workflows.UpdateAccept) },
			wantReject: "has not been notified",
			wantType:   workflows.ErrTypeNotYetNotified,
		},
		{
			name:  "reject before the restaurant is notified",
			after: map[string]time.Duration{"RecordPlaced": 2 * time.Minute},
			send: func(h *harness) *outcome {
				return h.update(time.Minute, workflows.UpdateReject, workflows.RejectInput{})
			},
			wantReject: "has not been notified",
			wantType:   workflows.ErrTypeNotYetNotified,
		},
		{
			name: "accept after the timeout",
			// Slow compensation keeps the workflow open after the timeout.
			after:      map[string]time.Duration{"ReleasePayment": 5 * time.Minute},
			send:       func(h *harness) *outcome { return h.update(12*time.Minute, workflows.UpdateAccept) },
			wantReject: "order is timed_out",
		},
		{
			// The timeout's compensation is still recording the status: the
			// order must already refuse, not answer the late accept with
			// the timed_out outcome as if it had taken.
			name:       "accept while the timeout is being recorded",
			after:      map[string]time.Duration{"Transition": 5 * time.Minute},
			send:       func(h *harness) *outcome { return h.update(11*time.Minute, workflows.UpdateAccept) },
			wantReject: "order is timed_out",
		},
		{
			// The restaurant may have the order already: its time is up.
			name: "cancel past accept_by while the restaurant is being sent the order",
			after: map[string]time.Duration{
				"AuthorizePayment": 9 * time.Minute, "NotifyRestaurant": 4 * time.Minute,
			},
			send: func(h *harness) *outcome {
				return h.update(11*time.Minute, workflows.UpdateCancel, workflows.CancelInput{})
			},
			wantReject: "past its accept_by",
		},
		{
			// Not "not yet": it will never be possible.
			name:  "accept after a cancel while the order is recorded",
			after: map[string]time.Duration{"RecordPlaced": 2 * time.Minute},
			send: func(h *harness) *outcome {
				h.update(30*time.Second, workflows.UpdateCancel, workflows.CancelInput{})
				return h.update(time.Minute, workflows.UpdateAccept)
			},
			wantReject: "already decided (cancel)",
		},
		{
			// Late, not "not yet": retrying would not help.
			name:       "accept past accept_by while notifying the restaurant",
			after:      map[string]time.Duration{"NotifyRestaurant": 12 * time.Minute},
			send:       func(h *harness) *outcome { return h.update(11*time.Minute, workflows.UpdateAccept) },
			wantReject: "past its accept_by",
		},
		{
			name: "reject with a NUL in the reason",
			send: func(h *harness) *outcome {
				return h.update(time.Minute, workflows.UpdateReject, workflows.RejectInput{Reason: "out\x00of dough"})
			},
			wantReject: "without NUL",
		},
		{
			name: "second accept",
			send: func(h *harness) *outcome {
				h.update(time.Minute, workflows.UpdateAccept)
				return h.update(2*time.Minute, workflows.UpdateAccept)
			},
			wantReject: "order is accepted: cannot accept",
		},
		{
			name: "cancel after acceptance",
			send: func(h *harness) *outcome {
				h.update(time.Minute, workflows.UpdateAccept)
				return h.update(2*time.Minute, workflows.UpdateCancel, workflows.CancelInput{})
			},
			wantReject: "order is accepted: cannot cancel",
		},
		{
			name:       "delivered before acceptance",
			send:       func(h *harness) *outcome { return h.update(time.Minute, workflows.UpdateDelivered) },
			wantReject: "only an accepted order can be delivered",
		},
		{
			name: "reject with an over-long reason",
			send: func(h *harness) *outcome {
				return h.update(time.Minute, workflows.UpdateReject, workflows.RejectInput{Reason: strings.Repeat("x", 501)})
			},
			wantReject: "longer than 500",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			for name, d := range tt.after {
				h.after[name] = d
			}
			got := tt.send(h)
			h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 3*time.Hour)
			h.run()
			if got.rejected == nil {
				t.Fatalf("update was not rejected (outcome %+v)", got)
			}
			if !strings.Contains(got.rejected.Error(), tt.wantReject) {
				t.Errorf("rejection = %q, want it to mention %q", got.rejected, tt.wantReject)
			}
			var appErr *temporal.ApplicationError
			if tt.wantType != "" && (!errors.As(got.rejected, &appErr) || appErr.Type() != tt.wantType) {
				t.Errorf("rejection %q (%T) is not an application error of type %s", got.rejected, got.rejected, tt.wantType)
			}
		})
	}
}

// TestAuthorizedPastTheDeadline: a restaurant notification refused as too
// late (the payment was authorized only after accept_by) times the order
// out; a customer's cancel while it is authorized still takes, since the
// restaurant does not have the order.
func TestAuthorizedPastTheDeadline(t *testing.T) {
	t.Run("times out unsent", func(t *testing.T) {
		h := newHarness(t)
		h.after["AuthorizePayment"] = 11 * time.Minute
		h.notifyErr = temporal.NewNonRetryableApplicationError("too late to send it", activities.ErrTypeTooLate, nil)
		res := h.run()
		if res.Status != "timed_out" || res.PaymentStatus != "voided" || !strings.Contains(res.Reason, "before the order could be sent") {
			t.Errorf("result = %+v; want timed_out, voided, not sent", res)
		}
		h.wantCalls("RecordPlaced", "AuthorizePayment", "NotifyRestaurant", "Transition:order.timed_out", "ReleasePayment", "NotifyCustomer:timed_out",
			"NotifyRestaurantOfEnd")
	})
	t.Run("cancel while authorizing", func(t *testing.T) {
		h := newHarness(t)
		h.after["AuthorizePayment"] = 12 * time.Minute
		cancel := h.update(11*time.Minute, workflows.UpdateCancel, workflows.CancelInput{})
		res := h.run()
		if cancel.rejected != nil || cancel.status != "cancelled" || res.Status != "cancelled" {
			t.Errorf("cancel = %+v, result %+v; want the cancel taken", cancel, res)
		}
		h.wantCalls("RecordPlaced", "AuthorizePayment", "Transition:order.cancelled", "ReleasePayment", "NotifyCustomer:cancelled",
			"NotifyRestaurantOfEnd")
	})
}

func TestCancelDuringCompensationStillCompensates(t *testing.T) {
	h := newHarness(t)
	h.after["ReleasePayment"] = 2 * time.Minute
	h.update(time.Minute, workflows.UpdateReject, workflows.RejectInput{Reason: "closed"})
	// The workflow is cancelled while ReleasePayment (started at ~1m) runs.
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 90*time.Second)
	res := h.run()
	h.wantCalls("RecordPlaced", "AuthorizePayment", "NotifyRestaurant", "Transition:order.rejected", "ReleasePayment", "NotifyCustomer:rejected")
	if got := h.at("ReleasePayment").Sub(start); got < 90*time.Second {
		t.Errorf("ReleasePayment completed at %s, before the cancellation at 1m30s: the test did not cancel during compensation", got)
	}
	if err := h.env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow error = %v; want the rejection to complete normally", err)
	}
	if res.Status != "rejected" || res.PaymentStatus != "voided" {
		t.Errorf("result = %+v, want rejected with payment voided", res)
	}
}

func TestWorkflowCancelledAfterCaptureRefunds(t *testing.T) {
	h := newHarness(t)
	h.update(time.Minute, workflows.UpdateAccept)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 10*time.Minute)
	h.run()
	if err := h.env.GetWorkflowError(); !temporal.IsCanceledError(err) {
		t.Errorf("workflow error = %v, want cancelled", err)
	}
	h.wantCalls("RecordPlaced", "AuthorizePayment", "NotifyRestaurant", "Transition:order.accepted", "CapturePayment",
		"NotifyCustomer:accepted", "Transition:order.cancelled", "ReleasePayment", "NotifyCustomer:cancelled", "NotifyRestaurantOfEnd")
}

// TestCompensationFindsTheOrderEnded: the workflow is cancelled while a step
// it then stops waiting for completes the order (the SDK abandons a local
// activity on cancellation). The compensation's first step finds the order
// ended: the order stays completed, its captured payment is not refunded
// and the customer is not told it was cancelled.
func TestCompensationFindsTheOrderEnded(t *testing.T) {
	h := newHarness(t)
	h.update(time.Minute, workflows.UpdateAccept)
	h.transition = func(in activities.TransitionInput) error {
		if in.EventType != events.OrderCancelled {
			return nil
		}
		return temporal.NewNonRetryableApplicationError("record order.cancelled: order is completed", activities.ErrTypeOrderEnded, nil, "completed")
	}
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 10*time.Minute)
	h.run()
	h.wantCalls("RecordPlaced", "AuthorizePayment", "NotifyRestaurant", "Transition:order.accepted", "CapturePayment",
		"NotifyCustomer:accepted", "Transition:order.cancelled")
	var res workflows.OrderResult
	if err := h.env.GetWorkflowResult(&res); err != nil && !temporal.IsCanceledError(err) {
		t.Fatalf("workflow error = %v", err)
	}
	var q workflows.StatusView
	if v, err := h.env.QueryWorkflow(workflows.QueryStatus); err != nil || v.Get(&q) != nil || q.Status != "completed" {
		t.Errorf("status query = %+v (%v); want completed", q, err)
	}
}

// TestProgressNoticeRefusedAfterTheEnd: NotifyCustomer refuses a notice
// of progress once the database holds the order as ended (a worker that
// had lost its workflow task, say, ran on after another ended it). The
// workflow then takes the database's final status, as a compensation that
// finds the order ended does: no payment released, no notice of an end it
// did not make.
func TestProgressNoticeRefusedAfterTheEnd(t *testing.T) {
	h := newHarness(t)
	h.update(time.Minute, workflows.UpdateAccept)
	ended := func(what string) error {
		return temporal.NewNonRetryableApplicationError(what+": order is cancelled", activities.ErrTypeOrderEnded, nil, "cancelled")
	}
	h.notifyCustomer = func(in activities.CustomerNotice) error {
		if in.Kind != activities.NoticeAccepted {
			t.Errorf("NotifyCustomer(%q) after the refused notice; want no other notice", in.Kind)
			return nil
		}
		return ended("notify customer: accepted")
	}
	h.transition = func(in activities.TransitionInput) error {
		if in.EventType == events.OrderAccepted {
			return nil
		}
		return ended("record " + in.EventType)
	}
	res := h.run()
	if err := h.env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow error = %v", err)
	}
	h.wantCalls("RecordPlaced", "AuthorizePayment", "NotifyRestaurant", "Transition:order.accepted", "CapturePayment",
		"NotifyCustomer:accepted", "Transition:order.failed")
	if res.Status != "cancelled" {
		t.Errorf("result status = %q; want the database's cancelled", res.Status)
	}
	// (The SDK's own "Activity error." line for the refused steps stays.)
	if log := h.log.String(); strings.Contains(log, `msg="order failed"`) || !strings.Contains(log, `msg="order had ended before the step"`) {
		t.Errorf("the workflow logged the order as failed, or not that it had ended:\n%s", log)
	}
}

// TestReasonLengthCountsCharacters: the API counts a reason's length in
// characters; so must the workflow, or a reason in Japanese that the API
// let through would be refused as too long.
func TestReasonLengthCountsCharacters(t *testing.T) {
	h := newHarness(t)
	reason := strings.Repeat("品切れ", 150) // 450 characters, 1350 bytes
	got := h.update(time.Minute, workflows.UpdateReject, workflows.RejectInput{Reason: reason})
	res := h.run()
	if got.rejected != nil || got.err != nil || got.status != "rejected" {
		t.Fatalf("reject with a 450-character reason: %+v", got)
	}
	if res.Reason != reason {
		t.Errorf("reason = %q", res.Reason)
	}
}

func TestLateDeliveryEscalatesWithoutCancelling(t *testing.T) {
	h := newHarness(t)
	h.update(time.Minute, workflows.UpdateAccept)
	h.update(2*time.Hour, workflows.UpdateDelivered)
	res := h.run()
	if res.Status != "completed" {
		t.Errorf("status = %s, want completed", res.Status)
	}
	h.wantCalls("RecordPlaced", "AuthorizePayment", "NotifyRestaurant", "Transition:order.accepted", "CapturePayment",
		"NotifyCustomer:accepted", "Transition:order.delivery_escalated", "NotifyCustomer:delivery_late", "Transition:order.completed")
}

func TestStatusQuery(t *testing.T) {
	h := newHarness(t)
	var view workflows.StatusView
	var qerr error
	h.env.RegisterDelayedCallback(func() {
		v, err := h.env.QueryWorkflow(workflows.QueryStatus)
		if qerr = err; err == nil {
			qerr = v.Get(&view)
		}
	}, time.Minute)
	h.update(2*time.Minute, workflows.UpdateReject, workflows.RejectInput{})
	h.run()
	if qerr != nil {
		t.Fatalf("query: %v", qerr)
	}
	if view.Status != "awaiting_acceptance" || view.PaymentStatus != "authorized" || !view.AcceptBy.Equal(start.Add(10*time.Minute)) {
		t.Errorf("status view = %+v, want awaiting_acceptance, authorized, accept_by %s", view, start.Add(10*time.Minute))
	}
}

// TestDecisionCancelsTheAcceptTimer: once the restaurant has answered, the
// deadline's timer is cancelled instead of firing, a workflow task for
// nothing, during the wait for delivery; a deadline that passes fires.
func TestDecisionCancelsTheAcceptTimer(t *testing.T) {
	tests := []struct {
		name                  string
		setup                 func(h *harness)
		wantFired, wantCancel int
	}{
		{name: "accepted", setup: func(h *harness) {
			h.update(time.Minute, workflows.UpdateAccept)
			h.update(30*time.Minute, workflows.UpdateDelivered)
		}, wantCancel: 1},
		{name: "rejected", setup: func(h *harness) {
			h.update(time.Minute, workflows.UpdateReject, workflows.RejectInput{})
		}, wantCancel: 1},
		{name: "no answer", setup: func(h *harness) {}, wantFired: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			var fired, cancelled int
			h.env.SetOnTimerFiredListener(func(string) { fired++ })
			h.env.SetOnTimerCanceledListener(func(string) { cancelled++ })
			tt.setup(h)
			h.run()
			if err := h.env.GetWorkflowError(); err != nil {
				t.Fatalf("workflow error: %v", err)
			}
			if fired != tt.wantFired || cancelled != tt.wantCancel {
				t.Errorf("timers fired %d, cancelled %d; want %d fired, %d cancelled", fired, cancelled, tt.wantFired, tt.wantCancel)
			}
		})
	}
}

// TestUnconfirmedRecordingIsRecordedBeforeTheEnd: when the workflow stops
// waiting for RecordPlaced (its attempts failed for 5 minutes, or the
// workflow was cancelled meanwhile), an abandoned attempt may still commit
// the order. The compensation records the order itself first (a regular
// activity, retried until done), so that its final status lands on it.
func TestUnconfirmedRecordingIsRecordedBeforeTheEnd(t *testing.T) {
	tests := []struct {
		name       string
		cancelAt   time.Duration // 0: not cancelled
		invalid    bool          // the recording fails as invalid input, for good
		wantStatus string
		wantCalls  []string
		wantRecord int // RecordPlaced runs as the compensation's activity
	}{
		{name: "recording fails", wantStatus: "failed", wantRecord: 1,
			wantCalls: []string{"RecordPlaced", "Transition:order.failed", "ReleasePayment", "NotifyCustomer:failed", "NotifyRestaurantOfEnd"}},
		{name: "cancelled while recording", cancelAt: time.Minute, wantStatus: "cancelled", wantRecord: 1,
			wantCalls: []string{"RecordPlaced", "Transition:order.cancelled", "ReleasePayment", "NotifyCustomer:cancelled", "NotifyRestaurantOfEnd"}},
		// Invalid input never records: the compensation does not try.
		{name: "recording invalid", invalid: true, wantStatus: "failed", wantRecord: 0,
			wantCalls: []string{"Transition:order.failed", "ReleasePayment", "NotifyCustomer:failed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			var regular int
			h.recordPlaced = func(ctx context.Context) error {
				local := activity.GetInfo(ctx).IsLocalActivity
				if !local {
					regular++
				}
				switch {
				case tt.invalid:
					return temporal.NewNonRetryableApplicationError("order has no items", activities.ErrTypeInvalid, nil)
				case local:
					return errors.New("database unavailable")
				}
				return nil
			}
			if tt.cancelAt > 0 {
				h.env.RegisterDelayedCallback(h.env.CancelWorkflow, tt.cancelAt)
			}
			h.run()
			h.wantCalls(tt.wantCalls...)
			if regular != tt.wantRecord {
				t.Errorf("RecordPlaced ran %d times as the compensation's activity, want %d", regular, tt.wantRecord)
			}
			var q workflows.StatusView
			if v, err := h.env.QueryWorkflow(workflows.QueryStatus); err != nil || v.Get(&q) != nil || q.Status != tt.wantStatus {
				t.Errorf("status query = %+v (%v); want %s", q, err, tt.wantStatus)
			}
		})
	}
}

// TestDecisionsAnswerWithTheirReason: a reject or a cancel answers with
// the reason it recorded, the default when it gave none, so that a caller
// whose retry carries another reason can tell.
func TestDecisionsAnswerWithTheirReason(t *testing.T) {
	for _, tt := range []struct {
		update     string
		arg        any
		wantStatus string
		wantReason string
	}{
		{workflows.UpdateReject, workflows.RejectInput{Reason: "out of dough"}, "rejected", "out of dough"},
		{workflows.UpdateCancel, workflows.CancelInput{}, "cancelled", "cancelled by customer"},
		{workflows.UpdateAccept, nil, "accepted", ""},
	} {
		t.Run(tt.update, func(t *testing.T) {
			h := newHarness(t)
			var got *outcome
			if tt.arg == nil {
				got = h.update(2*time.Minute, tt.update)
			} else {
				got = h.update(2*time.Minute, tt.update, tt.arg)
			}
			h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 3*time.Hour)
			h.run()
			if got.err != nil || got.rejected != nil || got.status != tt.wantStatus || got.reason != tt.wantReason {
				t.Errorf("outcome = %+v, want %s with reason %q", got, tt.wantStatus, tt.wantReason)
			}
		})
	}
}

// TestCancelledWhileAuthorizingADeclinedCard: the workflow is cancelled
// while the authorization runs, and the gateway declines it meanwhile. The
// release finds the decline; the customer is told of the cancellation,
// which is what ended the order, not of a decline the workflow never
// acted on.
func TestCancelledWhileAuthorizingADeclinedCard(t *testing.T) {
	h := newHarness(t)
	h.after["AuthorizePayment"] = 2 * time.Minute
	h.released = "declined"
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, time.Minute)
	h.run()
	// The abandoned authorization ends in the background, at no fixed
	// place among the calls: it is left out.
	calls := slices.DeleteFunc(slices.Clone(h.calls), func(c string) bool { return c == "AuthorizePayment" })
	want := []string{"RecordPlaced", "Transition:order.cancelled", "ReleasePayment", "NotifyCustomer:cancelled", "NotifyRestaurantOfEnd"}
	if !slices.Equal(calls, want) {
		t.Errorf("activity calls but the authorization:\n got %v\nwant %v", calls, want)
	}
	var q workflows.StatusView
	if v, err := h.env.QueryWorkflow(workflows.QueryStatus); err != nil || v.Get(&q) != nil || q.Status != "cancelled" || q.PaymentStatus != "declined" {
		t.Errorf("status query = %+v (%v); want cancelled, payment declined", q, err)
	}
}

// TestEndingDecisionsAnswerOnceTheEndIsRecorded: a reject or a cancel
// answers after the final status is written, so that the caller's next
// read (the order, the restaurant's queue, the events) shows it.
func TestEndingDecisionsAnswerOnceTheEndIsRecorded(t *testing.T) {
	for _, tt := range []struct {
		update string
		arg    any
		event  string
	}{
		{workflows.UpdateReject, workflows.RejectInput{Reason: "closed"}, events.OrderRejected},
		{workflows.UpdateCancel, workflows.CancelInput{}, events.OrderCancelled},
	} {
		t.Run(tt.update, func(t *testing.T) {
			h := newHarness(t)
			h.after["Transition"] = time.Minute
			var answered time.Time
			h.env.RegisterDelayedCallback(func() {
				h.env.UpdateWorkflow(tt.update, "decision", &testsuite.TestUpdateCallback{
					OnAccept: func() {},
					OnReject: func(err error) { t.Errorf("%s rejected: %v", tt.update, err) },
					OnComplete: func(_ any, err error) {
						if err != nil {
							t.Errorf("%s failed: %v", tt.update, err)
						}
						answered = h.env.Now()
					},
				}, tt.arg)
			}, 2*time.Minute)
			h.run()
			// The mock runs at the end of its delay: when the write is done.
			recorded := h.at("Transition:" + tt.event)
			if recorded.Sub(start) != 3*time.Minute {
				t.Fatalf("the final status was written at %s, want 3m0s (decision at 2m, a 1m write)", recorded.Sub(start))
			}
			if answered.IsZero() || answered.Before(recorded) {
				t.Errorf("%s answered at %s, before its final status was recorded at %s", tt.update, answered.Sub(start), recorded.Sub(start))
			}
		})
	}
}

// TestDeliveredAnswersAnErrorWhenTheOrderFailed: the delivered Update that
// waited for a capture which then failed answers an error naming the
// order's status, not a success with another status.
func TestDeliveredAnswersAnErrorWhenTheOrderFailed(t *testing.T) {
	h := newHarness(t)
	h.update(time.Minute, workflows.UpdateAccept)
	// The capture, which runs right after the acceptance, fails the order
	// after a while; the delivered Update arrives meanwhile.
	h.after["CapturePayment"] = 2 * time.Minute
	delivered := h.update(2*time.Minute, workflows.UpdateDelivered)
	h.captureErr = temporal.NewNonRetryableApplicationError("card expired", activities.ErrTypeInvalid, nil)
	res := h.run()
	if res.Status != "failed" {
		t.Fatalf("result = %+v, want failed", res)
	}
	if delivered.rejected != nil || delivered.err == nil || !strings.Contains(delivered.err.Error(), "order is failed") {
		t.Errorf("delivered update = %+v, want an error saying the order is failed", delivered)
	}
}

// TestEndingDecisionAnswersItsOutcomeThoughTheWorkflowIsCancelled: a
// reject waiting for its final status to be written answers that outcome
// even when the workflow is cancelled meanwhile: the compensation goes on,
// and the order ends rejected.
func TestEndingDecisionAnswersItsOutcomeThoughTheWorkflowIsCancelled(t *testing.T) {
	h := newHarness(t)
	h.after["Transition"] = time.Minute
	reject := h.update(2*time.Minute, workflows.UpdateReject, workflows.RejectInput{Reason: "closed"})
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 150*time.Second)
	h.run()
	if reject.rejected != nil || reject.err != nil || reject.status != "rejected" {
		t.Errorf("reject update = %+v, want status rejected", reject)
	}
	var q workflows.StatusView
	if v, err := h.env.QueryWorkflow(workflows.QueryStatus); err != nil || v.Get(&q) != nil || q.Status != "rejected" {
		t.Errorf("status query = %+v (%v); want rejected", q, err)
	}
}

// TestAcceptanceLostInACrashIsCarriedThrough: a workflow task accepted the
// order and ran the acceptance's local activities (recorded, captured,
// told the customer), then was lost in a crash, so the history holds no
// acceptance. The reject, cancel or time-out that comes next must not
// undo it: its record step asks the database to refuse an accepted order
// (UnlessAccepted), the database does, and the workflow carries the
// acceptance through (its steps are idempotent) instead of refunding; the
// decision is told it did not take effect. A workflow cancellation (an
// operator's) is not such an end: it may come after an acceptance.
func TestAcceptanceLostInACrashIsCarriedThrough(t *testing.T) {
	tests := []struct {
		name     string
		decide   func(h *harness) *outcome
		end      string
		refused  bool
		wantLast []string
	}{
		{name: "reject", end: events.OrderRejected, refused: true,
			decide: func(h *harness) *outcome {
				return h.update(time.Minute, workflows.UpdateReject, workflows.RejectInput{Reason: "kitchen closed"})
			}},
		{name: "cancel", end: events.OrderCancelled, refused: true,
			decide: func(h *harness) *outcome {
				return h.update(time.Minute, workflows.UpdateCancel, workflows.CancelInput{Reason: "changed my mind"})
			}},
		{name: "time-out", end: events.OrderTimedOut, refused: true, decide: func(*harness) *outcome { return nil }},
		{name: "workflow cancelled", end: events.OrderCancelled,
			decide: func(h *harness) *outcome {
				h.env.RegisterDelayedCallback(h.env.CancelWorkflow, time.Minute)
				return nil
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			var unless []bool
			h.transition = func(in activities.TransitionInput) error {
				if in.EventType != tt.end {
					return nil
				}
				unless = append(unless, in.UnlessAccepted)
				if in.UnlessAccepted {
					return temporal.NewNonRetryableApplicationError("record "+in.EventType+": order is accepted already", activities.ErrTypeOrderAccepted, nil)
				}
				return nil
			}
			decision := tt.decide(h)
			delivered := h.update(20*time.Minute, workflows.UpdateDelivered)
			res := h.run()
			if !slices.Equal(unless, []bool{tt.refused}) {
				t.Fatalf("the %s step was recorded with UnlessAccepted %v; want [%v]", tt.end, unless, tt.refused)
			}
			if !tt.refused {
				h.wantCalls("RecordPlaced", "AuthorizePayment", "NotifyRestaurant", "Transition:"+tt.end, "ReleasePayment", "NotifyCustomer:cancelled",
					"NotifyRestaurantOfEnd")
				return
			}
			h.wantCalls("RecordPlaced", "AuthorizePayment", "NotifyRestaurant", "Transition:"+tt.end,
				"Transition:order.accepted", "CapturePayment", "NotifyCustomer:accepted", "Transition:order.completed")
			if err := h.env.GetWorkflowError(); err != nil || res.Status != "completed" {
				t.Errorf("workflow ended %+v, %v; want completed", res, err)
			}
			if decision != nil && (!decision.done || decision.err == nil || decision.status != "accepted") {
				t.Errorf("the %s was answered %+v; want an error with the order accepted", tt.name, decision)
			}
			if !delivered.done || delivered.err != nil || delivered.status != "completed" {
				t.Errorf("delivered was answered %+v; want completed", delivered)
			}
		})
	}
}

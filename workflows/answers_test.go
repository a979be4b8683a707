package workflows_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/workflows"
)

// TestCustomerCancelAnswersItsOutcomeThoughTheWorkflowIsCancelled: the
// customer cancels while the payment is being authorized (the cancel is
// admitted and waits for the workflow to act on it); an operator then
// cancels the workflow. The order ends cancelled, its end recorded, the
// hold released: the customer's cancel took effect and must be answered
// so, as a reject waiting for its end is
// (TestEndingDecisionAnswersItsOutcomeThoughTheWorkflowIsCancelled).
func TestCustomerCancelAnswersItsOutcomeThoughTheWorkflowIsCancelled(t *testing.T) {
	h := newHarness(t)
	h.after["AuthorizePayment"] = 3 * time.Minute
	c := h.update(time.Minute, workflows.UpdateCancel, workflows.CancelInput{Reason: "changed my mind"})
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 2*time.Minute)
	h.run()
	var q workflows.StatusView
	if v, err := h.env.QueryWorkflow(workflows.QueryStatus); err != nil || v.Get(&q) != nil || q.Status != "cancelled" {
		t.Fatalf("status query = %+v (%v); want cancelled", q, err)
	}
	if !h.has("Transition:" + events.OrderCancelled) {
		t.Fatalf("no cancellation recorded: %v", h.calls)
	}
	// With the request's own reason: the API answers a reason other than
	// the request's as a 409 "decided already, for another reason".
	if c.rejected != nil || c.err != nil || c.status != "cancelled" || c.reason != "changed my mind" {
		t.Errorf("the customer's cancel was answered %+v (err %v); want status cancelled, the outcome the order came to, with its own reason", c, c.err)
	}
}

// TestSecondCompensationAnswersOnceItsEndIsRecorded: a reject finds the
// order accepted already (the acceptance's task was lost in a crash), so
// the workflow carries the acceptance through; the capture then fails and
// the order is compensated a second time, as failed. The delivered Update
// waiting meanwhile must be answered once the failed end is recorded, as
// every ending answer is (TestEndingDecisionsAnswerOnceTheEndIsRecorded),
// not before it is written.
func TestSecondCompensationAnswersOnceItsEndIsRecorded(t *testing.T) {
	h := newHarness(t)
	h.after["Transition"] = time.Minute
	h.after["CapturePayment"] = 2 * time.Minute
	h.captureErr = temporal.NewNonRetryableApplicationError("card expired", activities.ErrTypeInvalid, nil)
	h.transition = func(in activities.TransitionInput) error {
		if in.UnlessAccepted {
			return temporal.NewNonRetryableApplicationError("record "+in.EventType+": order is accepted already", activities.ErrTypeOrderAccepted, nil)
		}
		return nil
	}
	h.update(time.Minute, workflows.UpdateReject, workflows.RejectInput{Reason: "kitchen closed"})
	var answered time.Time
	h.env.RegisterDelayedCallback(func() {
		h.env.UpdateWorkflow(workflows.UpdateDelivered, "delivered", &testsuite.TestUpdateCallback{
			OnAccept:   func() {},
			OnReject:   func(err error) { t.Errorf("delivered rejected: %v", err) },
			OnComplete: func(any, error) { answered = h.env.Now() },
		})
	}, 4*time.Minute)
	res := h.run()
	if res.Status != "failed" {
		t.Fatalf("result %+v, want failed; calls %v", res, h.calls)
	}
	recorded := h.at("Transition:" + events.OrderFailed)
	if answered.IsZero() || answered.Before(recorded) {
		t.Errorf("delivered answered at %s, before the failed end was recorded at %s (calls %v)", answered.Sub(start), recorded.Sub(start), h.calls)
	}
}

// TestWorkflowCancellationIsNotTheCustomersWhateverTheReason: what the
// compensation asks of the database depends on who cancelled, not on the
// reason's text. A customer's cancel whose reason reads like the
// workflow's own ("order workflow cancelled") waits while the payment is
// authorized; an operator cancels the workflow meanwhile. The end recorded
// is the workflow's cancellation, which may come after an acceptance
// (TestAcceptanceLostInACrashIsCarriedThrough), so it is recorded without
// UnlessAccepted.
func TestWorkflowCancellationIsNotTheCustomersWhateverTheReason(t *testing.T) {
	h := newHarness(t)
	h.after["AuthorizePayment"] = 3 * time.Minute
	var unless []bool
	h.transition = func(in activities.TransitionInput) error {
		if in.EventType == events.OrderCancelled {
			unless = append(unless, in.UnlessAccepted)
		}
		return nil
	}
	h.update(time.Minute, workflows.UpdateCancel, workflows.CancelInput{Reason: "order workflow cancelled"})
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 2*time.Minute)
	h.run()
	if !slices.Equal(unless, []bool{false}) {
		t.Fatalf("the cancellation was recorded with UnlessAccepted %v; want [false], the workflow's own", unless)
	}
}

// TestWorkflowCancelledAfterACustomerCancelCarriedThrough: a customer's
// cancel finds the order accepted already (acceptance lost in a crash), so
// the workflow carries the acceptance through. While it waits for delivery
// an operator cancels the workflow: that is the workflow's own
// cancellation, after an acceptance, and must be recorded without
// UnlessAccepted (as the "workflow cancelled" case of
// TestAcceptanceLostInACrashIsCarriedThrough is), releasing the captured
// payment and ending the order cancelled.
func TestWorkflowCancelledAfterACustomerCancelCarriedThrough(t *testing.T) {
	h := newHarness(t)
	var unless []bool
	h.transition = func(in activities.TransitionInput) error {
		if in.EventType != events.OrderCancelled {
			return nil
		}
		unless = append(unless, in.UnlessAccepted)
		if in.UnlessAccepted {
			return temporal.NewNonRetryableApplicationError("record "+in.EventType+": order is accepted already", activities.ErrTypeOrderAccepted, nil)
		}
		return nil
	}
	h.update(time.Minute, workflows.UpdateCancel, workflows.CancelInput{Reason: "changed my mind"})
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 20*time.Minute)
	h.run()
	var q workflows.StatusView
	if v, err := h.env.QueryWorkflow(workflows.QueryStatus); err != nil || v.Get(&q) != nil {
		t.Fatalf("query: %v", err)
	}
	t.Logf("calls %v; final status %q payment %q; workflow error %v", h.calls, q.Status, q.PaymentStatus, h.env.GetWorkflowError())
	if !slices.Equal(unless, []bool{true, false}) {
		t.Errorf("the cancellations were recorded with UnlessAccepted %v; want [true false] (the customer's, then the workflow's own)", unless)
	}
	if q.Status != "cancelled" || !h.has("ReleasePayment") {
		t.Errorf("order ended %q (payment %q, ReleasePayment called: %v); want cancelled with the captured payment released", q.Status, q.PaymentStatus, h.has("ReleasePayment"))
	}
}

// TestAcceptWaitingWhenTheWorkflowIsCancelled: the acceptance's record is
// slow and the workflow is cancelled meanwhile. The order ends cancelled
// (the cancellation's compensation), and the accept is answered that it
// did not take effect, naming that status: not a bare cancellation error,
// and never success.
func TestAcceptWaitingWhenTheWorkflowIsCancelled(t *testing.T) {
	h := newHarness(t)
	h.after["Transition"] = 5 * time.Minute
	acc := h.update(time.Minute, workflows.UpdateAccept)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 2*time.Minute)
	h.run()
	if !acc.done || acc.err == nil || temporal.IsCanceledError(acc.err) || !strings.Contains(acc.err.Error(), "order is cancelled") {
		t.Errorf("accept answered %+v (err %v); want an error saying the order is cancelled", acc, acc.err)
	}
}

func (h *harness) has(call string) bool {
	for _, c := range h.calls {
		if c == call {
			return true
		}
	}
	return false
}

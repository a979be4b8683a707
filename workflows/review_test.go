package workflows_test

import (
	"slices"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/workflows"
)

// TestReviewWorkflowCancelAfterCustomerCancelCarriedThrough: a customer's
// cancel finds the order accepted already (acceptance lost in a crash), so
// the workflow carries the acceptance through. While it waits for delivery
// an operator cancels the workflow: that is the workflow's own
// cancellation, after an acceptance, and must be recorded without
// UnlessAccepted (as the "workflow cancelled" case of
// TestAcceptanceLostInACrashIsCarriedThrough is), releasing the captured
// payment and ending the order cancelled.
func TestReviewWorkflowCancelAfterCustomerCancelCarriedThrough(t *testing.T) {
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

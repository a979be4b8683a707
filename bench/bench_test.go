package bench_test

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/bench"
	"github.com/orderflow/orderflow/workflows"
)

// TestNoopActivitiesMirrorTheRealOnes: the same-shape baseline is only the
// same shape if every activity the order workflow can call resolves, by
// name and signature, to a no-op.
func TestNoopActivitiesMirrorTheRealOnes(t *testing.T) {
	real := reflect.TypeFor[*activities.Activities]()
	noop := reflect.TypeFor[*bench.NoopActivities]()
	var missing []string
	for i := range real.NumMethod() {
		m := real.Method(i)
		n, ok := noop.MethodByName(m.Name)
		if !ok {
			missing = append(missing, m.Name)
			continue
		}
		// Compare without the receiver.
		if !sameSignature(m.Type, n.Type) {
			t.Errorf("%s: noop is %v; real is %v", m.Name, n.Type, m.Type)
		}
	}
	if len(missing) > 0 {
		t.Errorf("NoopActivities lacks %v", missing)
	}
}

func sameSignature(a, b reflect.Type) bool {
	if a.NumIn() != b.NumIn() || a.NumOut() != b.NumOut() {
		return false
	}
	for i := 1; i < a.NumIn(); i++ {
		if a.In(i) != b.In(i) {
			return false
		}
	}
	for i := range a.NumOut() {
		if a.Out(i) != b.Out(i) {
			return false
		}
	}
	return true
}

// TestBaselinesComplete runs both baseline workflows in the SDK's test
// environment the way the bench drives them.
func TestBaselinesComplete(t *testing.T) {
	in := workflows.OrderInput{AcceptTimeout: 10 * time.Minute, DeliverySLA: 45 * time.Minute}
	in.Order.OrderID = "bench-test"
	in.Order.AcceptBy = time.Date(2099, 1, 1, 0, 10, 0, 0, time.UTC)
	in.Order.PlacedAt = time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)

	t.Run("same-shape", func(t *testing.T) {
		var suite testsuite.WorkflowTestSuite
		env := suite.NewTestWorkflowEnvironment()
		env.SetStartTime(in.Order.PlacedAt)
		env.RegisterWorkflowWithOptions(workflows.Order, workflow.RegisterOptions{Name: workflows.OrderWorkflowName})
		env.RegisterActivity(&bench.NoopActivities{})
		var statuses []string
		cb := func(name string) *testsuite.TestUpdateCallback {
			return &testsuite.TestUpdateCallback{
				OnAccept: func() {},
				OnReject: func(err error) { t.Errorf("%s rejected: %v", name, err) },
				OnComplete: func(v any, err error) {
					if r, ok := v.(workflows.DecisionResult); ok {
						statuses = append(statuses, r.Status)
					}
				},
			}
		}
		env.RegisterDelayedCallback(func() { env.UpdateWorkflow(workflows.UpdateAccept, "a", cb("accept")) }, time.Second)
		env.RegisterDelayedCallback(func() { env.UpdateWorkflow(workflows.UpdateDelivered, "d", cb("delivered")) }, 2*time.Second)
		env.ExecuteWorkflow(workflows.OrderWorkflowName, in)
		var res workflows.OrderResult
		if err := env.GetWorkflowResult(&res); err != nil || res.Status != "completed" {
			t.Fatalf("result %+v, %v; want completed", res, err)
		}
		if !slices.Equal(statuses, []string{"accepted", "completed"}) {
			t.Errorf("update answers %v; want [accepted completed]", statuses)
		}
	})
	t.Run("naive", func(t *testing.T) {
		var suite testsuite.WorkflowTestSuite
		env := suite.NewTestWorkflowEnvironment()
		env.SetStartTime(in.Order.PlacedAt)
		env.RegisterWorkflowWithOptions(bench.NaiveOrder, workflow.RegisterOptions{Name: bench.NaiveWorkflowName})
		env.RegisterActivity(&bench.NoopActivities{})
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(bench.SignalAccept, nil) }, time.Second)
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(bench.SignalDelivered, nil) }, 2*time.Second)
		env.ExecuteWorkflow(bench.NaiveWorkflowName, in)
		var res workflows.OrderResult
		if err := env.GetWorkflowResult(&res); err != nil || res.Status != "completed" {
			t.Fatalf("result %+v, %v; want completed", res, err)
		}
	})
}

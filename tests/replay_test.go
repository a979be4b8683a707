package tests_test

import (
	"path/filepath"
	"slices"
	"testing"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/orderflow/orderflow/workflows"
)

// recordedPaths are the order paths whose histories must be on file: every
// way an order can end. TestOrderPaths records them (`make histories`).
var recordedPaths = []string{
	"accepted_delivered", "rejected", "timed_out", "cancelled", "payment_declined", "transient_payment",
	"workflow_cancelled", "delivery_escalated", "failed", "authorized_past_accept_by",
}

// TestReplayRecordedHistories replays the histories recorded from real runs
// of each order path against today's workflow code. A change to the
// workflow that would break the orders running when it is deployed — a
// reordered, added or removed step without workflow.GetVersion — fails
// here with a nondeterminism error.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(historyDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, f := range files {
		found = append(found, historyPath(f))
	}
	for _, p := range recordedPaths {
		if !slices.Contains(found, p) {
			t.Errorf("no recorded history for path %q in %s: run `make histories`", p, historyDir)
		}
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(workflows.Order, workflow.RegisterOptions{Name: workflows.OrderWorkflowName})
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Errorf("replay %s: %v", f, err)
			}
		})
	}
}

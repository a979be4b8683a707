package workerstop_test

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/tests/stacktest"
	"github.com/orderflow/orderflow/worker"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

// gaveUpWithin bounds the wait for the SDK to give up: its two minutes of
// retries, then its backoff between polls (at most ten seconds), and
// slack for a loaded machine.
const gaveUpWithin = 4 * time.Minute

// TestRunReturnsWhenTheSDKStopsTheWorker: a worker whose namespace is
// deleted under it is stopped by the SDK; Run returns that, so that
// `orderflow worker` exits for its supervisor to restart or report, rather
// than running on with nothing polling.
func TestRunReturnsWhenTheSDKStopsTheWorker(t *testing.T) {
	env := stacktest.Start(t)
	ctx := t.Context()
	const ns = "doomed"
	if _, err := env.Temporal.WorkflowService().RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace: ns, WorkflowExecutionRetentionPeriod: durationpb.New(24 * time.Hour),
	}); err != nil {
		t.Fatalf("register namespace %s: %v", ns, err)
	}
	c, err := client.NewClientFromExisting(env.Temporal, client.Options{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)

	logger := slog.New(slog.DiscardHandler)
	done := make(chan error, 1)
	runCtx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// The frontend knows a new namespace once its cache is refreshed; the
	// worker's start checks it.
	for deadline := time.Now().Add(time.Minute); ; {
		go func() {
			done <- worker.Run(runCtx, c, "orderflow-workerstop", &activities.Activities{Logger: logger}, logger)
		}()
		select {
		case err := <-done:
			if time.Now().After(deadline) {
				t.Fatalf("the worker did not start on namespace %s: %v", ns, err)
			}
			time.Sleep(time.Second)
			continue
		case <-time.After(5 * time.Second):
		}
		break
	}

	if _, err := env.Temporal.OperatorService().DeleteNamespace(ctx, &operatorservice.DeleteNamespaceRequest{Namespace: ns}); err != nil {
		t.Fatalf("delete namespace %s: %v", ns, err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), ns) {
			t.Fatalf("Run returned %v; want the SDK's refusal of namespace %s", err, ns)
		}
		t.Logf("Run returned: %v", err)
	case <-time.After(gaveUpWithin):
		t.Fatalf("Run still running %s after its namespace was deleted", gaveUpWithin)
	}
}

package workerstop_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/tests/stacktest"
	"github.com/orderflow/orderflow/worker"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

// gaveUpWithin bounds the wait for the SDK to give up: it retries a
// refused poll until two minutes have passed since its last successful one
// (an empty long poll, up to a minute after the deletion, counts), with a
// backoff between polls of up to a minute; then slack for a loaded machine
// (and for make race).
const gaveUpWithin = 5 * time.Minute

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
	const queue = "orderflow-workerstop"
	done := make(chan error, 1)
	runCtx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	run := func() {
		go func() { done <- worker.Run(runCtx, c, queue, &activities.Activities{Logger: logger}, logger, nil) }()
	}
	// The frontend knows a new namespace once its cache is refreshed, and
	// the worker's start checks it: start again until the server sees the
	// worker's pollers, so that no start error is still on its way.
	run()
	for deadline := time.Now().Add(time.Minute); !polling(t, c, queue); {
		select {
		case err := <-done:
			t.Logf("start on the new namespace: %v; again", err)
			run()
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no worker polls %s in namespace %s after a minute", queue, ns)
		}
	}

	if _, err := env.Temporal.OperatorService().DeleteNamespace(ctx, &operatorservice.DeleteNamespaceRequest{Namespace: ns}); err != nil {
		t.Fatalf("delete namespace %s: %v", ns, err)
	}
	select {
	case err := <-done:
		var notFound *serviceerror.NamespaceNotFound
		if !errors.Is(err, worker.ErrStoppedBySDK) || !errors.As(err, &notFound) {
			t.Fatalf("Run returned %v; want ErrStoppedBySDK, for namespace %s not found", err, ns)
		}
		t.Logf("Run returned: %v", err)
	case <-time.After(gaveUpWithin):
		t.Fatalf("Run still running %s after its namespace was deleted", gaveUpWithin)
	}
}

// polling reports whether a worker polls queue's workflow tasks.
func polling(t *testing.T, c client.Client, queue string) bool {
	t.Helper()
	resp, err := c.DescribeTaskQueue(t.Context(), queue, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
	if err != nil {
		t.Logf("describe task queue %s: %v", queue, err)
		return false
	}
	return len(resp.GetPollers()) > 0
}

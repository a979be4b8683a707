// Package worker runs the order context's Temporal worker: it registers the
// order workflow and its activities and polls the task queue.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/workflows"
)

// Register registers the order workflow under its stable name and every
// activity method of acts on r.
func Register(r sdkworker.Registry, acts *activities.Activities) {
	r.RegisterWorkflowWithOptions(workflows.Order, workflow.RegisterOptions{Name: workflows.OrderWorkflowName})
	r.RegisterActivity(acts)
}

// Options are the worker's options. The benchmark's baselines run with the
// same, so that a difference in throughput is the workflow's, not the
// worker's.
func Options() sdkworker.Options {
	return sdkworker.Options{
		// On shutdown the activities running are given this long to
		// finish (each is one short transaction or call) before their
		// context is cancelled; the SDK's default is not to wait at all.
		WorkerStopTimeout: stopTimeout,
	}
}

// stopTimeout bounds how long a stopping worker waits for its activities.
const stopTimeout = 10 * time.Second

// ErrStoppedBySDK is what Run returns, with the SDK's reason, when the SDK
// stopped the worker itself.
var ErrStoppedBySDK = errors.New("worker stopped by the SDK")

// Run polls taskQueue until ctx is done, then stops the worker, letting
// running activities finish within the SDK's stop timeout. When the SDK
// stops the worker itself (its polls refused for good: the namespace
// deleted, the client's version no longer supported), Run returns
// ErrStoppedBySDK and the reason at once, while the SDK stops the worker,
// so that the process exits for its supervisor to see, instead of running
// on with nothing polling. started, unless nil, is called once the worker
// polls (the SDK's Start returned), and must return at once; a worker that
// cannot start returns the error without calling it.
func Run(ctx context.Context, c client.Client, taskQueue string, acts *activities.Activities, logger *slog.Logger, started func()) error {
	opts := Options()
	fatal := make(chan error, 1)
	opts.OnFatalError = func(err error) { fatal <- err } // called once; the SDK stops the worker after it
	w := sdkworker.New(c, taskQueue, opts)
	Register(w, acts)
	if err := w.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	logger.Info("worker polling", "task_queue", taskQueue)
	if started != nil {
		started()
	}
	stopped := func(err error) error {
		return fmt.Errorf("%w (task queue %s): %w", ErrStoppedBySDK, taskQueue, err)
	}
	select {
	case <-ctx.Done():
		// The SDK stops the worker itself after a fatal error, and a
		// second Stop at the same time is not safe: look once more. (A
		// fatal error in the instant between this look and Stop still
		// races the SDK's own Stop, as it does in the SDK's worker.Run:
		// it takes a shutdown at the very moment the SDK gives up after
		// two minutes of refused polls.)
		select {
		case err := <-fatal:
			return stopped(err)
		default:
		}
		w.Stop()
		logger.Info("worker stopped", "task_queue", taskQueue)
		return nil
	case err := <-fatal:
		return stopped(err)
	}
}

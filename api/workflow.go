package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/workflows"
)

// Bounds on calls to Temporal. A query waits for a worker, so it is kept
// short and falls back to the database; an update waits for the workflow's
// handler (and its activities) to finish.
const (
	temporalTimeout = 10 * time.Second
	queryTimeout    = 2 * time.Second
	updateTimeout   = 30 * time.Second
	// A call still waiting after probeAfter has the frontend's health
	// checked every probeEvery (each check given as long), and is cut short
	// after probeFailures checks in a row fail.
	probeAfter    = 2 * time.Second
	probeEvery    = 2 * time.Second
	probeFailures = 2
)

// errTemporalUnreachable is the cause of a call cut short because the
// frontend stopped answering its health checks.
var errTemporalUnreachable = errors.New("the Temporal frontend does not answer its health checks")

// temporalCall bounds one call to Temporal by timeout, and cuts it short
// (with errTemporalUnreachable as the context's cause) when the frontend
// stops answering while the call waits. The SDK retries a call to a server
// it cannot reach until the call's deadline, so without this a decision
// sent during an outage hangs its whole 30 seconds before its 503. A
// frontend that answers keeps the call waiting as long as it needs, for a
// worker that is slow or away say. A fast call costs a timer, no probe.
func (s *Server) temporalCall(ctx context.Context, timeout time.Duration) (context.Context, func()) {
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	ctx, cancel := context.WithCancelCause(ctx)
	stop := make(chan struct{})
	probes := time.AfterFunc(probeAfter, func() {
		failed := 0
		for {
			pctx, pcancel := context.WithTimeout(ctx, probeEvery)
			_, err := s.temporal.CheckHealth(pctx, &client.CheckHealthRequest{})
			pcancel()
			if ctx.Err() != nil {
				return
			}
			failed++
			if err == nil {
				failed = 0
			} else if failed >= probeFailures {
				cancel(fmt.Errorf("%w: %w", errTemporalUnreachable, err))
				return
			}
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-time.After(probeEvery):
			}
		}
	})
	return ctx, func() {
		probes.Stop()
		close(stop)
		cancel(nil)
		cancelTimeout()
	}
}

// callError is err, or the reason its call was cut short by temporalCall.
func callError(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, errTemporalUnreachable) {
		return cause
	}
	return err
}

// Memo keys of an order workflow. request_hash makes a retried POST
// comparable with the first; the rest let the API answer for an order
// whose row the workflow has not written yet.
const (
	memoRequestHash  = "request_hash"
	memoCustomerID   = "customer_id"
	memoRestaurantID = "restaurant_id"
	memoTotalCents   = "total_cents"
	memoPlacedAt     = "placed_at"
	memoAcceptBy     = "accept_by"
)

// orderMemo is the memo the API starts an order workflow with.
type orderMemo struct {
	RequestHash  string
	CustomerID   string
	RestaurantID string
	TotalCents   int64
	PlacedAt     time.Time
	AcceptBy     time.Time
}

// StartMemo is the memo the API starts the workflow of order o with: the
// hash of the request that placed it, so that a retry can be compared with
// it, and what a read answers from before the order's row exists. The
// bench's baselines start with it too, so that their Temporal work is the
// real order's.
func StartMemo(o activities.NewOrder, requestHash string) map[string]any {
	return orderMemo{
		RequestHash:  requestHash,
		CustomerID:   o.CustomerID,
		RestaurantID: o.RestaurantID,
		TotalCents:   o.TotalCents,
		PlacedAt:     o.PlacedAt,
		AcceptBy:     o.AcceptBy,
	}.fields()
}

// StartSummary is the order workflow's static summary, shown in the Web UI.
func StartSummary(o activities.NewOrder, restaurantName string) string {
	return fmt.Sprintf("order %s USD at %s for %s", formatCents(o.TotalCents), restaurantName, o.CustomerID)
}

func (m orderMemo) fields() map[string]any {
	return map[string]any{
		memoRequestHash:  m.RequestHash,
		memoCustomerID:   m.CustomerID,
		memoRestaurantID: m.RestaurantID,
		memoTotalCents:   m.TotalCents,
		memoPlacedAt:     m.PlacedAt,
		memoAcceptBy:     m.AcceptBy,
	}
}

// decodeMemo reads what it can of a memo. A field that is missing or does
// not decode stays zero: a workflow started by something other than this
// API then simply never matches a request hash.
func decodeMemo(memo *commonpb.Memo) orderMemo {
	var m orderMemo
	dc := converter.GetDefaultDataConverter()
	get := func(key string, v any) {
		if p, ok := memo.GetFields()[key]; ok {
			_ = dc.FromPayload(p, v)
		}
	}
	get(memoRequestHash, &m.RequestHash)
	get(memoCustomerID, &m.CustomerID)
	get(memoRestaurantID, &m.RestaurantID)
	get(memoTotalCents, &m.TotalCents)
	get(memoPlacedAt, &m.PlacedAt)
	get(memoAcceptBy, &m.AcceptBy)
	return m
}

// orderRun is what Describe tells about an order's workflow.
type orderRun struct {
	Status    enumspb.WorkflowExecutionStatus
	StartTime time.Time
	Memo      orderMemo
}

func (r *orderRun) running() bool {
	return r.Status == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
}

// describeOrder describes the order's workflow; it returns nil and no
// error when there is none.
func (s *Server) describeOrder(ctx context.Context, orderID string) (*orderRun, error) {
	ctx, done := s.temporalCall(ctx, temporalTimeout)
	defer done()
	resp, err := s.temporal.DescribeWorkflowExecution(ctx, orderflow.OrderWorkflowID(orderID), "")
	err = callError(ctx, err)
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &nf):
		return nil, nil
	case err != nil:
		return nil, temporalError("describe order workflow", err)
	}
	info := resp.GetWorkflowExecutionInfo()
	run := &orderRun{Status: info.GetStatus(), Memo: decodeMemo(info.GetMemo())}
	if st := info.GetStartTime(); st != nil {
		run.StartTime = st.AsTime()
	}
	return run, nil
}

// queryStatus asks a running order workflow for its status. It reports
// false when no worker answers in time: the caller then reads the database.
func (s *Server) queryStatus(ctx context.Context, orderID string) (workflows.StatusView, bool) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	var view workflows.StatusView
	val, err := s.temporal.QueryWorkflow(ctx, orderflow.OrderWorkflowID(orderID), "", workflows.QueryStatus)
	if err == nil {
		err = val.Get(&view)
	}
	if err != nil {
		s.logger.Debug("status query failed; reading the database", "order_id", orderID, "err", err)
		return workflows.StatusView{}, false
	}
	return view, true
}

// mayHaveTaken ends the message of a call to Temporal that went
// unanswered: the request may have reached the workflow all the same (a
// decision the workflow takes once its worker is back, a start that
// went through), and a retry of it is safe.
const mayHaveTaken = " (the request may still take effect: the same request again gets its outcome, never a second one)"

// temporalError turns a Temporal client error into what the caller should
// see: a workflow engine that does not answer, answers "busy", or cannot
// take the request in the workflow's present state (FailedPrecondition:
// an update while the workflow's task is failing, say after a worker
// timed out on it, until a worker takes it again) is EUNAVAILABLE, so
// clients retry instead of filing a bug; anything else is an internal
// error. The cause stays in the chain for the log.
func temporalError(op string, err error) error {
	var (
		unavailable  *serviceerror.Unavailable
		deadline     *serviceerror.DeadlineExceeded
		exhausted    *serviceerror.ResourceExhausted
		canceled     *serviceerror.Canceled
		precondition *serviceerror.FailedPrecondition
		updTimeout   *client.WorkflowUpdateServiceTimeoutOrCanceledError
	)
	switch {
	case errors.Is(err, errTemporalUnreachable):
		return fmt.Errorf("%s: %w (%w)", op,
			orderflow.Errorf(orderflow.EUNAVAILABLE, "the workflow engine does not answer; retry later"+mayHaveTaken), err)
	case errors.As(err, &unavailable), errors.As(err, &deadline), errors.As(err, &exhausted),
		errors.As(err, &canceled), errors.As(err, &precondition), errors.As(err, &updTimeout),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: %w (%w)", op,
			orderflow.Errorf(orderflow.EUNAVAILABLE, "the workflow engine did not answer in time; retry later"+mayHaveTaken), err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// closedStatus names the order status to report for a closed workflow the
// database knows nothing about: it ended before recording the order.
func closedStatus(st enumspb.WorkflowExecutionStatus) (orderflow.OrderStatus, string) {
	switch st {
	case enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED:
		return orderflow.StatusCancelled, "the order's workflow was cancelled before the order was recorded"
	case enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT:
		return orderflow.StatusFailed, "the order's workflow timed out before the order was recorded"
	case enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED:
		return orderflow.StatusFailed, "the order's workflow was terminated before the order was recorded"
	}
	return orderflow.StatusFailed, "the order's workflow ended before the order was recorded"
}

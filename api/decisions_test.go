package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"
	"go.temporal.io/sdk/temporal"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/workflows"
)

// updateAnswer is how the mock workflow answers one update.
type updateAnswer struct {
	status    string // the DecisionResult status, when accepted
	reason    string // the DecisionResult reason, when accepted
	rejection string // the validator's message, when refused
	// rejectionType is the refusal's error type ("Rejected" when unset).
	rejectionType string
	err           error // an error from UpdateWorkflow itself
	cancelled     bool  // the workflow was cancelled while the update waited
}

// expectUpdate makes the mock answer the named update on the order's
// workflow, and checks its arguments and stage.
func expectUpdate(tb testing.TB, tc *mocks.Client, orderID, name string, wantArgs []any, a updateAnswer) {
	tb.Helper()
	match := mock.MatchedBy(func(o client.UpdateWorkflowOptions) bool {
		return o.WorkflowID == orderflow.OrderWorkflowID(orderID) && o.UpdateName == name &&
			o.WaitForStage == client.WorkflowUpdateStageCompleted && fmt.Sprint(o.Args) == fmt.Sprint(wantArgs)
	})
	if a.err != nil {
		tc.On("UpdateWorkflow", mock.Anything, match).Return(nil, a.err).Once()
		return
	}
	h := mocks.NewWorkflowUpdateHandle(tb)
	get := h.On("Get", mock.Anything, mock.Anything)
	switch {
	case a.rejection != "":
		typ := a.rejectionType
		if typ == "" {
			typ = "Rejected"
		}
		get.Return(temporal.NewApplicationError(a.rejection, typ))
	case a.cancelled:
		get.Return(temporal.NewCanceledError())
	default:
		get.Run(func(args mock.Arguments) {
			*args.Get(1).(*workflows.DecisionResult) = workflows.DecisionResult{Status: a.status, Reason: a.reason}
		}).Return(nil)
	}
	tc.On("UpdateWorkflow", mock.Anything, match).Return(h, nil).Once()
}

func TestDecisions(t *testing.T) {
	f := newFixture(t)
	running := uuid.New().String()
	finished := insertOrder(t, f.store, string(orderflow.StatusCompleted)).String()
	closedNoRow := uuid.New().String()
	// Orders that never ended, whose workflow is not in the store (its
	// persistence switched) or was terminated from the Web UI.
	lostWorkflow := insertOrder(t, f.store, string(orderflow.StatusAwaitingAcceptance)).String()
	terminated := insertOrder(t, f.store, string(orderflow.StatusAwaitingAcceptance)).String()
	// An order whose workflow runs, but whose Update the server lost
	// before the workflow took it ("update not found": a history host
	// restarted).
	updateLost := insertOrder(t, f.store, string(orderflow.StatusAwaitingAcceptance)).String()
	unknown := uuid.New().String()
	notFound := serviceerror.NewNotFound("workflow execution already completed")
	f.temporal.On("DescribeWorkflowExecution", mock.Anything, orderflow.OrderWorkflowID(closedNoRow), "").
		Return(describeResponse(t, enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED, nil), nil)
	f.temporal.On("DescribeWorkflowExecution", mock.Anything, orderflow.OrderWorkflowID(lostWorkflow), "").
		Return(nil, serviceerror.NewNotFound("workflow not found"))
	f.temporal.On("DescribeWorkflowExecution", mock.Anything, orderflow.OrderWorkflowID(terminated), "").
		Return(describeResponse(t, enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED, nil), nil)
	f.temporal.On("DescribeWorkflowExecution", mock.Anything, orderflow.OrderWorkflowID(updateLost), "").
		Return(describeResponse(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil), nil)
	f.temporal.On("DescribeWorkflowExecution", mock.Anything, orderflow.OrderWorkflowID(unknown), "").
		Return(nil, serviceerror.NewNotFound("workflow not found"))

	tests := []struct {
		name       string
		id         string
		action     string
		body       string
		update     string // "" when Temporal must not be called
		args       []any  // the update's expected arguments
		answer     updateAnswer
		status     int
		field      string
		wantStatus string // the decision's status, on 200
		wantReason string // the decision's reason, on 200
		detail     string // part of the problem detail, on an error
		// contentType replaces application/json, sent with a body.
		contentType string
		code        string // the problem's code, when set
		retryAfter  bool   // the answer has a Retry-After
	}{
		{name: "accept", id: running, action: "accept", update: workflows.UpdateAccept, answer: updateAnswer{status: "accepted"}, status: 200, wantStatus: "accepted"},
		{name: "accept with empty object", id: running, action: "accept", body: `{}`, update: workflows.UpdateAccept, answer: updateAnswer{status: "accepted"}, status: 200, wantStatus: "accepted"},
		{name: "reject with reason", id: running, action: "reject", body: `{"reason":" out of dough "}`, update: workflows.UpdateReject,
			args: []any{workflows.RejectInput{Reason: "out of dough"}}, answer: updateAnswer{status: "rejected"}, status: 200, wantStatus: "rejected"},
		{name: "reject retried with the same reason", id: running, action: "reject", body: `{"reason":"out of dough"}`, update: workflows.UpdateReject,
			args: []any{workflows.RejectInput{Reason: "out of dough"}}, answer: updateAnswer{status: "rejected", reason: "out of dough"}, status: 200, wantStatus: "rejected", wantReason: "out of dough"},
		// The Update ID is the decision's name: a reject that was made
		// already answers with its own reason, which is not this one.
		{name: "reject retried with another reason", id: running, action: "reject", body: `{"reason":"out of dough"}`, update: workflows.UpdateReject,
			args: []any{workflows.RejectInput{Reason: "out of dough"}}, answer: updateAnswer{status: "rejected", reason: "closed early"}, status: 409, field: "reason", detail: `"closed early"`},
		// A retry that gives no reason takes the one recorded.
		{name: "cancel retried without a reason", id: running, action: "cancel", update: workflows.UpdateCancel,
			args: []any{workflows.CancelInput{Reason: "cancelled by customer"}}, answer: updateAnswer{status: "cancelled", reason: "changed my mind"}, status: 200, wantStatus: "cancelled", wantReason: "changed my mind"},
		{name: "cancel retried with a reason after one without", id: running, action: "cancel", body: `{"reason":"changed my mind"}`, update: workflows.UpdateCancel,
			args: []any{workflows.CancelInput{Reason: "changed my mind"}}, answer: updateAnswer{status: "cancelled", reason: "cancelled by customer"}, status: 409, field: "reason", detail: "cancelled by customer"},
		{name: "reject default reason", id: running, action: "reject", update: workflows.UpdateReject,
			args: []any{workflows.RejectInput{Reason: "rejected by restaurant"}}, answer: updateAnswer{status: "rejected"}, status: 200, wantStatus: "rejected"},
		{name: "cancel default reason", id: running, action: "cancel", body: `{"reason":""}`, update: workflows.UpdateCancel,
			args: []any{workflows.CancelInput{Reason: "cancelled by customer"}}, answer: updateAnswer{status: "cancelled"}, status: 200, wantStatus: "cancelled"},
		{name: "delivered", id: running, action: "delivered", update: workflows.UpdateDelivered, answer: updateAnswer{status: "completed"}, status: 200, wantStatus: "completed"},
		{name: "accept before the restaurant is notified", id: running, action: "accept", update: workflows.UpdateAccept,
			answer: updateAnswer{rejection: "order is placed: the restaurant has not been notified yet, cannot accept", rejectionType: workflows.ErrTypeNotYetNotified},
			status: 409, detail: "retry shortly", code: "not_yet", retryAfter: true},
		{name: "late accept refused", id: running, action: "accept", update: workflows.UpdateAccept,
			answer: updateAnswer{rejection: "order is timed_out"}, status: 409, detail: "order is timed_out"},
		{name: "finished order", id: finished, action: "cancel", update: workflows.UpdateCancel,
			args: []any{workflows.CancelInput{Reason: "cancelled by customer"}}, answer: updateAnswer{err: notFound}, status: 409, detail: "order is completed"},
		{name: "closed workflow without a row", id: closedNoRow, action: "accept", update: workflows.UpdateAccept,
			answer: updateAnswer{err: notFound}, status: 409, detail: "order is failed"},
		{name: "live order whose workflow is not in the store", id: lostWorkflow, action: "accept", update: workflows.UpdateAccept,
			answer: updateAnswer{err: serviceerror.NewNotFound("workflow not found")}, status: 409, detail: "order is awaiting_acceptance, but its workflow is not in the Temporal server's store"},
		{name: "live order whose workflow was terminated", id: terminated, action: "reject", update: workflows.UpdateReject,
			args: []any{workflows.RejectInput{Reason: "rejected by restaurant"}}, answer: updateAnswer{err: notFound}, status: 409, detail: "its workflow has ended (terminated) without ending the order: nothing can take the reject"},
		{name: "update lost by a running workflow's server", id: updateLost, action: "accept", update: workflows.UpdateAccept,
			answer: updateAnswer{err: serviceerror.NewNotFound(`update "accept" not found`)}, status: 503, detail: "lost the accept", retryAfter: true},
		{name: "unknown order", id: unknown, action: "accept", update: workflows.UpdateAccept,
			answer: updateAnswer{err: serviceerror.NewNotFound("workflow not found")}, status: 404},
		{name: "workflow cancelled while deciding", id: running, action: "accept", update: workflows.UpdateAccept,
			answer: updateAnswer{cancelled: true}, status: 409, detail: "workflow was cancelled"},
		{name: "temporal unavailable", id: running, action: "delivered", update: workflows.UpdateDelivered,
			answer: updateAnswer{err: serviceerror.NewUnavailable("connection refused")}, status: 503, retryAfter: true},
		{name: "workflow task in failed state", id: running, action: "cancel", update: workflows.UpdateCancel,
			args:   []any{workflows.CancelInput{Reason: "cancelled by customer"}},
			answer: updateAnswer{err: serviceerror.NewFailedPrecondition("Unable to perform workflow execution update due to Workflow Task in failed state.")},
			status: 503, retryAfter: true},
		{name: "not a UUID", id: "nope", action: "accept", status: 404},
		{name: "unknown field", id: running, action: "reject", body: `{"reason":"x","why":"y"}`, status: 400, field: "why"},
		{name: "body on accept", id: running, action: "accept", body: `{"reason":"x"}`, status: 400, field: "reason"},
		{name: "malformed body", id: running, action: "cancel", body: `{"reason":`, status: 400, field: "body"},
		{name: "null body on accept", id: running, action: "accept", body: `null`, status: 400, field: "body"},
		{name: "reason in other case", id: running, action: "reject", body: `{"Reason":"x"}`, status: 400, field: "Reason"},
		{name: "wrong type", id: running, action: "cancel", body: `{"reason":1}`, status: 400, field: "reason"},
		{name: "reason too long", id: running, action: "cancel", body: `{"reason":"` + strings.Repeat("r", 501) + `"}`, status: 400, field: "reason"},
		{name: "invalid UTF-8 in the reason", id: running, action: "reject", body: "{\"reason\":\"out of \xff dough\"}", status: 400, field: "reason", detail: "UTF-8"},
		{name: "unpaired surrogate in the reason", id: running, action: "cancel", body: `{"reason":"changed \udc00 mind"}`, status: 400, field: "reason", detail: `\udc00`},
		{name: "reason as text", id: running, action: "reject", body: `{"reason":"x"}`, contentType: "text/plain", status: 415, field: "Content-Type", detail: "text/plain"},
		{name: "empty object as a form", id: running, action: "accept", body: `{}`, contentType: "application/x-www-form-urlencoded", status: 415, field: "Content-Type"},
		{name: "body over 64 KiB", id: running, action: "reject", body: `{"reason":"` + strings.Repeat("r", 70<<10) + `"}`, status: 413, field: "body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.bind(t)
			if tt.update != "" {
				expectUpdate(t, f.temporal, tt.id, tt.update, tt.args, tt.answer)
			}
			path := "/v1/orders/" + tt.id + "/" + tt.action
			req := newRequest(t, http.MethodPost, path, tt.body, http.Header{})
			switch {
			case tt.contentType != "":
				req.Header.Set("Content-Type", tt.contentType)
			case tt.body == "":
				req.Header.Del("Content-Type")
			}
			rec := f.serve(req)
			if tt.status != 200 {
				p := wantProblem(t, rec, tt.status, tt.field)
				if !strings.Contains(p.Detail, tt.detail) {
					t.Errorf("detail = %q, want it to contain %q", p.Detail, tt.detail)
				}
				if tt.code != "" && p.Code != tt.code {
					t.Errorf("code = %q, want %q", p.Code, tt.code)
				}
				if got := rec.Header().Get("Retry-After") != ""; got != tt.retryAfter {
					t.Errorf("Retry-After %q; want one: %v", rec.Header().Get("Retry-After"), tt.retryAfter)
				}
				return
			}
			var got struct{ ID, Status, Reason string }
			decode(t, rec, 200, &got)
			if got.ID != tt.id || got.Status != tt.wantStatus || got.Reason != tt.wantReason {
				t.Errorf("got %+v, want %s %s %q", got, tt.id, tt.wantStatus, tt.wantReason)
			}
		})
	}
}

// TestDecisionWhileTemporalStopsAnswering: the SDK retries an Update to a
// frontend it cannot reach until the decision's 30-second deadline; the
// API checks the frontend's health while a decision waits, and answers
// 503 once the checks fail instead of hanging. A frontend that answers its
// checks keeps a slow decision waiting (a worker that is slow or away).
func TestDecisionWhileTemporalStopsAnswering(t *testing.T) {
	for _, tt := range []struct {
		name    string
		healthy bool
	}{
		{name: "frontend gone: cut short", healthy: false},
		{name: "frontend answers: the decision waits", healthy: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			id := uuid.NewString()
			var checks atomic.Int32
			health := f.temporal.On("CheckHealth", mock.Anything, mock.Anything)
			if tt.healthy {
				health.Return(&client.CheckHealthResponse{}, nil)
			} else {
				health.Return(nil, serviceerror.NewUnavailable("connection refused"))
			}
			health.Run(func(mock.Arguments) { checks.Add(1) })
			h := mocks.NewWorkflowUpdateHandle(t)
			h.On("Get", mock.Anything, mock.Anything).Return(func(ctx context.Context, v any) error {
				// Waits for the workflow: for ever when Temporal is gone,
				// until a few health checks went by when it answers.
				for checks.Load() < 3 || !tt.healthy {
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-time.After(50 * time.Millisecond):
					}
				}
				*v.(*workflows.DecisionResult) = workflows.DecisionResult{Status: "completed"}
				return nil
			})
			f.temporal.On("UpdateWorkflow", mock.Anything, mock.Anything).Return(h, nil).Once()

			rec := f.do(t, http.MethodPost, "/v1/orders/"+id+"/delivered", "", nil)
			if tt.healthy {
				var got struct{ Status string }
				decode(t, rec, http.StatusOK, &got)
				if got.Status != "completed" {
					t.Errorf("status %q, want completed", got.Status)
				}
				return
			}
			p := wantProblem(t, rec, http.StatusServiceUnavailable, "")
			if !strings.Contains(p.Detail, "does not answer") || rec.Header().Get("Retry-After") == "" {
				t.Errorf("detail %q, Retry-After %q; want the failed health checks named, and a Retry-After", p.Detail, rec.Header().Get("Retry-After"))
			}
			if n := checks.Load(); n < 2 {
				t.Errorf("%d health checks; want the decision cut short after two failed ones", n)
			}
		})
	}
}

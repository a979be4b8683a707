package api

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/workflows"
)

// Reasons used when a reject or cancel request gives none.
const (
	defaultRejectReason = "rejected by restaurant"
	defaultCancelReason = "cancelled by customer"
)

// decisionView answers a decision: the status the workflow gave the order
// when it took it, and the reason recorded with a reject or a cancel.
type decisionView struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// acceptOrder is the restaurant accepting the order.
func (s *Server) acceptOrder(c echo.Context) error {
	id, err := orderIDParam(c)
	if err != nil {
		return err
	}
	if err := decodeNoBody(c); err != nil {
		return err
	}
	return s.decide(c, id, workflows.UpdateAccept, "")
}

// rejectOrder is the restaurant rejecting the order.
func (s *Server) rejectOrder(c echo.Context) error {
	id, err := orderIDParam(c)
	if err != nil {
		return err
	}
	reason, given, err := decodeReason(c, defaultRejectReason)
	if err != nil {
		return err
	}
	return s.decide(c, id, workflows.UpdateReject, given, workflows.RejectInput{Reason: reason})
}

// cancelOrder is the customer cancelling the order.
func (s *Server) cancelOrder(c echo.Context) error {
	id, err := orderIDParam(c)
	if err != nil {
		return err
	}
	reason, given, err := decodeReason(c, defaultCancelReason)
	if err != nil {
		return err
	}
	return s.decide(c, id, workflows.UpdateCancel, given, workflows.CancelInput{Reason: reason})
}

// deliveredOrder is the courier or restaurant reporting delivery.
func (s *Server) deliveredOrder(c echo.Context) error {
	id, err := orderIDParam(c)
	if err != nil {
		return err
	}
	if err := decodeNoBody(c); err != nil {
		return err
	}
	return s.decide(c, id, workflows.UpdateDelivered, "")
}

// decide sends the update and waits for the workflow's answer, so the
// caller learns synchronously whether the decision took: a decision the
// workflow's validator refuses (a late accept, say) is a 409. given is
// the reason the request gave for its reject or cancel, "" when it gave
// none: it must then be the reason recorded.
func (s *Server) decide(c echo.Context, id uuid.UUID, update, given string, args ...any) error {
	ctx, done := s.temporalCall(c.Request().Context(), updateTimeout)
	defer done()
	h, err := s.temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: orderflow.OrderWorkflowID(id.String()),
		// Each decision happens at most once per order, so its name is its
		// ID: a client that retries after a lost answer is attached to the
		// update it already made and gets its result, not a 409.
		UpdateID:     update,
		UpdateName:   update,
		Args:         args,
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	var res workflows.DecisionResult
	if err == nil {
		err = h.Get(ctx, &res)
	}
	err = callError(ctx, err)
	if err != nil {
		if update == workflows.UpdateAccept && s.acceptanceRecorded(c.Request().Context(), id, err) {
			return c.JSON(http.StatusOK, decisionView{ID: id.String(), Status: string(orderflow.StatusAccepted)})
		}
		if update == workflows.UpdateDelivered && s.deliveryRecorded(c.Request().Context(), id, err) {
			return c.JSON(http.StatusOK, decisionView{ID: id.String(), Status: string(orderflow.StatusCompleted)})
		}
		return s.decisionError(c.Request().Context(), id, update, err)
	}
	if given != "" && res.Reason != "" && res.Reason != given {
		// The update was made already, by an earlier request with another
		// reason: this one's was not recorded. (A retry without a reason
		// takes whichever was recorded.)
		return &orderflow.Error{Code: orderflow.ECONFLICT, Field: "reason",
			Message: fmt.Sprintf("the order was %s already, for %q: a decision is taken once, and this reason was not recorded", res.Status, res.Reason)}
	}
	return c.JSON(http.StatusOK, decisionView{ID: id.String(), Status: res.Status, Reason: res.Reason})
}

// acceptanceRecorded tells whether an accept the workflow refused (or
// could not take: its workflow closed) is recorded all the same: the
// order's timeline has order.accepted. That is an accept whose workflow
// task was lost in a crash after its steps had gone through, so that the
// history does not hold it and the workflow refuses a retry (as decided
// otherwise, or as ended, while it carries the acceptance through; see
// the order workflow's compensate). The acceptance took effect, and the
// restaurant must hear so, as it does when it retries an accept the
// history holds. A failed look-up leaves the refusal as it is.
func (s *Server) acceptanceRecorded(ctx context.Context, id uuid.UUID, err error) bool {
	if !refusedOrClosed(err) {
		return false
	}
	// The acceptance must also be what the order came to: an order
	// accepted, then failed or cancelled (its capture refused, its
	// workflow cancelled while the accept waited), did not take it.
	row, gerr := s.store.GetOrder(ctx, id)
	if gerr != nil || row.Status != string(orderflow.StatusAccepted) && row.Status != string(orderflow.StatusCompleted) {
		return false
	}
	recorded, lerr := s.store.TimelineHasEvent(ctx, events.EventID(id.String(), events.OrderAccepted, ""))
	return lerr == nil && recorded
}

// deliveryRecorded tells whether a delivery report the workflow refused
// (or could not take: its workflow closed) finds the order completed: the
// delivery was reported already, by the delivery context's event (whose
// Update has an ID of its own) or by an earlier request. The same fact
// reported again gets the same answer, whoever reported it first. A
// failed look-up leaves the refusal as it is.
func (s *Server) deliveryRecorded(ctx context.Context, id uuid.UUID, err error) bool {
	if !refusedOrClosed(err) {
		return false
	}
	row, gerr := s.store.GetOrder(ctx, id)
	return gerr == nil && orderflow.OrderStatus(row.Status) == orderflow.StatusCompleted
}

// refusedOrClosed tells whether an update failed because the workflow
// refused it for good or had closed (not because it is too early, nor for
// want of an answer).
func refusedOrClosed(err error) bool {
	var (
		appErr *temporal.ApplicationError
		nf     *serviceerror.NotFound
	)
	if errors.As(err, &appErr) {
		return appErr.Type() != workflows.ErrTypeNotYetNotified
	}
	return errors.As(err, &nf)
}

// decisionError explains a failed update. The workflow's refusal carries
// its own message; a missing workflow is either a finished order (409,
// naming its status) or no order at all (404).
func (s *Server) decisionError(ctx context.Context, id uuid.UUID, update string, err error) error {
	var (
		appErr *temporal.ApplicationError
		nf     *serviceerror.NotFound
	)
	switch {
	case errors.As(err, &appErr) && appErr.Type() == workflows.ErrTypeNotYetNotified:
		return &orderflow.Error{Code: codeNotYet, Message: appErr.Message() + "; retry shortly"}
	case errors.As(err, &appErr):
		return orderflow.Errorf(orderflow.ECONFLICT, "%s", appErr.Message())
	case temporal.IsCanceledError(err):
		// The workflow was cancelled (from the Web UI or the CLI, say)
		// while the decision waited for its outcome: the order is being
		// cancelled instead.
		return orderflow.Errorf(orderflow.ECONFLICT, "the order's workflow was cancelled: the %s did not take effect", update)
	case !errors.As(err, &nf):
		return temporalError(update+" order", err)
	}
	row, gerr := s.store.GetOrder(ctx, id)
	switch {
	case gerr == nil && orderflow.OrderStatus(row.Status).Final():
		return orderflow.Errorf(orderflow.ECONFLICT, "order is %s", row.Status)
	case gerr == nil:
		// The order never ended, and its workflow is gone or closed:
		// terminated (from the Web UI, say), or not in this Temporal's
		// store at all (its persistence switched, or reset).
		why := "its workflow is not in the Temporal server's store (was the store switched or reset?)"
		run, derr := s.describeOrder(ctx, id.String())
		switch {
		case derr == nil && run != nil && run.running():
			// The workflow runs: the server lost the Update before the
			// workflow took it ("update not found", a history host
			// restarted, say). The same request again reaches it.
			return orderflow.Errorf(orderflow.EUNAVAILABLE, "the workflow engine lost the %s before the order's workflow took it; retry", update)
		case derr == nil && run != nil:
			why = "its workflow has ended (" + strings.ToLower(strings.TrimPrefix(run.Status.String(), "WORKFLOW_EXECUTION_STATUS_")) + ") without ending the order"
		}
		return orderflow.Errorf(orderflow.ECONFLICT, "order is %s, but %s: nothing can take the %s", row.Status, why, update)
	case !errors.Is(gerr, sql.ErrNoRows):
		return fmt.Errorf("get order: %w", gerr)
	}
	run, derr := s.describeOrder(ctx, id.String())
	switch {
	case derr != nil:
		return derr
	case run == nil:
		return orderflow.Errorf(orderflow.ENOTFOUND, "no order %q", id)
	case run.running():
		// Describe and update disagree: the workflow appeared in between.
		return orderflow.Errorf(orderflow.EUNAVAILABLE, "the order is being started; retry")
	}
	st, _ := closedStatus(run.Status)
	return orderflow.Errorf(orderflow.ECONFLICT, "order is %s", st)
}

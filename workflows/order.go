package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/events"
)

// a is the typed nil through which the workflow names its activities.
var a *activities.Activities

// Change IDs for workflow.GetVersion. Never reuse or remove one while
// workflows that may have recorded it are open.
const (
	// changeEscalationNotice: an escalated delivery also tells the customer.
	changeEscalationNotice = "escalation-customer-notice"
	// changeCancelAcceptTimer: a decision before the restaurant's deadline
	// cancels the deadline's timer. Before, it was left to fire during the
	// wait for delivery, one workflow task for nothing (the SDK's
	// AwaitWithOptions does not cancel it yet: its flag for that is off in
	// v1.47).
	changeCancelAcceptTimer = "cancel-accept-timer"
	// changeCompensationRecordsFirst: a compensation of an order whose
	// recording was not confirmed records it first, and a decision that
	// ends the order (reject, cancel) answers once the end is recorded.
	changeCompensationRecordsFirst = "compensation-records-first"
	// changeRestaurantToldOfEnd: a restaurant that was sent an order is
	// told when it ends cancelled, timed out or failed.
	changeRestaurantToldOfEnd = "restaurant-told-of-end"
	// changeAnswerOutlastsCancellation: a decision waiting when the
	// workflow is cancelled answers the outcome the cancellation's
	// compensation comes to, instead of a cancellation error. Asked only
	// on that path, so its marker is only in those histories.
	changeAnswerOutlastsCancellation = "answer-outlasts-cancellation"
	// changeSecondCompensationAnswers: a second compensation (after an
	// acceptance carried through) answers the waiting decisions once its
	// own end is recorded, not at once. Asked only on that path.
	changeSecondCompensationAnswers = "second-compensation-answers"
)

// decision is the restaurant's or the customer's answer while the order
// awaits acceptance.
type decision struct {
	update string // UpdateAccept, UpdateReject or UpdateCancel
	reason string
}

// order is the state of one order workflow.
type order struct {
	in        OrderInput
	status    orderflow.OrderStatus
	reason    string
	payment   orderflow.PaymentStatus
	authID    string
	decision  *decision
	delivered bool
	escalated bool
	// recorded: RecordPlaced succeeded, so the order is in the database;
	// unrecordable: it failed as invalid input, so it never will be.
	recorded, unrecordable bool
	// sentToRestaurant: the restaurant notification was started, so the
	// restaurant may have the order (a crash may have lost that the
	// workflow knew it: the database has the last word).
	sentToRestaurant bool
	// answerOnRecord: the order is being compensated under
	// changeCompensationRecordsFirst, whose decisions answer only once
	// endRecorded, the final status's write, has been done.
	answerOnRecord, endRecorded bool
	// customerCancel: the compensation running is the customer's cancel
	// (not the workflow's own cancellation, whatever its reason says).
	customerCancel bool
	// ran: run has returned, so nothing will change the order any more.
	ran    bool
	logger log.Logger
}

// Order runs one order from placement to completion, or to compensation
// when it is rejected, times out, is cancelled or fails.
func Order(ctx workflow.Context, in OrderInput) (OrderResult, error) {
	if in.AcceptTimeout <= 0 {
		in.AcceptTimeout = DefaultAcceptTimeout
	}
	if in.DeliverySLA <= 0 {
		in.DeliverySLA = DefaultDeliverySLA
	}
	o := &order{in: in, status: orderflow.StatusPlaced, payment: orderflow.PaymentPending, logger: workflow.GetLogger(ctx)}
	if err := o.setup(ctx); err != nil {
		return OrderResult{}, err
	}
	err := o.run(ctx)
	o.ran = true
	// Let update handlers return their answers before the workflow closes;
	// on a disconnected context so this also holds after cancellation.
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	_ = workflow.Await(dctx, func() bool { return workflow.AllHandlersFinished(dctx) })
	return o.result(), err
}

func (o *order) result() OrderResult {
	return OrderResult{OrderID: o.in.Order.OrderID, Status: string(o.status), Reason: o.reason, PaymentStatus: string(o.payment)}
}

// setup registers the status query and the decision updates. Validators
// reject a decision the order can no longer take, so the caller gets an
// immediate, synchronous refusal (409 over HTTP) and the history records
// nothing.
func (o *order) setup(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (StatusView, error) {
		return StatusView{
			OrderID: o.in.Order.OrderID, Status: string(o.status), Reason: o.reason,
			PaymentStatus: string(o.payment), AcceptBy: o.in.Order.AcceptBy, Escalated: o.escalated,
		}, nil
	}); err != nil {
		return err
	}
	// A decision's update returns once the workflow has recorded its
	// outcome, so the caller's next read sees it. (Orders whose
	// compensation began before changeCompensationRecordsFirst answered a
	// reject or a cancel as soon as it began.)
	decide := func(ctx workflow.Context, update string, reason string) (DecisionResult, error) {
		o.decision = &decision{update: update, reason: reason}
		if err := o.awaitOutcome(ctx, func() bool {
			return o.status != orderflow.StatusPlaced && o.status != orderflow.StatusAwaitingAcceptance
		}); err != nil {
			return DecisionResult{}, err
		}
		// The decision was taken, but the order may still have ended
		// otherwise (a step after it failed): the caller must not read
		// success into a different outcome.
		if want := decisionOutcome(update); o.status != want {
			return DecisionResult{Status: string(o.status)}, fmt.Errorf("order is %s: the %s did not take effect", o.status, update)
		}
		// The decision's own reason, also when the workflow's cancellation
		// ended the order while it waited (and recorded its own): the
		// caller asked for this outcome, and the API takes another reason
		// for another request's decision.
		return DecisionResult{Status: string(o.status), Reason: reason}, nil
	}
	handlers := []struct {
		name      string
		handler   any
		validator any
	}{
		{UpdateAccept,
			func(ctx workflow.Context) (DecisionResult, error) { return decide(ctx, UpdateAccept, "") },
			func(ctx workflow.Context) error {
				return o.canDecide(ctx, "accept", orderflow.StatusAwaitingAcceptance)
			}},
		{UpdateReject,
			func(ctx workflow.Context, in RejectInput) (DecisionResult, error) {
				return decide(ctx, UpdateReject, reasonOr(in.Reason, "rejected by restaurant"))
			},
			func(ctx workflow.Context, in RejectInput) error {
				if err := validReason(in.Reason); err != nil {
					return err
				}
				return o.canDecide(ctx, "reject", orderflow.StatusAwaitingAcceptance)
			}},
		{UpdateCancel,
			func(ctx workflow.Context, in CancelInput) (DecisionResult, error) {
				return decide(ctx, UpdateCancel, reasonOr(in.Reason, "cancelled by customer"))
			},
			func(ctx workflow.Context, in CancelInput) error {
				if err := validReason(in.Reason); err != nil {
					return err
				}
				return o.canDecide(ctx, "cancel", orderflow.StatusPlaced, orderflow.StatusAwaitingAcceptance)
			}},
		{UpdateDelivered,
			func(ctx workflow.Context) (DecisionResult, error) {
				o.delivered = true
				if err := o.awaitOutcome(ctx, func() bool { return o.status != orderflow.StatusAccepted }); err != nil {
					return DecisionResult{}, err
				}
				// A step before the delivery (the capture, say) may have
				// failed the order meanwhile: that is no success.
				if o.status != orderflow.StatusCompleted {
					return DecisionResult{Status: string(o.status)}, fmt.Errorf("order is %s: the delivery did not complete it", o.status)
				}
				return DecisionResult{Status: string(o.status)}, nil
			},
			func(ctx workflow.Context) error {
				if o.status != orderflow.StatusAccepted {
					return fmt.Errorf("order is %s: only an accepted order can be delivered", o.status)
				}
				if o.delivered {
					return temporal.NewNonRetryableApplicationError("order is already marked delivered", ErrTypeAlreadyDelivered, nil)
				}
				return nil
			}},
	}
	for _, h := range handlers {
		if err := workflow.SetUpdateHandlerWithOptions(ctx, h.name, h.handler, workflow.UpdateHandlerOptions{Validator: h.validator}); err != nil {
			return err
		}
	}
	return nil
}

// awaitOutcome waits until the order's status has changed (changed says
// when), then until that status is in the database: a forward status is
// set once written, a compensation's final status (under
// changeCompensationRecordsFirst) once endRecorded. When the workflow is
// cancelled meanwhile, the compensation the cancellation runs ends the
// order, and (under changeAnswerOutlastsCancellation) that outcome is the
// answer: the wait goes on, on a disconnected context, until run has
// returned at the latest.
func (o *order) awaitOutcome(ctx workflow.Context, changed func() bool) error {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	err := workflow.Await(ctx, changed)
	if temporal.IsCanceledError(err) {
		if workflow.GetVersion(dctx, changeAnswerOutlastsCancellation, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
			return err
		}
		err = workflow.Await(dctx, func() bool { return changed() || o.ran })
	}
	if err != nil || !o.answerOnRecord {
		return err
	}
	// The compensation goes on when the workflow is cancelled meanwhile,
	// and its outcome is the answer.
	return workflow.Await(dctx, func() bool { return o.endRecorded || o.ran })
}

// canDecide tells whether a decision may be taken now: the order must be in
// one of the given statuses and not already decided, and the restaurant's
// answers (accept, reject) must come before accept_by, as must the
// customer's cancel once the order is being sent or was sent to the
// restaurant. An order the restaurant has not been sent yet, the customer
// may cancel at any time.
//
// The deadline is checked here as well as by the accept timer because a
// decision can reach the workflow before the timer's firing does: when no
// worker ran at the deadline (a crash, a deploy), the timer's firing and
// the decision sent meanwhile come in the same workflow task, and the
// validator runs before the workflow code sees the timer. workflow.Now is
// that task's start, so a decision the workflow takes at or after accept_by
// is refused as late, as the API promises. (Orders started without
// accept_by have no deadline here.)
func (o *order) canDecide(ctx workflow.Context, what string, allowed ...orderflow.OrderStatus) error {
	deadline := o.in.Order.AcceptBy
	restaurants := !slices.Contains(allowed, orderflow.StatusPlaced) // an accept or a reject
	pending := o.status == orderflow.StatusPlaced || o.status == orderflow.StatusAwaitingAcceptance
	late := pending && (restaurants || o.sentToRestaurant)
	if late && o.decision == nil && !deadline.IsZero() && !workflow.Now(ctx).Before(deadline) {
		return fmt.Errorf("order is %s past its accept_by (%s): too late to %s",
			o.status, deadline.UTC().Format(time.RFC3339Nano), what)
	}
	for _, s := range allowed {
		if o.status != s {
			continue
		}
		if o.decision != nil {
			return fmt.Errorf("order is %s: it was already decided (%s)", o.status, o.decision.update)
		}
		return nil
	}
	if o.status == orderflow.StatusPlaced && o.decision != nil {
		return fmt.Errorf("order is %s: it was already decided (%s)", o.status, o.decision.update)
	}
	if o.status == orderflow.StatusPlaced {
		return temporal.NewApplicationError(fmt.Sprintf("order is %s: the restaurant has not been notified yet, cannot %s", o.status, what), ErrTypeNotYetNotified)
	}
	return fmt.Errorf("order is %s: cannot %s", o.status, what)
}

// MaxReasonLength bounds a rejection's or cancellation's reason, in
// characters (runes), as the API counts them too.
const MaxReasonLength = 500

// validReason refuses a reason the order could not record: too long, not
// UTF-8, or with a NUL (PostgreSQL stores neither), so a compensation never
// retries forever on a value it can never write.
func validReason(reason string) error {
	switch {
	case utf8.RuneCountInString(reason) > MaxReasonLength:
		return fmt.Errorf("reason is longer than %d characters", MaxReasonLength)
	case !utf8.ValidString(reason) || strings.ContainsRune(reason, 0):
		return errors.New("reason must be UTF-8 text without NUL characters")
	}
	return nil
}

// decisionOutcome is the status a decision leads to.
func decisionOutcome(update string) orderflow.OrderStatus {
	switch update {
	case UpdateAccept:
		return orderflow.StatusAccepted
	case UpdateReject:
		return orderflow.StatusRejected
	default:
		return orderflow.StatusCancelled
	}
}

func reasonOr(reason, def string) string {
	if reason == "" {
		return def
	}
	return reason
}

// run is the order process. Every return path leaves the order in a final
// status with its compensations done.
func (o *order) run(ctx workflow.Context) (err error) {
	defer func() {
		// Cancellation of the workflow itself: compensate, then end as
		// cancelled. Compensations run on a disconnected context inside
		// compensate, so they run although ctx is done.
		if err != nil && temporal.IsCanceledError(err) && !o.status.Final() {
			o.compensate(ctx, orderflow.StatusCancelled, events.OrderCancelled, "order workflow cancelled")
		}
	}()
	order := o.in.Order
	if err := o.do(ctx, "record order", a.RecordPlaced, order); err != nil {
		var appErr *temporal.ApplicationError
		o.unrecordable = errors.As(err, &appErr) && appErr.Type() == activities.ErrTypeInvalid
		return o.failed(ctx, err, "could not record the order")
	}
	o.recorded = true
	if o.decision != nil { // cancelled while the order was being recorded
		return o.decide(ctx)
	}

	var auth activities.Authorization
	err = o.call(ctx, fmt.Sprintf("authorize payment (%s)", formatCents(order.TotalCents)), a.AuthorizePayment,
		activities.AuthorizeInput{OrderID: order.OrderID, PaymentToken: o.in.PaymentToken, AmountCents: order.TotalCents}, &auth)
	var appErr *temporal.ApplicationError
	switch {
	case errors.As(err, &appErr) && appErr.Type() == activities.ErrTypePaymentDeclined:
		o.payment = orderflow.PaymentDeclined
		return o.compensate(ctx, orderflow.StatusRejected, events.OrderRejected, "payment declined: "+appErr.Message())
	case err != nil:
		return o.failed(ctx, err, "payment authorization failed")
	}
	o.authID, o.payment = auth.AuthorizationID, orderflow.PaymentAuthorized
	if o.decision != nil { // cancelled while the payment was being authorized
		return o.decide(ctx)
	}

	o.sentToRestaurant = true
	if err := o.do(ctx, "notify restaurant", a.NotifyRestaurant, order.OrderID); err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() == activities.ErrTypeTooLate {
			// Authorized only after accept_by (a slow gateway, a worker
			// outage): the restaurant was not sent an order it could no
			// longer accept.
			return o.compensate(ctx, orderflow.StatusTimedOut, events.OrderTimedOut,
				"accept_by passed before the order could be sent to the restaurant")
		}
		return o.failed(ctx, err, "could not notify the restaurant")
	}
	o.status = orderflow.StatusAwaitingAcceptance

	// The restaurant's deadline counts from placement, as the API promised
	// the customer in accept_by.
	remaining := order.AcceptBy.Sub(workflow.Now(ctx))
	if remaining > 0 && o.decision == nil {
		// Before the change the timer hangs off ctx itself: a child context
		// would change the order in which a workflow cancellation cancels
		// it and the delivery's timer.
		tctx, cancelTimer := ctx, func() {}
		if workflow.GetVersion(ctx, changeCancelAcceptTimer, workflow.DefaultVersion, 1) != workflow.DefaultVersion {
			tctx, cancelTimer = workflow.WithCancel(ctx)
		}
		if _, err := workflow.AwaitWithOptions(tctx, workflow.AwaitOptions{
			Timeout:      remaining,
			TimerOptions: workflow.TimerOptions{Summary: fmt.Sprintf("wait for restaurant (%s)", o.in.AcceptTimeout)},
		}, func() bool { return o.decision != nil }); err != nil {
			return err
		}
		cancelTimer() // a decision came first: the deadline is moot
	}
	if o.decision == nil {
		return o.compensate(ctx, orderflow.StatusTimedOut, events.OrderTimedOut,
			fmt.Sprintf("restaurant did not answer within %s", o.in.AcceptTimeout))
	}
	return o.decide(ctx)
}

// decide carries out the decision taken while the order awaited acceptance.
func (o *order) decide(ctx workflow.Context) error {
	switch o.decision.update {
	case UpdateReject:
		return o.compensate(ctx, orderflow.StatusRejected, events.OrderRejected, o.decision.reason)
	case UpdateCancel:
		o.customerCancel = true
		return o.compensate(ctx, orderflow.StatusCancelled, events.OrderCancelled, o.decision.reason)
	}
	return o.fulfil(ctx)
}

// fulfil runs an accepted order to completion.
func (o *order) fulfil(ctx workflow.Context) error {
	id := o.in.Order.OrderID
	if err := o.transition(ctx, orderflow.StatusAccepted, events.OrderAccepted, ""); err != nil {
		return o.failed(ctx, err, "could not record the acceptance")
	}
	o.status = orderflow.StatusAccepted
	if err := o.do(ctx, "capture payment", a.CapturePayment, activities.PaymentInput{OrderID: id, AuthorizationID: o.authID}); err != nil {
		return o.failed(ctx, err, "payment capture failed")
	}
	o.payment = orderflow.PaymentCaptured
	// From here on the customer has paid and the kitchen is cooking: no
	// outage of the notifier or the database fails the order (and refunds
	// it); the remaining steps are retried until they succeed.
	if err := o.settle(ctx, "notify customer: accepted", a.NotifyCustomer, activities.CustomerNotice{
		OrderID: id, Kind: activities.NoticeAccepted, Message: "Your order was accepted and is being prepared.",
	}); err != nil {
		return o.failed(ctx, err, "could not notify the customer")
	}

	// Wait for delivery. Past the SLA the order is escalated once — someone
	// must look at it — and the wait goes on: a late order is not cancelled.
	delivered := func() bool { return o.delivered }
	ok, err := workflow.AwaitWithOptions(ctx, workflow.AwaitOptions{
		Timeout:      o.in.DeliverySLA,
		TimerOptions: workflow.TimerOptions{Summary: fmt.Sprintf("wait for delivery (SLA %s)", o.in.DeliverySLA)},
	}, delivered)
	if err != nil {
		return err
	}
	if !ok {
		o.escalated = true
		if err := o.escalate(ctx); err != nil {
			return o.failed(ctx, err, "could not escalate the late delivery")
		}
		if err := workflow.Await(ctx, delivered); err != nil {
			return err
		}
	}
	if err := o.settle(ctx, "record "+events.OrderCompleted, a.Transition, activities.TransitionInput{
		OrderID: id, Status: string(orderflow.StatusCompleted), EventType: events.OrderCompleted,
	}); err != nil {
		return o.failed(ctx, err, "could not record the completion")
	}
	o.status = orderflow.StatusCompleted
	return nil
}

func (o *order) escalate(ctx workflow.Context) error {
	id := o.in.Order.OrderID
	reason := fmt.Sprintf("delivery exceeded its SLA of %s", o.in.DeliverySLA)
	o.logger.Warn("delivery late: escalating", "OrderID", id, "SLA", o.in.DeliverySLA)
	if err := o.settle(ctx, "record "+events.OrderDeliveryEscalated, a.Transition, activities.TransitionInput{
		OrderID: id, Status: string(orderflow.StatusAccepted), EventType: events.OrderDeliveryEscalated, Reason: reason,
	}); err != nil {
		return err
	}
	if workflow.GetVersion(ctx, changeEscalationNotice, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return nil
	}
	return o.settle(ctx, "notify customer: running late", a.NotifyCustomer, activities.CustomerNotice{
		OrderID: id, Kind: activities.NoticeDeliveryLate, Message: "Your order is running late; we are on it.",
	})
}

// compensate ends an order that will not be fulfilled: it records the final
// status, releases or returns the money, and tells the customer. It runs on
// a disconnected context, with activities retried until they succeed, so it
// completes even when the workflow is being cancelled.
func (o *order) compensate(ctx workflow.Context, status orderflow.OrderStatus, eventType, reason string) error {
	id := o.in.Order.OrderID
	o.logger.Info("compensating order", "OrderID", id, "Status", status, "Reason", reason)
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	recordsFirst := workflow.GetVersion(dctx, changeCompensationRecordsFirst, workflow.DefaultVersion, 1) != workflow.DefaultVersion
	// The order is ending from here on: the validators refuse every
	// decision now, and the decisions waiting for an answer get it once
	// the final status is recorded (endRecorded, below).
	o.status, o.reason, o.answerOnRecord = status, reason, recordsFirst
	if o.endRecorded && workflow.GetVersion(dctx, changeSecondCompensationAnswers, workflow.DefaultVersion, 1) != workflow.DefaultVersion {
		// A second compensation (after an acceptance carried through,
		// below) has its own end to record.
		o.endRecorded = false
	}

	run := func(summary string, activity, arg, result any) error {
		opts := compensationOptions
		opts.Summary = summary
		// Retried until it succeeds: an error here can only be a
		// non-retryable one, which would be a bug; it is logged, not hidden.
		err := workflow.ExecuteActivity(workflow.WithActivityOptions(dctx, opts), activity, arg).Get(dctx, result)
		if _, ended := endedAs(err); err != nil && !ended && !acceptedAlready(err) {
			o.logger.Error("compensation step failed", "OrderID", id, "Step", summary, "Error", err)
		}
		return err
	}
	if recordsFirst && !o.recorded && !o.unrecordable {
		// The recording failed, or the workflow was cancelled while it ran;
		// either way the SDK stopped waiting for it, and an abandoned
		// attempt may still commit the order later. Recording it here
		// (idempotent: a recorded order is left as it is) means the final
		// status below lands on it, instead of an order left placed for
		// ever.
		run("record order", a.RecordPlaced, o.in.Order, nil)
	}
	// An end that only an order still awaiting acceptance may come to is
	// refused by the database when it holds the order as accepted: a
	// workflow task that accepted the order, ran the acceptance's local
	// activities (recorded it, captured the payment, told the customer)
	// and was then lost in a crash, leaves no acceptance in the history,
	// and the decision that came next would undo one the customer and the
	// kitchen have already been told of.
	beforeAcceptance := status == orderflow.StatusRejected || status == orderflow.StatusTimedOut ||
		(status == orderflow.StatusCancelled && o.customerCancel)
	o.customerCancel = false // a later compensation is not the customer's
	err := run("record "+eventType, a.Transition, activities.TransitionInput{
		OrderID: id, Status: string(status), EventType: eventType, Reason: reason, UnlessAccepted: beforeAcceptance,
	}, nil)
	if acceptedAlready(err) {
		// The acceptance stands: carry it through. Its steps find their
		// events recorded and the payment captured, and do nothing twice;
		// the decision waiting for an answer is told it did not take
		// effect.
		o.logger.Warn("order was accepted before its compensation: fulfilling it", "OrderID", id, "Compensation", status)
		o.status, o.reason, o.endRecorded = orderflow.StatusAccepted, "", true
		return o.fulfil(ctx)
	}
	o.endRecorded = true
	if final, ok := endedAs(err); ok {
		// The order had ended already: a step the workflow stopped waiting
		// for when it was cancelled (completing a delivered order, say)
		// went through. It stands, with whatever it did to the payment;
		// there is nothing to give back and nothing more to tell.
		o.logger.Warn("order had ended before its compensation", "OrderID", id, "Status", final)
		o.status, o.reason = final, ""
		return nil
	}
	// The customer is told of a decline when it is what ended the order;
	// a decline the release finds (an authorization the workflow stopped
	// waiting for when it was cancelled) leaves the notice the end's own.
	declined := o.payment == orderflow.PaymentDeclined
	if !declined {
		// Whatever the gateway holds — the workflow may not have heard of
		// an authorization or a capture that happened — is given back.
		var released string
		run("release payment (void or refund)", a.ReleasePayment, activities.PaymentInput{OrderID: id, AuthorizationID: o.authID}, &released)
		if released != "" {
			o.payment = orderflow.PaymentStatus(released)
		}
	}
	kind := string(status)
	if declined {
		kind = activities.NoticePaymentDeclined
	}
	run("notify customer: "+kind, a.NotifyCustomer, activities.CustomerNotice{OrderID: id, Kind: kind, Message: customerMessage(status, reason)}, nil)
	// A restaurant that has the order (and may be cooking it, when it
	// had accepted) is told it is off, unless the end is its own
	// rejection. The activity finds whether it was sent the order: the
	// workflow may not know, when a task that sent it was lost in a crash.
	if status != orderflow.StatusRejected && !o.unrecordable &&
		workflow.GetVersion(dctx, changeRestaurantToldOfEnd, workflow.DefaultVersion, 1) != workflow.DefaultVersion {
		run("notify restaurant: "+string(status), a.NotifyRestaurantOfEnd, activities.RestaurantNotice{OrderID: id}, nil)
	}
	return nil
}

// acceptedAlready tells whether err says the order was accepted already.
func acceptedAlready(err error) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.Type() == activities.ErrTypeOrderAccepted
}

// endedAs tells whether err says the order had ended, and in which status.
func endedAs(err error) (orderflow.OrderStatus, bool) {
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != activities.ErrTypeOrderEnded {
		return "", false
	}
	var final string
	if appErr.Details(&final) != nil || !orderflow.OrderStatus(final).Final() {
		return "", false
	}
	return orderflow.OrderStatus(final), true
}

// failed ends the order as failed after a forward step could not be done.
// Cancellation is passed through so run's deferred compensation handles it.
func (o *order) failed(ctx workflow.Context, err error, what string) error {
	if temporal.IsCanceledError(err) {
		return err
	}
	if final, ok := endedAs(err); ok {
		// Not a failure: the order ended while the step waited (see
		// NotifyCustomer), and the compensation below finds it so and
		// takes its final status.
		o.logger.Warn("order had ended before the step", "OrderID", o.in.Order.OrderID, "Step", what, "Status", final)
	} else {
		o.logger.Error("order failed", "OrderID", o.in.Order.OrderID, "Step", what, "Error", err)
	}
	return o.compensate(ctx, orderflow.StatusFailed, events.OrderFailed, what)
}

func customerMessage(status orderflow.OrderStatus, reason string) string {
	switch status {
	case orderflow.StatusRejected:
		return "Sorry, your order was rejected (" + reason + "). You have not been charged."
	case orderflow.StatusTimedOut:
		return "Sorry, the restaurant did not confirm your order in time. You have not been charged."
	case orderflow.StatusCancelled:
		return "Your order was cancelled (" + reason + "). Any payment has been released."
	default:
		return "Sorry, something went wrong with your order (" + reason + "). Any payment has been released."
	}
}

func (o *order) transition(ctx workflow.Context, status orderflow.OrderStatus, eventType, reason string) error {
	return o.do(ctx, "record "+eventType, a.Transition, activities.TransitionInput{
		OrderID: o.in.Order.OrderID, Status: string(status), EventType: eventType, Reason: reason,
	})
}

// settle runs a step that must not fail the order: retried until it
// succeeds (only cancellation or a non-retryable error, a bug, stops it).
func (o *order) settle(ctx workflow.Context, summary string, activity, arg any) error {
	opts := settleOptions
	opts.Summary = summary
	return workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, opts), activity, arg).Get(ctx, nil)
}

// do runs a forward activity with no result.
func (o *order) do(ctx workflow.Context, summary string, activity, arg any) error {
	return o.call(ctx, summary, activity, arg, nil)
}

// call runs a forward step as a local activity. Forward steps are short
// (a database transaction, a gateway or notifier call, all idempotent), so
// they run in the worker that holds the workflow task: a local activity
// costs the Temporal server one marker in the next workflow task instead of
// three history events and two tasks of its own, which is what bounds
// throughput on a small server (see docs/PERFORMANCE.md). Each is retried
// for a bounded time; business rejections are non-retryable errors with a
// type.
func (o *order) call(ctx workflow.Context, summary string, activity, arg, result any) error {
	opts := forwardOptions
	opts.Summary = summary
	return workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, opts), activity, arg).Get(ctx, result)
}

var (
	nonRetryable = []string{activities.ErrTypePaymentDeclined, activities.ErrTypeInvalid}

	// forwardOptions: each attempt may take 10s; a step that has not
	// succeeded within 5 minutes fails the order (and compensates). Retries
	// whose backoff outgrows the workflow task are scheduled by the SDK
	// with a durable timer, so a long outage survives a worker restart.
	forwardOptions = workflow.LocalActivityOptions{
		StartToCloseTimeout:    10 * time.Second,
		ScheduleToCloseTimeout: 5 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 500 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
			NonRetryableErrorTypes: nonRetryable,
		},
	}
	// settleOptions: like forwardOptions, but retried until done: a local
	// activity's retries that outgrow the workflow task wait on durable
	// timers, so "until done" survives worker restarts.
	settleOptions = workflow.LocalActivityOptions{
		StartToCloseTimeout:    10 * time.Second,
		ScheduleToCloseTimeout: 365 * 24 * time.Hour,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 500 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			NonRetryableErrorTypes: []string{activities.ErrTypeInvalid},
		},
	}
	// compensationOptions: retried until done, however long that takes.
	// Compensations are regular activities: they are rare, may have to
	// outlast a long outage, and their retries are then the server's job,
	// visible as a pending activity in the Web UI.
	compensationOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 500 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			NonRetryableErrorTypes: []string{activities.ErrTypeInvalid},
		},
	}
)

func formatCents(c int64) string { return fmt.Sprintf("%d.%02d", c/100, c%100) }

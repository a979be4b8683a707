// Package bench measures orderflow end to end and, on the same Temporal
// server in the same process run, two bare-Temporal baselines, so that what
// the HTTP API, PostgreSQL and the bus add is a ratio measured on one
// machine at one moment rather than a number compared across runs:
//
//   - same-shape: the real order workflow (workflows.Order, the very same
//     code, so exactly the same Temporal commands: local activities,
//     Updates, timers) with activities that do nothing, driven through the
//     SDK — no HTTP, no database, no bus;
//   - naive: the same business steps written the common way, every step a
//     regular activity and the decisions signals instead of Updates.
//
// `orderflow bench` (cmd/orderflow) wires the stack and runs Run.
package bench

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/api"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/workflows"
)

// Names the baselines register under.
const (
	NaiveWorkflowName = "NaiveOrder"
	SignalAccept      = "accept"
	SignalDelivered   = "delivered"
)

// NoopActivities has the method set of activities.Activities — the same
// names, so the order workflow's local activity calls resolve to these —
// and does nothing but return what the workflow needs to go on.
type NoopActivities struct{}

// RecordPlaced does nothing.
func (*NoopActivities) RecordPlaced(context.Context, activities.NewOrder) error { return nil }

// AuthorizePayment approves every order.
func (*NoopActivities) AuthorizePayment(_ context.Context, in activities.AuthorizeInput) (activities.Authorization, error) {
	return activities.Authorization{AuthorizationID: "noop_" + in.OrderID}, nil
}

// NotifyRestaurant does nothing.
func (*NoopActivities) NotifyRestaurant(context.Context, string) error { return nil }

// Transition does nothing.
func (*NoopActivities) Transition(context.Context, activities.TransitionInput) error { return nil }

// CapturePayment does nothing.
func (*NoopActivities) CapturePayment(context.Context, activities.PaymentInput) error { return nil }

// VoidPayment does nothing.
func (*NoopActivities) VoidPayment(context.Context, activities.PaymentInput) error { return nil }

// RefundPayment does nothing.
func (*NoopActivities) RefundPayment(context.Context, activities.PaymentInput) error { return nil }

// ReleasePayment reports the payment voided.
func (*NoopActivities) ReleasePayment(context.Context, activities.PaymentInput) (string, error) {
	return "voided", nil
}

// NotifyCustomer does nothing.
func (*NoopActivities) NotifyCustomer(context.Context, activities.CustomerNotice) error { return nil }

// NotifyRestaurantOfEnd does nothing.
func (*NoopActivities) NotifyRestaurantOfEnd(context.Context, activities.RestaurantNotice) error {
	return nil
}

// noop is the typed nil the naive workflow names its activities through.
var noop *NoopActivities

// NaiveOrder is the order process as it is commonly first written: every
// step its own regular activity (record, authorize, notify the restaurant,
// record the acceptance, capture, notify the customer, record completion),
// the restaurant's and the courier's decisions as signals, the same two
// timers. It handles only the happy path and the accept timeout: enough to
// be measured the same way as the real workflow.
func NaiveOrder(ctx workflow.Context, in workflows.OrderInput) (workflows.OrderResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 500 * time.Millisecond, MaximumInterval: 30 * time.Second},
	})
	id := in.Order.OrderID
	res := workflows.OrderResult{OrderID: id}
	step := func(activity, arg any, result any) error {
		return workflow.ExecuteActivity(ctx, activity, arg).Get(ctx, result)
	}
	if err := step(noop.RecordPlaced, in.Order, nil); err != nil {
		return res, err
	}
	var auth activities.Authorization
	if err := step(noop.AuthorizePayment, activities.AuthorizeInput{OrderID: id, PaymentToken: in.PaymentToken, AmountCents: in.Order.TotalCents}, &auth); err != nil {
		return res, err
	}
	if err := step(noop.NotifyRestaurant, id, nil); err != nil {
		return res, err
	}
	accepted := false
	timerCtx, cancelTimer := workflow.WithCancel(ctx)
	sel := workflow.NewSelector(ctx)
	sel.AddReceive(workflow.GetSignalChannel(ctx, SignalAccept), func(c workflow.ReceiveChannel, _ bool) {
		c.Receive(ctx, nil)
		accepted = true
	})
	sel.AddFuture(workflow.NewTimer(timerCtx, in.AcceptTimeout), func(workflow.Future) {})
	sel.Select(ctx)
	cancelTimer()
	if !accepted {
		res.Status = "timed_out"
		return res, step(noop.VoidPayment, activities.PaymentInput{OrderID: id, AuthorizationID: auth.AuthorizationID}, nil)
	}
	if err := step(noop.Transition, activities.TransitionInput{OrderID: id, Status: "accepted", EventType: "order.accepted"}, nil); err != nil {
		return res, err
	}
	if err := step(noop.CapturePayment, activities.PaymentInput{OrderID: id, AuthorizationID: auth.AuthorizationID}, nil); err != nil {
		return res, err
	}
	if err := step(noop.NotifyCustomer, activities.CustomerNotice{OrderID: id, Kind: "accepted"}, nil); err != nil {
		return res, err
	}
	slaCtx, cancelSLA := workflow.WithCancel(ctx)
	delivered := workflow.GetSignalChannel(ctx, SignalDelivered)
	for done := false; !done; {
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(delivered, func(c workflow.ReceiveChannel, _ bool) {
			c.Receive(ctx, nil)
			done = true
		})
		sel.AddFuture(workflow.NewTimer(slaCtx, in.DeliverySLA), func(workflow.Future) {
			workflow.GetLogger(ctx).Warn("delivery late", "OrderID", id)
		})
		sel.Select(ctx)
	}
	cancelSLA()
	if err := step(noop.Transition, activities.TransitionInput{OrderID: id, Status: "completed", EventType: "order.completed"}, nil); err != nil {
		return res, err
	}
	res.Status, res.PaymentStatus = "completed", "captured"
	return res, nil
}

// baselineInput is a priced order for a baseline run: what the API would
// have started the real workflow with.
func baselineInput(orderID string, now time.Time) workflows.OrderInput {
	return workflows.OrderInput{
		Order: activities.NewOrder{
			OrderID: orderID, CustomerID: "c_ada", RestaurantID: "r_pizza", DeliveryAddress: "1 Bench Street",
			TotalCents: 2300, PlacedAt: now, AcceptBy: now.Add(workflows.DefaultAcceptTimeout),
			// The line the HTTP system orders, as the API prices it.
			Items: []events.OrderItem{{MenuItemID: "m_margherita", Name: "Margherita", UnitPriceCents: 1150, Quantity: 2}},
		},
		PaymentToken:  "tok_visa",
		AcceptTimeout: workflows.DefaultAcceptTimeout,
		DeliverySLA:   workflows.DefaultDeliverySLA,
	}
}

// baselineStart is what the API starts an order workflow with besides its
// input — its memo and static summary — so that a baseline's Temporal work
// is the real order's, not less.
func baselineStart(in workflows.OrderInput) (memo map[string]any, summary string) {
	const requestHash = "0000000000000000000000000000000000000000000000000000000000000000" // a SHA-256, in hex
	return api.StartMemo(in.Order, requestHash), api.StartSummary(in.Order, "Pizzeria Napoli")
}

// errf keeps error messages of the drivers short and uniform.
func errf(step string, err error) error { return fmt.Errorf("%s: %w", step, err) }

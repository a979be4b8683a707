package activities_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/events"
)

func TestRecordPlacedWritesOrderItemsTimelineAndOutbox(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	in := f.place(t)
	id := uuid.MustParse(in.OrderID)

	o := f.order(t, in.OrderID)
	if o.Status != string(orderflow.StatusPlaced) || o.Version != 1 || o.TotalCents != 3250 ||
		o.CustomerID != "c_ada" || o.RestaurantID != "r_pizza" || o.DeliveryAddress != in.DeliveryAddress ||
		!o.AcceptBy.Equal(in.AcceptBy) || !o.CreatedAt.Equal(placedAt) {
		t.Errorf("order row = %+v", o)
	}

	items, err := f.store.ListOrderItems(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || items[0].Line != 1 || items[0].MenuItemID != "m_margherita" || items[0].Quantity != 2 ||
		items[1].Line != 2 || items[1].MenuItemID != "m_marinara" || items[1].UnitPriceCents != 950 {
		t.Errorf("order items = %+v", items)
	}

	wantID := events.EventID(in.OrderID, events.OrderPlaced, "")
	tl := f.timeline(t, in.OrderID)
	if len(tl) != 1 || tl[0].Version != 1 || tl[0].EventID != wantID || tl[0].EventType != events.OrderPlaced ||
		tl[0].Status != string(orderflow.StatusPlaced) || !tl[0].OccurredAt.Equal(placedAt) {
		t.Errorf("timeline = %+v", tl)
	}

	ob := f.outbox(t, in.OrderID)
	if len(ob) != 1 {
		t.Fatalf("outbox has %d rows, want 1", len(ob))
	}
	row := ob[0]
	if row.EventID != wantID || row.AggregateType != events.AggregateOrder || row.AggregateID != in.OrderID ||
		row.AggregateVersion != 1 || row.EventType != events.OrderPlaced ||
		row.PublishedAt.Valid || !row.OccurredAt.Equal(placedAt) {
		t.Errorf("outbox row = %+v", row)
	}
	var headers map[string]string
	if err := json.Unmarshal(row.Headers.RawMessage, &headers); err != nil || !row.Headers.Valid {
		t.Fatalf("outbox headers %s: %v", row.Headers.RawMessage, err)
	}
	if got, want := headers[events.HeaderTraceparent], events.Traceparent(in.OrderID, wantID); got != want || len(got) != 55 {
		t.Errorf("traceparent = %q; want %q (W3C: 00-<32 hex>-<16 hex>-01)", got, want)
	}
	ev := decode(t, row)
	if ev.OrderID != in.OrderID || ev.Status != "placed" || ev.CustomerID != "c_ada" || ev.RestaurantID != "r_pizza" ||
		ev.TotalCents != 3250 || ev.DeliveryAddress != in.DeliveryAddress || ev.AcceptBy == nil ||
		!ev.AcceptBy.Equal(in.AcceptBy) || !ev.OccurredAt.Equal(placedAt) || ev.PaymentStatus != "" {
		t.Errorf("payload = %+v", ev)
	}
	if len(ev.Items) != 2 || ev.Items[0] != in.Items[0] || ev.Items[1] != in.Items[1] {
		t.Errorf("payload items = %+v, want %+v", ev.Items, in.Items)
	}

	// A retry — even one carrying different content — writes nothing new.
	before := f.snapshot(t, in.OrderID)
	retry := in
	retry.TotalCents = 1
	retry.Items = retry.Items[:1]
	for range 2 {
		if err := f.acts.RecordPlaced(t.Context(), retry); err != nil {
			t.Fatalf("retried RecordPlaced: %v", err)
		}
	}
	if after := f.snapshot(t, in.OrderID); after != before {
		t.Errorf("retried RecordPlaced changed %+v to %+v", before, after)
	}
	if items, _ := f.store.ListOrderItems(t.Context(), id); len(items) != 2 {
		t.Errorf("retried RecordPlaced left %d items, want 2", len(items))
	}
	if o := f.order(t, in.OrderID); o.TotalCents != 3250 {
		t.Errorf("retried RecordPlaced changed the total to %d", o.TotalCents)
	}
}

func TestRecordPlacedRejectsInvalidOrdersAndWritesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tests := []struct {
		name   string
		change func(*activities.NewOrder)
	}{
		{"malformed order id", func(o *activities.NewOrder) { o.OrderID = "order-42" }},
		{"unknown customer", func(o *activities.NewOrder) { o.CustomerID = "c_nobody" }},
		{"unknown restaurant", func(o *activities.NewOrder) { o.RestaurantID = "r_nowhere" }},
		{"unknown menu item", func(o *activities.NewOrder) { o.Items[1].MenuItemID = "m_unicorn" }},
		{"no items", func(o *activities.NewOrder) { o.Items = nil }},
		{"quantity out of range", func(o *activities.NewOrder) { o.Items[0].Quantity = 0 }},
		{"negative total", func(o *activities.NewOrder) { o.TotalCents = -1 }},
		{"no accept_by", func(o *activities.NewOrder) { o.AcceptBy = time.Time{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := newOrder()
			tt.change(&in)
			requireAppError(t, f.acts.RecordPlaced(t.Context(), in), activities.ErrTypeInvalid)
			id, err := uuid.Parse(in.OrderID)
			if err != nil {
				return
			}
			// The order, its items and its events are one transaction.
			if _, err := f.store.GetOrder(t.Context(), id); !errors.Is(err, sql.ErrNoRows) {
				t.Errorf("order row after a rejected RecordPlaced: err = %v, want no rows", err)
			}
			if items, _ := f.store.ListOrderItems(t.Context(), id); len(items) != 0 {
				t.Errorf("%d order items written", len(items))
			}
			if ob := f.outbox(t, in.OrderID); len(ob) != 0 {
				t.Errorf("%d outbox rows written", len(ob))
			}
		})
	}
}

// TestEachStepBumpsVersionOnce walks an order down the happy path (with a
// late delivery), calling every step twice as a retry would: the first call
// bumps the version by exactly one and writes one timeline and one outbox
// row; the second writes nothing.
func TestEachStepBumpsVersionOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	in := f.place(t)
	id := in.OrderID
	var authID string

	steps := []struct {
		name       string
		run        func(ctx context.Context) error
		wantEvent  string
		wantStatus orderflow.OrderStatus
	}{
		{"authorize payment", func(ctx context.Context) error {
			auth, err := f.acts.AuthorizePayment(ctx, activities.AuthorizeInput{OrderID: id, PaymentToken: activities.SandboxTokenVisa, AmountCents: in.TotalCents})
			authID = auth.AuthorizationID
			return err
		}, events.OrderPaymentAuthorized, orderflow.StatusPlaced},
		{"notify restaurant", func(ctx context.Context) error {
			return f.acts.NotifyRestaurant(ctx, id)
		}, events.OrderRestaurantNotified, orderflow.StatusAwaitingAcceptance},
		{"accept", func(ctx context.Context) error {
			return f.acts.Transition(ctx, activities.TransitionInput{OrderID: id, Status: "accepted", EventType: events.OrderAccepted})
		}, events.OrderAccepted, orderflow.StatusAccepted},
		{"capture payment", func(ctx context.Context) error {
			return f.acts.CapturePayment(ctx, activities.PaymentInput{OrderID: id, AuthorizationID: authID})
		}, events.OrderPaymentCaptured, orderflow.StatusAccepted},
		{"notify customer: accepted", func(ctx context.Context) error {
			return f.acts.NotifyCustomer(ctx, activities.CustomerNotice{OrderID: id, Kind: "accepted", Message: "Your order was accepted."})
		}, events.OrderUserNotified, orderflow.StatusAccepted},
		{"escalate late delivery", func(ctx context.Context) error {
			return f.acts.Transition(ctx, activities.TransitionInput{OrderID: id, Status: "accepted", EventType: events.OrderDeliveryEscalated, Reason: "delivery exceeded its SLA"})
		}, events.OrderDeliveryEscalated, orderflow.StatusAccepted},
		{"notify customer: delivery_late", func(ctx context.Context) error {
			return f.acts.NotifyCustomer(ctx, activities.CustomerNotice{OrderID: id, Kind: "delivery_late", Message: "Running late."})
		}, events.OrderUserNotified, orderflow.StatusAccepted},
		{"complete", func(ctx context.Context) error {
			return f.acts.Transition(ctx, activities.TransitionInput{OrderID: id, Status: "completed", EventType: events.OrderCompleted})
		}, events.OrderCompleted, orderflow.StatusCompleted},
	}
	wantEvents := []string{events.OrderPlaced}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := f.snapshot(t, id)
			if err := st.run(t.Context()); err != nil {
				t.Fatalf("first call: %v", err)
			}
			after := f.snapshot(t, id)
			if after.Version != before.Version+1 || after.Timeline != before.Timeline+1 || after.Outbox != before.Outbox+1 {
				t.Fatalf("first call: %+v -> %+v, want version, timeline and outbox up by one", before, after)
			}
			if after.Status != string(st.wantStatus) {
				t.Errorf("status %q, want %q", after.Status, st.wantStatus)
			}
			tl := f.timeline(t, id)
			if last := tl[len(tl)-1]; last.EventType != st.wantEvent || last.Version != after.Version {
				t.Errorf("last timeline row %+v, want %s at version %d", last, st.wantEvent, after.Version)
			}
			if err := st.run(t.Context()); err != nil {
				t.Fatalf("retry: %v", err)
			}
			if again := f.snapshot(t, id); again != after {
				t.Errorf("retry changed %+v to %+v", after, again)
			}
		})
		wantEvents = append(wantEvents, st.wantEvent)
	}

	// Outbox rows, in id (commit) order, number the order's events 1, 2, 3…
	// and match the timeline row for row.
	ob, tl := f.outbox(t, id), f.timeline(t, id)
	if len(ob) != len(wantEvents) || len(tl) != len(wantEvents) {
		t.Fatalf("outbox %d rows, timeline %d rows, want %d each", len(ob), len(tl), len(wantEvents))
	}
	for i, row := range ob {
		ev := decode(t, row)
		if row.AggregateVersion != int64(i+1) || row.EventType != wantEvents[i] ||
			tl[i].Version != int64(i+1) || tl[i].EventID != row.EventID || ev.Status != tl[i].Status {
			t.Errorf("event %d: outbox v%d %s (status %s), timeline v%d %s (status %s); want v%d %s",
				i, row.AggregateVersion, row.EventType, ev.Status, tl[i].Version, tl[i].EventType, tl[i].Status, i+1, wantEvents[i])
		}
		if i > 0 && !row.OccurredAt.Equal(clockAt) {
			t.Errorf("event %d occurred at %v, want the activities' clock %v", i, row.OccurredAt, clockAt)
		}
	}
	// A status change sets its reason; the next one clears it.
	for _, r := range tl {
		if r.EventType == events.OrderDeliveryEscalated && r.Reason != "delivery exceeded its SLA" {
			t.Errorf("escalation reason %q", r.Reason)
		}
	}
	if o := f.order(t, id); o.Status != "completed" || o.Reason != "" || o.Version != int64(len(wantEvents)) {
		t.Errorf("final order: status %q, reason %q, version %d", o.Status, o.Reason, o.Version)
	}
}

// TestCompensationKeepsTheReason follows a rejection: the payment and
// notification events after it keep the order rejected with its reason, and
// carry no reason of their own.
func TestCompensationKeepsTheReason(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	in := f.place(t)
	authID := f.authorize(t, in, activities.SandboxTokenVisa)
	ctx := t.Context()
	if err := f.acts.NotifyRestaurant(ctx, in.OrderID); err != nil {
		t.Fatal(err)
	}
	if err := f.acts.Transition(ctx, activities.TransitionInput{OrderID: in.OrderID, Status: "rejected", EventType: events.OrderRejected, Reason: "kitchen closed"}); err != nil {
		t.Fatal(err)
	}
	if err := f.acts.VoidPayment(ctx, activities.PaymentInput{OrderID: in.OrderID, AuthorizationID: authID}); err != nil {
		t.Fatal(err)
	}
	if err := f.acts.NotifyCustomer(ctx, activities.CustomerNotice{OrderID: in.OrderID, Kind: "rejected", Message: "Sorry."}); err != nil {
		t.Fatal(err)
	}
	if o := f.order(t, in.OrderID); o.Status != "rejected" || o.Reason != "kitchen closed" || o.Version != 6 {
		t.Errorf("order: status %q, reason %q, version %d; want rejected, kitchen closed, 6", o.Status, o.Reason, o.Version)
	}
	for _, row := range f.outbox(t, in.OrderID) {
		ev := decode(t, row)
		wantReason := ""
		if row.EventType == events.OrderRejected {
			wantReason = "kitchen closed"
		}
		if ev.Reason != wantReason {
			t.Errorf("%s payload reason %q, want %q", row.EventType, ev.Reason, wantReason)
		}
	}
}

func TestConcurrentRetriesEmitOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	in := f.place(t)
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Go(func() {
			errs[i] = f.acts.Transition(t.Context(), activities.TransitionInput{
				OrderID: in.OrderID, Status: "cancelled", EventType: events.OrderCancelled, Reason: "changed my mind",
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if s := f.snapshot(t, in.OrderID); s.Version != 2 || s.Outbox != 2 || s.Timeline != 2 || s.Status != "cancelled" {
		t.Errorf("after 6 concurrent attempts: %+v, want version 2 with 2 events", s)
	}
}

func TestTransitionRejectsWhatItDoesNotOwn(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	in := f.place(t)
	tests := []struct {
		name string
		in   activities.TransitionInput
	}{
		{"unknown status", activities.TransitionInput{OrderID: in.OrderID, Status: "shipped", EventType: events.OrderAccepted}},
		{"empty status", activities.TransitionInput{OrderID: in.OrderID, EventType: events.OrderAccepted}},
		{"unknown event type", activities.TransitionInput{OrderID: in.OrderID, Status: "accepted", EventType: "order.teleported"}},
		{"event of another activity", activities.TransitionInput{OrderID: in.OrderID, Status: "accepted", EventType: events.OrderPaymentCaptured}},
		{"placed again", activities.TransitionInput{OrderID: in.OrderID, Status: "placed", EventType: events.OrderPlaced}},
	}
	before := f.snapshot(t, in.OrderID)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requireAppError(t, f.acts.Transition(t.Context(), tt.in), activities.ErrTypeInvalid)
			if after := f.snapshot(t, in.OrderID); after != before {
				t.Errorf("rejected Transition changed %+v to %+v", before, after)
			}
		})
	}
}

// TestUnknownOrderIsInvalid: every activity fails an order that does not
// exist (or an ID that is not one) with a non-retryable ErrTypeInvalid
// before it moves money or sends anything.
func TestUnknownOrderIsInvalid(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tests := []struct {
		name string
		call func(ctx context.Context, orderID string) error
	}{
		{"RecordPlaced malformed id", func(ctx context.Context, id string) error {
			in := newOrder()
			in.OrderID = "x" + id
			return f.acts.RecordPlaced(ctx, in)
		}},
		{"AuthorizePayment", func(ctx context.Context, id string) error {
			_, err := f.acts.AuthorizePayment(ctx, activities.AuthorizeInput{OrderID: id, PaymentToken: activities.SandboxTokenVisa, AmountCents: 100})
			return err
		}},
		{"NotifyRestaurant", func(ctx context.Context, id string) error { return f.acts.NotifyRestaurant(ctx, id) }},
		{"Transition", func(ctx context.Context, id string) error {
			return f.acts.Transition(ctx, activities.TransitionInput{OrderID: id, Status: "failed", EventType: events.OrderFailed, Reason: "x"})
		}},
		{"CapturePayment", func(ctx context.Context, id string) error {
			return f.acts.CapturePayment(ctx, activities.PaymentInput{OrderID: id, AuthorizationID: "auth_x"})
		}},
		{"VoidPayment", func(ctx context.Context, id string) error {
			return f.acts.VoidPayment(ctx, activities.PaymentInput{OrderID: id, AuthorizationID: "auth_x"})
		}},
		{"RefundPayment", func(ctx context.Context, id string) error {
			return f.acts.RefundPayment(ctx, activities.PaymentInput{OrderID: id, AuthorizationID: "auth_x"})
		}},
		{"NotifyCustomer", func(ctx context.Context, id string) error {
			return f.acts.NotifyCustomer(ctx, activities.CustomerNotice{OrderID: id, Kind: "failed", Message: "x"})
		}},
		{"NotifyRestaurantOfEnd", func(ctx context.Context, id string) error {
			return f.acts.NotifyRestaurantOfEnd(ctx, activities.RestaurantNotice{OrderID: id})
		}},
	}
	for _, tt := range tests {
		for _, id := range []struct{ label, id string }{{"unknown id", uuid.NewString()}, {"malformed id", "not-a-uuid"}} {
			t.Run(tt.name+" "+id.label, func(t *testing.T) {
				id := id.id
				appErr := requireAppError(t, tt.call(t.Context(), id), activities.ErrTypeInvalid)
				t.Logf("%s", appErr.Message())
				if _, err := uuid.Parse(id); err != nil {
					return
				}
				if _, err := f.store.GetSandboxAuthorizationByKey(t.Context(), id); !errors.Is(err, sql.ErrNoRows) {
					t.Errorf("the sandbox holds money for an unknown order (err %v)", err)
				}
				if n := f.notifications(t, id); len(n) != 0 {
					t.Errorf("%d notifications sent for an unknown order", len(n))
				}
			})
		}
	}
}

// TestClockDefaultsToNow: with no clock set, steps are stamped with the
// current time in UTC.
func TestClockDefaultsToNow(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.acts.Now = nil
	in := f.place(t)
	start := time.Now().Add(-time.Second)
	if err := f.acts.Transition(t.Context(), activities.TransitionInput{OrderID: in.OrderID, Status: "cancelled", EventType: events.OrderCancelled}); err != nil {
		t.Fatal(err)
	}
	ob := f.outbox(t, in.OrderID)
	at := decode(t, ob[1]).OccurredAt
	if at.Before(start) || at.After(time.Now().Add(time.Second)) || at.Location() != time.UTC || !at.Equal(ob[1].OccurredAt) {
		t.Errorf("occurred_at %v (column %v), want about now in UTC", at, ob[1].OccurredAt)
	}
}

// TestNoForwardStepAfterTheEnd: once an order has ended, a step that would
// move it on — a status, an authorization, a capture — is refused as
// non-retryable and writes nothing (an attempt the workflow stopped waiting
// for when it was cancelled can still arrive), while a retry of the final
// step and the notices that follow the end still apply.
func TestNoForwardStepAfterTheEnd(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	in := f.place(t)
	cancel := activities.TransitionInput{OrderID: in.OrderID, Status: "cancelled", EventType: events.OrderCancelled, Reason: "order workflow cancelled"}
	if err := f.acts.Transition(t.Context(), cancel); err != nil {
		t.Fatal(err)
	}
	before := len(f.timeline(t, in.OrderID))
	for name, step := range map[string]func() error{
		"notify restaurant": func() error { return f.acts.NotifyRestaurant(t.Context(), in.OrderID) },
		"accept": func() error {
			return f.acts.Transition(t.Context(), activities.TransitionInput{OrderID: in.OrderID, Status: "accepted", EventType: events.OrderAccepted})
		},
	} {
		requireEnded(t, step(), "cancelled")
		if o := f.order(t, in.OrderID); o.Status != "cancelled" {
			t.Fatalf("after a late %s the order is %q; want cancelled", name, o.Status)
		}
	}
	if got := len(f.timeline(t, in.OrderID)); got != before {
		t.Errorf("timeline grew from %d to %d events with refused steps", before, got)
	}
	if n := f.notifications(t, in.OrderID); len(n) != 0 {
		t.Errorf("%d notifications sent by refused steps; want none", len(n))
	}
	_, err := f.acts.AuthorizePayment(t.Context(), activities.AuthorizeInput{OrderID: in.OrderID, PaymentToken: activities.SandboxTokenVisa, AmountCents: in.TotalCents})
	requireEnded(t, err, "cancelled")
	if got := f.ledger(t, in.OrderID); len(got) != 0 {
		t.Errorf("ledger %v after a late authorization; want no hold", got)
	}
	if err := f.acts.Transition(t.Context(), cancel); err != nil {
		t.Errorf("retry of the final step: %v; want nil", err)
	}
	if err := f.acts.NotifyCustomer(t.Context(), activities.CustomerNotice{OrderID: in.OrderID, Kind: "cancelled", Message: "Your order was cancelled."}); err != nil {
		t.Errorf("notice after the end: %v; want it sent", err)
	}
	if got := len(f.timeline(t, in.OrderID)); got != before+1 {
		t.Errorf("timeline has %d events; want %d (the notice added)", got, before+1)
	}
}

// requireEnded asserts err is an ErrTypeOrderEnded error whose details say
// the order is status.
func requireEnded(tb testing.TB, err error, status string) {
	tb.Helper()
	appErr := requireAppError(tb, err, activities.ErrTypeOrderEnded)
	var got string
	if derr := appErr.Details(&got); derr != nil || got != status {
		tb.Errorf("details %q (%v); want the order's status %q", got, derr, status)
	}
}

// TestUnlessAcceptedRefusesAnAcceptedOrder: an end that only an order
// awaiting acceptance may come to (TransitionInput.UnlessAccepted) is
// refused, writing nothing, once the order is accepted, and applied while
// it is not.
func TestUnlessAcceptedRefusesAnAcceptedOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	accepted, waiting := f.place(t), f.place(t)
	for _, in := range []activities.NewOrder{accepted, waiting} {
		if err := f.acts.NotifyRestaurant(t.Context(), in.OrderID); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.acts.Transition(t.Context(), activities.TransitionInput{OrderID: accepted.OrderID, Status: "accepted", EventType: events.OrderAccepted}); err != nil {
		t.Fatal(err)
	}
	before := f.snapshot(t, accepted.OrderID)
	reject := func(id string) activities.TransitionInput {
		return activities.TransitionInput{OrderID: id, Status: "rejected", EventType: events.OrderRejected, Reason: "kitchen closed", UnlessAccepted: true}
	}
	requireAppError(t, f.acts.Transition(t.Context(), reject(accepted.OrderID)), activities.ErrTypeOrderAccepted)
	if after := f.snapshot(t, accepted.OrderID); after != before {
		t.Errorf("a refused step changed the order: %+v, was %+v", after, before)
	}
	if err := f.acts.Transition(t.Context(), reject(waiting.OrderID)); err != nil {
		t.Fatalf("reject of an order awaiting acceptance: %v", err)
	}
	if o := f.order(t, waiting.OrderID); o.Status != "rejected" {
		t.Errorf("order awaiting acceptance is %q after the reject; want rejected", o.Status)
	}
	// Without the flag (a workflow cancellation), an accepted order may end.
	cancel := activities.TransitionInput{OrderID: accepted.OrderID, Status: "cancelled", EventType: events.OrderCancelled, Reason: "order workflow cancelled"}
	if err := f.acts.Transition(t.Context(), cancel); err != nil {
		t.Fatalf("workflow cancellation of an accepted order: %v", err)
	}
}

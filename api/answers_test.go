package api_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/workflows"
)

// TestAcceptOfAnOrderCancelledSinceIsNotAccepted: the accept's record
// committed, but the workflow was cancelled before it heard so; the
// workflow's cancellation then cancelled the order and refunded it. The
// accept waiting meanwhile is now answered (workflows/order.go, awaitOutcome)
// "order is cancelled: the accept did not take effect" where it used to be
// a CanceledError. The API must not tell the restaurant the order is
// accepted: it is cancelled.
func TestAcceptOfAnOrderCancelledSinceIsNotAccepted(t *testing.T) {
	f := newFixture(t)
	f.bind(t)
	ctx := context.Background()
	id := insertOrder(t, f.store, string(orderflow.StatusCancelled))
	for i, ev := range []struct{ typ, status string }{
		{events.OrderAccepted, string(orderflow.StatusAccepted)},
		{events.OrderCancelled, string(orderflow.StatusCancelled)},
	} {
		if err := f.store.InsertTimeline(ctx, db.InsertTimelineParams{
			OrderID: id, Version: int64(i + 2), EventID: events.EventID(id.String(), ev.typ, ""),
			EventType: ev.typ, Status: ev.status, OccurredAt: testNow,
		}); err != nil {
			t.Fatal(err)
		}
	}
	expectUpdate(t, f.temporal, id.String(), workflows.UpdateAccept, nil, updateAnswer{
		rejection: "order is cancelled: the accept did not take effect", rejectionType: "*errors.errorString",
	})
	req := newRequest(t, http.MethodPost, "/v1/orders/"+id.String()+"/accept", "", http.Header{})
	req.Header.Del("Content-Type")
	rec := f.serve(req)
	if rec.Code != http.StatusConflict {
		t.Errorf("accept on an order the workflow's cancellation cancelled = %d %s; want 409", rec.Code, rec.Body)
	}
}

// TestWellFormedQueriesAndPathsAreTaken: well-formed queries net/url takes whole
// are not refused, and a path ID is decoded once.
func TestWellFormedQueriesAndPathsAreTaken(t *testing.T) {
	f := newFixture(t)
	insertOrder(t, f.store, string(orderflow.StatusAwaitingAcceptance))
	base := "/v1/restaurants/" + pizzaID + "/orders"
	for _, tc := range []struct {
		path string
		want int
	}{
		{base + "?", 200}, {base + "?&", 200}, {base + "?&&", 200},
		{base + "?status=awaiting_acceptance&", 200}, {base + "?status=awaiting%5Facceptance", 200},
		{base + "?status=awaiting_acceptance&x=", 200}, {base + "?x=a+b%2Bc", 200}, {base + "?=x", 200},
		{base + "?x", 200}, {base + "?x=a=b", 200},
		{"/v1/restaurants/r_pizza%25/orders", 404}, {"/v1/restaurants/r%255Fpizza/orders", 404},
		{"/v1/restaurants/r%255Fpizza%5F/orders", 404}, {"/v1/restaurants/r%5Fpizza/orders?status=awaiting_acceptance", 200},
	} {
		t.Run(tc.path, func(t *testing.T) {
			f.bind(t)
			rec := f.do(t, http.MethodGet, tc.path, "", nil)
			if rec.Code != tc.want {
				t.Errorf("GET %s = %d %s; want %d", tc.path, rec.Code, rec.Body, tc.want)
			}
		})
	}
}

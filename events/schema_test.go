package events_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/events"
)

// samples are payloads of every event type as the activities write them:
// events.OrderEvent marshalled, with the fields each step fills.
func samples(t *testing.T) map[string][]byte {
	t.Helper()
	at := time.Date(2026, 3, 14, 12, 30, 45, 123456000, time.UTC)
	acceptBy := at.Add(10 * time.Minute)
	base := func(status string) events.OrderEvent {
		return events.OrderEvent{
			OrderID: "1b2f2e36-8e85-5371-bfb7-67afd130e766", Status: status,
			CustomerID: "c_ada", RestaurantID: "r_pizza", OccurredAt: at,
		}
	}
	payment := func(status, paymentStatus string) events.OrderEvent {
		ev := base(status)
		ev.PaymentStatus, ev.AuthorizationID, ev.AmountCents = paymentStatus, "auth_1b2f2e36", 2650
		return ev
	}
	withReason := func(status, reason string) events.OrderEvent {
		ev := base(status)
		ev.Reason = reason
		return ev
	}
	placed := base("placed")
	placed.Items = []events.OrderItem{
		{MenuItemID: "m_margherita", Name: "Margherita", UnitPriceCents: 1250, Quantity: 1},
		{MenuItemID: "m_pepperoni", Name: "Pepperoni", UnitPriceCents: 1400, Quantity: 1},
	}
	placed.TotalCents, placed.DeliveryAddress, placed.AcceptBy = 2650, "1 Main St", &acceptBy
	notified := base("accepted")
	notified.NotificationKind = "accepted"

	out := map[string][]byte{}
	for typ, ev := range map[string]events.OrderEvent{
		events.OrderPlaced:             placed,
		events.OrderPaymentAuthorized:  payment("placed", "authorized"),
		events.OrderRestaurantNotified: base("awaiting_acceptance"),
		events.OrderAccepted:           base("accepted"),
		events.OrderRejected:           withReason("rejected", "payment declined: insufficient funds"),
		events.OrderTimedOut:           withReason("timed_out", "restaurant did not answer within 10m0s"),
		events.OrderCancelled:          withReason("cancelled", "cancelled by customer"),
		events.OrderPaymentCaptured:    payment("accepted", "captured"),
		events.OrderPaymentVoided:      payment("rejected", "voided"),
		events.OrderPaymentRefunded:    payment("cancelled", "refunded"),
		events.OrderUserNotified:       notified,
		events.OrderDeliveryEscalated:  withReason("accepted", "delivery exceeded its SLA of 45m0s"),
		events.OrderCompleted:          base("completed"),
		events.OrderFailed:             withReason("failed", "payment capture failed"),
	} {
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		out[typ] = b
	}
	out[events.DeliveryCompleted] = []byte(`{"order_id":"1b2f2e36-8e85-5371-bfb7-67afd130e766","courier_id":"courier-7","delivered_at":"2026-03-14T13:02:11.5Z"}`)
	return out
}

func TestValidatePayloadAcceptsEveryType(t *testing.T) {
	s := samples(t)
	for _, typ := range append(append([]string(nil), events.OrderEventTypes...), events.DeliveryCompleted) {
		t.Run(typ, func(t *testing.T) {
			payload, ok := s[typ]
			if !ok {
				t.Fatalf("no sample payload for %s", typ)
			}
			if err := events.ValidatePayload(typ, payload); err != nil {
				t.Errorf("%s", err)
			}
		})
	}
}

func TestValidatePayloadNamesTheProblem(t *testing.T) {
	s := samples(t)
	// edit decodes a sample, changes it and encodes it again.
	edit := func(typ string, f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(s[typ], &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	tests := []struct {
		name      string
		eventType string
		payload   []byte
		want      []string // substrings of the error
		// added: the payload only has a member its schema does not name,
		// which a reader allows (ValidateReceived).
		added bool
	}{
		{
			name: "missing order id", eventType: events.OrderAccepted,
			payload: edit(events.OrderAccepted, func(m map[string]any) { delete(m, "order_id") }),
			want:    []string{"order.accepted payload", "order_id"},
		},
		{
			name: "status that does not go with the type", eventType: events.OrderAccepted,
			payload: edit(events.OrderAccepted, func(m map[string]any) { m["status"] = "rejected" }),
			want:    []string{"'/status'", "accepted"},
		},
		{
			name: "unknown status", eventType: events.OrderUserNotified,
			payload: edit(events.OrderUserNotified, func(m map[string]any) { m["status"] = "lost" }),
			want:    []string{"'/status'"},
		},
		{
			name: "field another type carries", eventType: events.OrderAccepted,
			payload: edit(events.OrderAccepted, func(m map[string]any) { m["items"] = []any{} }),
			want:    []string{"items"},
			added:   true,
		},
		{
			name: "order id not a uuid", eventType: events.OrderCompleted,
			payload: edit(events.OrderCompleted, func(m map[string]any) { m["order_id"] = "42" }),
			want:    []string{"'/order_id'", "uuid"},
		},
		{
			name: "time not RFC 3339", eventType: events.OrderCompleted,
			payload: edit(events.OrderCompleted, func(m map[string]any) { m["occurred_at"] = "yesterday" }),
			want:    []string{"'/occurred_at'", "date-time"},
		},
		{
			name: "placed without items", eventType: events.OrderPlaced,
			payload: edit(events.OrderPlaced, func(m map[string]any) { m["items"] = []any{} }),
			want:    []string{"'/items'", "minItems"},
		},
		{
			name: "item quantity zero", eventType: events.OrderPlaced,
			payload: edit(events.OrderPlaced, func(m map[string]any) {
				m["items"].([]any)[1].(map[string]any)["quantity"] = 0
			}),
			want: []string{"'/items/1/quantity'", "minimum"},
		},
		{
			name: "amount as a string", eventType: events.OrderPaymentCaptured,
			payload: edit(events.OrderPaymentCaptured, func(m map[string]any) { m["amount_cents"] = "26.50" }),
			want:    []string{"'/amount_cents'", "integer"},
		},
		{
			name: "rejection without a reason", eventType: events.OrderRejected,
			payload: edit(events.OrderRejected, func(m map[string]any) { delete(m, "reason") }),
			want:    []string{"reason"},
		},
		{
			name: "delivery without courier", eventType: events.DeliveryCompleted,
			payload: edit(events.DeliveryCompleted, func(m map[string]any) { delete(m, "courier_id") }),
			want:    []string{"delivery.completed payload", "courier_id"},
		},
		{
			name: "not JSON", eventType: events.OrderAccepted,
			payload: []byte(`{"order_id":`),
			want:    []string{"not JSON"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := events.ValidatePayload(tt.eventType, tt.payload)
			if err == nil {
				t.Fatalf("payload %s validated", tt.payload)
			}
			switch rerr := events.ValidateReceived(tt.eventType, tt.payload); {
			case tt.added && rerr != nil:
				t.Errorf("ValidateReceived refused an added member: %v", rerr)
			case !tt.added && rerr == nil:
				t.Errorf("ValidateReceived took payload %s", tt.payload)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestValidateReceivedAllowsAddedMembers: a producer a release ahead adds
// optional members, at the top and inside the payload's nested objects;
// the contract (ValidatePayload) refuses them, a reader takes them.
func TestValidateReceivedAllowsAddedMembers(t *testing.T) {
	for typ, payload := range samples(t) {
		t.Run(typ, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal(payload, &m); err != nil {
				t.Fatal(err)
			}
			m["added_in_a_later_release"] = map[string]any{"x": 1}
			if items, ok := m["items"].([]any); ok {
				items[0].(map[string]any)["allergens"] = []any{"gluten"}
			}
			b, _ := json.Marshal(m)
			if err := events.ValidatePayload(typ, b); err == nil {
				t.Errorf("ValidatePayload took the added members; the contract names every member")
			}
			if err := events.ValidateReceived(typ, b); err != nil {
				t.Errorf("ValidateReceived: %v", err)
			}
			delete(m, "order_id")
			b, _ = json.Marshal(m)
			if err := events.ValidateReceived(typ, b); err == nil || !strings.Contains(err.Error(), "order_id") {
				t.Errorf("ValidateReceived without order_id = %v; want it refused, naming order_id", err)
			}
		})
	}
}

func TestValidatePayloadUnknownType(t *testing.T) {
	err := events.ValidatePayload("order.teleported", []byte(`{}`))
	if !errors.Is(err, events.ErrUnknownEventType) {
		t.Fatalf("err = %v, want ErrUnknownEventType", err)
	}
}

package consumer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/events/consumer"
	"github.com/orderflow/orderflow/events/eventtest"
)

// TestTail: tail prints the events of every stream a subject reaches, one
// CloudEvents JSON object per line, with the sequence extension at the top
// level and the payload under data.
func TestTail(t *testing.T) {
	bus := eventtest.Start(t)
	o := eventtest.Order{ID: uuid.NewString(), CustomerID: "c_ada", RestaurantID: "r_pizza"}
	other := eventtest.Order{ID: uuid.NewString(), CustomerID: "c_alan", RestaurantID: "r_sushi"}
	placed := eventtest.OrderEvent(o, events.OrderPlaced, 1, time.Now())
	otherPlaced := eventtest.OrderEvent(other, events.OrderPlaced, 1, time.Now())
	delivered := events.Envelope{
		ID: uuid.NewString(), Type: events.CEType(events.DeliveryCompleted), Source: events.SourceDelivery,
		Subject: o.ID, Time: time.Now(), Data: []byte(`{"order_id":"` + o.ID + `"}`),
	}
	for _, env := range []events.Envelope{placed, otherPlaced, delivered} {
		bus.Publish(t, env)
	}
	tests := []struct {
		name    string
		subject string
		want    []string // event IDs, in any order across streams
	}{
		{name: "everything", want: []string{placed.ID, otherPlaced.ID, delivered.ID}},
		{name: "order events", subject: "orderflow.order.>", want: []string{placed.ID, otherPlaced.ID}},
		{name: "one order, every context", subject: "orderflow.*.*." + o.ID, want: []string{placed.ID, delivered.ID}},
		{name: "one type", subject: "orderflow.order.placed.*", want: []string{placed.ID, otherPlaced.ID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Tail runs until cancelled: once the lines wanted have come,
			// or after a deadline that only bounds a hang.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out := &eventtest.Lines{Want: len(tt.want), Cancel: cancel}
			if err := consumer.Tail(ctx, bus.JS, consumer.TailOptions{Subject: tt.subject, All: true}, out); err != nil {
				t.Fatalf("tail: %v", err)
			}
			var got []string
			for _, line := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n")) {
				var ce struct {
					SpecVersion string          `json:"specversion"`
					ID          string          `json:"id"`
					Sequence    string          `json:"sequence"`
					Data        json.RawMessage `json:"data"`
				}
				if err := json.Unmarshal(line, &ce); err != nil || ce.SpecVersion != "1.0" || len(ce.Data) == 0 {
					t.Fatalf("line %q is not a CloudEvent with data (%v)", line, err)
				}
				if ce.ID == placed.ID && ce.Sequence != "1" {
					t.Errorf("sequence = %q, want \"1\"", ce.Sequence)
				}
				got = append(got, ce.ID)
			}
			slices.Sort(got)
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("tail printed %v, want %v", got, want)
			}
		})
	}
	if err := consumer.Tail(context.Background(), bus.JS, consumer.TailOptions{Subject: "billing.>"}, &bytes.Buffer{}); err == nil {
		t.Fatal("tail of a subject no stream holds succeeded")
	}
}

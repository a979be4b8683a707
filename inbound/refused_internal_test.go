package inbound

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/temporal"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/tests/stacktest"
	"github.com/orderflow/orderflow/workflows"
)

// TestRefusedTellsACopyFromAnEarlyDelivery: of the workflow's refusals of
// a delivery while the database says accepted, only the typed "already
// delivered" one is a copy to acknowledge; any other (the workflow has
// not taken the acceptance in yet) is retried.
func TestRefusedTellsACopyFromAnEarlyDelivery(t *testing.T) {
	env := stacktest.Start(t)
	ctx := context.Background()
	if err := env.Store.Seed(ctx); err != nil {
		t.Fatalf("seed: %v", err)
	}
	id := uuid.New()
	now := time.Now()
	if _, err := env.Store.InsertOrder(ctx, db.InsertOrderParams{
		ID: id, CustomerID: "c_ada", RestaurantID: "r_pizza", DeliveryAddress: "1 Main St",
		Status: string(orderflow.StatusAccepted), TotalCents: 1150, AcceptBy: now.Add(10 * time.Minute), CreatedAt: now,
	}); err != nil {
		t.Fatalf("insert order: %v", err)
	}
	d := NewDeliveries(env.Store, env.Temporal, env.Logger)
	tests := []struct {
		name      string
		err       error
		wantRetry bool
	}{
		{name: "already delivered", err: temporal.NewNonRetryableApplicationError("order is already marked delivered", workflows.ErrTypeAlreadyDelivered, nil)},
		{name: "not accepted in the workflow yet", err: temporal.NewApplicationError("order is awaiting_acceptance: only an accepted order can be delivered", ""), wantRetry: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := d.refused(ctx, id, tt.err)
			if got := errors.Is(err, ErrNotYetAccepted); got != tt.wantRetry || !tt.wantRetry && err != nil {
				t.Errorf("refused = %v; want retried (ErrNotYetAccepted) %v", err, tt.wantRetry)
			}
		})
	}
}

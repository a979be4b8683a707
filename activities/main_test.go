package activities_test

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/temporal"

	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/db/dbtest"
	"github.com/orderflow/orderflow/events"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

var (
	// placedAt is when test orders are placed; clockAt is what the
	// activities' clock says for every later step.
	placedAt = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	clockAt  = placedAt.Add(time.Minute)
)

// fixture is the activities over a fresh, seeded database, with the
// sandbox gateway and the dev notifier, as orderflow dev wires them.
type fixture struct {
	store *db.Store
	acts  *activities.Activities
	gw    *activities.SandboxGateway
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	store := dbtest.New(tb)
	if err := store.Seed(context.Background()); err != nil {
		tb.Fatalf("seed: %v", err)
	}
	logger := slog.New(slog.DiscardHandler)
	gw := activities.NewSandboxGateway(store)
	return &fixture{
		store: store,
		gw:    gw,
		acts: &activities.Activities{
			Store:    store,
			Payments: gw,
			Notifier: activities.NewDevNotifier(store, logger),
			Logger:   logger,
			Now:      func() time.Time { return clockAt },
		},
	}
}

// newOrder is two margheritas and a marinara from the seeded pizzeria.
func newOrder() activities.NewOrder {
	return activities.NewOrder{
		OrderID:         uuid.NewString(),
		CustomerID:      "c_ada",
		RestaurantID:    "r_pizza",
		DeliveryAddress: "12 St James's Square, London",
		Items: []events.OrderItem{
			{MenuItemID: "m_margherita", Name: "Margherita", UnitPriceCents: 1150, Quantity: 2},
			{MenuItemID: "m_marinara", Name: "Marinara", UnitPriceCents: 950, Quantity: 1},
		},
		TotalCents: 3250,
		PlacedAt:   placedAt,
		AcceptBy:   placedAt.Add(10 * time.Minute),
	}
}

// place records a new order and returns it.
func (f *fixture) place(tb testing.TB) activities.NewOrder {
	tb.Helper()
	o := newOrder()
	if err := f.acts.RecordPlaced(tb.Context(), o); err != nil {
		tb.Fatalf("RecordPlaced: %v", err)
	}
	return o
}

// authorize authorizes o's total on token and returns the authorization ID.
func (f *fixture) authorize(tb testing.TB, o activities.NewOrder, token string) string {
	tb.Helper()
	auth, err := f.acts.AuthorizePayment(tb.Context(), activities.AuthorizeInput{
		OrderID: o.OrderID, PaymentToken: token, AmountCents: o.TotalCents,
	})
	if err != nil {
		tb.Fatalf("AuthorizePayment(%s): %v", token, err)
	}
	return auth.AuthorizationID
}

func (f *fixture) order(tb testing.TB, orderID string) db.Order {
	tb.Helper()
	o, err := f.store.GetOrder(tb.Context(), uuid.MustParse(orderID))
	if err != nil {
		tb.Fatalf("get order %s: %v", orderID, err)
	}
	return o
}

// outbox returns the order's outbox rows in id (commit) order.
func (f *fixture) outbox(tb testing.TB, orderID string) []db.OutboxEvent {
	tb.Helper()
	rows, err := f.store.ListAggregateOutboxEvents(tb.Context(), db.ListAggregateOutboxEventsParams{
		AggregateType: events.AggregateOrder, AggregateID: orderID,
	})
	if err != nil {
		tb.Fatalf("list outbox: %v", err)
	}
	slices.SortFunc(rows, func(a, b db.OutboxEvent) int { return cmp.Compare(a.ID, b.ID) })
	return rows
}

func (f *fixture) timeline(tb testing.TB, orderID string) []db.OrderTimeline {
	tb.Helper()
	rows, err := f.store.ListOrderTimeline(tb.Context(), uuid.MustParse(orderID))
	if err != nil {
		tb.Fatalf("list timeline: %v", err)
	}
	return rows
}

func (f *fixture) notifications(tb testing.TB, orderID string) []db.Notification {
	tb.Helper()
	rows, err := f.store.ListOrderNotifications(tb.Context(), uuid.MustParse(orderID))
	if err != nil {
		tb.Fatalf("list notifications: %v", err)
	}
	return rows
}

// ledger returns the sandbox's entries for an idempotency key, oldest first.
func (f *fixture) ledger(tb testing.TB, key string) []string {
	tb.Helper()
	rows, err := f.store.ListSandboxLedgerByKey(tb.Context(), key)
	if err != nil {
		tb.Fatalf("list ledger: %v", err)
	}
	entries := []string{}
	for _, r := range rows {
		entries = append(entries, r.Entry)
	}
	return entries
}

// payment returns the order's payment row; "" status when there is none.
func (f *fixture) payment(tb testing.TB, orderID string) db.Payment {
	tb.Helper()
	p, err := f.store.GetPayment(tb.Context(), uuid.MustParse(orderID))
	if errors.Is(err, sql.ErrNoRows) {
		return db.Payment{}
	}
	if err != nil {
		tb.Fatalf("get payment: %v", err)
	}
	return p
}

// snapshot is everything a step may write for one order, so that a test can
// tell that a retried step wrote nothing.
type snapshot struct {
	Version       int64
	Status        string
	Reason        string
	Timeline      int
	Outbox        int
	Notifications int
	Payment       string
	Ledger        int
}

func (f *fixture) snapshot(tb testing.TB, orderID string) snapshot {
	tb.Helper()
	o := f.order(tb, orderID)
	return snapshot{
		Version:       o.Version,
		Status:        o.Status,
		Reason:        o.Reason,
		Timeline:      len(f.timeline(tb, orderID)),
		Outbox:        len(f.outbox(tb, orderID)),
		Notifications: len(f.notifications(tb, orderID)),
		Payment:       f.payment(tb, orderID).Status,
		Ledger:        len(f.ledger(tb, orderID)),
	}
}

// decode reads an outbox row's payload.
func decode(tb testing.TB, row db.OutboxEvent) events.OrderEvent {
	tb.Helper()
	var ev events.OrderEvent
	if err := json.Unmarshal(row.Payload, &ev); err != nil {
		tb.Fatalf("decode %s payload %s: %v", row.EventType, row.Payload, err)
	}
	return ev
}

// requireAppError fails unless err is itself (not wrapping) a non-retryable
// *temporal.ApplicationError of errType: Temporal reads type and
// retryability from the returned value only.
func requireAppError(tb testing.TB, err error, errType string) *temporal.ApplicationError {
	tb.Helper()
	appErr, ok := err.(*temporal.ApplicationError)
	if !ok {
		tb.Fatalf("error %v (%T) is not a *temporal.ApplicationError itself; Temporal would retry it", err, err)
	}
	if appErr.Type() != errType {
		tb.Fatalf("error type %q, want %q (error: %v)", appErr.Type(), errType, err)
	}
	if !appErr.NonRetryable() {
		tb.Fatalf("error %v is retryable, want non-retryable", err)
	}
	return appErr
}

// requireRetryable fails unless err is an error Temporal would retry.
func requireRetryable(tb testing.TB, err error) {
	tb.Helper()
	if err == nil {
		tb.Fatal("no error, want a retryable one")
	}
	if appErr, ok := err.(*temporal.ApplicationError); ok && appErr.NonRetryable() {
		tb.Fatalf("error %v is non-retryable, want retryable", err)
	}
}

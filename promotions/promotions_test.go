package promotions_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/db/dbtest"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/events/consumer"
	"github.com/orderflow/orderflow/events/eventtest"
	"github.com/orderflow/orderflow/promotions"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// fixture is the promotions context on a fresh database and a private bus.
type fixture struct {
	store *db.Store
	bus   *eventtest.Bus
	svc   *promotions.Service

	mu       sync.Mutex
	outcomes map[consumer.Result]int
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	store := dbtest.New(tb)
	return &fixture{
		store: store, bus: eventtest.Start(tb), svc: promotions.New(store, eventtest.Logger()),
		outcomes: map[consumer.Result]int{},
	}
}

// start runs one more instance of the promotions consumer, with fast
// retries, until the test ends.
func (f *fixture) start(tb testing.TB) {
	tb.Helper()
	cfg := f.svc.ConsumerConfig(f.bus.JS)
	cfg.Backoff, cfg.MaxDeliver = []time.Duration{20 * time.Millisecond}, 3
	cfg.Observe = func(o consumer.Outcome) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.outcomes[o.Result]++
	}
	c, err := consumer.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("promotions consumer: %v", err)
		}
	})
}

func (f *fixture) seen(r consumer.Result) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.outcomes[r]
}

// TestOneVoucherPerOrder: each completed order earns its customer exactly
// one voucher, with two consumers competing for the events, every event
// published twice, and the whole stream replayed on top.
func TestOneVoucherPerOrder(t *testing.T) {
	f := newFixture(t)
	f.start(t)
	f.start(t)
	const n = 25
	var orders []eventtest.Order
	at := time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)
	for i := range n {
		o := eventtest.Order{ID: uuid.NewString(), CustomerID: []string{"c_ada", "c_alan"}[i%2], RestaurantID: "r_pizza"}
		orders = append(orders, o)
		f.bus.Publish(t, eventtest.OrderEvent(o, events.OrderPlaced, 1, at))
		done := eventtest.OrderEvent(o, events.OrderCompleted, 9, at.Add(time.Duration(i)*time.Minute))
		f.bus.Publish(t, done)
		again := done.Msg()
		again.Header.Set(nats.MsgIdHdr, "again-"+done.ID)
		f.bus.PublishMsg(t, again)
	}
	// The consumers create their durable consumers (on the order stream,
	// then on the redrive stream) as they start, in their own goroutines:
	// replay once both exist.
	var replayErr error
	eventtest.Eventually(t, "the promotions consumer to exist", func() bool {
		_, replayErr = consumer.Replay(context.Background(), f.bus.JS, consumer.ReplayOptions{Consumer: promotions.ConsumerName, FromSeq: 1})
		missing := replayErr != nil && (strings.Contains(replayErr.Error(), "no consumer") || errors.Is(replayErr, jetstream.ErrConsumerNotFound))
		return !missing
	})
	if replayErr != nil {
		t.Fatalf("replay: %v", replayErr)
	}
	// Each completion: applied once, then two copies (the republished one
	// and the replayed one, or two replayed ones) seen as duplicates.
	eventtest.Eventually(t, "every copy settled", func() bool { return f.seen(consumer.Applied) == n && f.seen(consumer.Duplicate) == 3*n })

	for _, o := range orders {
		id := uuid.MustParse(o.ID)
		got, err := f.store.CountOrderVouchers(context.Background(), id)
		if err != nil || got != 1 {
			t.Fatalf("order %s has %d vouchers (%v), want 1", o.ID, got, err)
		}
	}
	vs, err := f.svc.CustomerVouchers(context.Background(), "c_ada", 0)
	if err != nil || len(vs) != (n+1)/2 {
		t.Fatalf("c_ada has %d vouchers (%v), want %d", len(vs), err, (n+1)/2)
	}
	if f.seen(consumer.Terminated) != 0 || f.seen(consumer.Retried) != 0 {
		t.Fatalf("outcomes = %v", f.outcomes)
	}
}

// TestVoucher: what a voucher holds, and how a customer's list reads.
func TestVoucher(t *testing.T) {
	f := newFixture(t)
	f.start(t)
	first := time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)
	var ids []uuid.UUID
	for i := range 3 {
		o := eventtest.Order{ID: uuid.NewString(), CustomerID: "c_ada", RestaurantID: "r_sushi"}
		ids = append(ids, uuid.MustParse(o.ID))
		f.bus.Publish(t, eventtest.OrderEvent(o, events.OrderCompleted, 9, first.Add(time.Duration(i)*time.Hour)))
	}
	eventtest.Eventually(t, "vouchers issued", func() bool { return f.seen(consumer.Applied) == 3 })

	vs, err := f.svc.CustomerVouchers(context.Background(), "c_ada", 2)
	if err != nil || len(vs) != 2 {
		t.Fatalf("CustomerVouchers(limit 2) = %d, %v", len(vs), err)
	}
	newest := vs[0]
	want := promotions.Voucher{
		Code: promotions.VoucherCode(ids[2]), CustomerID: "c_ada", OrderID: ids[2].String(),
		AmountCents: promotions.VoucherAmountCents, IssuedAt: first.Add(2 * time.Hour),
		ExpiresAt: first.Add(2*time.Hour + promotions.VoucherValidity),
	}
	if newest != want {
		t.Errorf("newest voucher = %+v, want %+v", newest, want)
	}
	if !strings.HasPrefix(newest.Code, "THANKS-") || vs[1].OrderID != ids[1].String() {
		t.Errorf("vouchers = %+v", vs)
	}
	if vs, err := f.svc.CustomerVouchers(context.Background(), "c_nobody", 0); err != nil || len(vs) != 0 {
		t.Errorf("unknown customer: %+v, %v; want none", vs, err)
	}
	tests := []struct {
		name  string
		limit int
	}{
		{name: "negative", limit: -1},
		{name: "too large", limit: promotions.MaxVoucherLimit + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.svc.CustomerVouchers(context.Background(), "c_ada", tt.limit)
			if orderflow.ErrorCode(err) != orderflow.EINVALID {
				t.Fatalf("limit %d: %v, want invalid", tt.limit, err)
			}
		})
	}
}

// TestInvalidCompletionDeadLettered: a completion whose payload breaks its
// schema is poison: dead-lettered at once, with the schema's complaint.
func TestInvalidCompletionDeadLettered(t *testing.T) {
	f := newFixture(t)
	f.start(t)
	o := eventtest.Order{ID: uuid.NewString(), CustomerID: "c_ada", RestaurantID: "r_pizza"}
	env := eventtest.OrderEvent(o, events.OrderCompleted, 9, time.Now())
	var payload map[string]any
	_ = json.Unmarshal(env.Data, &payload)
	delete(payload, "customer_id")
	env.Data, _ = json.Marshal(payload)
	f.bus.Publish(t, env)

	var dead []consumer.DeadLetter
	eventtest.Eventually(t, "the dead letter", func() bool {
		dead, _ = consumer.DeadLetters(context.Background(), f.bus.JS, promotions.ConsumerName)
		return len(dead) == 1
	})
	if d := dead[0]; d.EventID != env.ID || !strings.Contains(d.Why(), "customer_id") || d.Deliveries != 1 {
		t.Fatalf("dead letter = %+v (why %q)", d, d.Why())
	}
	if n, _ := f.store.CountOrderVouchers(context.Background(), uuid.MustParse(o.ID)); n != 0 {
		t.Fatalf("%d vouchers for an invalid event", n)
	}
}

// TestCompletionFromANewerProducer: a producer a release ahead (a rolling
// deploy: the worker upgraded before `orderflow promotions`) adds an
// optional member to order.completed.v1, the one change allowed within a
// version: the voucher is issued all the same. A new version of the type
// is another contract: dead-lettered, not read as v1.
func TestCompletionFromANewerProducer(t *testing.T) {
	f := newFixture(t)
	f.start(t)
	ctx := context.Background()
	added := eventtest.Order{ID: uuid.NewString(), CustomerID: "c_ada", RestaurantID: "r_pizza"}
	env := eventtest.OrderEvent(added, events.OrderCompleted, 9, time.Now())
	var payload map[string]any
	if err := json.Unmarshal(env.Data, &payload); err != nil {
		t.Fatal(err)
	}
	payload["courier_rating"] = 5
	env.Data, _ = json.Marshal(payload)
	f.bus.Publish(t, env)

	v2 := eventtest.Order{ID: uuid.NewString(), CustomerID: "c_alan", RestaurantID: "r_pizza"}
	env2 := eventtest.OrderEvent(v2, events.OrderCompleted, 9, time.Now())
	env2.Type = strings.TrimSuffix(env2.Type, ".v1") + ".v2"
	f.bus.Publish(t, env2)

	eventtest.Eventually(t, "both completions settled", func() bool {
		return f.seen(consumer.Applied)+f.seen(consumer.Terminated) == 2
	})
	if n, err := f.store.CountOrderVouchers(ctx, uuid.MustParse(added.ID)); err != nil || n != 1 {
		dead, _ := consumer.DeadLetters(ctx, f.bus.JS, "promotions")
		for _, d := range dead {
			t.Logf("dead letter %d: %s", d.Seq, d.Why())
		}
		t.Errorf("the completion with an added member earned %d vouchers (%v); want 1", n, err)
	}
	if n, err := f.store.CountOrderVouchers(ctx, uuid.MustParse(v2.ID)); err != nil || n != 0 {
		t.Errorf("the v2 completion earned %d vouchers (%v); want none, it is not read as v1", n, err)
	}
	dead, err := consumer.DeadLetters(ctx, f.bus.JS, "promotions")
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].EventID != env2.ID || !strings.Contains(dead[0].Why(), "reads orderflow.order.completed.v1") {
		t.Errorf("dead letters %+v; want only the v2 completion, saying which version is read", dead)
	}
}

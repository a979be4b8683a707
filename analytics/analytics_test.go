package analytics_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/pressly/goose/v3"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/analytics"
	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/db/dbtest"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/events/consumer"
	"github.com/orderflow/orderflow/events/eventtest"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// run starts the analytics consumer with fast retries; it returns how many
// events it has settled (applied or seen again).
func run(tb testing.TB, svc *analytics.Service, bus *eventtest.Bus) *atomic.Int64 {
	tb.Helper()
	var settled atomic.Int64
	cfg := svc.ConsumerConfig(bus.JS)
	cfg.Backoff, cfg.MaxDeliver = []time.Duration{20 * time.Millisecond}, 5
	cfg.Observe = func(o consumer.Outcome) {
		switch o.Result {
		case consumer.Applied, consumer.Duplicate:
			settled.Add(1)
		case consumer.Terminated:
			tb.Errorf("analytics dead-lettered %s: %v", o.Env.Type, o.Err)
		}
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
			tb.Errorf("analytics consumer: %v", err)
		}
	})
	return &settled
}

// TestProjection: counts per restaurant and day, by the day of placement,
// and the median time to accept, over orders that end every way, with
// events redelivered.
func TestProjection(t *testing.T) {
	store := dbtest.New(t)
	bus := eventtest.Start(t)
	svc := analytics.New(store, eventtest.Logger())
	settled := run(t, svc, bus)

	d := time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)
	at := func(dayOffset int, hms string) time.Time {
		t0, err := time.Parse(time.TimeOnly, hms)
		if err != nil {
			t.Fatal(err)
		}
		return d.AddDate(0, 0, dayOffset).Add(time.Duration(t0.Hour())*time.Hour + time.Duration(t0.Minute())*time.Minute + time.Duration(t0.Second())*time.Second)
	}
	type step struct {
		eventType string
		at        time.Time
	}
	orders := []struct {
		restaurant string
		placed     time.Time
		outcome    step // zero: still waiting
	}{
		{"r_pizza", at(0, "12:00:00"), step{events.OrderAccepted, at(0, "12:00:30")}}, // 30s
		{"r_pizza", at(0, "12:01:00"), step{events.OrderAccepted, at(0, "12:02:30")}}, // 90s
		{"r_pizza", at(0, "12:02:00"), step{events.OrderAccepted, at(0, "12:02:10")}}, // 10s
		{"r_pizza", at(0, "13:00:00"), step{events.OrderRejected, at(0, "13:01:00")}},
		{"r_pizza", at(0, "14:00:00"), step{events.OrderTimedOut, at(0, "14:10:00")}},
		{"r_pizza", at(0, "23:59:50"), step{events.OrderAccepted, at(1, "00:00:50")}}, // 60s, counts on day 0
		{"r_pizza", at(1, "10:00:00"), step{events.OrderCancelled, at(1, "10:00:05")}},
		{"r_pizza", at(1, "11:00:00"), step{}},
		{"r_sushi", at(0, "12:00:00"), step{events.OrderAccepted, at(0, "12:05:00")}},
	}
	published := 0
	publish := func(env events.Envelope, twice bool) {
		bus.Publish(t, env)
		published++
		if twice {
			m := env.Msg()
			m.Header.Set(nats.MsgIdHdr, "again-"+env.ID)
			bus.PublishMsg(t, m)
			published++
		}
	}
	for i, o := range orders {
		ord := eventtest.Order{ID: uuid.NewString(), CustomerID: "c_ada", RestaurantID: o.restaurant}
		publish(eventtest.OrderEvent(ord, events.OrderPlaced, 1, o.placed), i%3 == 0)
		publish(eventtest.OrderEvent(ord, events.OrderPaymentAuthorized, 2, o.placed.Add(time.Second)), false)
		publish(eventtest.OrderEvent(ord, events.OrderRestaurantNotified, 3, o.placed.Add(2*time.Second)), false)
		if o.outcome.eventType != "" {
			publish(eventtest.OrderEvent(ord, o.outcome.eventType, 4, o.outcome.at), i%2 == 0)
		}
	}
	eventtest.Eventually(t, "every event settled", func() bool { return settled.Load() == int64(published) })

	ptr := func(f float64) *float64 { return &f }
	pizza, err := svc.Stats(context.Background(), "r_pizza", d, d.AddDate(0, 0, 1))
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	want := analytics.RestaurantStats{
		RestaurantID: "r_pizza", From: "2026-03-14", To: "2026-03-15",
		Totals: analytics.Counts{Placed: 8, Accepted: 4, Rejected: 1, TimedOut: 1, Cancelled: 1, MedianSecondsToAccept: ptr(45)},
		Days: []analytics.Day{
			{Day: "2026-03-14", Counts: analytics.Counts{Placed: 6, Accepted: 4, Rejected: 1, TimedOut: 1, MedianSecondsToAccept: ptr(45)}},
			{Day: "2026-03-15", Counts: analytics.Counts{Placed: 2, Cancelled: 1}},
		},
	}
	wantStats(t, pizza, want)

	sushi, err := svc.Stats(context.Background(), "r_sushi", d.AddDate(0, 0, -1), d)
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	wantStats(t, sushi, analytics.RestaurantStats{
		RestaurantID: "r_sushi", From: "2026-03-13", To: "2026-03-14",
		Totals: analytics.Counts{Placed: 1, Accepted: 1, MedianSecondsToAccept: ptr(300)},
		Days: []analytics.Day{
			{Day: "2026-03-13"},
			{Day: "2026-03-14", Counts: analytics.Counts{Placed: 1, Accepted: 1, MedianSecondsToAccept: ptr(300)}},
		},
	})
}

// TestOutcomes: what each way an order ends counts as, judged from the
// order's own events as the projection saw them, not from reason texts
// (eventtest gives every rejection the same reason).
func TestOutcomes(t *testing.T) {
	store := dbtest.New(t)
	bus := eventtest.Start(t)
	svc := analytics.New(store, eventtest.Logger())
	settled := run(t, svc, bus)

	d := time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)
	placed := d.Add(12 * time.Hour)
	ptr := func(f float64) *float64 { return &f }
	tests := []struct {
		name string
		// firstSeq is the version of the first event the projection sees
		// (above 1: the earlier ones aged out of the stream before it
		// started); each next event is one version and one second later.
		firstSeq int64
		steps    []string
		want     analytics.Counts
	}{
		{name: "payment declined: placed, not the restaurant's rejection",
			steps: []string{events.OrderPlaced, events.OrderRejected},
			want:  analytics.Counts{Placed: 1}},
		{name: "rejected by the restaurant",
			steps: []string{events.OrderPlaced, events.OrderPaymentAuthorized, events.OrderRestaurantNotified, events.OrderRejected},
			want:  analytics.Counts{Placed: 1, Rejected: 1}},
		{name: "timed out",
			steps: []string{events.OrderPlaced, events.OrderPaymentAuthorized, events.OrderRestaurantNotified, events.OrderTimedOut},
			want:  analytics.Counts{Placed: 1, TimedOut: 1}},
		{name: "authorized past accept_by: timed out unsent, not the restaurant's",
			steps: []string{events.OrderPlaced, events.OrderPaymentAuthorized, events.OrderTimedOut},
			want:  analytics.Counts{Placed: 1}},
		{name: "cancelled by the customer while awaiting acceptance",
			steps: []string{events.OrderPlaced, events.OrderPaymentAuthorized, events.OrderRestaurantNotified, events.OrderCancelled},
			want:  analytics.Counts{Placed: 1, Cancelled: 1}},
		{name: "cancelled before the restaurant was notified",
			steps: []string{events.OrderPlaced, events.OrderPaymentAuthorized, events.OrderCancelled},
			want:  analytics.Counts{Placed: 1, Cancelled: 1}},
		{name: "cancelled after the acceptance: stays accepted",
			steps: []string{events.OrderPlaced, events.OrderPaymentAuthorized, events.OrderRestaurantNotified, events.OrderAccepted, events.OrderCancelled},
			want:  analytics.Counts{Placed: 1, Accepted: 1, MedianSecondsToAccept: ptr(3)}},
		{name: "accepted and completed",
			steps: []string{events.OrderPlaced, events.OrderPaymentAuthorized, events.OrderRestaurantNotified, events.OrderAccepted, events.OrderCompleted},
			want:  analytics.Counts{Placed: 1, Accepted: 1, MedianSecondsToAccept: ptr(3)}},
		{name: "first seen at its acceptance: placed and accepted, no time to accept",
			firstSeq: 4, steps: []string{events.OrderAccepted, events.OrderCompleted},
			want: analytics.Counts{Placed: 1, Accepted: 1}},
		{name: "first seen at its rejection: placed, the rejection cannot tell",
			firstSeq: 4, steps: []string{events.OrderRejected},
			want: analytics.Counts{Placed: 1}},
		{name: "first seen at its notification, then rejected",
			firstSeq: 3, steps: []string{events.OrderRestaurantNotified, events.OrderRejected},
			want: analytics.Counts{Placed: 1, Rejected: 1}},
		{name: "first seen at its cancellation: placed, the cancellation cannot tell",
			firstSeq: 4, steps: []string{events.OrderCancelled},
			want: analytics.Counts{Placed: 1}},
	}
	published := 0
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			restaurant := fmt.Sprintf("r_%d", i)
			ord := eventtest.Order{ID: uuid.NewString(), CustomerID: "c_ada", RestaurantID: restaurant}
			seq := max(tt.firstSeq, 1)
			for _, typ := range tt.steps {
				bus.Publish(t, eventtest.OrderEvent(ord, typ, seq, placed.Add(time.Duration(seq-1)*time.Second)))
				published++
				seq++
			}
			eventtest.Eventually(t, "every event settled", func() bool { return settled.Load() == int64(published) })
			got, err := svc.Stats(context.Background(), restaurant, d, d)
			if err != nil {
				t.Fatalf("stats: %v", err)
			}
			wantStats(t, got, analytics.RestaurantStats{
				RestaurantID: restaurant, From: "2026-03-14", To: "2026-03-14", Totals: tt.want,
				Days: []analytics.Day{{Day: "2026-03-14", Counts: tt.want}},
			})
		})
	}
}

// TestMigrationRepairsCounts: migration 0007 marks the orders whose
// notification the projection had taken (from its inbox) and takes back
// the counts the old rules added: rejections of orders the restaurant never
// heard of, and cancellations after the acceptance or of orders first seen
// at their cancellation.
func TestMigrationRepairsCounts(t *testing.T) {
	store := dbtest.New(t)
	ctx := context.Background()
	provider, err := goose.NewProvider(goose.DialectPostgres, store.DB, os.DirFS("../db/migrations"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provider.DownTo(ctx, 6); err != nil {
		t.Fatalf("migrate down to 6: %v", err)
	}

	// The projection's state as the old rules left it.
	d := time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)
	placedAt := sql.NullTime{Time: d.Add(12 * time.Hour), Valid: true}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	count := func(counter string) {
		t.Helper()
		must(store.CountRestaurantDay(ctx, db.CountRestaurantDayParams{RestaurantID: "r_pizza", Day: d, Counter: counter}))
	}
	notified := func(consumer string, id uuid.UUID) {
		t.Helper()
		_, err := store.InsertInbox(ctx, db.InsertInboxParams{
			Consumer: consumer, EventID: uuid.NewString(), EventType: events.CEType(events.OrderRestaurantNotified),
			Source: events.SourceOrders, Subject: id.String(), Sequence: 3, Stream: events.OrderStream, StreamSeq: 1,
		})
		must(err)
	}
	order := func(placed bool, steps ...string) uuid.UUID {
		t.Helper()
		id := uuid.New()
		p := placedAt
		if !placed {
			p = sql.NullTime{}
		} else {
			count("placed")
		}
		_, err := store.InsertAnalyticsOrder(ctx, db.InsertAnalyticsOrderParams{OrderID: id, RestaurantID: "r_pizza", Day: d, PlacedAt: p})
		must(err)
		for _, s := range steps {
			switch s {
			case "notified":
				notified(analytics.ConsumerName, id)
			case "accepted":
				must(store.SetAnalyticsOrderAccepted(ctx, db.SetAnalyticsOrderAcceptedParams{
					OrderID: id, AcceptedAt: sql.NullTime{Time: placedAt.Time.Add(time.Minute), Valid: true}, AcceptMs: sql.NullInt64{Int64: 60000, Valid: true},
				}))
				count(s)
			default:
				must(store.SetAnalyticsOrderOutcome(ctx, db.SetAnalyticsOrderOutcomeParams{OrderID: id, Outcome: s}))
				count(s)
			}
		}
		return id
	}
	declined := order(true, "rejected")
	notified("promotions", declined) // another consumer's inbox does not count
	rejected := order(true, "notified", "rejected")
	cancelledAfter := order(true, "notified", "accepted", "cancelled")
	cancelledBefore := order(true, "notified", "cancelled")
	cancelledUnseen := order(false, "cancelled")
	awaiting := order(true, "notified")

	if _, err := provider.UpTo(ctx, 7); err != nil {
		t.Fatalf("migrate up to 7: %v", err)
	}
	svc := analytics.New(store, nil)
	got, err := svc.Stats(ctx, "r_pizza", d, d)
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	m := 60.0
	want := analytics.Counts{Placed: 5, Accepted: 1, Rejected: 1, Cancelled: 1, MedianSecondsToAccept: &m}
	wantStats(t, got, analytics.RestaurantStats{
		RestaurantID: "r_pizza", From: "2026-03-14", To: "2026-03-14", Totals: want,
		Days: []analytics.Day{{Day: "2026-03-14", Counts: want}},
	})
	for _, o := range []struct {
		name string
		id   uuid.UUID
		want bool
	}{
		{"declined", declined, false},
		{"rejected", rejected, true},
		{"cancelled after acceptance", cancelledAfter, true},
		{"cancelled before acceptance", cancelledBefore, true},
		{"cancelled, first seen then", cancelledUnseen, false},
		{"awaiting acceptance", awaiting, true},
	} {
		row, err := store.GetAnalyticsOrder(ctx, o.id)
		if err != nil {
			t.Fatalf("%s: %v", o.name, err)
		}
		if row.Notified != o.want {
			t.Errorf("%s: notified = %v, want %v", o.name, row.Notified, o.want)
		}
	}
}

// TestStatsRange: a range must run forwards and cover at most MaxDays.
func TestStatsRange(t *testing.T) {
	svc := analytics.New(dbtest.New(t), nil)
	d := time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		from, to time.Time
		wantCode string
		wantDays int
	}{
		{name: "one day", from: d, to: d, wantDays: 1},
		{name: "a whole year", from: d.AddDate(0, 0, -(analytics.MaxDays - 1)), to: d, wantDays: analytics.MaxDays},
		{name: "backwards", from: d, to: d.AddDate(0, 0, -1), wantCode: orderflow.EINVALID},
		{name: "too long", from: d.AddDate(0, 0, -analytics.MaxDays), to: d, wantCode: orderflow.EINVALID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := svc.Stats(context.Background(), "r_pizza", tt.from, tt.to)
			if code := orderflow.ErrorCode(err); code != tt.wantCode {
				t.Fatalf("error %v, want code %q", err, tt.wantCode)
			}
			if err == nil && (len(st.Days) != tt.wantDays || st.Totals.MedianSecondsToAccept != nil) {
				t.Fatalf("stats = %d days, median %v; want %d days and no median", len(st.Days), st.Totals.MedianSecondsToAccept, tt.wantDays)
			}
		})
	}
}

func wantStats(tb testing.TB, got, want analytics.RestaurantStats) {
	tb.Helper()
	same := func(a, b analytics.Counts) bool {
		if (a.MedianSecondsToAccept == nil) != (b.MedianSecondsToAccept == nil) {
			return false
		}
		if a.MedianSecondsToAccept != nil && *a.MedianSecondsToAccept != *b.MedianSecondsToAccept {
			return false
		}
		a.MedianSecondsToAccept, b.MedianSecondsToAccept = nil, nil
		return a == b
	}
	ok := got.RestaurantID == want.RestaurantID && got.From == want.From && got.To == want.To &&
		same(got.Totals, want.Totals) && len(got.Days) == len(want.Days)
	for i := 0; ok && i < len(got.Days); i++ {
		ok = got.Days[i].Day == want.Days[i].Day && same(got.Days[i].Counts, want.Days[i].Counts)
	}
	if !ok {
		tb.Fatalf("stats =\n%s\nwant\n%s", show(got), show(want))
	}
}

func show(s analytics.RestaurantStats) string {
	out := s.RestaurantID + " " + s.From + ".." + s.To + " totals " + showCounts(s.Totals)
	for _, d := range s.Days {
		out += "\n  " + d.Day + " " + showCounts(d.Counts)
	}
	return out
}

func showCounts(c analytics.Counts) string {
	m := "nil"
	if c.MedianSecondsToAccept != nil {
		m = fmt.Sprint(*c.MedianSecondsToAccept)
	}
	c.MedianSecondsToAccept = nil
	return fmt.Sprintf("%+v median %s", c, m)
}

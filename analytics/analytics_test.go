package analytics_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/orderflow/orderflow"
	"github.com/orderflow/orderflow/analytics"
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
	eventually(t, "every event settled", func() bool { return settled.Load() == int64(published) })

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

func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

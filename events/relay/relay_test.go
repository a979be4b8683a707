package relay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/events/eventtest"
	"github.com/orderflow/orderflow/events/natsdev"
	"github.com/orderflow/orderflow/events/relay"
)

// TestRelayPublishesCloudEventsInOrder: every row reaches ORDER_EVENTS once,
// on its subject, as a binary-mode CloudEvent carrying the row's
// attributes, each order's events in version order; rows are marked.
func TestRelayPublishesCloudEventsInOrder(t *testing.T) {
	e := newEnv(t)
	a, b := uuid.NewString(), uuid.NewString()
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	rows := []outboxRow{
		{order: a, version: 1, eventType: events.OrderPlaced, headers: map[string]string{"traceparent": traceparent}},
		{order: b, version: 1, eventType: events.OrderPlaced},
		{order: a, version: 2, eventType: events.OrderPaymentAuthorized},
		{order: a, version: 3, eventType: events.OrderRestaurantNotified},
		{order: b, version: 2, eventType: events.OrderPaymentAuthorized},
		{order: a, version: 4, eventType: events.OrderAccepted},
		{order: b, version: 3, eventType: events.OrderRejected},
	}
	ids := e.insert(t, rows...)
	e.startRelay(t)
	waitFor(t, 10*time.Second, "the backlog to drain", func() bool { return e.backlog(t) == 0 })

	msgs := e.readStream(t, events.OrderStream)
	checkOrder(t, msgs, map[string]int64{a: 4, b: 3})
	byID := map[string]streamed{}
	for _, m := range msgs {
		byID[m.env.ID] = m
	}
	for i, r := range rows {
		m, ok := byID[ids[i].String()]
		if !ok {
			t.Errorf("event %s (order %s v%d) is not in the stream", ids[i], r.order, r.version)
			continue
		}
		stored, err := e.store.ListAggregateOutboxEvents(context.Background(), db.ListAggregateOutboxEventsParams{AggregateType: events.AggregateOrder, AggregateID: r.order})
		if err != nil {
			t.Fatal(err)
		}
		row := stored[r.version-1]
		checks := []struct{ name, got, want string }{
			{"subject", m.subject, events.Subject(r.eventType, r.order)},
			{"Nats-Msg-Id", m.header.Get(nats.MsgIdHdr), ids[i].String()},
			{"ce-specversion", m.header.Get(events.HeaderSpecVersion), "1.0"},
			{"ce-type", m.env.Type, events.CEType(r.eventType)},
			{"ce-source", m.env.Source, events.SourceOrders},
			{"ce-subject", m.env.Subject, r.order},
			{"ce-time", m.env.Time.UTC().String(), row.OccurredAt.UTC().String()},
			{"ce-sequence", m.header.Get(events.HeaderSequence), strconv.FormatInt(r.version, 10)},
			{"content-type", m.header.Get(events.HeaderContentType), "application/json"},
		}
		if i == 0 {
			checks = append(checks, struct{ name, got, want string }{"traceparent", m.env.Traceparent, traceparent})
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("event %s: %s = %q, want %q", ids[i], c.name, c.got, c.want)
			}
		}
		if !jsonEqual(m.env.Data, row.Payload) {
			t.Errorf("event %s: data %s, want %s", ids[i], m.env.Data, row.Payload)
		}
		if !row.PublishedAt.Valid || row.Attempts != 1 || row.LastError.Valid {
			t.Errorf("event %s: published_at %v, attempts %d, last_error %v; want set, 1, null", ids[i], row.PublishedAt, row.Attempts, row.LastError)
		}
	}
}

// TestRelayWakesOnKick: with no poll to speak of, a Kick alone gets a new
// row out.
func TestRelayWakesOnKick(t *testing.T) {
	e := newEnv(t)
	order := uuid.NewString()
	e.insert(t, outboxRow{order: order, version: 1})
	r := e.startRelay(t, func(c *relay.Config) { c.PollInterval = time.Hour })
	// Its first claim, at start, publishes the first row; from then on
	// only a kick (or an hour) makes it claim again.
	waitFor(t, 5*time.Second, "the first row to go out", func() bool { return e.backlog(t) == 0 })
	e.insert(t, outboxRow{order: order, version: 2})
	time.Sleep(300 * time.Millisecond)
	if n := e.backlog(t); n != 1 {
		t.Fatalf("backlog = %d before the kick, want 1 (the relay should not poll)", n)
	}
	r.Kick()
	r.Kick() // coalesces, never blocks
	waitFor(t, 5*time.Second, "the kicked relay to publish", func() bool { return e.backlog(t) == 0 })
}

// TestRelayKeepsOrderPastAFailedPublish: the stream refuses one event (too
// large for it); the relay publishes the other orders, holds back the
// refused event's successors, records the failure, and once the stream
// takes the event, publishes it and its successors, in order, nothing lost
// or doubled.
func TestRelayKeepsOrderPastAFailedPublish(t *testing.T) {
	// One batch; and batches of 3, so that full batches are marked while
	// the next is sent and the refused row is claimed again beside rows
	// being marked.
	for _, batch := range []int{relay.DefaultBatchSize, 3} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			testRelayKeepsOrderPastAFailedPublish(t, batch)
		})
	}
}

func testRelayKeepsOrderPastAFailedPublish(t *testing.T, batch int) {
	e := newEnv(t)
	ctx := context.Background()
	setMaxMsgSize(t, e, 4096)

	a, b := uuid.NewString(), uuid.NewString()
	big := []byte(`{"order_id":"` + a + `","status":"placed","padding":"` + strings.Repeat("x", 8192) + `"}`)
	e.insert(t,
		outboxRow{order: a, version: 1}, outboxRow{order: b, version: 1},
		outboxRow{order: a, version: 2, payload: big}, outboxRow{order: b, version: 2},
		outboxRow{order: a, version: 3}, outboxRow{order: b, version: 3},
	)
	list := func(order string) []db.OutboxEvent {
		rows, err := e.store.ListAggregateOutboxEvents(ctx, db.ListAggregateOutboxEventsParams{AggregateType: events.AggregateOrder, AggregateID: order})
		if err != nil {
			t.Fatal(err)
		}
		return rows
	}
	e.startRelay(t, func(c *relay.Config) { c.BatchSize = batch })
	waitFor(t, 10*time.Second, "order b out and a's v2 refused twice", func() bool {
		ra, rb := list(a), list(b)
		return ra[1].Attempts >= 2 && rb[2].PublishedAt.Valid
	})
	ra := list(a)
	if !ra[0].PublishedAt.Valid {
		t.Errorf("order a v1 is not published")
	}
	if ra[1].PublishedAt.Valid || !strings.Contains(ra[1].LastError.String, "maximum") {
		t.Errorf("order a v2: published_at %v, last_error %q; want unpublished with the stream's refusal", ra[1].PublishedAt, ra[1].LastError.String)
	}
	if ra[2].PublishedAt.Valid || ra[2].Attempts != 0 {
		t.Errorf("order a v3: published_at %v, attempts %d; want never sent past the failed v2", ra[2].PublishedAt, ra[2].Attempts)
	}
	for _, m := range e.readStream(t, events.OrderStream) {
		if m.env.Subject == a && m.env.Sequence > 1 {
			t.Errorf("order a v%d is in the stream while v2 failed", m.env.Sequence)
		}
	}
	stats, err := relay.ReadStats(ctx, e.store.Queries)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Backlog != 2 || stats.Failing != 1 || stats.Oldest == nil || stats.Oldest.ID != ra[1].ID || stats.Oldest.LastError == "" {
		t.Errorf("stats = %+v (oldest %+v); want backlog 2, failing 1, oldest a's v2 with its error", stats, stats.Oldest)
	}

	setMaxMsgSize(t, e, -1) // the fix: the stream takes it now
	waitFor(t, 15*time.Second, "the backlog to drain after the fix", func() bool { return e.backlog(t) == 0 })
	checkOrder(t, e.readStream(t, events.OrderStream), map[string]int64{a: 3, b: 3})
	if ra := list(a); ra[1].Attempts < 3 || !ra[1].LastError.Valid {
		t.Errorf("order a v2 after the fix: attempts %d, last_error %v; want >= 3 and the last refusal kept", ra[1].Attempts, ra[1].LastError)
	}
}

// TestRelayCrashBetweenPublishAndMark: a relay that dies after the stream
// acknowledged a batch but before it marked the rows leaves them
// unpublished; the next relay publishes them again and the stream keeps
// each event once (Nats-Msg-Id de-duplication), in order.
func TestRelayCrashBetweenPublishAndMark(t *testing.T) {
	e := newEnv(t)
	rows, want := interleaved(5, 4)
	e.insert(t, rows...)

	crash := errors.New("killed between publish and mark")
	first := e.startRelay(t, func(c *relay.Config) {
		c.AfterPublish = func(context.Context, []uuid.UUID) error { return crash }
	})
	first.crashed(t, crash)
	if n, got := e.backlog(t), len(e.readStream(t, events.OrderStream)); n != 20 || got != 20 {
		t.Fatalf("after the crash: backlog %d, stream %d; want 20 unmarked rows, all 20 in the stream", n, got)
	}

	second := e.startRelay(t)
	waitFor(t, 10*time.Second, "the restarted relay to drain", func() bool { return e.backlog(t) == 0 })
	if n := second.publishedCount(); n != 20 {
		t.Errorf("restarted relay published %d events, want all 20 again", n)
	}
	msgs := e.readStream(t, events.OrderStream)
	if len(msgs) != 20 {
		t.Errorf("stream holds %d messages, want 20 (each event once)", len(msgs))
	}
	checkOrder(t, msgs, want)
}

// interleaved returns rows of n orders with versions 1..v, interleaved as
// concurrent workflows write them (every order's version 1, then every
// order's version 2, ...), and the versions each order ends at.
func interleaved(n int, v int64) ([]outboxRow, map[string]int64) {
	orders := make([]string, n)
	want := map[string]int64{}
	for i := range orders {
		orders[i] = uuid.NewString()
		want[orders[i]] = v
	}
	var rows []outboxRow
	for version := int64(1); version <= v; version++ {
		for _, o := range orders {
			rows = append(rows, outboxRow{order: o, version: version})
		}
	}
	return rows, want
}

// published maps the event ID of every outbox row marked published to its
// attempts.
func (e *env) published(tb testing.TB) map[uuid.UUID]int32 {
	tb.Helper()
	rows, err := e.store.DB.QueryContext(context.Background(),
		`SELECT event_id, attempts FROM outbox_events WHERE published_at IS NOT NULL`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	out := map[uuid.UUID]int32{}
	for rows.Next() {
		var id uuid.UUID
		var attempts int32
		if err := rows.Scan(&id, &attempts); err != nil {
			tb.Fatal(err)
		}
		out[id] = attempts
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// TestRelaySendsEachRowOnceAcrossFullBatches: a backlog many batches long,
// in which a full batch's mark runs while the next batch is sent. The next
// claim leaves the rows being marked out, so no row is sent twice; every
// row is marked once and reaches the stream once, in order.
func TestRelaySendsEachRowOnceAcrossFullBatches(t *testing.T) {
	e := newEnv(t)
	rows, want := interleaved(6, 5) // 30 rows: 7 full batches of 4, then 2
	ids := e.insert(t, rows...)
	r := e.startRelay(t, func(c *relay.Config) { c.BatchSize = 4 })
	waitFor(t, 10*time.Second, "the backlog to drain", func() bool { return e.backlog(t) == 0 })

	sent := r.sendCounts()
	marked := e.published(t)
	for i, id := range ids {
		if sent[id] != 1 {
			t.Errorf("row %d (order %s v%d) was sent %d times, want once", i, rows[i].order, rows[i].version, sent[id])
		}
		if marked[id] != 1 {
			t.Errorf("row %d: marked with attempts %d, want 1", i, marked[id])
		}
	}
	checkOrder(t, e.readStream(t, events.OrderStream), want)
}

// TestRelaySendsEachRowOnceWhileWritersKick: after each batch of one row
// is acknowledged, a writer commits the order's next row and kicks the
// relay, as the activities do, so that the relay claims again at once
// and marks the batch while it sends the next. The claim leaves the row
// still to be marked out, so no row is sent twice; every row is marked,
// and the order's rows reach the stream once, in order.
func TestRelaySendsEachRowOnceWhileWritersKick(t *testing.T) {
	const versions = 20
	e := newEnv(t)
	order := uuid.NewString()
	ids := e.insert(t, outboxRow{order: order, version: 1})
	var (
		r       *relayRun
		started = make(chan struct{})
		next    = int64(2)
		written = make(chan error, versions)
	)
	r = e.startRelay(t, func(c *relay.Config) {
		c.PollInterval = time.Hour // only kicks make it claim again
		c.AfterPublish = func(context.Context, []uuid.UUID) error {
			<-started
			if next > versions {
				return nil
			}
			id, err := e.tryInsert(outboxRow{order: order, version: next})
			if err == nil {
				ids = append(ids, id...)
				next++
			}
			written <- err
			r.Kick()
			return nil
		}
	})
	close(started)
	for range versions - 1 {
		select {
		case err := <-written:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the relay stopped publishing the order's rows")
		}
	}
	waitFor(t, 10*time.Second, "the rows to be marked", func() bool { return e.backlog(t) == 0 })
	r.stop()

	sent := r.sendCounts()
	marked := e.published(t)
	for i, id := range ids {
		if sent[id] != 1 {
			t.Errorf("version %d was sent %d times, want once", i+1, sent[id])
		}
		if marked[id] != 1 {
			t.Errorf("version %d: marked with attempts %d, want 1", i+1, marked[id])
		}
	}
	if len(ids) != versions {
		t.Errorf("%d rows written, want %d", len(ids), versions)
	}
	checkOrder(t, e.readStream(t, events.OrderStream), map[string]int64{order: versions})
}

// TestRelayCrashMidBacklogKeepsEarlierMarks: a relay that dies between
// the publish and the mark of its second full batch has marked the first
// (whose mark ran while the second was sent) and nothing of the second;
// the next relay sends the second again, and the stream keeps each event
// once, in order.
func TestRelayCrashMidBacklogKeepsEarlierMarks(t *testing.T) {
	e := newEnv(t)
	rows, want := interleaved(5, 4) // 20 rows, batches of 5
	ids := e.insert(t, rows...)
	crash := errors.New("killed between publish and mark")
	var calls atomic.Int32
	first := e.startRelay(t, func(c *relay.Config) {
		c.BatchSize = 5
		c.AfterPublish = func(context.Context, []uuid.UUID) error {
			if calls.Add(1) == 2 {
				return crash
			}
			return nil
		}
	})
	first.crashed(t, crash)
	marked := e.published(t)
	for i, id := range ids {
		if got, wantMarked := marked[id] != 0, i < 5; got != wantMarked {
			t.Errorf("after the crash, row %d marked = %v, want %v (the first batch only)", i, got, wantMarked)
		}
	}
	if got := len(e.readStream(t, events.OrderStream)); got != 10 {
		t.Fatalf("after the crash, the stream holds %d messages, want the two batches sent (10)", got)
	}

	e.startRelay(t)
	waitFor(t, 10*time.Second, "the restarted relay to drain", func() bool { return e.backlog(t) == 0 })
	checkOrder(t, e.readStream(t, events.OrderStream), want)
}

// TestRelayStoppedMidBacklogMarksWhatWasAcknowledged: a relay stopped
// once a full batch of a backlog is acknowledged, before that batch's
// mark (which was to run during the next batch's send), still marks it
// and every batch before it, so a restart sends none of them again.
func TestRelayStoppedMidBacklogMarksWhatWasAcknowledged(t *testing.T) {
	e := newEnv(t)
	rows, _ := interleaved(5, 8) // 40 rows, batches of 5
	e.insert(t, rows...)
	reached, stopped := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	r := e.startRelay(t, func(c *relay.Config) {
		c.BatchSize = 5
		c.AfterPublish = func(context.Context, []uuid.UUID) error {
			if calls.Add(1) == 3 {
				// Stopped once the third batch is acknowledged, before
				// its mark.
				close(reached)
				<-stopped
			}
			return nil
		}
	})
	select {
	case <-reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the relay did not publish three batches")
	}
	r.cancel()
	close(stopped)
	r.stop()
	if r.err != nil {
		t.Fatalf("Run = %v, want nil after a stop", r.err)
	}

	sent := r.publishedIDs()
	if len(sent) != 15 {
		t.Fatalf("the relay sent %d events, want the three batches (15)", len(sent))
	}
	marked := e.published(t)
	for _, id := range sent {
		if marked[id] == 0 {
			t.Errorf("event %s was acknowledged but is not marked published", id)
		}
	}
	if len(marked) != 15 {
		t.Errorf("%d rows marked, want the 15 sent", len(marked))
	}
}

// TestRelaySurvivesNATSOutage: NATS stops for outage while orders keep
// emitting events; the backlog grows, then drains once NATS is back on the
// same store, with nothing lost or doubled and every order in order.
func TestRelaySurvivesNATSOutage(t *testing.T) {
	const (
		outage   = 30 * time.Second // the figure
		orders   = 8
		interval = 100 * time.Millisecond // per order: 80 events/s in all
	)
	e := newEnv(t)
	// Alone, it gives up the lock during the outage and takes it back
	// once NATS is back.
	r := e.startRelay(t, func(c *relay.Config) { c.HandoverAfter = 5 * time.Second })
	waitFor(t, 5*time.Second, "the relay to lead", r.Leading)

	var (
		stop    atomic.Bool
		wg      sync.WaitGroup
		mu      sync.Mutex
		written = map[string]int64{}
		// Once NATS is down: when it went, how many rows were written
		// since, and when the first of them was (after its insert).
		down         time.Time
		writtenSince int64
		firstSince   time.Time
	)
	for range orders {
		order := uuid.NewString()
		wg.Go(func() {
			for v := int64(1); !stop.Load(); v++ {
				began := time.Now()
				if _, err := e.tryInsert(outboxRow{order: order, version: v}); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				written[order] = v
				if !down.IsZero() && began.After(down) {
					writtenSince++
					if firstSince.IsZero() {
						firstSince = time.Now()
					}
				}
				mu.Unlock()
				time.Sleep(interval)
			}
		})
	}
	defer func() { stop.Store(true); wg.Wait() }()

	time.Sleep(time.Second)
	waitFor(t, 5*time.Second, "events to flow before the outage", func() bool { return len(e.readStream(t, events.OrderStream)) > 0 })
	e.stopNATS()
	mu.Lock()
	down = time.Now()
	mu.Unlock()
	time.Sleep(outage)
	// Every row written since NATS went is still unpublished, and the
	// oldest unpublished row is at least as old as the first of them:
	// bounds from what the writers did, not from how fast they were.
	at := time.Now()
	mu.Lock()
	since, first := writtenSince, firstSince
	mu.Unlock()
	if since == 0 {
		t.Fatalf("no row was written in the %s without NATS", outage)
	}
	stats, err := relay.ReadStats(context.Background(), e.store.Queries)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after %s without NATS: %d rows written, backlog %d, oldest unpublished %s old", at.Sub(down).Round(time.Second), since, stats.Backlog, stats.OldestAge().Round(time.Second))
	if minAge := at.Sub(first); stats.Backlog < since || stats.OldestAge() < minAge {
		t.Errorf("backlog %d, oldest %s; want every row written during the outage held back (>= %d rows, >= %s)", stats.Backlog, stats.OldestAge(), since, minAge)
	}

	if r.Leading() {
		t.Errorf("the relay still holds the lock after %s without NATS", outage)
	}
	e.startNATS(t)
	time.Sleep(2 * time.Second) // orders keep coming after NATS is back
	stop.Store(true)
	wg.Wait()
	waitFor(t, 60*time.Second, "the backlog to drain after the outage", func() bool { return e.backlog(t) == 0 })
	checkOrder(t, e.readStream(t, events.OrderStream), written)
	var total int64
	for _, n := range written {
		total += n
	}
	t.Logf("%d events from %d orders, all in the stream once, in order", total, orders)
}

// TestOneActiveRelayAndStandbyTakeover: of two relays only the one holding
// the lock publishes; when its database session ends it notices and stops,
// and the standby takes over.
func TestOneActiveRelayAndStandbyTakeover(t *testing.T) {
	e := newEnv(t)
	// Once it has lost its session, the first relay waits long before it
	// tries the lock again, so the standby is the one that takes over.
	active := e.startRelay(t, func(c *relay.Config) { c.LockRetryInterval = 30 * time.Second })
	waitFor(t, 5*time.Second, "the first relay to lead", active.Leading)
	standby := e.startRelay(t, func(c *relay.Config) { c.LockRetryInterval = time.Second })
	time.Sleep(1500 * time.Millisecond)
	if standby.Leading() {
		t.Fatal("two relays lead at once")
	}
	// Both started: one active, one standing by (orderflow dev says it
	// is ready once its relay is either).
	for name, r := range map[string]*relayRun{"active": active, "standby": standby} {
		waitFor(t, 5*time.Second, "the "+name+" relay to report it started", func() bool {
			select {
			case <-r.Started():
				return true
			default:
				return false
			}
		})
	}

	want := map[string]int64{}
	write := func(from int64) {
		var rows []outboxRow
		for v := from; v < from+3; v++ {
			for range 3 {
				rows = append(rows, outboxRow{version: v})
			}
		}
		for i := range rows {
			order := string(rune('a' + i%3))
			rows[i].order = order
			want[order] = max(want[order], rows[i].version)
		}
		e.insert(t, rows...)
	}
	write(1)
	waitFor(t, 10*time.Second, "the backlog to drain", func() bool { return e.backlog(t) == 0 })
	if a, s := active.publishedCount(), standby.publishedCount(); a != 9 || s != 0 {
		t.Fatalf("published: active %d, standby %d; want 9 and 0", a, s)
	}

	terminateLockHolder(t, e)
	killed := time.Now()
	// Deadlines that only bound a hang; how long a takeover takes is
	// logged, not asserted.
	waitFor(t, 30*time.Second, "the standby to take over", standby.Leading)
	t.Logf("standby took over %s after the active relay's session ended", time.Since(killed).Round(time.Millisecond))
	waitFor(t, 30*time.Second, "the old relay to notice it lost its session", func() bool { return !active.Leading() })
	before := active.publishedCount()

	write(4)
	waitFor(t, 10*time.Second, "the new active relay to drain", func() bool { return e.backlog(t) == 0 })
	if a, s := active.publishedCount(), standby.publishedCount(); a != before || s != 9 {
		t.Errorf("after the takeover: old relay published %d more, new one %d; want 0 and 9", a-before, s)
	}
	checkOrder(t, e.readStream(t, events.OrderStream), want)
}

// TestActiveRelayCutOffFromNATSHandsOver: the active relay can reach the
// database but not NATS (its own server here, which stops); the standby
// can reach both. Past HandoverAfter the active relay gives the lock up,
// and the standby takes over and publishes what waited.
func TestActiveRelayCutOffFromNATSHandsOver(t *testing.T) {
	e := newEnv(t)
	other, err := natsdev.Start(natsdev.Config{StoreDir: filepath.Join(t.TempDir(), "other"), Addr: freeAddr(t), Logger: e.logger})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Stop()
	nc, _ := eventtest.Connect(t, other.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.ReconnectBufSize(-1))
	const handover = time.Second
	active := e.startRelay(t, func(c *relay.Config) { c.NATS, c.HandoverAfter = nc, handover })
	waitFor(t, 5*time.Second, "the first relay to lead", active.Leading)
	standby := e.startRelay(t, func(c *relay.Config) { c.HandoverAfter = handover })

	other.Stop()
	cut := time.Now()
	e.insert(t, outboxRow{order: "a", version: 1})
	// A hang bound, not a speed limit.
	waitFor(t, 30*time.Second, "the standby to take over and publish", func() bool { return standby.Leading() && e.backlog(t) == 0 })
	t.Logf("standby published %s after the active relay lost NATS", time.Since(cut).Round(time.Millisecond))
	if active.Leading() {
		t.Error("the relay cut off from NATS still leads")
	}
	if n := standby.publishedCount(); n != 1 {
		t.Errorf("the standby published %d events; want the 1 that waited", n)
	}
	checkOrder(t, e.readStream(t, events.OrderStream), map[string]int64{"a": 1})
}

// TestRelayDeletesPublishedRowsPastRetention: published rows older than the
// retention period go, in chunks; recent and unpublished ones stay.
func TestRelayDeletesPublishedRowsPastRetention(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	exec := func(query string) {
		if _, err := e.store.DB.ExecContext(ctx, query); err != nil {
			t.Fatal(err)
		}
	}
	// 2,500 rows published 9 days ago (three retention chunks), 10 published
	// a day ago, 3 unpublished written 10 days ago.
	exec(`INSERT INTO outbox_events (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload, occurred_at, published_at, attempts)
		SELECT gen_random_uuid(), 'order', 'old-' || g, 1, 'order.placed', '{}', now() - interval '10 days', now() - interval '9 days', 1
		FROM generate_series(1, 2500) AS g`)
	exec(`INSERT INTO outbox_events (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload, occurred_at, published_at, attempts)
		SELECT gen_random_uuid(), 'order', 'recent-' || g, 1, 'order.placed', '{}', now() - interval '25 hours', now() - interval '1 day', 1
		FROM generate_series(1, 10) AS g`)
	exec(`INSERT INTO outbox_events (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload, occurred_at)
		SELECT gen_random_uuid(), 'order', 'late-' || g, 1, 'order.placed', '{}', now() - interval '10 days'
		FROM generate_series(1, 3) AS g`)
	count := func() (n int) {
		if err := e.store.DB.QueryRowContext(ctx, `SELECT count(*) FROM outbox_events`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	e.startRelay(t, func(c *relay.Config) { c.Retention = 7 * 24 * time.Hour })
	waitFor(t, 10*time.Second, "the retention delete", func() bool { return count() == 13 })
	var left int
	if err := e.store.DB.QueryRowContext(ctx, `SELECT count(*) FROM outbox_events WHERE aggregate_id LIKE 'old-%'`).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d rows past retention left (err %v)", left, err)
	}
}

// TestReadStats: backlog, oldest row and publish lag, from the database.
func TestReadStats(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	read := func() relay.Stats {
		s, err := relay.ReadStats(ctx, e.store.Queries)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := read(); s.Backlog != 0 || s.Oldest != nil || s.Lag.Events != 0 {
		t.Fatalf("empty outbox: %+v", s)
	}
	order := uuid.NewString()
	e.insert(t, outboxRow{order: order, version: 1}, outboxRow{order: order, version: 2}, outboxRow{order: order, version: 3})
	time.Sleep(50 * time.Millisecond)
	s := read()
	if s.Backlog != 3 || s.Failing != 0 || s.Oldest == nil || s.Oldest.Age < 50*time.Millisecond || s.Oldest.Attempts != 0 {
		t.Fatalf("3 unpublished rows: %+v, oldest %+v", s, s.Oldest)
	}
	e.startRelay(t)
	waitFor(t, 10*time.Second, "the backlog to drain", func() bool { return e.backlog(t) == 0 })
	s = read()
	if s.Backlog != 0 || s.Oldest != nil || s.Lag.Events != 3 || s.Lag.P50 < 50*time.Millisecond || s.Lag.P99 < s.Lag.P50 || s.Lag.Max < s.Lag.P99 || s.Lag.Window != relay.LagWindow {
		t.Fatalf("after publishing: %+v", s)
	}
}

// setMaxMsgSize changes ORDER_EVENTS' largest message (-1: no limit).
func setMaxMsgSize(tb testing.TB, e *env, size int32) {
	tb.Helper()
	ctx := context.Background()
	s, err := e.js.Stream(ctx, events.OrderStream)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := info.Config
	cfg.MaxMsgSize = size
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		tb.Fatalf("update stream: %v", err)
	}
}

// terminateLockHolder ends the database session that holds the relay lock,
// as the death of its process or host would.
func terminateLockHolder(tb testing.TB, e *env) {
	tb.Helper()
	ctx := context.Background()
	var pid int
	if err := e.store.DB.QueryRowContext(ctx, `
		SELECT pid FROM pg_locks
		WHERE locktype = 'advisory' AND granted
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&pid); err != nil {
		tb.Fatalf("find the relay lock's holder: %v", err)
	}
	var ok bool
	if err := e.store.DB.QueryRowContext(ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&ok); err != nil || !ok {
		tb.Fatalf("terminate backend %d: %v", pid, err)
	}
}

// jsonEqual compares two JSON documents by value (jsonb reorders keys).
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}

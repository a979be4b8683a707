package relay_test

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/events/relay"
)

// TestRelayRepublishesTheTailTheStreamLost: NATS syncs its file store every
// second, so a power loss takes the last acknowledged messages of the
// stream, after the relay marked their rows published. The loss is
// simulated on disk (loseTail): the stream comes back without its last
// messages and its duplicate window forgets them, as after a real power
// loss. Then, before anything new, the active relay publishes again
// exactly the lost events: the stream holds every event once, each order's
// in version order, the lost ones before the orders' later events.
func TestRelayRepublishesTheTailTheStreamLost(t *testing.T) {
	for _, tt := range []struct {
		name string
		// sameRelay: the relay keeps running while NATS restarts (NATS on
		// a host of its own lost power) and republishes when its
		// connection comes back; otherwise it is stopped with NATS and a
		// new relay takes the lock (one process, or both hosts, lost
		// power).
		sameRelay bool
		// keepState keeps the stream's state file, which then describes
		// messages the blocks no longer hold; a power loss usually leaves
		// an older one, simulated by removing it.
		keepState bool
	}{
		{name: "new relay after a power loss"},
		{name: "new relay, stream state file newer than the blocks", keepState: true},
		{name: "running relay, NATS restarts under it", sameRelay: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			orders := newOrders(6)
			// Small batches: the re-publish goes a page at a time.
			small := func(c *relay.Config) { c.BatchSize = 5 }
			first := e.startRelay(t, small)

			// Old history, published an hour ago: outside the window.
			e.insert(t, interleave(orders, 1, 3)...)
			waitFor(t, 10*time.Second, "the old events to go out", func() bool { return e.backlog(t) == 0 })
			e.agePublished(t, time.Hour)
			// The last second before the crash.
			recent := e.insert(t, interleave(orders, 4, 6)...)
			waitFor(t, 10*time.Second, "the recent events to go out", func() bool { return e.backlog(t) == 0 })

			if !tt.sameRelay {
				first.stop()
			}
			lost := e.loseTail(t, 11, tt.keepState)
			// Orders go on while the relay is away: later versions of the
			// same orders, unpublished.
			later := e.insert(t, interleave(orders, 7, 8)...)
			e.startNATS(t)
			active := first
			if !tt.sameRelay {
				active = e.startRelay(t, small)
			}
			waitFor(t, 15*time.Second, "the relay to republish and drain", func() bool { return e.backlog(t) == 0 })

			msgs := e.readStream(t, events.OrderStream)
			checkOrder(t, msgs, wantVersions(orders, 8))
			var last relay.Republished
			for _, r := range active.republishes() {
				if len(r.Appended) > 0 {
					last = r
				}
			}
			if got, want := ids(last.Appended), lost; !slices.Equal(sorted(got), sorted(want)) {
				t.Errorf("re-published as new %d events %v,\nwant the %d lost %v", len(got), got, len(want), want)
			}
			if !slices.Equal(ids(last.Sent), ids(last.Appended)) {
				t.Errorf("sent %d events again, %d of them taken as new; want only the lost ones sent", len(last.Sent), len(last.Appended))
			}
			if !slices.Equal(ids(last.Window), ids(recent)) {
				t.Errorf("window holds %d events, want the %d recent ones", len(last.Window), len(recent))
			}
			// The lost events came back in id order, before every later
			// event.
			tail := msgs[len(msgs)-len(lost)-len(later):]
			var back []string
			for _, m := range tail[:len(lost)] {
				back = append(back, m.env.ID)
			}
			if want := inIDOrder(recent, lost); !slices.Equal(back, want) {
				t.Errorf("stream after the cut holds %v, want the lost events in id order %v", back, want)
			}
		})
	}
}

// TestRelayRepublishSurvivesASecondLoss: the stream loses its tail, the
// relay comes back an hour later and re-publishes it, then publishes new
// events, and a second power loss takes the tail again, re-published
// events included. The re-published rows got a new published_at, so the
// next relay's window, an hour after their first publication, still
// covers them.
func TestRelayRepublishSurvivesASecondLoss(t *testing.T) {
	e := newEnv(t)
	orders := newOrders(4)
	first := e.startRelay(t)
	e.insert(t, interleave(orders, 1, 4)...)
	waitFor(t, 10*time.Second, "the first events to go out", func() bool { return e.backlog(t) == 0 })
	first.stop()
	lost := e.loseTail(t, 6, false)
	e.agePublished(t, time.Hour) // the relay comes back an hour later
	e.startNATS(t)

	later := e.insert(t, interleave(orders, 5, 5)...)
	second := e.startRelay(t)
	waitFor(t, 10*time.Second, "the second relay to drain", func() bool { return e.backlog(t) == 0 })
	second.stop()
	if n := appendedCount(second); n != len(lost) {
		t.Fatalf("second relay re-published %d events as new, want the %d lost", n, len(lost))
	}
	// The second loss: the later events and the last 3 re-published ones.
	lostAgain := e.loseTail(t, len(later)+3, false)
	e.startNATS(t)
	third := e.startRelay(t)
	waitFor(t, 10*time.Second, "the third relay to re-publish", func() bool { return len(third.republishes()) > 0 })
	if n := appendedCount(third); n != len(lostAgain) {
		t.Errorf("third relay re-published %d events as new, want the %d lost again", n, len(lostAgain))
	}
	checkOrder(t, e.readStream(t, events.OrderStream), wantVersions(orders, 5))
}

func appendedCount(r *relayRun) int {
	n := 0
	for _, res := range r.republishes() {
		n += len(res.Appended)
	}
	return n
}

// TestRelayTakeoverRepublishesOnlyTheWindow: a takeover with nothing lost
// looks at the window only (the rows published within RepublishWindow of
// the latest publication), sends nothing again and adds nothing to the
// stream, also when the takeover comes after the stream's duplicate window,
// since the relay reads which events the stream holds rather than relying
// on it to drop copies.
func TestRelayTakeoverRepublishesOnlyTheWindow(t *testing.T) {
	for _, tt := range []struct {
		name string
		// duplicates is the stream's duplicate window; the takeover comes
		// after it has passed when it is short.
		duplicates time.Duration
	}{
		{name: "within the duplicate window", duplicates: events.DefaultDuplicateWindow},
		{name: "after the duplicate window", duplicates: time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			setDuplicates(t, e, tt.duplicates)
			orders := newOrders(5)
			first := e.startRelay(t)
			e.insert(t, interleave(orders, 1, 4)...)
			waitFor(t, 10*time.Second, "the old events to go out", func() bool { return e.backlog(t) == 0 })
			e.agePublished(t, time.Hour)
			recent := e.insert(t, interleave(orders, 5, 7)...)
			waitFor(t, 10*time.Second, "the recent events to go out", func() bool { return e.backlog(t) == 0 })
			before := len(e.readStream(t, events.OrderStream))
			if tt.duplicates < time.Minute {
				time.Sleep(tt.duplicates + 500*time.Millisecond)
			}

			first.stop()
			second := e.startRelay(t)
			waitFor(t, 10*time.Second, "the new relay to check its window", func() bool { return len(second.republishes()) > 0 })
			r := second.republishes()[0]
			if !slices.Equal(ids(r.Window), ids(recent)) {
				t.Errorf("window holds %d events, want the %d published in the last seconds", len(r.Window), len(recent))
			}
			if len(r.Sent) != 0 || len(r.Appended) != 0 {
				t.Errorf("sent %d events again (%d taken as new), want none", len(r.Sent), len(r.Appended))
			}
			msgs := e.readStream(t, events.OrderStream)
			if len(msgs) != before {
				t.Errorf("stream holds %d messages after the takeover, %d before", len(msgs), before)
			}
			checkOrder(t, msgs, wantVersions(orders, 7))
		})
	}
}

// loseTail does to ORDER_EVENTS what a power loss does to a NATS server
// that syncs its file store periodically: it stops the server, tears the
// message block at the record of the k-th last message (half of the record
// written, nothing after it), removes any later block and, unless
// keepState, the stream state file, and leaves the server stopped. What
// the server recovers on its next start is then what it would after such a
// crash: the blocks cut at the first torn record, and a duplicate window
// rebuilt from the messages left, which no longer knows the lost ones. It
// returns the lost event IDs.
func (e *env) loseTail(tb testing.TB, k int, keepState bool) []string {
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
	if info.State.Msgs < uint64(k) || info.State.NumDeleted > 0 {
		tb.Fatalf("stream holds %d messages (%d deleted), cannot lose the last %d", info.State.Msgs, info.State.NumDeleted, k)
	}
	cut := info.State.LastSeq - uint64(k) + 1
	lost := make([]string, 0, k)
	for seq := cut; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			tb.Fatalf("get message %d: %v", seq, err)
		}
		lost = append(lost, m.Header.Get(nats.MsgIdHdr))
	}
	e.stopNATS()

	dir := filepath.Join(e.natsDir, "jetstream", "$G", "streams", events.OrderStream, "msgs")
	blocks, err := filepath.Glob(filepath.Join(dir, "*.blk"))
	if err != nil || len(blocks) == 0 {
		tb.Fatalf("no message blocks in %s (err %v): has the file store's layout changed?", dir, err)
	}
	index := func(path string) int {
		n, _ := strconv.Atoi(strings.TrimSuffix(filepath.Base(path), ".blk"))
		return n
	}
	slices.SortFunc(blocks, func(a, b string) int { return index(a) - index(b) })
	torn := false
	for _, path := range blocks {
		if torn {
			if err := os.Remove(path); err != nil {
				tb.Fatal(err)
			}
			continue
		}
		buf, err := os.ReadFile(path)
		if err != nil {
			tb.Fatal(err)
		}
		// A record: total length (4 bytes, high bit: has headers),
		// sequence (8, two high bits: flags), timestamp (8), ...
		for off := 0; off+22 <= len(buf); {
			rl := int(binary.LittleEndian.Uint32(buf[off:]) &^ (1 << 31))
			seq := binary.LittleEndian.Uint64(buf[off+4:]) &^ (3 << 62)
			if rl <= 0 {
				tb.Fatalf("%s: record of length 0 at %d: has the file store's layout changed?", path, off)
			}
			if seq == cut {
				if err := os.Truncate(path, int64(off+rl/2)); err != nil {
					tb.Fatal(err)
				}
				torn = true
				break
			}
			off += rl
		}
	}
	if !torn {
		tb.Fatalf("no record of sequence %d in %s: has the file store's layout changed?", cut, dir)
	}
	if !keepState {
		if err := os.Remove(filepath.Join(dir, "index.db")); err != nil && !os.IsNotExist(err) {
			tb.Fatal(err)
		}
	}
	return lost
}

// agePublished moves every published_at back by d, as if those rows had
// been published that much earlier.
func (e *env) agePublished(tb testing.TB, d time.Duration) {
	tb.Helper()
	if _, err := e.store.DB.ExecContext(context.Background(),
		`UPDATE outbox_events SET published_at = published_at - make_interval(secs => $1) WHERE published_at IS NOT NULL`, d.Seconds()); err != nil {
		tb.Fatal(err)
	}
}

// setDuplicates changes ORDER_EVENTS' duplicate window.
func setDuplicates(tb testing.TB, e *env, d time.Duration) {
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
	cfg.Duplicates = d
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		tb.Fatalf("update stream: %v", err)
	}
}

func newOrders(n int) []string {
	orders := make([]string, n)
	for i := range orders {
		orders[i] = uuid.NewString()
	}
	return orders
}

// interleave is versions from..to of every order, version by version, as
// concurrent orders write them.
func interleave(orders []string, from, to int64) []outboxRow {
	var rows []outboxRow
	for v := from; v <= to; v++ {
		for _, o := range orders {
			rows = append(rows, outboxRow{order: o, version: v})
		}
	}
	return rows
}

func wantVersions(orders []string, n int64) map[string]int64 {
	want := make(map[string]int64, len(orders))
	for _, o := range orders {
		want[o] = n
	}
	return want
}

func ids(u []uuid.UUID) []string {
	out := make([]string, len(u))
	for i, id := range u {
		out[i] = id.String()
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// inIDOrder is the members of set in the order of all (inserted in id
// order).
func inIDOrder(all []uuid.UUID, set []string) []string {
	var out []string
	for _, id := range all {
		if slices.Contains(set, id.String()) {
			out = append(out, id.String())
		}
	}
	return out
}

package consumer_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/devstack/freeport"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/events/consumer"
	"github.com/orderflow/orderflow/events/eventtest"
	"github.com/orderflow/orderflow/events/natsdev"
)

// TestRedeliveryTakesNoSecondEffect: an event the consumer applied, whether
// published again (a relay retry outside the duplicate window) or replayed,
// is acknowledged without running the handler again.
func TestRedeliveryTakesNoSecondEffect(t *testing.T) {
	f := newFixture(t)
	c := run(t, f.config(t, "once", true, nil))
	id := newOrderID()
	env := orderEvent(id, events.OrderPlaced, 1, "")
	f.bus.Publish(t, env)
	eventtest.Eventually(t, "the event applied", func() bool { return c.Stats().Applied == 1 })

	again := env.Msg()
	again.Header.Set(nats.MsgIdHdr, "republished-"+env.ID)
	f.bus.PublishMsg(t, again)
	eventtest.Eventually(t, "the republished copy seen", func() bool { return c.Stats().Duplicates == 1 })

	res, err := consumer.Replay(context.Background(), f.bus.JS, consumer.ReplayOptions{Consumer: "once", FromSeq: 1})
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	if res.Count != 2 || res.Stream != events.OrderStream {
		t.Fatalf("replay = %+v, want the 2 messages of %s", res, events.OrderStream)
	}
	eventtest.Eventually(t, "the replayed copies seen", func() bool { return c.Stats().Duplicates == 3 })

	if got := f.effects(t, "once"); len(got) != 1 || got[0].EventID != env.ID {
		t.Fatalf("effects = %+v, want exactly one, of %s", got, env.ID)
	}
	if st := c.Stats(); st.Applied != 1 || st.Terminated != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

// TestSequenceHoldBack: an event whose predecessor the consumer has not
// taken is held back until it has, so the handler sees each aggregate in
// order, while other aggregates go on.
func TestSequenceHoldBack(t *testing.T) {
	tests := []struct {
		name string
		// failFirst fails this many deliveries of sequence 1.
		failFirst int32
		// reversed publishes sequence 2 before sequence 1.
		reversed bool
	}{
		{name: "predecessor being retried", failFirst: 2},
		{name: "published out of order", reversed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			var failures atomic.Int32
			cfg := f.config(t, "ordered", true, func(env events.Envelope) error {
				if env.Sequence == 1 && env.Type == events.CEType(events.OrderPlaced) && failures.Add(1) <= tt.failFirst {
					return errors.New("transient")
				}
				return nil
			})
			cfg.AdoptAfter = cfg.MaxDeliver // no adoption within the test
			a, b := newOrderID(), newOrderID()
			first, second := orderEvent(a, events.OrderPlaced, 1, ""), orderEvent(a, events.OrderPaymentAuthorized, 2, "")
			c := run(t, cfg)
			if tt.reversed {
				f.bus.Publish(t, second)
				eventtest.Eventually(t, "seq 2 held back", func() bool { return c.Stats().HeldBack >= 1 })
				f.bus.Publish(t, orderEvent(b, events.OrderPlaced, 1, ""))
				eventtest.Eventually(t, "the other aggregate applied meanwhile", func() bool { return len(f.sequences(t, "ordered", b)) == 1 })
				f.bus.Publish(t, first)
			} else {
				f.bus.Publish(t, first)
				f.bus.Publish(t, second)
				f.bus.Publish(t, orderEvent(b, events.OrderPlaced, 1, ""))
			}
			eventtest.Eventually(t, "all applied", func() bool { return c.Stats().Applied == 3 })
			wantSeqs(t, "a", f.sequences(t, "ordered", a), []int64{1, 2})
			st := c.Stats()
			if st.Applied != 3 || st.HeldBack < 1 || st.Adopted != 0 || st.Terminated != 0 || st.Retried != int64(tt.failFirst) {
				t.Fatalf("stats = %+v", st)
			}
		})
	}
}

// TestMidStreamAggregate: an aggregate whose earliest event in the stream
// has sequence 3 (its first ones aged out, or the producer joined late) is
// adopted there instead of waiting forever; a gap after that is held back
// through every delivery, dead-lettered, and applied in order once the
// missing event arrives and the dead letter is redriven.
func TestMidStreamAggregate(t *testing.T) {
	f := newFixture(t)
	c := run(t, f.config(t, "midstream", true, nil))
	id := newOrderID()
	f.bus.Publish(t, orderEvent(id, events.OrderAccepted, 3, ""))
	eventtest.Eventually(t, "seq 3 adopted", func() bool { return c.Stats().Adopted == 1 })

	f.bus.Publish(t, orderEvent(id, events.OrderUserNotified, 5, ""))
	dead := f.deadLetters(t, "midstream", 1)[0]
	if dead.Kind != "terminated" || !strings.Contains(dead.Reason, "waits for 4") || dead.Deliveries != 4 {
		t.Fatalf("dead letter = %+v, want seq 5 terminated after 4 deliveries, waiting for 4", dead)
	}

	f.bus.Publish(t, orderEvent(id, events.OrderPaymentCaptured, 4, ""))
	eventtest.Eventually(t, "seq 4 applied", func() bool { return len(f.sequences(t, "midstream", id)) == 2 })
	res, err := consumer.Redrive(context.Background(), f.bus.JS, consumer.RedriveOptions{Consumer: "midstream"})
	if err != nil || len(res.Redriven) != 1 || len(res.Left) != 0 {
		t.Fatalf("redrive = %+v, %v", res, err)
	}
	eventtest.Eventually(t, "seq 5 applied", func() bool { return len(f.sequences(t, "midstream", id)) == 3 })
	wantSeqs(t, "aggregate", f.sequences(t, "midstream", id), []int64{3, 4, 5})
	if left, _ := consumer.DeadLetters(context.Background(), f.bus.JS, "midstream"); len(left) != 0 {
		t.Fatalf("dead letters left after redrive: %+v", left)
	}
}

// TestPoisonDeadLetterRedrive: a message that is not a CloudEvent and an
// event its handler cannot take yet are terminated, land in the dead
// letters with why, which consumer and the original event; once the
// handler is fixed a redrive applies the event exactly once, even when
// delivered again, and the dead letters keep only what is still poison,
// until skipped.
func TestPoisonDeadLetterRedrive(t *testing.T) {
	f := newFixture(t)
	var fixed atomic.Bool
	poison := orderEvent(newOrderID(), events.OrderPlaced, 1, "poison")
	cfg := f.config(t, "poisoned", false, func(env events.Envelope) error {
		if env.ID == poison.ID && !fixed.Load() {
			return consumer.Permanentf("cannot take mark %q", "poison")
		}
		return nil
	})
	var log logs
	cfg.Logger = log.logger()
	bystander := run(t, f.config(t, "bystander", false, nil))
	c := run(t, cfg)

	garbage := nats.NewMsg(events.Subject(events.OrderPlaced, "not-an-order"))
	garbage.Data = []byte("hello")
	garbageSeq := f.bus.PublishMsg(t, garbage)
	poisonSeq := f.bus.Publish(t, poison)
	fine := orderEvent(newOrderID(), events.OrderPlaced, 1, "")
	f.bus.Publish(t, fine)

	dead := f.deadLetters(t, "poisoned", 2)
	// The consumer takes messages concurrently, so the two may be
	// terminated, and dead-lettered, in either order.
	slices.SortFunc(dead, func(a, b consumer.DeadLetter) int { return cmp.Compare(a.StreamSeq, b.StreamSeq) })
	tests := []struct {
		name   string
		got    consumer.DeadLetter
		seq    uint64
		reason string
		id     string
	}{
		{name: "not a CloudEvent", got: dead[0], seq: garbageSeq, reason: "not a CloudEvent"},
		{name: "permanent error", got: dead[1], seq: poisonSeq, reason: `cannot take mark "poison"`, id: poison.ID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.got
			if d.Consumer != "poisoned" || d.Stream != events.OrderStream || d.StreamSeq != tt.seq || d.Kind != "terminated" {
				t.Errorf("dead letter = %+v, want consumer poisoned, %s #%d, terminated", d, events.OrderStream, tt.seq)
			}
			if !strings.Contains(d.Why(), tt.reason) {
				t.Errorf("why = %q, want it to say %q", d.Why(), tt.reason)
			}
			if d.EventID != tt.id || d.LookupErr != "" {
				t.Errorf("event id = %q (lookup error %q), want %q", d.EventID, d.LookupErr, tt.id)
			}
		})
	}
	if tests[1].got.EventType != poison.Type || tests[1].got.Subject != poison.NATSSubject() {
		t.Errorf("poison dead letter names %s on %s, want %s on %s", tests[1].got.EventType, tests[1].got.Subject, poison.Type, poison.NATSSubject())
	}

	fixed.Store(true)
	if _, err := consumer.Redrive(context.Background(), f.bus.JS, consumer.RedriveOptions{Consumer: "poisoned"}); err != nil {
		t.Fatalf("redrive: %v", err)
	}
	eventtest.Eventually(t, "the fixed event applied", func() bool { return c.Stats().Applied == 2 })
	// Delivered once more (a replay over it and the fine event), it is a
	// duplicate, not a second effect.
	dups := c.Stats().Duplicates
	if _, err := consumer.Replay(context.Background(), f.bus.JS, consumer.ReplayOptions{Consumer: "poisoned", FromSeq: poisonSeq}); err != nil {
		t.Fatalf("replay: %v", err)
	}
	eventtest.Eventually(t, "the replayed copies seen as duplicates", func() bool { return c.Stats().Duplicates == dups+2 })
	// The garbage is poison again: back in the dead letters, now from the
	// redrive stream, still naming the original.
	again := f.deadLetters(t, "poisoned", 1)[0]
	if again.Stream != consumer.RedriveStream || again.OriginalStream != events.OrderStream || again.OriginalSeq != garbageSeq {
		t.Fatalf("garbage dead letter after redrive = %+v", again)
	}
	if n := countEffects(f, "poisoned", poison.ID); n != 1 {
		t.Fatalf("the poison event took effect %d times, want 1", n)
	}
	// The bystander consumer took everything once and was redriven nothing.
	// It runs on its own: wait until it has handled the three events.
	eventtest.Eventually(t, "the bystander handled the three events", func() bool {
		st := bystander.Stats()
		return st.Applied+st.Terminated+st.Duplicates >= 3
	})
	if st := bystander.Stats(); st.Applied != 2 || st.Terminated != 1 || st.Duplicates != 0 {
		t.Fatalf("bystander stats = %+v, want 2 applied, the garbage terminated, no redeliveries", st)
	}

	// Skipping the garbage removes it for good, even after a redrive that
	// sent this entry and crashed before deleting it (its copy, here on a
	// subject no consumer reads, holds the entry's plain message ID in the
	// redrive stream's duplicate window).
	crashed := nats.NewMsg(consumer.RedriveSubject("nobody", "x"))
	crashed.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("dlq:%d", again.Seq))
	if _, err := f.bus.JS.PublishMsg(context.Background(), crashed); err != nil {
		t.Fatal(err)
	}
	res, err := consumer.Redrive(context.Background(), f.bus.JS, consumer.RedriveOptions{Only: []uint64{again.Seq}, Skip: true})
	if err != nil || len(res.Redriven) != 1 {
		t.Fatalf("skip = %+v, %v", res, err)
	}
	eventtest.Eventually(t, "the garbage skipped", func() bool { return c.Stats().Skipped == 1 })
	eventtest.Eventually(t, "the skip logged as one", func() bool {
		return log.has(`msg="unreadable message skipped by an operator (dlq skip)"`)
	})
	if left, _ := consumer.DeadLetters(context.Background(), f.bus.JS, ""); len(left) != 1 || left[0].Consumer != "bystander" {
		t.Fatalf("dead letters left = %+v, want only the bystander's", left)
	}
}

func countEffects(f *fixture, name, eventID string) int {
	var n int
	_ = f.store.DB.QueryRow(`SELECT count(*) FROM kit_effects WHERE consumer = $1 AND event_id = $2`, name, eventID).Scan(&n)
	return n
}

// TestRedriveAfterTheCopyAgedOut: a copy on EVENTS_REDRIVE, of a redrive
// run before the fix was deployed or of a replay, fails and is
// dead-lettered as a message of EVENTS_REDRIVE. DEAD_LETTERS keeps the
// entry 30 days and ORDER_EVENTS the event 30 days, but EVENTS_REDRIVE
// keeps the copy only 7: once the copy has aged out the entry still names
// the original, and a redrive hands the original back, as the copy would
// have been (a replay's with where the replay began). The 7 days are
// compressed by lowering EVENTS_REDRIVE's MaxAge for a moment, which has
// JetStream age the copy out as it would.
func TestRedriveAfterTheCopyAgedOut(t *testing.T) {
	tests := []struct {
		name string
		// copyOut sends the event through EVENTS_REDRIVE again.
		copyOut func(ctx context.Context, js jetstream.JetStream, seq uint64) error
		replay  bool
	}{
		{name: "a redrive's copy", copyOut: func(ctx context.Context, js jetstream.JetStream, _ uint64) error {
			_, err := consumer.Redrive(ctx, js, consumer.RedriveOptions{Consumer: "aged"})
			return err
		}},
		{name: "a replay's copy", replay: true, copyOut: func(ctx context.Context, js jetstream.JetStream, seq uint64) error {
			_, err := consumer.Replay(ctx, js, consumer.ReplayOptions{Consumer: "aged", FromSeq: seq})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t)
			c, fixed, ev, seq := f.deadUntilFixed(t, "aged")

			// Too early: the copy is dead-lettered too.
			if err := tt.copyOut(ctx, f.bus.JS, seq); err != nil {
				t.Fatal(err)
			}
			copyDead := func() (consumer.DeadLetter, bool) {
				dead, _ := consumer.DeadLetters(ctx, f.bus.JS, "aged")
				i := slices.IndexFunc(dead, func(d consumer.DeadLetter) bool { return d.Stream == consumer.RedriveStream })
				if i < 0 {
					return consumer.DeadLetter{}, false
				}
				return dead[i], true
			}
			eventtest.Eventually(t, "the copy dead-lettered", func() bool { _, ok := copyDead(); return ok })

			// A week passes: the copy ages out of EVENTS_REDRIVE.
			st, err := f.bus.JS.Stream(ctx, consumer.RedriveStream)
			if err != nil {
				t.Fatal(err)
			}
			cfg := st.CachedInfo().Config
			cfg.MaxAge, cfg.Duplicates = time.Second, time.Second
			if _, err := f.bus.JS.UpdateStream(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			eventtest.Eventually(t, "the copy aged out", func() bool {
				info, err := st.Info(ctx)
				return err == nil && info.State.Msgs == 0
			})
			// Back to a week, so that the next copy waits for the consumer.
			if err := consumer.EnsureStreams(ctx, f.bus.JS); err != nil {
				t.Fatal(err)
			}

			dead, _ := copyDead()
			if dead.OriginalStream != events.OrderStream || dead.OriginalSeq != seq || dead.EventID != ev.ID || dead.LookupErr != "" {
				t.Errorf("dead letter of the aged-out copy = %+v; want %s #%d, event %s, looked up", dead, events.OrderStream, seq, ev.ID)
			}
			if why := dead.Why(); why != "permanent: bug not fixed yet" {
				t.Errorf("why = %q; want the handler's reason alone", why)
			}
			fixed.Store(true)
			res, err := consumer.Redrive(ctx, f.bus.JS, consumer.RedriveOptions{Only: []uint64{dead.Seq}})
			if err != nil || len(res.Redriven) != 1 || len(res.Left) != 0 {
				t.Fatalf("redrive = %+v, %v; want the event (still in %s #%d) handed back", res, err, events.OrderStream, seq)
			}
			eventtest.Eventually(t, "the fixed event applied", func() bool { return c.Stats().Applied == 1 })
			if n := countEffects(f, "aged", ev.ID); n != 1 {
				t.Fatalf("the event took effect %d times, want 1", n)
			}
			last, err := st.GetLastMsgForSubject(ctx, consumer.RedriveSubject("aged", ">"))
			if err != nil {
				t.Fatal(err)
			}
			want := ""
			if tt.replay {
				want = fmt.Sprint(seq)
			}
			if got := last.Header.Get(consumer.HeaderReplayFrom); got != want {
				t.Errorf("the new copy's %s = %q; want %q", consumer.HeaderReplayFrom, got, want)
			}
		})
	}
}

// TestGiveUpAfterMaxDeliver: a handler that keeps failing is retried with
// delays and, on its last delivery, terminated with its error as the
// reason.
func TestGiveUpAfterMaxDeliver(t *testing.T) {
	f := newFixture(t)
	c := run(t, f.config(t, "flaky", false, func(events.Envelope) error {
		return errors.New("database of record unreachable")
	}))
	f.bus.Publish(t, orderEvent(newOrderID(), events.OrderPlaced, 1, ""))
	d := f.deadLetters(t, "flaky", 1)[0]
	if d.Deliveries != 4 || !strings.Contains(d.Why(), "gave up after 4 deliveries: database of record unreachable") {
		t.Fatalf("dead letter = %+v (why %q)", d, d.Why())
	}
	if st := c.Stats(); st.Retried != 3 || st.Terminated != 1 || st.Applied != 0 {
		t.Fatalf("stats = %+v, want 3 retries then terminated", st)
	}
}

// TestRetryAfterDefers: RetryAfter brings the event back after the delay
// without counting a failure.
func TestRetryAfterDefers(t *testing.T) {
	f := newFixture(t)
	const wait = 300 * time.Millisecond
	first := time.Now()
	c := run(t, f.config(t, "patient", false, func(env events.Envelope) error {
		if since := time.Since(first); since < wait {
			return consumer.RetryAfter(wait-since, "not yet")
		}
		return nil
	}))
	f.bus.Publish(t, orderEvent(newOrderID(), events.OrderPlaced, 1, ""))
	eventtest.Eventually(t, "applied", func() bool { return c.Stats().Applied == 1 })
	if took := time.Since(first); took < wait {
		t.Fatalf("applied after %s, before the %s it asked to wait", took, wait)
	}
	if st := c.Stats(); st.Deferred < 1 || st.Retried != 0 {
		t.Fatalf("stats = %+v, want a deferral and no retries", st)
	}
}

// TestConcurrentConsumersApplyOnce: two processes on one durable consumer,
// with every event also published twice, apply each event exactly once and
// each aggregate in order.
func TestConcurrentConsumersApplyOnce(t *testing.T) {
	f := newFixture(t)
	const orders, steps = 20, 5
	var ids []string
	for range orders {
		ids = append(ids, newOrderID())
	}
	c1 := run(t, f.config(t, "shared", true, nil))
	c2 := run(t, f.config(t, "shared", true, nil))
	types := []string{events.OrderPlaced, events.OrderPaymentAuthorized, events.OrderRestaurantNotified, events.OrderAccepted, events.OrderCompleted}
	for s := range steps {
		for _, id := range ids {
			env := orderEvent(id, types[s], int64(s+1), "")
			f.bus.Publish(t, env)
			dup := env.Msg()
			dup.Header.Set(nats.MsgIdHdr, "dup-"+env.ID)
			f.bus.PublishMsg(t, dup)
		}
	}
	eventtest.Eventually(t, "every event applied", func() bool { return len(f.effects(t, "shared")) >= orders*steps })
	// Let the duplicates settle too.
	eventtest.Eventually(t, "every copy settled", func() bool {
		s1, s2 := c1.Stats(), c2.Stats()
		return s1.Duplicates+s2.Duplicates >= orders*steps
	})
	for _, id := range ids {
		wantSeqs(t, "order "+id, f.sequences(t, "shared", id), []int64{1, 2, 3, 4, 5})
	}
	if n := len(f.effects(t, "shared")); n != orders*steps {
		t.Fatalf("%d effects, want %d", n, orders*steps)
	}
	t.Logf("consumer 1: %+v", c1.Stats())
	t.Logf("consumer 2: %+v", c2.Stats())
}

// TestReplayRebuildsReset: a consumer whose state was reset (its effects
// and inbox emptied) gets a range of the archive back by replay, in order,
// adopting each aggregate where the replay starts.
func TestReplayRebuildsReset(t *testing.T) {
	f := newFixture(t)
	c := run(t, f.config(t, "rebuilt", true, nil))
	a, b := newOrderID(), newOrderID()
	for s := int64(1); s <= 3; s++ {
		f.bus.Publish(t, orderEvent(a, fmt.Sprintf("order.step%d", s), s, ""))
	}
	fromSeq := f.bus.Publish(t, orderEvent(b, events.OrderPlaced, 1, ""))
	f.bus.Publish(t, orderEvent(a, events.OrderCompleted, 4, ""))
	eventtest.Eventually(t, "all applied", func() bool { return c.Stats().Applied == 5 })

	for _, q := range []string{
		`DELETE FROM kit_effects WHERE consumer = 'rebuilt'`,
		`DELETE FROM inbox WHERE consumer = 'rebuilt'`,
		`DELETE FROM inbox_sequences WHERE consumer = 'rebuilt'`,
	} {
		if _, err := f.store.DB.Exec(q); err != nil {
			t.Fatalf("reset: %v", err)
		}
	}
	res, err := consumer.Replay(context.Background(), f.bus.JS, consumer.ReplayOptions{Consumer: "rebuilt", FromSeq: fromSeq})
	if err != nil || res.Count != 2 || res.First != fromSeq {
		t.Fatalf("replay = %+v, %v; want 2 events from #%d", res, err, fromSeq)
	}
	eventtest.Eventually(t, "replay applied", func() bool { return c.Stats().Applied == 7 })
	wantSeqs(t, "a", f.sequences(t, "rebuilt", a), []int64{4})
	wantSeqs(t, "b", f.sequences(t, "rebuilt", b), []int64{1})
	if st := c.Stats(); st.Adopted != 1 {
		t.Fatalf("stats = %+v, want a adopted at 4", st)
	}

	// Replay by time: everything, all duplicates now but a's first three.
	res, err = consumer.Replay(context.Background(), f.bus.JS, consumer.ReplayOptions{Consumer: "rebuilt", Since: time.Now().Add(-time.Hour)})
	if err != nil || res.Count != 5 {
		t.Fatalf("replay since = %+v, %v", res, err)
	}
	eventtest.Eventually(t, "replay settled", func() bool { st := c.Stats(); return st.Duplicates+st.Stale == 5 })
	if st := c.Stats(); st.Stale != 3 || st.Duplicates != 2 {
		t.Fatalf("stats = %+v, want a's 1-3 stale (older than the adopted 4) and 2 duplicates", st)
	}
}

// TestConfigRefused: New refuses a configuration that cannot work.
func TestConfigRefused(t *testing.T) {
	f := newFixture(t)
	base := f.config(t, "ok", false, nil)
	tests := []struct {
		name string
		edit func(*consumer.Config)
		want string
	}{
		{name: "dotted name", edit: func(c *consumer.Config) { c.Name = "a.b" }, want: "letters, digits"},
		{name: "no handler", edit: func(c *consumer.Config) { c.Handler = nil }, want: "no handler"},
		{name: "ordered and filtered", edit: func(c *consumer.Config) { c.Ordered, c.Subjects = true, []string{"orderflow.order.placed.*"} }, want: "whole stream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.edit(&cfg)
			if _, err := consumer.New(cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

// TestSkippedInvalidEventStaysSkipped: an event that fails validation but
// has an ID, once an operator skips it, is in the inbox as skipped, so the
// ordered consumer takes the aggregate's next event it held back, and a
// later copy of it (a replay over it) is a duplicate, not poison again.
func TestSkippedInvalidEventStaysSkipped(t *testing.T) {
	f := newFixture(t)
	order := newOrderID()
	bad := orderEvent(order, events.OrderPlaced, 1, "invalid")
	next := orderEvent(order, events.OrderPaymentAuthorized, 2, "")
	cfg := f.config(t, "strict", true, nil)
	var log logs
	cfg.Logger = log.logger()
	cfg.Validate = func(env events.Envelope) error {
		if env.ID == bad.ID {
			return errors.New("missing field total_cents")
		}
		return nil
	}
	c := run(t, cfg)
	seq := f.bus.Publish(t, bad)
	dead := f.deadLetters(t, "strict", 1)[0]
	if !strings.Contains(dead.Why(), "missing field total_cents") || dead.EventID != bad.ID {
		t.Fatalf("dead letter = %+v (why %q)", dead, dead.Why())
	}
	f.bus.Publish(t, next)
	eventtest.Eventually(t, "the next event held back", func() bool { return c.Stats().HeldBack > 0 })
	if _, err := consumer.Redrive(context.Background(), f.bus.JS, consumer.RedriveOptions{Only: []uint64{dead.Seq}, Skip: true}); err != nil {
		t.Fatalf("skip: %v", err)
	}
	eventtest.Eventually(t, "the invalid event skipped", func() bool { return c.Stats().Skipped == 1 })
	eventtest.Eventually(t, "the skip logged as one", func() bool { return log.has(`msg="event skipped by an operator (dlq skip)"`) })
	eventtest.Eventually(t, "the next event applied", func() bool { return countEffects(f, "strict", next.ID) == 1 })
	var outcome string
	if err := f.store.DB.QueryRow(`SELECT outcome FROM inbox WHERE consumer = 'strict' AND event_id = $1`, bad.ID).Scan(&outcome); err != nil || outcome != "skipped" {
		t.Fatalf("inbox outcome = %q (%v), want skipped", outcome, err)
	}
	if _, err := consumer.Replay(context.Background(), f.bus.JS, consumer.ReplayOptions{Consumer: "strict", FromSeq: seq}); err != nil {
		t.Fatalf("replay: %v", err)
	}
	// The replay sends both events again: both are duplicates.
	eventtest.Eventually(t, "the replayed copies taken as duplicates", func() bool { return c.Stats().Duplicates == 2 })
	if left, _ := consumer.DeadLetters(context.Background(), f.bus.JS, "strict"); len(left) != 0 {
		t.Fatalf("dead letters after the replay = %+v, want none", left)
	}
	if n := countEffects(f, "strict", bad.ID); n != 0 {
		t.Fatalf("the skipped event took effect %d times, want never", n)
	}
}

// TestDurableDeletedUnderRun: an operator deletes the durable under a
// running consumer (to reset it, say). The server ends the subscription;
// Run creates the durable again, which starts from the stream's first
// event: the first event comes again as a duplicate, the next is applied,
// each once.
func TestDurableDeletedUnderRun(t *testing.T) {
	f := newFixture(t)
	c := run(t, f.config(t, "reset", false, nil))
	first := orderEvent(newOrderID(), events.OrderPlaced, 1, "")
	f.bus.Publish(t, first)
	eventtest.Eventually(t, "the first event applied", func() bool { return c.Stats().Applied == 1 })

	if err := f.bus.JS.DeleteConsumer(context.Background(), events.OrderStream, "reset"); err != nil {
		t.Fatal(err)
	}
	second := orderEvent(newOrderID(), events.OrderPlaced, 1, "")
	f.bus.Publish(t, second)
	eventtest.Eventually(t, "the second event applied after the durable was deleted", func() bool { return c.Stats().Applied == 2 })
	eventtest.Eventually(t, "the first event's copy seen as a duplicate", func() bool { return c.Stats().Duplicates == 1 })
	effects := f.effects(t, "reset")
	if len(effects) != 2 || effects[0].EventID != first.ID || effects[1].EventID != second.ID {
		t.Errorf("effects %+v; want the two events once each", effects)
	}
}

// TestPruneInbox: Prune deletes the consumer's inbox rows older than its
// inbox retention (derived from the stream: MaxAge + the redrive stream's
// + a day) and the rows of aggregates idle as long, and nothing of another
// consumer's or newer; with a negative retention, nothing at all.
func TestPruneInbox(t *testing.T) {
	f := newFixture(t)
	pruned := run(t, f.config(t, "pruned", true, nil))
	other := run(t, f.config(t, "other", true, nil))
	old, recent := orderEvent(newOrderID(), events.OrderPlaced, 1, ""), orderEvent(newOrderID(), events.OrderPlaced, 1, "")
	f.bus.Publish(t, old)
	f.bus.Publish(t, recent)
	eventtest.Eventually(t, "both consumers took both events", func() bool {
		return pruned.Stats().Applied == 2 && other.Stats().Applied == 2
	})
	// Both consumers' rows of the old event's order are 39 days old; the
	// stream keeps 30 days, so the retention is 38.
	if _, err := f.store.DB.Exec(`UPDATE inbox SET received_at = now() - interval '39 days' WHERE event_id = $1`, old.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.DB.Exec(`UPDATE inbox_sequences SET updated_at = now() - interval '39 days' WHERE subject = $1`, old.Subject); err != nil {
		t.Fatal(err)
	}
	count := func(consumer string) (inbox, seqs int) {
		t.Helper()
		if err := f.store.DB.QueryRow(`SELECT (SELECT count(*) FROM inbox WHERE consumer = $1),
			(SELECT count(*) FROM inbox_sequences WHERE consumer = $1)`, consumer).Scan(&inbox, &seqs); err != nil {
			t.Fatal(err)
		}
		return inbox, seqs
	}

	p, err := pruned.Prune(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := (consumer.Pruned{Retention: 38 * 24 * time.Hour, Inbox: 1, Sequences: 1}); p != want {
		t.Errorf("prune = %+v; want %+v", p, want)
	}
	if i, s := count("pruned"); i != 1 || s != 1 {
		t.Errorf("pruned consumer keeps %d inbox and %d aggregate rows; want the recent event's 1 and 1", i, s)
	}
	if i, s := count("other"); i != 2 || s != 2 {
		t.Errorf("the other consumer keeps %d inbox and %d aggregate rows; want all 2 and 2", i, s)
	}

	cfg := f.config(t, "other", true, nil)
	cfg.InboxRetention = -1
	keeper, err := consumer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := keeper.Prune(context.Background()); err != nil || p != (consumer.Pruned{}) {
		t.Errorf("prune with a negative retention = %+v, %v; want nothing", p, err)
	}
	if i, s := count("other"); i != 2 || s != 2 {
		t.Errorf("after a prune with a negative retention: %d inbox and %d aggregate rows; want 2 and 2", i, s)
	}
}

// TestDurableLostWhileDisconnected: the NATS server comes back on an empty
// store (a new node, a lost disk) while the consumer's connection is down.
// Its durable is gone, which nats.go does not report as such (its pulls go
// unanswered): the consumer notices, creates the durable again, and takes
// the events published on the new store.
func TestDurableLostWhileDisconnected(t *testing.T) {
	f := newFixture(t)
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	startNATS := func() *natsdev.Server {
		srv, err := natsdev.Start(natsdev.Config{StoreDir: filepath.Join(t.TempDir(), "nats"), Addr: addr, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	srv := startNATS()
	defer func() { srv.Stop() }()
	nc, js := eventtest.Connect(t, "nats://"+addr, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	cfg := f.config(t, "survivor", false, nil)
	cfg.JetStream = js
	c := run(t, cfg)
	publish := func(env events.Envelope) {
		t.Helper()
		if _, err := js.PublishMsg(context.Background(), env.Msg()); err != nil {
			t.Fatal(err)
		}
	}
	publish(orderEvent(newOrderID(), events.OrderPlaced, 1, ""))
	eventtest.Eventually(t, "the first event applied", func() bool { return c.Stats().Applied == 1 })

	srv.Stop()
	srv = startNATS() // same address, empty store: no streams, no durable
	eventtest.Eventually(t, "the reconnection", nc.IsConnected)
	if err := events.EnsureStreams(context.Background(), js, events.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	publish(orderEvent(newOrderID(), events.OrderPlaced, 1, ""))
	deadline := time.Now().Add(90 * time.Second) // a hang bound: noticing takes a missed heartbeat
	for c.Stats().Applied != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the event published on the new store not taken after 90s: stats %+v", c.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStreamRecreatedUnderRun: the order stream is deleted and created
// again while the consumer is busy with events of the old one. Those are
// settled before the durable is created again, so that none of their acks
// (which the server matches by stream sequence) settles the new stream's
// event at the same sequence: each new event, failing once, is retried
// and applied.
func TestStreamRecreatedUnderRun(t *testing.T) {
	f := newFixture(t)
	release := make(chan struct{})
	var old, fresh sync.Map // event ID → struct{}, and → failed once
	cfg := f.config(t, "recreated", false, func(env events.Envelope) error {
		if _, ok := old.Load(env.ID); ok {
			<-release
			return nil
		}
		if _, ok := fresh.Load(env.ID); ok {
			if failed, _ := fresh.Swap(env.ID, true); failed != true {
				return errors.New("first try fails")
			}
		}
		return nil
	})
	cfg.Concurrency = 1
	c := run(t, cfg)
	for range 5 {
		env := orderEvent(newOrderID(), events.OrderPlaced, 1, "")
		old.Store(env.ID, struct{}{})
		f.bus.Publish(t, env)
	}
	eventtest.Eventually(t, "the old events delivered", func() bool { return c.Stats().Delivered >= 1 })

	if err := f.bus.JS.DeleteStream(context.Background(), events.OrderStream); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(context.Background(), f.bus.JS, events.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		env := orderEvent(newOrderID(), events.OrderPlaced, 1, "")
		fresh.Store(env.ID, false)
		f.bus.Publish(t, env)
	}
	// Time for a consumer that did not wait for the old events to create
	// the durable again and take the new ones (which this one must not do
	// before the old are settled): the wait can only let the wrong order
	// happen, never make the right one fail.
	time.Sleep(time.Second)
	close(release)
	eventtest.Eventually(t, "every event of both streams applied", func() bool { return c.Stats().Applied == 10 })
	if st := c.Stats(); st.Retried != 5 {
		t.Errorf("stats %+v; want each new event retried once", st)
	}
}

// TestQueuedBehindASlowHandlerIsNotRedelivered: events that wait in a
// worker's queue behind a slow handler (one worker, each event taking
// nearly half of AckWait) are kept in progress while they wait, so
// JetStream does not deliver them again meanwhile: each is delivered once,
// and none uses up a delivery of its MaxDeliver by waiting.
func TestQueuedBehindASlowHandlerIsNotRedelivered(t *testing.T) {
	f := newFixture(t)
	const ackWait = 2 * time.Second
	cfg := f.config(t, "slow", false, func(events.Envelope) error {
		time.Sleep(ackWait * 2 / 5)
		return nil
	})
	cfg.Concurrency, cfg.AckWait = 1, ackWait
	c := run(t, cfg)
	const n = 8 // the last one waits 2.8 AckWaits for the seven before it
	for range n {
		f.bus.Publish(t, orderEvent(newOrderID(), events.OrderPlaced, 1, ""))
	}
	eventtest.Eventually(t, "every event applied", func() bool { return c.Stats().Applied == n })
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range f.outcomes {
		if o.Consumer == "slow" && (o.Delivered != 1 || o.Result != consumer.Applied) {
			t.Errorf("stream sequence %d: %s on delivery %d; want applied on its only delivery", o.StreamSeq, o.Result, o.Delivered)
		}
	}
	if st := c.Stats(); st.Delivered != n {
		t.Errorf("stats = %+v; want %d deliveries", st, n)
	}
}

// TestTakenAfterAWaitIsReportedInProgress: a message that waited in its
// queue for less than the interval at which waiting messages are reported
// in progress, and whose handler then runs close to its deadline (9/10 of
// AckWait), is not delivered again meanwhile: the worker reports it in
// progress when it takes it.
func TestTakenAfterAWaitIsReportedInProgress(t *testing.T) {
	f := newFixture(t)
	const ackWait = 4 * time.Second
	var calls atomic.Int32
	cfg := f.config(t, "late", false, func(events.Envelope) error {
		if calls.Add(1) == 1 {
			time.Sleep(ackWait * 3 / 10) // the second waits this long: under AckWait/3
		} else {
			time.Sleep(ackWait * 8 / 10) // then runs to 1.1 AckWaits after its delivery
		}
		return nil
	})
	cfg.Concurrency, cfg.AckWait = 1, ackWait
	c := run(t, cfg)
	for range 2 {
		f.bus.Publish(t, orderEvent(newOrderID(), events.OrderPlaced, 1, ""))
	}
	eventtest.Eventually(t, "both events applied", func() bool { return c.Stats().Applied == 2 })
	time.Sleep(ackWait / 4) // a redelivery due at AckWait would have come by now
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range f.outcomes {
		if o.Consumer == "late" && (o.Delivered != 1 || o.Result != consumer.Applied) {
			t.Errorf("stream sequence %d: %s on delivery %d; want applied on its only delivery", o.StreamSeq, o.Result, o.Delivered)
		}
	}
}

// TestDeadLetterOfARecreatedStream: a dead letter names its event by
// stream sequence alone. Once ORDER_EVENTS has been deleted and created
// again, that sequence holds another event: the entry says its event is
// gone, and a redrive leaves it rather than hand the other event back.
func TestDeadLetterOfARecreatedStream(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	poison := newOrderID()
	run(t, f.config(t, "recreated", false, func(env events.Envelope) error {
		if env.Subject == poison {
			return consumer.Permanentf("cannot take it")
		}
		return nil
	}))
	f.bus.Publish(t, orderEvent(poison, events.OrderPlaced, 1, "poison"))
	f.deadLetters(t, "recreated", 1)

	if err := f.bus.JS.DeleteStream(ctx, events.OrderStream); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(ctx, f.bus.JS, events.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	other := orderEvent(newOrderID(), events.OrderPlaced, 1, "another")
	if seq := f.bus.Publish(t, other); seq != 1 {
		t.Fatalf("the new stream's first event is #%d", seq)
	}

	dead := f.deadLetters(t, "recreated", 1)
	if d := dead[0]; d.EventID == other.ID || !strings.Contains(d.LookupErr, "created again") {
		t.Errorf("entry names event %q (the new stream's is %q), lookup %q; want it gone, the stream created again", d.EventID, other.ID, d.LookupErr)
	}
	res, err := consumer.Redrive(ctx, f.bus.JS, consumer.RedriveOptions{Consumer: "recreated"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Redriven) != 0 || len(res.Left) != 1 {
		t.Errorf("redrive handed back %d entries, left %d; want the entry left", len(res.Redriven), len(res.Left))
	}
}

// TestRedriveAfterTheRedriveStreamRecreated: as
// TestRedriveAfterTheCopyAgedOut, but the copy is gone because
// EVENTS_REDRIVE was deleted (an operator clearing it) and created again by
// EnsureStreams, not because it aged out. The entry's reason still names
// the original, which ORDER_EVENTS still holds.
func TestRedriveAfterTheRedriveStreamRecreated(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	c, fixed, ev, seq := f.deadUntilFixed(t, "recr")
	if _, err := consumer.Redrive(ctx, f.bus.JS, consumer.RedriveOptions{Consumer: "recr"}); err != nil {
		t.Fatal(err)
	}
	copyDead := func() (consumer.DeadLetter, bool) {
		dead, _ := consumer.DeadLetters(ctx, f.bus.JS, "recr")
		i := slices.IndexFunc(dead, func(d consumer.DeadLetter) bool { return d.Stream == consumer.RedriveStream })
		if i < 0 {
			return consumer.DeadLetter{}, false
		}
		return dead[i], true
	}
	eventtest.Eventually(t, "the copy dead-lettered", func() bool { _, ok := copyDead(); return ok })

	if err := f.bus.JS.DeleteStream(ctx, consumer.RedriveStream); err != nil {
		t.Fatal(err)
	}
	if err := consumer.EnsureStreams(ctx, f.bus.JS); err != nil {
		t.Fatal(err)
	}
	dead, _ := copyDead()
	t.Logf("entry: original %s #%d, lookup %q", dead.OriginalStream, dead.OriginalSeq, dead.LookupErr)
	if dead.OriginalStream != events.OrderStream || dead.OriginalSeq != seq || dead.EventID != ev.ID || dead.LookupErr != "" {
		t.Errorf("dead letter of the copy whose stream was recreated = lookup %q; want the original (%s #%d, still there) looked up, as for an aged-out copy", dead.LookupErr, events.OrderStream, seq)
	}
	fixed.Store(true)
	eventtest.Eventually(t, "the consumer's redrive durable created again", func() bool {
		_, err := f.bus.JS.Consumer(ctx, consumer.RedriveStream, "recr")
		return err == nil
	})
	res, err := consumer.Redrive(ctx, f.bus.JS, consumer.RedriveOptions{Only: []uint64{dead.Seq}})
	if err != nil || len(res.Redriven) != 1 {
		t.Fatalf("redrive = %d redriven, %d left, %v; want the original handed back", len(res.Redriven), len(res.Left), err)
	}
	eventtest.Eventually(t, "the fixed event applied", func() bool { return c.Stats().Applied == 1 })
}

// deadUntilFixed runs consumer name with a handler that refuses every event
// as permanent until fixed is set, publishes one event (at seq), and
// returns once it is dead-lettered.
func (f *fixture) deadUntilFixed(t *testing.T, name string) (c *consumer.Consumer, fixed *atomic.Bool, ev events.Envelope, seq uint64) {
	t.Helper()
	fixed = new(atomic.Bool)
	ev = orderEvent(newOrderID(), events.OrderPlaced, 1, "poison")
	c = run(t, f.config(t, name, false, func(events.Envelope) error {
		if !fixed.Load() {
			return consumer.Permanentf("bug not fixed yet")
		}
		return nil
	}))
	seq = f.bus.Publish(t, ev)
	f.deadLetters(t, name, 1)
	return c, fixed, ev, seq
}

// applied runs the consumer name and has it apply n new order events.
func (f *fixture) applied(t *testing.T, name string, n int) *consumer.Consumer {
	t.Helper()
	c := run(t, f.config(t, name, false, nil))
	for i := range n {
		f.bus.Publish(t, orderEvent(newOrderID(), events.OrderPlaced, 1, fmt.Sprint(i)))
	}
	eventtest.Eventually(t, "the events applied", func() bool { return c.Stats().Applied == int64(n) })
	return c
}

// TestReplayGoesOnAfterAnEmptyFetch: a fetch that comes back empty while
// events remain (a busy server) does not end a replay short; a reader that
// delivers nothing at all ends it with an error, not with a short count.
func TestReplayGoesOnAfterAnEmptyFetch(t *testing.T) {
	f := newFixture(t)
	const n = 300 // more than one fetch of 256
	c := f.applied(t, "patient", n)

	consumer.EmptyReplayFetches(t, 5, func(call int) bool { return call == 1 || call == 3 })
	res, err := consumer.Replay(context.Background(), f.bus.JS, consumer.ReplayOptions{Consumer: "patient", FromSeq: 1})
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	if res.Count != n || res.First != 1 || res.Last != n {
		t.Fatalf("replay = %+v, want all %d events, #1 to #%d", res, n, n)
	}
	eventtest.Eventually(t, "the replayed copies seen", func() bool { return c.Stats().Duplicates == n })

	consumer.EmptyReplayFetches(t, 3, func(int) bool { return true })
	res, err = consumer.Replay(context.Background(), f.bus.JS, consumer.ReplayOptions{Consumer: "patient", FromSeq: 200})
	if err == nil || !strings.Contains(err.Error(), "nothing delivered in 3 fetches") || !strings.Contains(err.Error(), "again from #200") {
		t.Fatalf("replay from #200 of a reader that delivers nothing = %+v, %v; want the error that says so, naming #200 to resume from", res, err)
	}
}

// TestReplayOfAPurgedRangeFails: events removed from the stream while a
// replay reads it (a purge here; a max age passing alike) end the replay
// with an error naming them, not with the count of those read as if that
// were the range.
func TestReplayOfAPurgedRangeFails(t *testing.T) {
	f := newFixture(t)
	f.applied(t, "purged", 300) // more than one fetch of 256
	st, err := f.bus.JS.Stream(context.Background(), events.OrderStream)
	if err != nil {
		t.Fatal(err)
	}
	consumer.OnReplayFetch(t, func(call int) {
		if call == 2 {
			if err := st.Purge(context.Background()); err != nil {
				t.Errorf("purge: %v", err)
			}
		}
	})
	res, err := consumer.Replay(context.Background(), f.bus.JS, consumer.ReplayOptions{Consumer: "purged", FromSeq: 1})
	if err == nil || !strings.Contains(err.Error(), "were removed (purged or aged out) before the replay read them") {
		t.Fatalf("replay of a stream purged after its first fetch = %+v, %v; want the error that says events were removed", res, err)
	}
	t.Log(err)
}

// TestReplayFromBeforeAPurgeBeforeTheReplay: events the stream had lost
// before the replay began (a purge here; its max age, on any stream older
// than 30 days, alike) are not events the replay failed to read: replay
// --from-seq 1 of a stream whose first events are gone passes when it
// finds events of the consumer's after them, and so it must when it
// finds none (nothing to replay), not fail saying they were removed
// before the replay read them.
func TestReplayFromBeforeAPurgeBeforeTheReplay(t *testing.T) {
	f := newFixture(t)
	f.applied(t, "purged-before", 10)
	st, err := f.bus.JS.Stream(context.Background(), events.OrderStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	res, err := consumer.Replay(context.Background(), f.bus.JS, consumer.ReplayOptions{Consumer: "purged-before", FromSeq: 1})
	if err != nil || res.Count != 0 {
		t.Fatalf("replay from #1 of a stream purged before the replay = %+v, %v; want nothing replayed, no error", res, err)
	}
}

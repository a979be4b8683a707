package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/events/natsdev"
	"github.com/orderflow/orderflow/events/relay"
)

// Backlog shape: benchBacklog events of orders that each emitted
// benchEventsPerOrder, benchConcurrent orders at a time, so consecutive ids
// interleave orders as concurrent workflows do.
const (
	benchBacklog        = 50_000
	benchEventsPerOrder = 10
	benchConcurrent     = 200
)

// BenchmarkRelayDrain measures how fast the relay drains a 50,000-event
// backlog into ORDER_EVENTS: claim, publish in waves, mark. NATS runs as
// orderflow dev runs it: the embedded server (natsdev), file store, synced
// to disk every natsdev.DefaultSyncInterval (sync=1s, the default) or
// before every acknowledgement (sync=always, one fsync per message, which
// bounds it; BenchmarkStreamCeiling measures that bound without the
// relay). The relay's connection is in-process (conn=inprocess), as in
// orderflow dev, or over loopback TCP (conn=tcp), as for a relay of its
// own (orderflow relay) beside the server. The relay runs with the
// re-publish window cmd gives it; a takeover's re-publish is measured by
// BenchmarkTakeoverRepublish. Run it with
//
//	go test -run '^$' -bench 'RelayDrain|StreamCeiling' -benchtime 1x -count 5 ./events/relay/
func BenchmarkRelayDrain(b *testing.B) {
	for _, c := range []struct {
		sync      benchSync
		batch     int
		inProcess bool
	}{
		{syncDefault, relay.DefaultBatchSize, true},
		{syncDefault, relay.DefaultBatchSize, false},
		{syncDefault, 2000, true},
		{syncAlways, relay.DefaultBatchSize, true},
	} {
		conn := "tcp"
		if c.inProcess {
			conn = "inprocess"
		}
		b.Run(fmt.Sprintf("nats=natsdev/conn=%s/sync=%s/batch=%d", conn, c.sync, c.batch), func(b *testing.B) {
			benchmarkDrain(b, c.sync, c.batch, c.inProcess)
		})
	}
}

// BenchmarkStreamCeiling publishes 10,000 messages of the backlog's size to
// ORDER_EVENTS on natsdev with nothing else going on, 1,000 in flight at a
// time: the rate no relay can beat on this machine's disk.
func BenchmarkStreamCeiling(b *testing.B) {
	for _, sync := range []benchSync{syncDefault, syncAlways} {
		b.Run("sync="+string(sync), func(b *testing.B) { benchmarkStreamCeiling(b, sync) })
	}
}

func benchmarkStreamCeiling(b *testing.B, sync benchSync) {
	const n, inflight = 10_000, 1000
	e := benchEnv(b, sync)
	js, err := jetstream.New(e.nc, jetstream.WithPublishAsyncMaxPending(inflight))
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 330)
	for i := range data {
		data[i] = 'x'
	}
	b.ResetTimer()
	for range b.N {
		for i := 0; i < n; i += inflight {
			futures := make([]jetstream.PubAckFuture, 0, inflight)
			for range inflight {
				m := nats.NewMsg(events.Subject(events.OrderPaymentCaptured, uuid.NewString()))
				m.Header.Set(nats.MsgIdHdr, uuid.NewString())
				m.Data = data
				f, err := js.PublishMsgAsync(m)
				if err != nil {
					b.Fatal(err)
				}
				futures = append(futures, f)
			}
			for _, f := range futures {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					b.Fatal(err)
				}
			}
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkTakeoverRepublish measures what a new active relay does before
// it publishes anything new, right after a 50,000-event drain at full speed
// (so the whole drain lies inside the re-publish window, more than the
// 20,000 events a second the window would hold at that rate): read which
// events of the window the stream holds and publish again those it lost.
// lost=0 is a takeover with nothing lost; lost=10000 a power loss that took
// the stream's last 10,000 messages.
func BenchmarkTakeoverRepublish(b *testing.B) {
	for _, lost := range []int{0, 10_000} {
		b.Run(fmt.Sprintf("lost=%d", lost), func(b *testing.B) {
			e := benchEnv(b, syncDefault)
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				fillOutbox(b, e)
				drainer := e.startRelay(b, func(c *relay.Config) { c.BatchSize = relay.DefaultBatchSize })
				waitFor(b, 5*time.Minute, "the drain", func() bool { return e.backlog(b) == 0 })
				drainer.stop()
				if lost > 0 {
					e.loseTail(b, lost, false)
					e.startNATS(b)
					waitFor(b, 30*time.Second, "the reconnection", e.nc.IsConnected)
				}
				done := make(chan struct{})
				b.StartTimer()
				r := e.startRelay(b, func(c *relay.Config) {
					c.AfterRepublish = func(relay.Republished) { close(done) }
				})
				select {
				case <-done:
				case <-time.After(5 * time.Minute):
					b.Fatal("no re-publish within 5 minutes")
				}
				b.StopTimer()
				res := r.republishes()[0]
				if len(res.Appended) != lost {
					b.Fatalf("re-published %d events as new, want the %d lost", len(res.Appended), lost)
				}
				b.ReportMetric(float64(len(res.Window)), "window-events")
				r.stop()
			}
		})
	}
}

func benchmarkDrain(b *testing.B, sync benchSync, batch int, inProcess bool) {
	e := benchEnv(b, sync)
	ctx := context.Background()
	nc := e.nc // over TCP
	if inProcess {
		var err error
		nc, err = nats.Connect(e.server.URL(), nats.InProcessServer(e.server), nats.MaxReconnects(-1),
			nats.ReconnectWait(100*time.Millisecond), nats.ReconnectBufSize(-1), nats.Name("relay-test"))
		if err != nil {
			b.Fatalf("connect to nats in-process: %v", err)
		}
		b.Cleanup(nc.Close)
	}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		fillOutbox(b, e)
		var published atomic.Int64
		done := make(chan struct{})
		r, err := relay.New(relay.Config{
			DB: e.store.DB, NATS: nc, Logger: e.logger, BatchSize: batch,
			RepublishWindow: sync.republishWindow(),
			AfterPublish: func(_ context.Context, ids []uuid.UUID) error {
				if published.Add(int64(len(ids))) >= benchBacklog {
					select {
					case <-done:
					default:
						close(done)
					}
				}
				return nil
			},
		})
		if err != nil {
			b.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		stopped := make(chan struct{})
		b.StartTimer()
		go func() { defer close(stopped); _ = r.Run(rctx) }()
		select {
		case <-done:
		case <-time.After(5 * time.Minute):
			b.Fatalf("drain incomplete after 5 minutes: %d published", published.Load())
		}
		// The last batch is acknowledged; wait for its mark.
		for e.backlog(b) != 0 {
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		cancel()
		<-stopped
	}
	b.ReportMetric(float64(benchBacklog*b.N)/b.Elapsed().Seconds(), "events/s")
}

// benchSync is how the benchmark's NATS syncs its file store.
type benchSync string

const (
	syncDefault benchSync = "1s"     // natsdev.DefaultSyncInterval
	syncAlways  benchSync = "always" // every write, before its acknowledgement
)

// republishWindow is the relay's window for the setting, as cmd sets it.
func (s benchSync) republishWindow() time.Duration {
	if s == syncAlways {
		return 0
	}
	return natsdev.DefaultSyncInterval + relay.DefaultRepublishMargin
}

// benchEnv is newEnv with NATS syncing as sync says.
func benchEnv(b *testing.B, sync benchSync) *env {
	b.Helper()
	return newEnvSync(b, sync == syncAlways)
}

// fillOutbox writes the backlog with COPY, in one transaction.
func fillOutbox(b *testing.B, e *env) {
	b.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	rows := make([][]any, 0, benchBacklog)
	for g := 0; len(rows) < benchBacklog; g++ {
		orders := make([]string, benchConcurrent)
		for i := range orders {
			orders[i] = uuid.NewString()
		}
		for v := 1; v <= benchEventsPerOrder && len(rows) < benchBacklog; v++ {
			for _, order := range orders {
				if len(rows) == benchBacklog {
					break
				}
				payload, _ := json.Marshal(events.OrderEvent{
					OrderID: order, Status: "accepted", CustomerID: "c_ada", RestaurantID: "r_pizza",
					PaymentStatus: "captured", AuthorizationID: "auth_" + order[:8], AmountCents: 2650, OccurredAt: now,
				})
				rows = append(rows, []any{uuid.New(), events.AggregateOrder, order, int64(v), events.OrderPaymentCaptured, json.RawMessage(payload), now})
			}
		}
	}
	conn, err := e.store.DB.Conn(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		_, err := dc.(*stdlib.Conn).Conn().CopyFrom(ctx, pgx.Identifier{"outbox_events"},
			[]string{"event_id", "aggregate_type", "aggregate_id", "aggregate_version", "event_type", "payload", "occurred_at"},
			pgx.CopyFromRows(rows))
		return err
	})
	if err != nil {
		b.Fatalf("copy the backlog: %v", err)
	}
	if _, err := e.store.DB.ExecContext(ctx, "VACUUM ANALYZE outbox_events"); err != nil {
		b.Fatal(err)
	}
}

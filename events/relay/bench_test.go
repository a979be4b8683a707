package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/db/dbtest"
	"github.com/orderflow/orderflow/events"
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
// backlog into ORDER_EVENTS: claim, publish in waves, mark. The natsdev
// case runs NATS as orderflow dev does (file store, every write synced to
// disk before its acknowledgement: one fsync per message, which bounds it;
// BenchmarkStreamCeiling measures that bound without the relay); the
// nosync cases run the same server without sync always, to show the
// relay's own ceiling apart from the disk's. Run it with
//
//	go test -run '^$' -bench 'RelayDrain|StreamCeiling' -benchtime 1x -count 5 ./events/relay/
func BenchmarkRelayDrain(b *testing.B) {
	b.Run(fmt.Sprintf("nats=natsdev/batch=%d", relay.DefaultBatchSize), func(b *testing.B) {
		benchmarkDrain(b, true, relay.DefaultBatchSize)
	})
	for _, batch := range []int{500, 1000, 2000} {
		b.Run(fmt.Sprintf("nats=nosync/batch=%d", batch), func(b *testing.B) { benchmarkDrain(b, false, batch) })
	}
}

// BenchmarkStreamCeiling publishes 10,000 messages of the backlog's size to
// ORDER_EVENTS on natsdev with nothing else going on, 1,000 in flight at a
// time: the rate no relay can beat on this machine's disk.
func BenchmarkStreamCeiling(b *testing.B) {
	const n, inflight = 10_000, 1000
	e := benchEnv(b, true)
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

func benchmarkDrain(b *testing.B, syncAlways bool, batch int) {
	e := benchEnv(b, syncAlways)
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		fillOutbox(b, e)
		var published atomic.Int64
		done := make(chan struct{})
		r, err := relay.New(relay.Config{
			DB: e.store.DB, NATS: e.nc, Logger: e.logger, BatchSize: batch,
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

// benchEnv is newEnv with, for syncAlways=false, a NATS server that does
// not sync every write.
func benchEnv(b *testing.B, syncAlways bool) *env {
	b.Helper()
	if syncAlways {
		return newEnv(b)
	}
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, NoSigs: true,
		StoreDir: filepath.Join(b.TempDir(), "nats"), MaxPayload: 1 << 20, JetStreamMaxMemory: 256 << 20,
	})
	if err != nil {
		b.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		b.Fatal("nats server not ready")
	}
	b.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	if err := events.EnsureStreams(context.Background(), js, events.StreamConfig{}); err != nil {
		b.Fatal(err)
	}
	return &env{store: dbtest.New(b), nc: nc, js: js, logger: testLogger(b)}
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

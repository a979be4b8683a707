package relay_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sqlc-dev/pqtype"

	"github.com/orderflow/orderflow/db"
	"github.com/orderflow/orderflow/db/dbtest"
	"github.com/orderflow/orderflow/devstack/freeport"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/events/natsdev"
	"github.com/orderflow/orderflow/events/relay"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// env is a fresh database and an embedded NATS server of the test's own,
// with the streams in place.
type env struct {
	store      *db.Store
	natsDir    string
	natsAddr   string
	syncAlways bool // NATS syncs every write rather than every second
	server     *natsdev.Server
	nc         *nats.Conn
	js         jetstream.JetStream
	logger     *slog.Logger
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	return newEnvSync(tb, false)
}

// newEnvSync is newEnv with NATS syncing every write when syncAlways.
func newEnvSync(tb testing.TB, syncAlways bool) *env {
	tb.Helper()
	e := &env{
		store: dbtest.New(tb), natsDir: filepath.Join(tb.TempDir(), "nats"), natsAddr: freeAddr(tb),
		syncAlways: syncAlways, logger: testLogger(tb),
	}
	e.startNATS(tb)
	tb.Cleanup(func() {
		if e.server != nil {
			e.server.Stop()
		}
	})
	// As cmd connects: no publish is buffered across a reconnection (see
	// the relay's package documentation).
	nc, err := nats.Connect(e.server.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.ReconnectBufSize(-1), nats.Name("relay-test"))
	if err != nil {
		tb.Fatalf("connect to nats: %v", err)
	}
	tb.Cleanup(nc.Close)
	e.nc = nc
	if e.js, err = jetstream.New(nc); err != nil {
		tb.Fatal(err)
	}
	if err := events.EnsureStreams(context.Background(), e.js, events.StreamConfig{}); err != nil {
		tb.Fatal(err)
	}
	return e
}

// startNATS starts (or restarts) the embedded server on the env's store
// dir and address, as natsdev runs it for orderflow dev: syncing its file
// store every natsdev.DefaultSyncInterval (or every write).
func (e *env) startNATS(tb testing.TB) {
	tb.Helper()
	s, err := natsdev.Start(natsdev.Config{StoreDir: e.natsDir, Addr: e.natsAddr, Logger: e.logger, SyncAlways: e.syncAlways})
	if err != nil {
		tb.Fatalf("start nats: %v", err)
	}
	e.server = s
}

func (e *env) stopNATS() {
	e.server.Stop()
	e.server = nil
}

// relayRun is a relay running in a goroutine of the test's.
type relayRun struct {
	*relay.Relay
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // what Run returned

	mu          sync.Mutex
	published   []uuid.UUID         // as seen by AfterPublish
	republished []relay.Republished // as seen by AfterRepublish
}

// startRelay runs a relay on the env; edit adjusts its configuration. It is
// stopped when the test ends.
func (e *env) startRelay(tb testing.TB, edit ...func(*relay.Config)) *relayRun {
	tb.Helper()
	run := &relayRun{done: make(chan struct{})}
	cfg := relay.Config{
		DB: e.store.DB, NATS: e.nc, Logger: e.logger,
		PollInterval: 50 * time.Millisecond, LockRetryInterval: 100 * time.Millisecond, AckTimeout: 5 * time.Second,
		// As cmd sets it for the embedded server's default.
		RepublishWindow: natsdev.DefaultSyncInterval + relay.DefaultRepublishMargin,
	}
	for _, f := range edit {
		f(&cfg)
	}
	hook := cfg.AfterPublish
	cfg.AfterPublish = func(ctx context.Context, ids []uuid.UUID) error {
		run.mu.Lock()
		run.published = append(run.published, ids...)
		run.mu.Unlock()
		if hook != nil {
			return hook(ctx, ids)
		}
		return nil
	}
	rehook := cfg.AfterRepublish
	cfg.AfterRepublish = func(res relay.Republished) {
		run.mu.Lock()
		run.republished = append(run.republished, res)
		run.mu.Unlock()
		if rehook != nil {
			rehook(res)
		}
	}
	r, err := relay.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	run.Relay = r
	ctx, cancel := context.WithCancel(context.Background())
	run.cancel = cancel
	go func() {
		defer close(run.done)
		run.err = r.Run(ctx)
	}()
	tb.Cleanup(run.stop)
	return run
}

// stop stops the relay and waits for Run to return.
func (r *relayRun) stop() {
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		panic("relay did not stop within 30s")
	}
}

// crashed waits for Run to return by itself (a hook's error, say) and
// fails unless it returned want.
func (r *relayRun) crashed(tb testing.TB, want error) {
	tb.Helper()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		tb.Fatal("the crashing relay did not stop")
	}
	if !errors.Is(r.err, want) {
		tb.Fatalf("Run = %v, want the hook's error", r.err)
	}
}

// republishes returns the re-publishes this relay completed, in order.
func (r *relayRun) republishes() []relay.Republished {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]relay.Republished(nil), r.republished...)
}

// publishedCount is the number of events this relay published.
func (r *relayRun) publishedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.published)
}

// publishedIDs returns the event IDs this relay published, in order, a
// re-sent one as often as it was sent.
func (r *relayRun) publishedIDs() []uuid.UUID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uuid.UUID(nil), r.published...)
}

// sendCounts maps each event ID this relay published to how often it did.
func (r *relayRun) sendCounts() map[uuid.UUID]int {
	n := map[uuid.UUID]int{}
	for _, id := range r.publishedIDs() {
		n[id]++
	}
	return n
}

// outboxRow is an outbox row to insert.
type outboxRow struct {
	order     string
	version   int64
	eventType string
	payload   []byte // nil: a small JSON payload
	headers   map[string]string
}

// insert writes rows in the given order, each in its own transaction, as
// the activities do, and returns their event IDs.
func (e *env) insert(tb testing.TB, rows ...outboxRow) []uuid.UUID {
	tb.Helper()
	ids, err := e.tryInsert(rows...)
	if err != nil {
		tb.Fatal(err)
	}
	return ids
}

// tryInsert is insert for goroutines other than the test's.
func (e *env) tryInsert(rows ...outboxRow) ([]uuid.UUID, error) {
	ids := make([]uuid.UUID, len(rows))
	for i, r := range rows {
		ids[i] = uuid.New()
		payload := r.payload
		if payload == nil {
			payload = fmt.Appendf(nil, `{"order_id":%q,"status":"placed","version":%d}`, r.order, r.version)
		}
		var headers pqtype.NullRawMessage
		if r.headers != nil {
			b, _ := json.Marshal(r.headers)
			headers = pqtype.NullRawMessage{RawMessage: b, Valid: true}
		}
		typ := r.eventType
		if typ == "" {
			typ = events.OrderPlaced
		}
		if _, err := e.store.InsertOutboxEvent(context.Background(), db.InsertOutboxEventParams{
			EventID: ids[i], AggregateType: events.AggregateOrder, AggregateID: r.order, AggregateVersion: r.version,
			EventType: typ, Payload: payload, Headers: headers, OccurredAt: time.Now().UTC().Truncate(time.Microsecond),
		}); err != nil {
			return nil, fmt.Errorf("insert outbox row: %w", err)
		}
	}
	return ids, nil
}

// streamed is one message read back from a stream.
type streamed struct {
	seq     uint64
	subject string
	header  nats.Header
	env     events.Envelope
}

// readStream returns every message of the stream, in stream order.
func (e *env) readStream(tb testing.TB, name string) []streamed {
	tb.Helper()
	ctx := context.Background()
	s, err := e.js.Stream(ctx, name)
	if err != nil {
		tb.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatalf("stream %s info: %v", name, err)
	}
	var out []streamed
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // a gap: deleted, or lost and recovered as deleted
		}
		if err != nil {
			tb.Fatalf("get message %d of %s: %v", seq, name, err)
		}
		env, err := events.Decode(m.Header, m.Data)
		if err != nil {
			tb.Fatalf("message %d of %s: %v", seq, name, err)
		}
		out = append(out, streamed{seq: m.Sequence, subject: m.Subject, header: m.Header, env: env})
	}
	return out
}

// backlog is the number of unpublished rows.
func (e *env) backlog(tb testing.TB) int64 {
	tb.Helper()
	n, err := e.store.CountUnpublishedOutboxEvents(context.Background())
	if err != nil {
		tb.Fatalf("count unpublished: %v", err)
	}
	return n
}

// waitFor polls cond every 20ms until it holds, failing tb after timeout.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkOrder fails tb unless, for every order, the stream holds versions
// 1..n exactly once each, in ascending order, with no other message.
func checkOrder(tb testing.TB, msgs []streamed, want map[string]int64) {
	tb.Helper()
	last := map[string]int64{}
	seen := map[string]bool{}
	for _, m := range msgs {
		if seen[m.env.ID] {
			tb.Errorf("event %s (order %s v%d) is in the stream twice", m.env.ID, m.env.Subject, m.env.Sequence)
		}
		seen[m.env.ID] = true
		if m.env.Sequence != last[m.env.Subject]+1 {
			tb.Errorf("order %s: stream seq %d holds version %d after version %d", m.env.Subject, m.seq, m.env.Sequence, last[m.env.Subject])
		}
		last[m.env.Subject] = m.env.Sequence
	}
	for order, n := range want {
		if last[order] != n {
			tb.Errorf("order %s: stream ends at version %d, want %d", order, last[order], n)
		}
	}
	if len(last) != len(want) {
		tb.Errorf("stream holds events of %d orders, want %d", len(last), len(want))
	}
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		tb.Fatal(err)
	}
	return addr
}

// testLogger logs to stderr with -v, and nowhere otherwise.
func testLogger(tb testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/analytics"
	"github.com/orderflow/orderflow/db/dbtest"
	"github.com/orderflow/orderflow/events"
	"github.com/orderflow/orderflow/events/eventtest"
	"github.com/orderflow/orderflow/promotions"
)

// stageRecorder builds fake parts that record the order they stop in and
// check that every stage before theirs is still running when they stop.
type stageRecorder struct {
	tb testing.TB

	mu      sync.Mutex
	ctxs    map[int][]context.Context // by stage
	stopped []string
}

func newStageRecorder(tb testing.TB) *stageRecorder {
	tb.Helper()
	return &stageRecorder{tb: tb, ctxs: map[int][]context.Context{}}
}

// part is a part of the given stage that starts at once and runs until its
// context is done, or until fail gives it an error to fail with.
func (r *stageRecorder) part(stage int, name string, fail <-chan error) part {
	started := make(chan struct{})
	return part{started: started, run: func(ctx context.Context) error {
		r.mu.Lock()
		r.ctxs[stage] = append(r.ctxs[stage], ctx)
		r.mu.Unlock()
		close(started)
		select {
		case err := <-fail:
			r.record(name)
			return err
		case <-ctx.Done():
		}
		r.mu.Lock()
		for before := range stage {
			for _, c := range r.ctxs[before] {
				if c.Err() != nil {
					r.tb.Errorf("%s stopping while stage %d is already stopped", name, before)
				}
			}
		}
		r.mu.Unlock()
		r.record(name)
		return nil
	}}
}

func (r *stageRecorder) record(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = append(r.stopped, name)
}

func TestRunStagesStopsLastStageFirst(t *testing.T) {
	errPart := errors.New("part failed")
	tests := []struct {
		name     string
		failing  string // the part that fails once all started; none: the context is cancelled
		wantErr  error
		wantStop [][]string // stage by stage, in the order they stop
	}{
		{
			name:     "signal",
			wantErr:  nil,
			wantStop: [][]string{{"api"}, {"inbound", "courier"}, {"worker"}, {"relay"}},
		},
		{
			name:     "worker fails",
			failing:  "worker",
			wantErr:  errPart,
			wantStop: [][]string{{"worker"}, {"api"}, {"inbound", "courier"}, {"relay"}},
		},
		{
			name:     "api fails",
			failing:  "api",
			wantErr:  errPart,
			wantStop: [][]string{{"api"}, {"inbound", "courier"}, {"worker"}, {"relay"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newStageRecorder(t)
			fail := make(chan error, 1)
			mk := func(stage int, name string) part {
				if name == tt.failing {
					return r.part(stage, name, fail)
				}
				return r.part(stage, name, nil)
			}
			stages := [][]part{
				{mk(0, "relay")},
				{mk(1, "worker")},
				{mk(2, "inbound"), mk(2, "courier")},
				{mk(3, "api")},
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan error, 1)
			ready := make(chan struct{})
			go func() {
				done <- runStages(ctx, slog.New(slog.DiscardHandler), func() { close(ready) }, stages...)
			}()
			<-ready
			if tt.failing == "" {
				cancel()
			} else {
				fail <- errPart
			}
			err := <-done
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("runStages returned %v, want %v", err, tt.wantErr)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			i := 0
			for _, stage := range tt.wantStop {
				if i+len(stage) > len(r.stopped) {
					t.Fatalf("stopped %v, want stages %v in this order", r.stopped, tt.wantStop)
				}
				got := slices.Sorted(slices.Values(r.stopped[i : i+len(stage)]))
				if !slices.Equal(got, slices.Sorted(slices.Values(stage))) {
					t.Fatalf("stopped %v, want stages %v in this order", r.stopped, tt.wantStop)
				}
				i += len(stage)
			}
			if i != len(r.stopped) {
				t.Fatalf("stopped %v, want stages %v in this order", r.stopped, tt.wantStop)
			}
		})
	}
}

// startingPart is a part that starts once release gives it nil, or fails at
// its start with the error release gives it instead; stopped before either,
// it returns nil, as a consumer still waiting for its stream does.
func startingPart(release <-chan error) part {
	started := make(chan struct{})
	return part{started: started, run: func(ctx context.Context) error {
		select {
		case err := <-release:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return nil
		}
		close(started)
		<-ctx.Done()
		return nil
	}}
}

// TestRunStagesReadyOnceEveryPartStarted: ready (dev's banner) is called
// once every part has started, not before, and never when a part fails at
// its start or the context is done while one is starting (Ctrl-C during
// start-up); either way runStages stops every part and returns.
func TestRunStagesReadyOnceEveryPartStarted(t *testing.T) {
	errStart := errors.New("part failed at its start")
	tests := []struct {
		name      string
		failing   int  // the part that fails at its start; -1: none
		cancel    bool // the context is done while the last part is starting
		wantErr   error
		wantReady bool
	}{
		{name: "every part starts", failing: -1, wantReady: true},
		{name: "the first part fails at its start", failing: 0, wantErr: errStart},
		{name: "the last part fails at its start", failing: 2, wantErr: errStart},
		{name: "ctrl-c during start-up", failing: -1, cancel: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Three parts in two stages, each started by the test in turn.
			releases := make([]chan error, 3)
			parts := make([]part, len(releases))
			for i := range releases {
				releases[i] = make(chan error, 1)
				parts[i] = startingPart(releases[i])
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			ready := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				done <- runStages(ctx, slog.New(slog.DiscardHandler), func() { close(ready) }, parts[:1], parts[1:])
			}()
			for i, release := range releases {
				select {
				case <-ready:
					t.Fatalf("ready called while part %d had not started", i)
				case <-time.After(50 * time.Millisecond):
				}
				if i == tt.failing {
					release <- errStart
					break
				}
				if tt.cancel && i == len(releases)-1 {
					cancel()
					break
				}
				release <- nil
			}
			if tt.wantReady {
				select {
				case <-ready:
				case err := <-done:
					t.Fatalf("runStages returned %v without calling ready", err)
				case <-time.After(10 * time.Second):
					t.Fatal("ready not called 10s after every part started")
				}
				cancel()
			}
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("runStages did not return within 10s")
			}
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("runStages returned %v, want %v", err, tt.wantErr)
			}
			requireReady(t, ready, tt.wantReady)
		})
	}
}

// TestServeReadyOnceItsPartsStarted runs the relay and two consumers as dev
// does, on a real database and bus: ready comes once the relay holds its
// lock and the consumers' durables exist; never when the server refuses a
// consumer's durable (serve fails with that), nor while a consumer waits
// for its stream, and Ctrl-C then still stops serve.
func TestServeReadyOnceItsPartsStarted(t *testing.T) {
	tests := []struct {
		name string
		// before leaves the order stream as the case needs it.
		before    func(tb testing.TB, js jetstream.JetStream)
		stopAfter time.Duration // when set, cancel serve after this long instead of waiting for ready
		wantErr   string        // in serve's error; none: serve returns nil
		wantReady bool
	}{
		{name: "every part starts", wantReady: true},
		{
			name: "a consumer's durable refused",
			// A stream that limits its consumers below the consumers'
			// MaxAckPending: the server refuses their durables.
			before: func(tb testing.TB, js jetstream.JetStream) {
				st, err := js.Stream(tb.Context(), events.OrderStream)
				if err != nil {
					tb.Fatal(err)
				}
				cfg := st.CachedInfo().Config
				cfg.ConsumerLimits.MaxAckPending = 1
				if _, err := js.UpdateStream(tb.Context(), cfg); err != nil {
					tb.Fatal(err)
				}
			},
			wantErr: " on " + events.OrderStream + ": ", // the consumer kit's words for a refused durable
		},
		{
			name: "ctrl-c while the consumers wait for their stream",
			before: func(tb testing.TB, js jetstream.JetStream) {
				if err := js.DeleteStream(tb.Context(), events.OrderStream); err != nil {
					tb.Fatal(err)
				}
			},
			stopAfter: time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := eventtest.Start(t)
			store := dbtest.New(t)
			if tt.before != nil {
				tt.before(t, bus.JS)
			}
			cfg, err := FromEnv(newEnv(t, map[string]string{"NATS_URL": bus.URL}))
			if err != nil {
				t.Fatal(err)
			}
			d := &deps{store: store, nc: bus.NC}

			// What had not started yet when ready was called.
			var missing []string
			ready := make(chan struct{})
			onReady := func() {
				defer close(ready)
				for _, name := range []string{promotions.ConsumerName, analytics.ConsumerName} {
					if _, err := bus.JS.Consumer(t.Context(), events.OrderStream, name); err != nil {
						missing = append(missing, fmt.Sprintf("the durable %s (%v)", name, err))
					}
				}
				var locks int
				if err := store.DB.QueryRow(`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
					AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&locks); err != nil || locks == 0 {
					missing = append(missing, fmt.Sprintf("the relay's lock (%d held, %v)", locks, err))
				}
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			served := make(chan error, 1)
			go func() {
				served <- serve(ctx, cfg, eventtest.Logger(), d, parts{relay: true, promotions: true, analytics: true}, onReady)
			}()
			stop := time.After(tt.stopAfter)
			if tt.stopAfter == 0 {
				stop = nil
			}
			select {
			case <-ready:
				if !tt.wantReady {
					t.Fatal("ready called although a part had not started")
				}
				if len(missing) > 0 {
					t.Fatalf("ready called before %s", strings.Join(missing, " and "))
				}
				cancel()
				err = <-served
			case err = <-served:
			case <-stop:
				cancel()
				select {
				case err = <-served:
				case <-time.After(30 * time.Second):
					t.Fatal("serve still running 30s after it was stopped during start-up")
				}
			case <-time.After(30 * time.Second):
				t.Fatal("neither ready nor an error from serve within 30s")
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("serve returned %v; want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("serve returned %v; want an error about %q", err, tt.wantErr)
			}
			requireReady(t, ready, tt.wantReady)
		})
	}
}

// requireReady fails t unless ready was closed exactly when want says.
func requireReady(t *testing.T, ready <-chan struct{}, want bool) {
	t.Helper()
	select {
	case <-ready:
		if !want {
			t.Fatal("ready called although a part never started")
		}
	default:
		if want {
			t.Fatal("ready not called")
		}
	}
}

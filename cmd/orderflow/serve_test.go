package main

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
)

// stageRecorder builds fake parts that record the order they stop in and
// check that every stage before theirs is still running when they stop.
type stageRecorder struct {
	tb      testing.TB
	started sync.WaitGroup

	mu      sync.Mutex
	ctxs    map[int][]context.Context // by stage
	stopped []string
}

func newStageRecorder(tb testing.TB) *stageRecorder {
	tb.Helper()
	return &stageRecorder{tb: tb, ctxs: map[int][]context.Context{}}
}

// part is a part of the given stage that runs until its context is done,
// or fails at once with fail when it is set.
func (r *stageRecorder) part(stage int, name string, fail error) part {
	r.started.Add(1)
	return func(ctx context.Context) error {
		r.mu.Lock()
		r.ctxs[stage] = append(r.ctxs[stage], ctx)
		r.mu.Unlock()
		r.started.Done()
		if fail != nil {
			r.record(name)
			return fail
		}
		<-ctx.Done()
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
	}
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
		failing  string // the part that fails; none: the context is cancelled
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
			mk := func(stage int, name string) part {
				var fail error
				if name == tt.failing {
					fail = errPart
				}
				return r.part(stage, name, fail)
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
			r.started.Wait()
			if tt.failing == "" {
				cancel()
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
